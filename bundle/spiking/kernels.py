"""Fused inference steps for the IF neurons: one ``torch.compile`` kernel per neuron type.

Eagerly, a ternary neuron's step is about ten full passes over its feature map (charge, two
comparisons, the guard, casts, reset, count), each allocating a tensor; on a CPU that is a quarter
of the SNN's time at T=4. Compiled (Inductor: C++/OpenMP on CPU, Triton on CUDA) the step is one
loop that reads ``x, v, count`` once and writes ``spike, v, count`` once.

Compilation takes seconds on first use and is cached on disk by PyTorch. It needs a C++ compiler on
CPU; where compiling fails, the neurons fall back to the eager step and say so once. Training
(autograd through the surrogate gradient) always runs eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

__all__ = ["KERNELS", "binary_step", "compiled", "run", "ternary_step"]

logger = logging.getLogger(__name__)

KERNELS = ("eager", "compiled")


def binary_step(x: torch.Tensor, v: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = v + x
    spike = (h >= threshold).to(x.dtype)
    return spike, h - threshold * spike


def ternary_step(
    x: torch.Tensor, v: torch.Tensor, count: torch.Tensor, threshold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = v + x
    spike = (h >= threshold).to(x.dtype) - ((h <= -threshold) & (count > 0)).to(x.dtype)
    return spike, h - threshold * spike, count + spike


_compiled: dict[Callable, Callable] = {}
_failed: set[Callable] = set()


def compiled(step: Callable) -> Callable | None:
    """``step`` compiled for any shape, or ``None`` where compiling failed here before."""
    if step in _failed:
        return None
    if step not in _compiled:
        # dynamic: one kernel for every feature-map size (each U-Net level, any window batch)
        _compiled[step] = torch.compile(step, dynamic=True)
    return _compiled[step]


def run(step: Callable, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``step(*args)`` through its compiled kernel, or eagerly where compilation is not possible."""
    kernel = compiled(step)
    if kernel is not None:
        try:
            return kernel(*args)
        except Exception as e:  # noqa: BLE001 - any compiler failure (no C++ compiler, no Triton) means eager
            _failed.add(step)
            logger.warning(
                f"compiled neuron kernel unavailable ({type(e).__name__}: {str(e).strip().splitlines()[0][:160]}); "
                "running the eager step"
            )
    return step(*args)
