"""Mirroring at inference: a network run on each window and on its left-right mirror, the two softmaxes averaged
(nnU-Net's test-time mirroring, along the one axis training flips: RAS axis 0, tensor dim 2).

A wrapper like any other (:class:`~bundle.networks.precision.MixedPrecision`): it takes a window and returns class
scores (log-probabilities, so argmax and softmax downstream read them as they read logits), and an SNN's activity
monitor counts both passes, so the energy accounts double with it. On the validation split it gained more than
spending the same compute on twice the time steps (``studies/mirroring.py``, ``docs/RESULTS.md``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LEFT_RIGHT", "Mirrored"]

LEFT_RIGHT = 2  # (batch, channel, x, y, z) in RAS: x is left-right, the axis training flips (bundle.data.transforms)


class Mirrored(nn.Module):
    """``network``'s class probabilities on ``x`` and on ``x`` mirrored along ``dim``, averaged; returned as logs."""

    def __init__(self, network: nn.Module, dim: int = LEFT_RIGHT):
        super().__init__()
        self.network = network
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        direct = self.network(x).float().softmax(1)
        mirrored = self.network(x.flip(self.dim)).float().softmax(1).flip(self.dim)
        return ((direct + mirrored) / 2).clamp_min(torch.finfo(torch.float32).tiny).log()
