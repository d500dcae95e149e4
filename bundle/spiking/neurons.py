"""Integrate-and-fire neurons that replace ReLU in a converted U-Net.

* :class:`IFNeuron` — binary spikes {0, 1}, soft reset (reset by subtraction).
* :class:`GuardedTernaryIFNode` — spikes {-1, 0, +1} whose rate approximates ReLU, not the identity.

SpikingJelly's own ``TernaryIFNode`` fires -1 whenever ``v <= -threshold``; its rate follows the
identity, so dropped in for ReLU it passes negative values on (stack.md measured output correlation
~0). Here a -1 spike is allowed only while the neuron's net spike count is positive: it can take back
a spike fired too early (overshoot), never carry a negative value.

Both start from ``V[0] = v_init * V_th``. ``v_init = 0.5`` rounds instead of truncating the rate
(a rate-coded IF neuron that starts at 0 under-reports every activation by up to one spike), the
"half threshold" initialisation; ``v_init = 0`` is the classic IF neuron.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron.base_node import BaseNode
from torch import nn

from bundle.spiking import kernels

__all__ = [
    "NEURON_TYPES",
    "SURROGATES",
    "GuardedTernaryIFNode",
    "IFNeuron",
    "make_neuron",
    "set_kernel",
    "set_surrogate",
]

NEURON_TYPES = ("binary", "ternary")


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # through uint8: torch's CPU bool -> float cast is not vectorised (>10x slower on a 3D feature map);
    # TorchScript's tracer has no dtype view
    return mask.to(dtype) if torch.jit.is_tracing() else mask.view(torch.uint8).to(dtype)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a plain tensor, still in the autograd graph: a training batch arrives as MONAI's MetaTensor (and
    SpikingJelly makes the first state like it), whose ``__torch_function__`` the compiler would trace into
    every fused step (slower, and it warns)."""
    return x if type(x) is torch.Tensor else x.as_subclass(torch.Tensor)


