"""How the converter measures each layer's activation scale: calibration images checked against
``torch.quantile``'s size limit, calibration shared over ``torchrun`` processes, trained QCFS thresholds
taken as they are, and no calibration at all when a checkpoint only needs the graph's structure.

Only :mod:`bundle.spiking.conversion` and :mod:`bundle.spiking.checkpoint` import this module.
"""

from __future__ import annotations

from collections.abc import Iterable

import ignite.distributed as idist
import torch
from spikingjelly.activation_based.ann2snn import RateCodingRecipe
from spikingjelly.activation_based.ann2snn.modules import VoltageHook
from torch import fx, nn

from bundle.errors import InputError

QUANTILE_LIMIT = 2**24  # torch.quantile refuses larger tensors


class GuardedCalibration:
    """Calibration images, checked against torch.quantile's size limit before they reach the hooks."""

    def __init__(self, images: Iterable[torch.Tensor], ann: nn.Module, percentile: bool):
        self.images, self.ann, self.percentile = images, ann, percentile

    def _largest_activation(self, image: torch.Tensor) -> int:
        sizes = [0]
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
            for m in self.ann.modules()
            if isinstance(m, nn.ReLU)
        ]
        try:
            with torch.no_grad():
                self.ann(image.to(next(self.ann.parameters()).device))
        finally:
            for h in hooks:
                h.remove()
        return max(sizes)

    def __iter__(self):
        checked = set()
        for image in self.images:
            if self.percentile and tuple(image.shape) not in checked:
                largest = self._largest_activation(image)
                if largest > QUANTILE_LIMIT:
                    raise InputError(
                        f"calibration image of shape {tuple(image.shape)} gives {largest} activations in one layer, "
                        "more than torch.quantile's 2**24: crop calibration images (smaller roi_size) or use mode='max'."
                    )
                checked.add(tuple(image.shape))
            yield image


def _distributed() -> bool:
    return idist.get_world_size() > 1


def mean_over_processes(value: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight``-weighted mean of ``value`` (same shape on every process) over the processes of a run."""
    if not _distributed():
        return value
    weight = torch.tensor([float(weight)], dtype=torch.float64)
    packed = torch.cat([value.detach().double().flatten().cpu() * weight, weight]).to(idist.device())
    packed = idist.all_reduce(packed)
    if packed[-1] == 0:  # no process had anything to average
        return value
    return (packed[:-1] / packed[-1]).to(value.device, value.dtype).reshape(value.shape)


class SharedCalibrationRecipe(RateCodingRecipe):
    """Rate coding whose calibration may be split over processes and still ends as one process's would.

    SpikingJelly keeps each layer's scale as a moving average over images (momentum 0.1), so order
    matters: every process records what each of its images contributed, the contributions are gathered
    and replayed in the order one process would have seen them (``DistributedSampler`` without
    shuffling deals image ``i`` to process ``i % N``).
    """

    def calibrate(self, converter, fx_model):
        hooks = [
            m for m in fx_model.modules() if all(hasattr(m, a) for a in ("scale", "num_batches_tracked", "momentum"))
        ]
        shared = _distributed()
        contributions = []  # per image: what it added to each hook's average
        with torch.no_grad():  # SpikingJelly's loop, without its progress bar (every checkpoint load converts a probe)
            for image in self.dataloader:
                before = [(h.scale, h.num_batches_tracked) for h in hooks]
                fx_model(image.to(converter.device))
                if shared:
                    contributions.append(torch.cat([_contribution(h, *b) for h, b in zip(hooks, before)]))
        if shared:
            _replay_in_global_order(hooks, contributions)
        return fx_model


def _contribution(hook: nn.Module, old: torch.Tensor, seen: int) -> torch.Tensor:
    """The value ``s_t`` of the image just seen: the average moved from ``old`` to ``(1 - m) old + m s_t``."""
    new = hook.scale.detach().double().flatten().cpu()
    if seen == 0:
        return new
    return (new - (1 - hook.momentum) * old.detach().double().flatten().cpu()) / hook.momentum


def _replay_in_global_order(hooks: list[nn.Module], contributions: list[torch.Tensor]) -> None:
    device, world = idist.device(), idist.get_world_size()
    counts = [int(c) for c in idist.all_gather(torch.tensor([len(contributions)], device=device)).tolist()]
    if min(counts) == 0:
        raise InputError(
            f"calibration images per process {counts}: every process needs one; raise calibration_cases to at "
            "least the number of processes."
        )
    sizes = [h.scale.numel() for h in hooks]
    local = torch.zeros(max(counts), sum(sizes), dtype=torch.float64, device=device)
    local[: len(contributions)] = torch.stack(contributions).to(device)
    gathered = idist.all_gather(local).reshape(world, *local.shape)
    rows = torch.stack([gathered[r][j] for j in range(max(counts)) for r in range(world) if j < counts[r]]).cpu()
    for hook, column in zip(hooks, torch.split(rows, sizes, dim=1)):
        value = column[0]
        for s_t in column[1:]:
            value = (1 - hook.momentum) * value + hook.momentum * s_t
        hook.scale = value.to(hook.scale.dtype).reshape(hook.scale.shape).to(hook.scale.device)
        hook.num_batches_tracked = len(rows)


class QCFSRecipe(SharedCalibrationRecipe):
    """Rate coding where each former QCFS layer takes its trained ``lambda`` as its scale, uncalibrated.

    :func:`convert` swaps every QCFS module for an ``nn.ReLU`` at the same path before tracing (the
    converter matches ``nn.ReLU`` exactly, and would trace into a custom module's floor and clamp);
    here the hook after each of those ReLUs is given ``lambda`` instead of a calibrated percentile.
    Plain ReLUs, if the network has any, are calibrated on the images as usual.
    """

    def __init__(self, lambdas: dict[str, float], **kwargs):
        super().__init__(**kwargs)
        self.lambdas = lambdas

    def calibrate(self, converter, fx_model):
        modules = dict(fx_model.named_modules())
        hooks = {
            node.target: self.lambdas.get(node.args[0].target)
            for node in fx_model.graph.nodes
            if node.op == "call_module"
            and isinstance(modules.get(node.target), VoltageHook)
            and node.args
            and isinstance(node.args[0], fx.Node)
        }
        if any(lam is None for lam in hooks.values()):  # plain ReLUs too: calibrate them on the images
            fx_model = super().calibrate(converter, fx_model)
        for target, lam in hooks.items():
            if lam is not None:
                hook = modules[target]
                hook.scale = torch.tensor(float(lam), device=hook.scale.device)
                hook.num_batches_tracked = 1
        return fx_model


class StructureRecipe(SharedCalibrationRecipe):
    """Rate coding that measures nothing: every layer keeps the hook's initial scale (1).

    An SNN checkpoint holds every weight and scale; only the graph's shape must be rebuilt, so loading
    one need not run the ANN. Channel-wise hooks need one image to learn their channel count: those
    (rare) checkpoints still run the one-image probe they are given.
    """

    def calibrate(self, converter, fx_model):
        if self.channel_wise:
            return super().calibrate(converter, fx_model)
        return fx_model
