"""Quantisation-clip-floor-shift (QCFS) activation: an ANN trained for conversion to a spiking network.

Bu et al., "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency spiking neural networks"
(ICLR 2022). Each ReLU becomes

.. math::
    y = \\frac{\\lambda}{L} \\, \\mathrm{clip}\\left(\\left\\lfloor \\frac{x L}{\\lambda} + \\frac12 \\right\\rfloor, 0, L\\right)

with ``L`` quantisation levels and a trainable threshold ``lambda`` per layer; the floor passes its
gradient straight through. The ``+ 1/2`` shift is the half-threshold start of our IF neurons
(``v_init = 0.5``): an IF neuron with threshold ``lambda`` that starts at ``lambda / 2`` and sees the
constant input ``x`` for ``T = L`` steps fires exactly ``clip(floor(x L / lambda + 1/2), 0, L)`` times,
so a QCFS network converts with no calibration (each layer's threshold is its trained ``lambda``, see
:func:`bundle.spiking.conversion.convert`), and its expected conversion error is zero at any ``T``.

Two ways to get one:

* from scratch: ``ConvertibleUNet(activation="qcfs", levels=L)`` (every ``lambda`` starts at
  :data:`DEFAULT_THRESHOLD`, as in the paper);
* from a trained ReLU network (a short fine-tune): :func:`init_from_relu` loads the ReLU checkpoint into
  the QCFS network and sets each ``lambda`` to the ReLU's activation percentile on a few images (99.9%,
  as the converter calibrates a ReLU network).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_THRESHOLD",
    "QCFS",
    "init_from_relu",
    "param_groups",
    "percentile_thresholds",
    "set_thresholds",
    "start_from",
    "thresholds",
]

ACTIVATIONS = ("relu", "qcfs")
DEFAULT_THRESHOLD = 8.0  # Bu et al.'s initial lambda when training from scratch
_MIN_THRESHOLD = 1e-3


class _QCFSFunction(torch.autograd.Function):
    """``lambda/L * clip(floor(x L / lambda + 1/2), 0, L)`` with a straight-through floor, in one pass each way.

    The gradients are those autograd gives ``clamp(x + (floor(x) - x).detach(), 0, L)`` (torch's clamp
    passes no gradient at its bounds): with ``q`` the level and ``m = 0 < q < L``,
    ``dy/dx = m`` and ``dy/dlambda = q / L - m x / lambda``. Only ``x`` is kept for the backward pass
    (the level is recomputed), which saves memory and time against the composed version.
    """

    @staticmethod
    def _levels(x: torch.Tensor, lam: torch.Tensor, levels: int) -> torch.Tensor:
        return torch.floor(x.float() * (levels / lam) + 0.5).clamp_(0, levels)

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor, levels: int) -> torch.Tensor:
        lam = lam.float().clamp_min(_MIN_THRESHOLD)
        ctx.save_for_backward(x, lam)
        ctx.levels = levels
        return (_QCFSFunction._levels(x, lam, levels) * (lam / levels)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, lam = ctx.saved_tensors
        levels = ctx.levels
        q = _QCFSFunction._levels(x, lam, levels)
        inside = (q > 0) & (q < levels)
        grad_x = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * inside.to(grad.dtype)
        if ctx.needs_input_grad[1]:
            g = grad.float()
            grad_lam = (g * q).sum() / levels - (g * x.float() * inside).sum() / lam
        return grad_x, grad_lam, None


class QCFS(nn.Module):
    """Clip-floor-shift activation with ``levels`` steps up to a trainable threshold ``lambda``.

    Args:
        levels: L, the number of non-zero output levels (the timesteps at which the converted SNN is exact).
        threshold: initial ``lambda`` (the parameter ``threshold``; kept above 1e-3 in the forward pass).

    Computed in float32 whatever the autocast precision (a bfloat16 ``x L / lambda`` would move the floor's
    steps), returned in the input's dtype.
    """

    def __init__(self, levels: int = 4, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        if isinstance(levels, bool) or int(levels) != levels or int(levels) < 1:
            raise ValueError(f"levels must be a positive integer but is {levels!r}.")
        if not float(threshold) > 0:
            raise ValueError(f"threshold must be positive but is {threshold!r}.")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.relu_only = False  # True while percentile_thresholds records the plain ReLU activations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_only:
            return torch.relu(x)
        return _QCFSFunction.apply(x, self.threshold, self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold.detach()):.4g}"


def thresholds(network: nn.Module) -> dict[str, float]:
    """Each QCFS layer's ``lambda``, by module name."""
    return {name: float(m.threshold.detach()) for name, m in network.named_modules() if isinstance(m, QCFS)}


def set_thresholds(network: nn.Module, values: dict[str, float]) -> nn.Module:
    """Set the ``lambda`` of the QCFS layers named in ``values``."""
    modules = dict(network.named_modules())
    with torch.no_grad():
        for name, value in values.items():
            module = modules.get(name)
            if not isinstance(module, QCFS):
                raise TypeError(f"{name!r} is not a QCFS layer of this network.")
            module.threshold.fill_(max(float(value), _MIN_THRESHOLD))
    return network