class _SoftResetIF(BaseNode):
    """Shared constructor: float threshold, soft reset, ``v_init`` as a fraction of the threshold."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_init: float = 0.0,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
    ):
        super().__init__(
            v_threshold=float(v_threshold),
            v_reset=None,
            surrogate_function=surrogate_function or surrogate.ATan(),
            detach_reset=detach_reset,
            step_mode=step_mode,
        )
        self.v_init = float(v_init)
        self.v = self.v_init * self.v_threshold
        self.set_reset_value("v", self.v)  # BaseNode registered v = 0.0
        self.kernel = "eager"  # "eager" or "compiled" steps, inference and training (see bundle.spiking.kernels)
        # training only (autograd step): a differentiable running sum of |spikes| and of neuron-steps, for a
        # firing-rate penalty; off by default, reset by whoever reads it (SpikingSegmenter.spike_rate)
        self.track_activity = False
        self.activity_sum: torch.Tensor | float = 0.0
        self.activity_steps = 0

    def _threshold(self, v: torch.Tensor) -> torch.Tensor:
        # a tensor, not a float: a compiled kernel would otherwise be specialised to each threshold value
        return self._constant("threshold", self.v_threshold, v)

    def _constant(self, name: str, value: float, v: torch.Tensor) -> torch.Tensor:
        """``value`` as a tensor of ``v``'s dtype and device, kept per device (no host-to-GPU copy per step)."""
        key = (value, v.dtype, v.device)
        cached = getattr(self, f"_{name}_cache", (None, None))  # one read: callers may run in threads
        if cached[0] != key:
            cached = (key, torch.tensor(value, dtype=v.dtype, device=v.device))
            setattr(self, f"_{name}_cache", cached)
        return cached[1]

    def materialize_states(self, inputs, states, step_mode):
        """SpikingJelly's, but the membrane is float32 (at least) whatever the input's precision."""
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        dtype = torch.promote_types(x.dtype, torch.float32)
        v = states[0]
        if isinstance(v, torch.Tensor) and v.shape == x.shape:
            v = v if v.dtype == dtype and v.device == x.device else v.to(dtype=dtype, device=x.device)
        elif isinstance(v, torch.Tensor):  # a new input shape without reset: start over, as SpikingJelly does
            v = torch.full(x.shape, 0.0, dtype=dtype, device=x.device)
        else:
            v = torch.full_like(x, float(v), dtype=dtype)
        return (v, *states[1:])

    def _train_kernel(self, neuron: str):
        """The compiled training step, or ``None`` for the eager one: the kernel is eager, the surrogate has
        no primitive, or the step must do what the fused one does not (track activity for a rate penalty,
        detach the reset)."""
        primitive = getattr(type(self.surrogate_function), "primitive_function", None)
        if self.kernel != "compiled" or self.track_activity or self.detach_reset or primitive is None:
            return None
        return kernels.train_step(neuron, primitive)

    def _alpha(self, v: torch.Tensor) -> torch.Tensor:
        # the surrogate's shape parameter, a tensor for the same reason as the threshold
        return self._constant("alpha", float(self.surrogate_function.alpha), v)

    @staticmethod
    def _tensor(state, like: torch.Tensor) -> torch.Tensor:
        # memories start as Python floats until the first step gives them a shape; under mixed precision
        # they stay float32 (a float16/bfloat16 membrane would round away small inputs as it accumulates)
        if isinstance(state, torch.Tensor):
            return state
        return torch.full_like(like, float(state), dtype=torch.promote_types(like.dtype, torch.float32))

    def _charge(self, state, x: torch.Tensor) -> torch.Tensor:
        """``V[t-1] + X[t]`` for the inference step, in place where the state allows it."""
        return self._owned(state, x).add_(x)

    def _owned(self, state, like: torch.Tensor) -> torch.Tensor:
        # inference updates the state in place (a few full-volume passes fewer per step); a state tensor
        # that autograd may still need (the last training step's) or that v_seq keeps is copied first
        if isinstance(state, torch.Tensor):
            return state.clone() if state.requires_grad or self.store_v_seq else state
        return _SoftResetIF._tensor(state, like)

    def _track(self, activity: torch.Tensor) -> None:
        """Add ``activity`` (|spikes| of one step, still in the autograd graph) to the running sums."""
        if self.track_activity:
            self.activity_sum = self.activity_sum + activity.sum(dtype=torch.float32)
            self.activity_steps += activity.numel()

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, v_init={self.v_init}, step_mode={self.step_mode}"


class IFNeuron(_SoftResetIF):
    r"""Binary IF neuron with soft reset.

    .. math::
        H[t] = V[t-1] + X[t], \quad S[t] = \Theta(H[t] - V_{th}), \quad V[t] = H[t] - V_{th} S[t]

    For a constant input ``x`` the rate tends to ``clip(x / V_th, 0, 1)``: ReLU up to saturation.
    """

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x = inputs[0]
        if not torch.is_grad_enabled():
            return self._inference_step(x, states)
        fused = self._train_kernel("binary")
        if fused is not None:
            x, v = _plain(x), _plain(self._tensor(states[0], x))
            spike, v = kernels.run(fused, x, v, self._threshold(v), self._alpha(v))
            return (spike,), (v, *states[1:])
        h = self._tensor(states[0], x) + x
        spike = self.surrogate_function(h - self.v_threshold)
        self._track(spike)
        reset = spike.detach() if self.detach_reset else spike
        return (spike,), (h - self.v_threshold * reset, *states[1:])

    def _inference_step(self, x, states):
        if self.kernel == "compiled":
            v = self._tensor(states[0], x)
            spike, v = kernels.run(kernels.binary_step, x, v, self._threshold(v))
            return (spike,), (v, *states[1:])
        v = self._charge(states[0], x)
        spike = _as_float(v >= self.v_threshold, x.dtype)
        return (spike,), (v.sub_(spike, alpha=self.v_threshold), *states[1:])


