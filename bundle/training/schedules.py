"""Learning-rate schedules by name, so a config picks one with a key instead of an inline conditional."""

from __future__ import annotations

import math

import torch

from bundle.errors import InputError

__all__ = ["SCHEDULES", "lr_schedule", "restart_factor", "warmup_factor"]

SCHEDULES = ("cosine", "restart", "constant")


def restart_factor(epoch: int, epochs: int, restart_epoch: int, gain: float) -> float:
    """Multiplier of the base rate at ``epoch``: cosine to 0 over ``restart_epoch`` epochs, then a second
    cosine from ``gain`` to 0 over the rest (one warm restart, SGDR-style). With ``restart_epoch >= epochs``
    there is no second round: one cosine over ``epochs``."""
    if restart_epoch >= epochs or restart_epoch < 1:
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))
    if epoch < restart_epoch:
        return 0.5 * (1.0 + math.cos(math.pi * epoch / restart_epoch))
    rest = epochs - restart_epoch
    return gain * 0.5 * (1.0 + math.cos(math.pi * min(epoch - restart_epoch, rest) / rest))


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """Linear warm-up: ``(epoch + 1) / (warmup_epochs + 1)`` of the rate over the first ``warmup_epochs``."""
    return (epoch + 1) / (warmup_epochs + 1) if epoch < warmup_epochs else 1.0


def lr_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    restart_epoch: int | None = None,
    restart_gain: float = 1.0,
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per epoch.

    ``"cosine"``: decay to 0 over ``epochs``. ``"restart"``: decay to 0 over ``restart_epoch`` epochs,
    then restart the first group (weights) at ``restart_gain`` x its rate and every other group (the
    learnable scales of :func:`bundle.training.finetune.param_groups`) at its full rate, decaying to 0
    over the remaining epochs: the two fine-tuning rounds of the shipped SNN (4 epochs at 1e-4, then 5 at
    5e-5, scales at 1e-3 in both) as one run. ``"constant"``: no change.
    ``warmup_epochs`` > 0 scales any of them by :func:`warmup_factor` (training from random weights, where a
    full rate at the first step can kill every neuron's firing).
    """
    epochs, warmup = int(epochs), int(warmup_epochs)
    if name == "cosine" and warmup == 0:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "constant" and warmup == 0:
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: warmup_factor(e, warmup))
    if name in ("cosine", "restart"):
        # a cosine is restart_factor without a restart; LambdaLR because CosineAnnealingWarmRestarts cannot
        # restart at a lower peak or at different gains per group
        restart = epochs if name == "cosine" or restart_epoch is None else int(restart_epoch)
        gains = [float(restart_gain)] + [1.0] * (len(optimizer.param_groups) - 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, [lambda e, g=g: warmup_factor(e, warmup) * restart_factor(e, epochs, restart, g) for g in gains]
        )
    raise InputError(f"lr schedule must be one of {', '.join(SCHEDULES)}, not {name!r}")
