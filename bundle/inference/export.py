"""TorchScript export of a spiking segmenter (the ANN uses MONAI's own ``ckpt_export``).

``torch.jit.script`` cannot compile SpikingJelly 2.0's neurons (their ``supported_backends`` annotation
is wrong), so the SNN is traced: the T-step loop is unrolled into the graph. The trace runs without
autograd, so it records the neurons' eager inference step (plain tensor ops, no surrogate-gradient
``autograd.Function``, which TorchScript could not save), and it is checked on the sliding-window size
(``roi_size``), the only shape the inferer feeds it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from bundle.spiking.neurons import set_kernel
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["export_snn"]


def export_snn(network: SpikingSegmenter, path: str | Path, roi_size: Sequence[int], atol: float = 1e-5) -> Path:
    """Trace ``network`` for inputs ``[1, 1, *roi_size]``, save it, reload it and check it matches.

    The export runs all ``timesteps`` steps for every input, whatever ``network``'s adaptive setting.
    """
    if not isinstance(network, SpikingSegmenter):
        raise TypeError("export_snn exports a SpikingSegmenter; export the ANN with `monai.bundle ckpt_export`.")
    model = set_kernel(copy.deepcopy(network).cpu().eval(), "eager")  # a trace records ops, not compiled kernels
    model.adaptive = "off"  # a trace records one fixed path: all T steps (adaptive stopping is data-dependent)
    example = torch.rand(1, 1, *roi_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))
        probe = torch.rand(1, 1, *roi_size)
        error = (torch.jit.load(str(path))(probe) - model(probe)).abs().max().item()
    if error > atol:
        raise RuntimeError(f"{path}: the exported SNN differs from the original by {error:g} (> {atol:g}).")
    return path
