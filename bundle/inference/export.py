"""TorchScript export of a spiking segmenter (the ANN uses MONAI's own ``ckpt_export``).

``torch.jit.script`` cannot compile SpikingJelly 2.0's neurons (their ``supported_backends`` annotation
is wrong), so the SNN is traced: the T-step loop is unrolled into the graph. Two things make a trace
exact and savable:

* the surrogate-gradient function is a Python ``autograd.Function`` that TorchScript cannot save;
  in inference it is only a Heaviside step, so the export swaps in that step;
* the trace is checked on the sliding-window size (``roi_size``), the only shape the inferer feeds it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron, set_kernel
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["export_snn"]


class _Heaviside(nn.Module):
    """The surrogate's forward pass alone: spike where the membrane reaches threshold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= 0).to(x.dtype)


def export_snn(network: SpikingSegmenter, path: str | Path, roi_size: Sequence[int], atol: float = 1e-5) -> Path:
    """Trace ``network`` for inputs ``[1, 1, *roi_size]``, save it, reload it and check it matches."""
    if not isinstance(network, SpikingSegmenter):
        raise TypeError("export_snn exports a SpikingSegmenter; export the ANN with `monai.bundle ckpt_export`.")
    model = set_kernel(copy.deepcopy(network).cpu().eval(), "eager")  # a trace records ops, not compiled kernels
    for module in model.modules():
        if isinstance(module, (IFNeuron, GuardedTernaryIFNode)):
            module.surrogate_function = _Heaviside()
    example = torch.rand(1, 1, *roi_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))
        probe = torch.rand(1, 1, *roi_size)
        reference = copy.deepcopy(network).cpu().eval()  # the caller's network stays where it was
        error = (torch.jit.load(str(path))(probe) - reference(probe)).abs().max().item()
    if error > atol:
        raise RuntimeError(f"{path}: the exported SNN differs from the original by {error:g} (> {atol:g}).")
    return path
