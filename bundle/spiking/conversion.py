"""ANN -> SNN conversion with SpikingJelly 2.0's FX converter.

``FXConverter(RateCodingRecipe)`` traces the U-Net, folds BatchNorm into the convolutions, records each
ReLU's activation scale on calibration images, and replaces every ReLU with
``VoltageScaler(1/s) -> neuron -> VoltageScaler(s)``. We pick the neuron (binary or guarded ternary,
see :mod:`bundle.spiking.neurons`) and feed calibration images one at a time: SpikingJelly's
percentile mode calls ``torch.quantile``, which refuses tensors above 2**24 elements, and a 3D batch
of activations passes that easily. How scales are measured (checked images, shared over ``torchrun``
processes, QCFS thresholds) is :mod:`bundle.spiking.calibration`; saving and loading the result is
:mod:`bundle.spiking.checkpoint`.

A network trained with :class:`~bundle.networks.qcfs.QCFS` activations converts without calibration:
each QCFS layer becomes ``VoltageScaler(1/lambda) -> neuron(threshold 1) -> VoltageScaler(lambda)`` with
its trained ``lambda``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator

import torch
from spikingjelly.activation_based.ann2snn import FXConverter, RateCodingRecipe
from torch import nn

from bundle.networks.qcfs import QCFS
from bundle.options import as_bool
from bundle.spiking.calibration import (
    QUANTILE_LIMIT,
    GuardedCalibration,
    QCFSRecipe,
    SharedCalibrationRecipe,
    StructureRecipe,
    mean_over_processes,
)
from bundle.spiking.neurons import NEURON_TYPES, make_neuron

__all__ = ["CONVERSION_DEFAULTS", "convert", "one_at_a_time", "output_threshold", "structure"]

logger = logging.getLogger(__name__)

# the same defaults as configs/train.json
CONVERSION_DEFAULTS = {"mode": "99.9%", "channel_wise": False, "neuron": "ternary", "v_init": 0.5}


def one_at_a_time(batches: Iterable, key: str = "image", limit: int | None = None) -> Iterator[torch.Tensor]:
    """Yield single images ``[1, C, *spatial]`` from tensors, dicts or MONAI batches (at most ``limit``)."""
    n = 0
    for batch in batches:
        images = batch[key] if isinstance(batch, dict) else batch
        images = images.as_tensor() if hasattr(images, "as_tensor") else images
        for image in images:
            if limit is not None and n >= limit:
                return
            n += 1
            yield image[None]


def _check_settings(mode, neuron: str, v_init: float) -> None:
    if neuron not in NEURON_TYPES:
        raise ValueError(f"neuron must be one of {NEURON_TYPES} but is {neuron!r}.")
    if not 0.0 <= float(v_init) < 1.0:
        raise ValueError(f"v_init must be in [0, 1) (a fraction of the threshold) but is {v_init!r}.")
    if isinstance(mode, str) and not (mode.lower() == "max" or mode.endswith("%")):
        raise ValueError(f"mode must be 'max', a percentile like '99.9%' or a float in (0, 1] but is {mode!r}.")


def _qcfs_as_relu(ann: nn.Module) -> dict[str, float]:
    """Replace every QCFS module of ``ann`` (in place) by ``nn.ReLU``; return each one's ``lambda`` by path."""
    lambdas = {}
    for name, module in list(ann.named_modules()):
        if isinstance(module, QCFS):
            lambdas[name] = float(module.threshold.detach().clamp_min(1e-3))
            parent, _, leaf = name.rpartition(".")
            setattr(ann.get_submodule(parent) if parent else ann, leaf, nn.ReLU())
    return lambdas


