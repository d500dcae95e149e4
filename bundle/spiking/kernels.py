"""Fused steps for the IF neurons: one ``torch.compile`` kernel per neuron type, for inference and training.

Eagerly, a ternary neuron's step is about ten full passes over its feature map (charge, two
comparisons, the guard, casts, reset, count), each allocating a tensor; on a CPU that is a quarter
of the SNN's time at T=4. Compiled (Inductor: C++/OpenMP on CPU, Triton on CUDA) the step is one
loop that reads ``x, v, count`` once and writes ``spike, v, count`` once.

Training steps (:func:`train_step`) differentiate through the spike with SpikingJelly's surrogate
gradients written as a straight-through estimator: ``Θ(x) + g(x) - g(x).detach()``, whose value is the
spike and whose derivative is ``g'(x)``, ``g`` being the surrogate's primitive (SpikingJelly's own
``primitive_function``). Plain differentiable ops, so Inductor fuses forward and backward alike
(SpikingJelly's surrogate calls are ``autograd.Function`` objects, one op per pass).

Compilation takes seconds on first use and is cached on disk by PyTorch. It needs a C++ compiler on
CPU; where compiling fails, the neurons fall back to the eager step and say so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import torch

__all__ = ["KERNELS", "binary_step", "compiled", "run", "ternary_step", "train_step"]

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


def _spike(x: torch.Tensor, alpha: torch.Tensor, primitive: Callable) -> torch.Tensor:
    """``Θ(x)`` forward (SpikingJelly's heaviside, ``x >= 0``), ``primitive'(x)`` backward."""
    g = primitive(x, alpha)
    return (x >= 0).to(x.dtype) + (g - g.detach())


def _binary_train(primitive: Callable) -> Callable:
    def step(x, v, threshold, alpha):
        h = v + x
        spike = _spike(h - threshold, alpha, primitive)
        return spike, h - threshold * spike

    return step


def _ternary_train(primitive: Callable) -> Callable:
    def step(x, v, count, threshold, alpha):
        h = v + x
        pos = _spike(h - threshold, alpha, primitive)
        neg = _spike(-h - threshold, alpha, primitive) * (count > 0).to(h.dtype)
        spike = pos - neg
        return spike, h - threshold * spike, count + spike.detach()

    return step


_train_steps: dict[tuple[str, Callable], Callable] = {}


def train_step(neuron: str, primitive: Callable) -> Callable:
    """The differentiable step of a ``"binary"`` or ``"ternary"`` neuron whose surrogate has the primitive
    ``primitive(x, alpha)`` (a SpikingJelly surrogate's ``primitive_function``), as one function object per
    pair, so each compiles once.

    Binary: ``(x, v, threshold, alpha) -> (spike, v)``; ternary: ``(x, v, count, threshold, alpha) ->
    (spike, v, count)``; both as the neurons' eager training steps with soft reset through the spike.
    """
    key = (neuron, primitive)
    if key not in _train_steps:
        make = {"binary": _binary_train, "ternary": _ternary_train}[neuron]
        _train_steps[key] = make(primitive)
    return _train_steps[key]


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
