"""Firing rate and energy of each validation of a spiking network, as engine metrics.

Put in an SNN evaluator's handler list before the loggers, it adds ``val_firing_rate`` (spikes per
neuron per step), ``val_energy_uj`` (per inference window, 45 nm estimate of
:mod:`bundle.spiking.activity`) and ``val_energy_vs_ann`` (the same windows' dense ANN cost as the
unit) to ``engine.state.metrics``, so StatsHandler, TensorBoard and MLflow log them beside the Dice.
MONAI has no spike-activity metric; the counting is :class:`~bundle.spiking.activity.ActivityMonitor`'s.
"""

from __future__ import annotations

from ignite.engine import Engine, Events
from torch import nn

from bundle.spiking.activity import ActivityMonitor

__all__ = ["SpikeActivity"]


class SpikeActivity:
    """Counts spikes and operations over each evaluator epoch of ``network`` (a SpikingSegmenter or a wrapper)."""

    def __init__(self, network: nn.Module):
        self.network = network
        self.monitor: ActivityMonitor | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._stop)

    def _start(self, engine: Engine) -> None:
        self.monitor = ActivityMonitor(self.network).__enter__()

    def _stop(self, engine: Engine) -> None:
        if self.monitor is None:
            return
        self.monitor.__exit__(None, None, None)
        per_window, totals = self.monitor.summary(), self.monitor.totals()
        engine.state.metrics["val_firing_rate"] = per_window["mean_firing_rate"]
        engine.state.metrics["val_energy_uj"] = per_window["energy_uj"]
        engine.state.metrics["val_energy_vs_ann"] = totals["energy_vs_ann"]
        self.monitor = None
