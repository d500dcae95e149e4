"""Stage 3, spiking fine-tuning: what the ``finetune`` block of ``configs/train.json`` calls besides
MONAI's trainer and evaluator (the loss is :mod:`bundle.training.losses`, the schedule
:mod:`bundle.training.schedules`).

* :func:`learnable_scales`: each layer's threshold/gain becomes a parameter (the paper's learnable
  thresholds);
* :func:`param_groups`: weights and scales at their own learning rates;
* :class:`FreshOptimizerAtRestart`: the ``restart`` schedule's second round starts with a fresh Adam state,
  as a second manual round would;
* :func:`save_finetuned`: the best checkpoint MONAI's ``CheckpointSaver`` kept, rewritten as an SNN
  checkpoint with a record of how it was trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from spikingjelly.activation_based.ann2snn.modules import VoltageScaler
from torch import nn

from bundle.errors import InputError
from bundle.options import as_bool
from bundle.spiking.checkpoint import write

__all__ = ["FreshOptimizerAtRestart", "learnable_scales", "param_groups", "save_finetuned"]

logger = logging.getLogger(__name__)


def learnable_scales(snn: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn every ``VoltageScaler``'s scale (a buffer in SpikingJelly) into a trainable parameter.

    The pair ``VoltageScaler(1/s) -> IF(threshold 1) -> VoltageScaler(s)`` is an IF neuron with threshold
    ``s``; learning both factors lets fine-tuning move each layer's threshold and output gain. State-dict
    keys are unchanged, so checkpoints load with or without this.
    """
    if not as_bool(enabled, "finetune_learn_scales"):
        return snn
    for module in snn.modules():
        if isinstance(module, VoltageScaler) and not isinstance(module.scale, nn.Parameter):
            value = module.scale.detach().clone()
            del module._buffers["scale"]
            module.scale = nn.Parameter(value)
    return snn


def param_groups(network: nn.Module, lr: float, scale_lr: float | None = None) -> list[dict]:
    """Optimizer groups: weights and biases at ``lr``; learnable ``VoltageScaler`` scales at ``scale_lr``.

    Scales are O(1-10) while weights are O(0.01): one learning rate cannot suit both under Adam,
    whose steps are about ``lr`` in absolute size whatever the parameter's magnitude.
    """
    scales = [m.scale for m in network.modules() if isinstance(m, VoltageScaler) and isinstance(m.scale, nn.Parameter)]
    ids = {id(p) for p in scales}
    groups = [{"params": [p for p in network.parameters() if id(p) not in ids], "lr": float(lr)}]
    if scales:
        groups.append({"params": scales, "lr": float(lr if scale_lr is None else scale_lr)})
    return groups


class FreshOptimizerAtRestart:
    """Ignite handler: forget the optimizer's state (Adam's moments) when epoch ``restart_epoch`` ends.

    With ``enabled`` false, a ``schedule`` other than ``"restart"``, or a restart at or after the last epoch,
    it does nothing. A run resumed after the restart loads the optimizer state saved after it, so the reset
    happens once per run either way.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: str, restart_epoch: int, epochs: int, enabled: bool = True
    ):
        self.optimizer = optimizer
        self.restart_epoch = int(restart_epoch)
        self.active = (
            as_bool(enabled, "finetune_restart_fresh_optimizer")
            and schedule == "restart"
            and 1 <= self.restart_epoch < int(epochs)
        )

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if self.active:
            engine.add_event_handler(Events.EPOCH_COMPLETED(once=self.restart_epoch), self)

    def __call__(self, engine) -> None:
        self.optimizer.state.clear()
        logger.info("epoch %d: learning-rate restart with a fresh optimizer state", self.restart_epoch)


def save_finetuned(best: str | Path, settings: dict, path: str | Path, **training: object) -> Path:
    """Write the best fine-tuned SNN as a self-contained SNN checkpoint (:mod:`bundle.spiking.checkpoint`).

    ``best`` is what MONAI's ``CheckpointSaver`` wrote for the fine-tuned ``SpikingSegmenter``
    (``{"model": state dict}``, keys prefixed ``snn.``); ``settings`` are those of the network that was
    fine-tuned (the converted checkpoint's); ``training`` (timesteps, epochs, learning rate...) is
    recorded under ``settings["finetuned"]``, and its ``timesteps`` becomes the model's default T.
    """
    best = Path(best)
    if not best.is_file():
        raise InputError(f"{best}: not found; the fine-tuning stage saved no best checkpoint (did it validate?).")
    state = torch.load(best, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    snn_state = {k.removeprefix("snn."): v for k, v in state.items() if k.startswith("snn.")}
    settings = dict(settings)
    if "finetuned" in settings:  # fine-tuned again: keep the record of the earlier round(s)
        settings["finetuned_before"] = [*settings.pop("finetuned_before", []), settings.pop("finetuned")]
    settings["finetuned"] = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in training.items()}
    if "timesteps" in training:
        settings["timesteps"] = int(training["timesteps"])
    settings["readout"] = "membrane"  # fine-tuning trains the membrane readout
    path = write(snn_state, path, settings)
    logger.info(f"fine-tuned SNN (T={settings['timesteps']}) saved to {path}")
    return path