def convert(
    ann: nn.Module,
    calibration: Iterable[torch.Tensor],
    mode: str | float = "99.9%",
    channel_wise: bool = False,
    neuron: str = "ternary",
    v_init: float = 0.5,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Convert a trained :class:`~bundle.networks.ConvertibleUNet` into a spiking ``fx.GraphModule``.

    Args:
        ann: the trained ANN (left unchanged: a copy is converted).
        calibration: single images ``[1, C, *spatial]`` (see :func:`one_at_a_time`).
        mode: activation scale per ReLU: ``"max"``, a percentile such as ``"99.9%"``, or a fraction of the max.
        channel_wise: one scale per channel instead of per layer.
        neuron: ``"ternary"`` (the configs' default) or ``"binary"``.
        v_init: initial membrane potential as a fraction of the threshold (0.5: half-threshold start).

    A QCFS layer (:class:`~bundle.networks.qcfs.QCFS`) is not calibrated: its threshold is its trained
    ``lambda`` (``mode`` and the images do not matter for it; ``channel_wise`` is refused). With
    ``v_init=0.5`` the SNN at ``T = levels`` reproduces a QCFS layer fed a constant input exactly (a deep
    network closely: later layers receive spikes, not constant currents).

    Returns:
        The SNN in single-step mode: call it T times on the same image (after
        ``spikingjelly.activation_based.functional.reset_net``) and average; or wrap it in
        :class:`bundle.spiking.segmenter.SpikingSegmenter`.
    """
    _check_settings(mode, neuron, v_init)
    ann = copy.deepcopy(ann).eval()
    lambdas = _qcfs_as_relu(ann)
    if lambdas and as_bool(channel_wise, "channel_wise"):
        raise ValueError("channel_wise does not apply to a QCFS network (one trained threshold per layer).")
    if lambdas and float(v_init) != 0.5:
        logger.warning(f"QCFS network converted with v_init={v_init}: its activations assume 0.5 (half threshold).")
    images = GuardedCalibration(calibration, ann, isinstance(mode, str) and mode.endswith("%"))
    settings = _recipe_settings(images, mode, channel_wise, neuron, v_init)
    recipe = QCFSRecipe(lambdas, **settings) if lambdas else SharedCalibrationRecipe(**settings)
    return _run(recipe, ann, device)


def structure(
    ann: nn.Module,
    probe: Iterable[torch.Tensor],
    channel_wise: bool = False,
    neuron: str = "ternary",
    v_init: float = 0.5,
    device: torch.device | str | None = None,
) -> nn.Module:
    """The graph :func:`convert` would build from ``ann``, with every scale left at 1 and nothing measured.

    What an SNN checkpoint's weights and scales are loaded into. ``probe`` (one small image) is run only
    for channel-wise scales, whose shape comes from the data.
    """
    _check_settings("max", neuron, v_init)
    ann = copy.deepcopy(ann).eval()
    _qcfs_as_relu(ann)
    return _run(StructureRecipe(**_recipe_settings(probe, "max", channel_wise, neuron, v_init)), ann, device)


def _recipe_settings(images, mode, channel_wise, neuron, v_init) -> dict:
    return {
        "dataloader": images,
        "mode": "Max" if isinstance(mode, str) and mode.lower() == "max" else mode,
        "channel_wise": as_bool(channel_wise, "channel_wise"),
        "neuron_factory": lambda _scale: make_neuron(neuron, 1.0, float(v_init)),
    }


def _run(recipe: RateCodingRecipe, ann: nn.Module, device) -> nn.Module:
    snn = FXConverter(recipe, device=device).convert(ann)
    # torch's conv-BN fusion gives a bias-free conv a frozen bias (requires_grad=False): fine-tuning needs it
    for p in snn.parameters():
        p.requires_grad_(True)
    return snn


def output_threshold(ann: nn.Module, images: Iterable[torch.Tensor], q: float = 99.9, device="cpu") -> float:
    """Threshold for a spiking output layer: the ``q``-th percentile of the ANN's positive class scores."""
    values = []
    with torch.no_grad():
        for image in images:
            logits = ann(image.to(device)).flatten()
            positive = logits[logits > 0]
            if positive.numel():
                # subsample: torch.quantile refuses more than 2**24 values
                values.append(positive[torch.randperm(positive.numel(), device=positive.device)[:200_000]].cpu())
    local = torch.quantile(torch.cat(values)[: QUANTILE_LIMIT - 1], q / 100.0) if values else torch.tensor(1.0)
    # several processes: the image-weighted mean of their percentiles (an approximation of the pooled one)
    return float(mean_over_processes(local, float(len(values))))