class GuardedTernaryIFNode(_SoftResetIF):
    r"""Ternary IF neuron with soft reset whose negative spikes only correct earlier positive ones.

    .. math::
        H[t] &= V[t-1] + X[t] \\
        P[t] &= \Theta(H[t] - V_{th}) \\
        N[t] &= \Theta(-H[t] - V_{th}) \cdot [C[t-1] > 0] \\
        S[t] &= P[t] - N[t], \quad V[t] = H[t] - V_{th} S[t], \quad C[t] = C[t-1] + S[t]

    ``C`` counts net spikes, so the cumulative output never goes below zero: for a constant input the
    rate follows ReLU as for :class:`IFNeuron`, while an input that turns negative after a positive
    start retracts spikes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_memory("count", 0.0)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x = inputs[0]
        if not torch.is_grad_enabled():
            return self._inference_step(x, states)
        fused = self._train_kernel("ternary")
        if fused is not None:
            x, v, count = _plain(x), _plain(self._tensor(states[0], x)), _plain(self._tensor(states[1], x))
            spike, v, count = kernels.run(fused, x, v, count, self._threshold(v), self._alpha(v))
            return (spike,), (v, count, *states[2:])
        h = self._tensor(states[0], x) + x
        count = self._tensor(states[1], x)
        pos = self.surrogate_function(h - self.v_threshold)
        neg = self.surrogate_function(-h - self.v_threshold) * (count > 0).to(h.dtype)
        spike = pos - neg
        self._track(pos + neg)  # = |spike| (pos and neg never both fire), with a surrogate gradient for both
        reset = spike.detach() if self.detach_reset else spike
        return (spike,), (h - self.v_threshold * reset, count + spike.detach(), *states[2:])

    def _inference_step(self, x, states):
        if self.kernel == "compiled":
            v, count = self._tensor(states[0], x), self._tensor(states[1], x)
            spike, v, count = kernels.run(kernels.ternary_step, x, v, count, self._threshold(v))
            return (spike,), (v, count, *states[2:])
        v = self._charge(states[0], x)
        spike = _as_float(v >= self.v_threshold, x.dtype)
        if isinstance(states[1], torch.Tensor) or float(states[1]) != 0.0:
            count = self._owned(states[1], x)
            spike.sub_(_as_float((v <= -self.v_threshold) & (count > 0), x.dtype))
            count.add_(spike)
        else:  # first step: no spike to take back yet
            count = spike.to(v.dtype, copy=True)
        return (spike,), (v.sub_(spike, alpha=self.v_threshold), count, *states[2:])


def make_neuron(kind: str, v_threshold: float = 1.0, v_init: float = 0.0, step_mode: str = "s") -> BaseNode:
    """A neuron by name (``"binary"`` or ``"ternary"``), as the configs choose it."""
    if kind == "binary":
        return IFNeuron(v_threshold, v_init, step_mode=step_mode)
    if kind == "ternary":
        return GuardedTernaryIFNode(v_threshold, v_init, step_mode=step_mode)
    raise ValueError(f"neuron type must be one of {NEURON_TYPES} but is {kind!r}.")


SURROGATES = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid, "piecewise_quadratic": surrogate.PiecewiseQuadratic}


def set_surrogate(network: nn.Module, name: str = "atan", alpha: float | None = None) -> nn.Module:
    """Give every neuron of ``network`` the surrogate gradient ``name`` (SpikingJelly's, with its ``alpha``).

    Only the backward pass changes: the spikes of a converted network stay the same.
    """
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)} but is {name!r}.")
    for module in network.modules():
        if isinstance(module, (IFNeuron, GuardedTernaryIFNode)):
            module.surrogate_function = SURROGATES[name]() if alpha is None else SURROGATES[name](alpha=float(alpha))
    return network


def set_kernel(network: nn.Module, kernel: str = "eager") -> nn.Module:
    """Run every neuron's step ``"eager"`` (op by op) or ``"compiled"`` (one fused kernel), in inference and
    in training."""
    if kernel not in kernels.KERNELS:
        raise ValueError(f"kernel must be one of {kernels.KERNELS} but is {kernel!r}.")
    for module in network.modules():
        if isinstance(module, _SoftResetIF):
            module.kernel = kernel
    return network
