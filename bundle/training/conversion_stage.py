"""Stage 2: the trained ANN converted to a spiking U-Net with SpikingJelly, thresholds calibrated on
training images, then scored on the validation cases at ``timesteps`` (``convert``).

Writes ``snn_converted_ckpt`` (weights, thresholds and the settings that rebuild it) and per-case Dice
CSVs in ``<output_dir>/eval_snn_converted``, with firing rate and energy per validation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from monai.handlers import MetricsSaver

from bundle import errors
from bundle.networks.checkpoint import load_weights
from bundle.spiking import checkpoint
from bundle.spiking.conversion import convert, one_at_a_time, output_threshold
from bundle.spiking.segmenter import SpikingSegmenter
from bundle.training import distributed
from bundle.training.ann_stage import METRICS
from bundle.training.context import TrainingRun
from bundle.training.spike_metrics import SpikeActivity

__all__ = ["ConversionSettings", "ConversionStage", "conversion_settings"]

NAME = "convert"


@dataclass(frozen=True)
class ConversionSettings:
    """Stage 2's keys (names as in ``configs/train.json``)."""

    ann_ckpt: str = "runs/models/model_ann.pt"
    snn_converted_ckpt: str = "runs/models/model_snn_converted.pt"
    timesteps: int = 16
    neuron: str = "ternary"
    norm_mode: str = "99.9%"
    channel_wise: bool = False
    v_init: float = 0.5
    readout: str = "membrane"
    multi_step: bool = False
    neuron_kernel: str = "compiled"
    calibration_cases: int = 32
    amp: bool = False

    def recipe(self, run: TrainingRun) -> dict:
        own = {k: v for k, v in asdict(self).items() if k not in ("snn_converted_ckpt", "multi_step", "neuron_kernel")}
        return {**own, "standardization": run.settings.standardization, "randomize": run.settings.randomize}


def conversion_settings(run: TrainingRun, settings: ConversionSettings, out_threshold: float) -> dict:
    """What an SNN checkpoint records so that inference rebuilds it (:mod:`bundle.spiking.checkpoint`)."""
    s = settings
    return {
        "mode": s.norm_mode, "channel_wise": s.channel_wise, "neuron": s.neuron, "v_init": s.v_init,
        "timesteps": s.timesteps, "readout": s.readout, "out_threshold": out_threshold,
        "standardization": run.settings.standardization, "spatial_dims": run.settings.spatial_dims,
        "channels": list(run.settings.channels),
    }  # fmt: skip


class ConversionStage:
    """Converts ``ann_ckpt``, saves the SNN and evaluates it (:meth:`run`)."""

    def __init__(self, run: TrainingRun, settings: ConversionSettings):
        self.context, self.settings = run, settings

    def spec(self) -> dict:
        s = self.settings
        return {"inputs": [s.ann_ckpt], "outputs": [s.snn_converted_ckpt], "settings": s.recipe(self.context)}

    @cached_property
    def ann(self):
        run = self.context
        return errors.or_exit(load_weights, run.unet(), self.settings.ann_ckpt, "train_ann", run.device)

    def calibrate(self):
        """The SNN and its output layer's threshold, calibrated on the first ``calibration_cases`` images."""
        run, s = self.context, self.settings

        def images():  # two passes over the same images
            return one_at_a_time(run.calibration_loader(s.calibration_cases))

        snn = convert(self.ann, images(), mode=s.norm_mode, channel_wise=s.channel_wise, neuron=s.neuron,
                      v_init=s.v_init, device=run.device)  # fmt: skip
        return snn, output_threshold(self.ann, images(), device=run.device)

    def run(self) -> None:
        self.context.stages.run(NAME, self._convert, self.spec())

    def _convert(self) -> None:
        run, s = self.context, self.settings
        run.seed()
        snn, threshold = self.calibrate()
        distributed.main_only(checkpoint.save_snn, snn, s.snn_converted_ckpt, conversion_settings(run, s, threshold))
        segmenter = SpikingSegmenter(snn, s.timesteps, s.readout, out_threshold=threshold, multi_step=s.multi_step,
                                     kernel=s.neuron_kernel)  # fmt: skip
        handlers = [
            SpikeActivity(segmenter),
            run.stats(),
            MetricsSaver(
                save_dir=run.path("eval_snn_converted"), metrics=METRICS, metric_details=["val_mean_dice"],
                batch_transform=lambda batch: [item["image"].meta for item in batch], summary_ops="*",
            ),
            *run.tracking(NAME, "evaluator"),
        ]  # fmt: skip
        run.evaluator(segmenter, handlers, s.amp).run()
