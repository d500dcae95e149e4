"""Learning-rate schedules by name, so a config picks one with a key instead of an inline conditional."""

from __future__ import annotations

import torch

from bundle.errors import InputError

__all__ = ["SCHEDULES", "lr_schedule"]

SCHEDULES = ("cosine", "constant")


def lr_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``"cosine"``: decay to 0 over ``epochs`` (stepped once per epoch); ``"constant"``: no change."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(epochs))
    if name == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise InputError(f"lr schedule must be one of {', '.join(SCHEDULES)}, not {name!r}")
