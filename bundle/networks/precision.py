"""Mixed precision as a network wrapper, so MONAI's trainers and evaluators use it unchanged.

MONAI 1.6's engines autocast only on CUDA (``torch.autocast("cuda")``), so their ``amp=True`` does
nothing on a CPU; this wrapper autocasts on whatever device the input is on: bfloat16 uses the CPU's
AMX matrix units (1.65x faster ANN training step on the 2-core machine, ``scripts/train_step_benchmark.py``)
and needs no gradient scaler on CUDA either. Spiking neurons keep float32 membranes (``spiking.neurons``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MixedPrecision"]


class MixedPrecision(nn.Module):
    """``network`` run under ``torch.autocast(<input device>, dtype)``; outputs come back as float32.

    The wrapped network keeps its own ``state_dict`` keys: save and load ``network``, not the wrapper.
    """

    def __init__(self, network: nn.Module, enabled: bool = True, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.network = network
        self.enabled = bool(enabled)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.network(x)
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.network(x)
        return out.float()

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}, dtype={self.dtype}"
