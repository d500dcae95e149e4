"""Loading a stage's checkpoint into its network, with errors that say which stage makes the file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bundle.errors import InputError, require_file

__all__ = ["load_weights"]


def load_weights(network: nn.Module, path: str | Path, made_by: str, device: torch.device | str = "cpu") -> nn.Module:
    """Load ``path`` (a state dict, or ``{"model": state dict}``) strictly into ``network``; return it in eval mode.

    Raises :class:`~bundle.errors.InputError` if the file is missing (naming the run id ``made_by``
    that writes it) or was saved from a different architecture.
    """
    require_file(str(path), made_by)
    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise InputError(f"{path}: does not fit this network (other channels?): {(sizes or [str(e)])[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{path}: does not fit this network (other architecture?): missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return network.to(device).eval()
