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
import threading
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
_lock = threading.Lock()  # MONAI Label may run two models' first steps at once


def compiled(step: Callable) -> Callable | None:
    """``step`` compiled for any shape, or ``None`` where compiling failed here before."""
    with _lock:
        if step in _failed:
            return None
        if step not in _compiled:
            # its "No CUDA runtime is found" warning on CPU-only machines is noise here
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            # dynamic: one kernel for every feature-map size (each U-Net level, any window batch)
            _compiled[step] = torch.compile(step, dynamic=True)
        return _compiled[step]


def run(step: Callable, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``step(*args)`` through its compiled kernel, or eagerly where compilation is not possible."""
    kernel = compiled(step)
    if kernel is None:
        return step(*args)
    try:
        return kernel(*args)
    except Exception as e:  # noqa: BLE001 - compiler errors have no common type; the eager step re-raises real ones
        # the eager step tells a compiler problem (no C++ compiler, no Triton...) from a real one (out of
        # memory, wrong device), which it raises itself
        result = step(*args)
        with _lock:
            _failed.add(step)
        first = (str(e).strip().splitlines() or [""])[0][:160]
        logger.warning(f"compiled neuron kernel unavailable ({type(e).__name__}: {first}); running the eager step")
        return result