def _percentile(x: torch.Tensor, q: float) -> float:
    # kthvalue, not torch.quantile: the latter refuses more than 2**24 values (a 3D feature map passes that)
    flat = x.detach().float().flatten()
    k = min(flat.numel(), max(1, round(q / 100.0 * flat.numel())))
    return float(torch.kthvalue(flat.cpu(), k).values)


@torch.no_grad()
def percentile_thresholds(
    network: nn.Module, images: Iterable[torch.Tensor], q: float = 99.9, device: torch.device | str | None = None
) -> dict[str, float]:
    """The ``q``-th percentile of each activation layer's ReLU output, averaged over ``images``.

    Activation layers are ``nn.ReLU`` and :class:`QCFS` modules (the latter run as plain ReLUs here).
    ``images`` are single images ``[1, C, *spatial]`` (:func:`bundle.spiking.conversion.one_at_a_time`).
    The mean over images of per-image percentiles (the converter keeps a moving average instead).
    """
    if not 0.0 < float(q) <= 100.0:
        raise ValueError(f"q must be a percentile in (0, 100] but is {q!r}.")
    layers = {n: m for n, m in network.named_modules() if isinstance(m, (nn.ReLU, QCFS))}
    sums = dict.fromkeys(layers, 0.0)
    was_training = network.training
    network.eval()
    device = device or next(network.parameters()).device
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: sums.__setitem__(n, sums[n] + _percentile(out, q)))
        for n, m in layers.items()
    ]
    for m in layers.values():
        if isinstance(m, QCFS):
            m.relu_only = True
    count = 0
    try:
        for image in images:
            network(image.to(device))
            count += 1
    finally:
        for h in hooks:
            h.remove()
        for m in layers.values():
            if isinstance(m, QCFS):
                m.relu_only = False
        network.train(was_training)
    if count == 0:
        raise ValueError("percentile_thresholds needs at least one image.")
    return {n: s / count for n, s in sums.items()}


def init_from_relu(
    network: nn.Module,
    relu_ckpt: str | Path | dict,
    images: Iterable[torch.Tensor],
    q: float = 99.9,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """A QCFS network that starts from a trained ReLU network: its weights, and ``lambda`` = ReLU percentiles.

    Args:
        network: the QCFS network (e.g. ``ConvertibleUNet(activation="qcfs", levels=L)``), same
            architecture as the ReLU one otherwise.
        relu_ckpt: the ReLU network's checkpoint (a state dict, ``{"model": state dict}``, or a path to one).
        images: calibration images ``[1, C, *spatial]`` (e.g. 32 training images, as for conversion).
        q: the percentile of each ReLU's activations that becomes that layer's ``lambda``.

    Every key of the QCFS network except the thresholds must be in the checkpoint (and nothing else).
    Returns ``network`` on ``device``, in eval mode.
    """
    state = relu_ckpt
    if not isinstance(state, dict):
        from bundle.errors import require_file

        require_file(str(relu_ckpt), "train_ann")
        state = torch.load(relu_ckpt, map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    from bundle.errors import InputError

    lambdas = {f"{n}.threshold" for n, m in network.named_modules() if isinstance(m, QCFS)}
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise InputError(f"the ReLU checkpoint does not fit this QCFS network: {(sizes or [str(e)])[0]}") from None
    missing = [k for k in result.missing_keys if k not in lambdas]
    if missing or result.unexpected_keys:
        raise InputError(
            f"the ReLU checkpoint does not fit this QCFS network: missing {missing[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    network.to(device)
    found = percentile_thresholds(network, images, q, device)
    set_thresholds(network, {n: v for n, v in found.items() if f"{n}.threshold" in lambdas})
    return network.eval()


def start_from(
    network: nn.Module,
    relu_ckpt: str | Path | None,
    images: Iterable[torch.Tensor],
    q: float = 99.9,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The ANN stage's starting network: ``network`` as built, or, with ``relu_ckpt`` (config key
    ``qcfs_init_ckpt``), a QCFS network started from that trained ReLU ANN by :func:`init_from_relu`
    (a short conversion-aware fine-tune instead of training from scratch). ``images`` is read only then."""
    if not relu_ckpt:
        return network.to(device)
    if not any(isinstance(m, QCFS) for m in network.modules()):
        from bundle.errors import InputError

        raise InputError(f"qcfs_init_ckpt {relu_ckpt}: starts a QCFS network; set activation qcfs as well.")
    return init_from_relu(network, relu_ckpt, images, q, device).train()


def param_groups(network: nn.Module, lr: float, threshold_lr: float | None = None) -> list[dict]:
    """Optimizer groups: every weight at ``lr``; the QCFS thresholds (``lambda``, O(1-10) against weights'
    O(0.01)) at ``threshold_lr`` (``None``: ``lr``). A network without QCFS gives one group."""
    lambdas = [m.threshold for m in network.modules() if isinstance(m, QCFS)]
    ids = {id(p) for p in lambdas}
    groups = [{"params": [p for p in network.parameters() if id(p) not in ids], "lr": float(lr)}]
    if lambdas:
        groups.append({"params": lambdas, "lr": float(lr if threshold_lr is None else threshold_lr)})
    return groups
