"""Mixed precision as a network wrapper, so MONAI's trainers and evaluators use it unchanged.

MONAI 1.6's engines autocast only on CUDA (``torch.autocast("cuda")``), so their ``amp=True`` does
nothing on a CPU; this wrapper autocasts on whatever device the input is on: bfloat16 uses the CPU's
AMX matrix units (1.65x faster ANN training step on the 2-core machine, ``studies/train_step_benchmark.py``)
and needs no gradient scaler on CUDA either. Spiking neurons keep float32 membranes (``spiking.neurons``).

A CPU without bfloat16 units (no AMX, no AVX-512 BF16: e.g. AMD Zen 3, most laptops) emulates it: a training
step of the U-Net took 69 s instead of 0.95 s in float32 (2026-12-07, AMD EPYC, AVX2 only). There ``amp``
falls back to float32, with one warning: :func:`fast_bfloat16`.
"""

from __future__ import annotations

import logging
from functools import cache

import torch
from torch import nn

__all__ = ["MixedPrecision", "fast_bfloat16"]

logger = logging.getLogger(__name__)


@cache
def fast_bfloat16(device_type: str) -> bool:
    """Whether bfloat16 autocast pays on ``device_type``: CUDA yes; a CPU only with AMX or AVX-512 BF16 units."""
    if device_type != "cpu":
        return True
    fast = bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    if not fast:
        logger.warning(
            f"amp: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bfloat16 units (AMX or AVX-512 BF16); "
            "emulated bfloat16 is ~70x slower, so the network runs in float32"
        )
    return fast


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
        if not self.enabled or (self.dtype == torch.bfloat16 and not fast_bfloat16(x.device.type)):
            return self.network(x)
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.network(x)
        return out.float()

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}, dtype={self.dtype}"
