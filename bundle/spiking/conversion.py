"""ANN -> SNN conversion with SpikingJelly 2.0's FX converter, and SNN checkpoints.

``FXConverter(RateCodingRecipe)`` traces the U-Net, folds BatchNorm into the convolutions, records each
ReLU's activation scale on calibration images, and replaces every ReLU with
``VoltageScaler(1/s) -> neuron -> VoltageScaler(s)``. We pick the neuron (binary or guarded ternary,
see :mod:`bundle.spiking.neurons`) and feed calibration images one at a time: SpikingJelly's
percentile mode calls ``torch.quantile``, which refuses tensors above 2**24 elements, and a 3D batch
of activations passes that easily. Under ``torchrun`` each process calibrates on its own share of the
images, and the shares are combined into exactly the scales one process would have found.

A network trained with :class:`~bundle.networks.qcfs.QCFS` activations converts without calibration:
each QCFS layer becomes ``VoltageScaler(1/lambda) -> neuron(threshold 1) -> VoltageScaler(lambda)`` with
its trained ``lambda`` (:class:`_QCFSRecipe`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from spikingjelly.activation_based.ann2snn import FXConverter, RateCodingRecipe
from spikingjelly.activation_based.ann2snn.modules import VoltageHook, VoltageScaler
from torch import fx, nn

from bundle.errors import InputError
from bundle.networks.qcfs import QCFS
from bundle.options import as_bool
from bundle.spiking.neurons import NEURON_TYPES, make_neuron

__all__ = [
    "CONVERSION_DEFAULTS",
    "convert",
    "learnable_scales",
    "load_settings",
    "load_snn",
    "one_at_a_time",
    "output_threshold",
    "param_groups",
    "save_finetuned",
    "save_snn",
]

logger = logging.getLogger(__name__)

_QUANTILE_LIMIT = 2**24

CONVERSION_DEFAULTS = {"mode": "99.9%", "channel_wise": False, "neuron": "binary", "v_init": 0.5}


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


class _GuardedCalibration:
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
                if largest > _QUANTILE_LIMIT:
                    raise InputError(
                        f"calibration image of shape {tuple(image.shape)} gives {largest} activations in one layer, "
                        "more than torch.quantile's 2**24: crop calibration images (smaller roi_size) or use mode='max'."
                    )
                checked.add(tuple(image.shape))
            yield image


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _mean_over_processes(value: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight``-weighted mean of ``value`` (same shape on every process) over the processes of a run."""
    if not _distributed():
        return value
    device = _collective_device()
    weight = torch.tensor([float(weight)], dtype=torch.float64)
    packed = torch.cat([value.detach().double().flatten().cpu() * weight, weight]).to(device)
    dist.all_reduce(packed)
    if packed[-1] == 0:  # no process had anything to average
        return value
    return (packed[:-1] / packed[-1]).to(value.device, value.dtype).reshape(value.shape)


class _SharedCalibrationRecipe(RateCodingRecipe):
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
    device, world = _collective_device(), dist.get_world_size()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(contributions)], device=device))
    counts = [int(c.item()) for c in counts]
    if min(counts) == 0:
        raise InputError(
            f"calibration images per process {counts}: every process needs one; raise calibration_cases to at "
            "least the number of processes."
        )
    sizes = [h.scale.numel() for h in hooks]
    local = torch.zeros(max(counts), sum(sizes), dtype=torch.float64, device=device)
    local[: len(contributions)] = torch.stack(contributions).to(device)
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    rows = torch.stack([gathered[r][j] for j in range(max(counts)) for r in range(world) if j < counts[r]]).cpu()
    for hook, column in zip(hooks, torch.split(rows, sizes, dim=1)):
        value = column[0]
        for s_t in column[1:]:
            value = (1 - hook.momentum) * value + hook.momentum * s_t
        hook.scale = value.to(hook.scale.dtype).reshape(hook.scale.shape).to(hook.scale.device)
        hook.num_batches_tracked = len(rows)


class _QCFSRecipe(_SharedCalibrationRecipe):
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
    neuron: str = "binary",
    v_init: float = 0.5,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Convert a trained :class:`~bundle.networks.ConvertibleUNet` into a spiking ``fx.GraphModule``.

    Args:
        ann: the trained ANN (left unchanged: a copy is converted).
        calibration: single images ``[1, C, *spatial]`` (see :func:`one_at_a_time`).
        mode: activation scale per ReLU: ``"max"``, a percentile such as ``"99.9%"``, or a fraction of the max.
        channel_wise: one scale per channel instead of per layer.
        neuron: ``"binary"`` or ``"ternary"``.
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
    images = _GuardedCalibration(calibration, ann, isinstance(mode, str) and mode.endswith("%"))
    settings = {
        "dataloader": images,
        "mode": "Max" if isinstance(mode, str) and mode.lower() == "max" else mode,
        "channel_wise": as_bool(channel_wise, "channel_wise"),
        "neuron_factory": lambda _scale: make_neuron(neuron, 1.0, float(v_init)),
    }
    recipe = _QCFSRecipe(lambdas, **settings) if lambdas else _SharedCalibrationRecipe(**settings)
    snn = FXConverter(recipe, device=device).convert(ann)
    # torch's conv-BN fusion gives a bias-free conv a frozen bias (requires_grad=False): fine-tuning needs it
    for p in snn.parameters():
        p.requires_grad_(True)
    return snn


def learnable_scales(snn: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn every ``VoltageScaler``'s scale (a buffer in SpikingJelly) into a trainable parameter.

    The pair ``VoltageScaler(1/s) -> IF(threshold 1) -> VoltageScaler(s)`` is an IF neuron with threshold
    ``s``; learning both factors lets fine-tuning move each layer's threshold and output gain. State-dict
    keys are unchanged, so checkpoints load with or without this.
    """
    if not as_bool(enabled, "finetune_learn_scales"):
        return snn
    for module in snn.modules():
        if isinstance(module, VoltageScaler) and not isinstance(module.scale, nn.Parameter):
            value = module.scale.detach().clone()
            del module._buffers["scale"]
            module.scale = nn.Parameter(value)
    return snn


def param_groups(network: nn.Module, lr: float, scale_lr: float | None = None) -> list[dict]:
    """Optimizer groups: weights and biases at ``lr``; learnable ``VoltageScaler`` scales at ``scale_lr``.

    Scales are O(1-10) while weights are O(0.01): one learning rate cannot suit both under Adam,
    whose steps are about ``lr`` in absolute size whatever the parameter's magnitude.
    """
    scales = [m.scale for m in network.modules() if isinstance(m, VoltageScaler) and isinstance(m.scale, nn.Parameter)]
    ids = {id(p) for p in scales}
    groups = [{"params": [p for p in network.parameters() if id(p) not in ids], "lr": float(lr)}]
    if scales:
        groups.append({"params": scales, "lr": float(lr if scale_lr is None else scale_lr)})
    return groups


def save_snn(snn: nn.Module, path: str | Path, settings: dict) -> Path:
    """Save the SNN's weights and thresholds (all in its state dict) with the settings that rebuild it."""
    return _write_snn(snn.state_dict(), path, settings)


def save_finetuned(best: str | Path, settings: dict, path: str | Path, **training: object) -> Path:
    """Write the best fine-tuned SNN as a self-contained SNN checkpoint (same format as :func:`save_snn`).

    ``best`` is what MONAI's ``CheckpointSaver`` wrote for the fine-tuned ``SpikingSegmenter``
    (``{"model": state dict}``, keys prefixed ``snn.``); ``settings`` are those of the network that was
    fine-tuned (the converted checkpoint's); ``training`` (timesteps, epochs, learning rate...) is
    recorded under ``settings["finetuned"]``, and its ``timesteps`` becomes the model's default T.
    """
    best = Path(best)
    if not best.is_file():
        raise InputError(f"{best}: not found; the fine-tuning stage saved no best checkpoint (did it validate?).")
    state = torch.load(best, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    snn_state = {k.removeprefix("snn."): v for k, v in state.items() if k.startswith("snn.")}
    settings = dict(settings)
    if "finetuned" in settings:  # fine-tuned again: keep the record of the earlier round(s)
        settings["finetuned_before"] = [*settings.pop("finetuned_before", []), settings.pop("finetuned")]
    settings["finetuned"] = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in training.items()}
    if "timesteps" in training:
        settings["timesteps"] = int(training["timesteps"])
    settings["readout"] = "membrane"  # fine-tuning trains the membrane readout
    path = _write_snn(snn_state, path, settings)
    logger.info(f"fine-tuned SNN (T={settings['timesteps']}) saved to {path}")
    return path


def _write_snn(state_dict: dict, path: str | Path, settings: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "settings": dict(settings)}, path)
    return path


def load_snn(ann_template: nn.Module, path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild an SNN saved by :func:`save_snn` on the architecture of ``ann_template``.

    The graph is re-created by converting the template on one random image, then every weight and
    threshold is overwritten from the checkpoint (strictly: a different architecture fails loudly).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; run the 'convert' stage first (or pass its path).")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    settings = ckpt["settings"]
    dims = 3 if any(isinstance(m, nn.Conv3d) for m in ann_template.modules()) else 2
    size = 2 ** len([m for m in ann_template.modules() if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d))])
    in_ch = next(m for m in ann_template.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))).in_channels
    probe = [torch.rand(1, in_ch, *[size] * dims) + 0.1]
    kwargs = {k: settings[k] for k in CONVERSION_DEFAULTS}
    snn = convert(ann_template.to(device), probe, device=device, **{**kwargs, "mode": "max"})
    snn.load_state_dict(ckpt["state_dict"], strict=True)
    return snn.to(device), settings


def load_settings(path: str | Path) -> dict:
    """The settings saved with an SNN checkpoint (no network is built)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; run the 'convert' stage first (or pass its path).")
    return torch.load(path, map_location="cpu", weights_only=True)["settings"]


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
    local = torch.quantile(torch.cat(values)[: _QUANTILE_LIMIT - 1], q / 100.0) if values else torch.tensor(1.0)
    # several processes: the image-weighted mean of their percentiles (an approximation of the pooled one)
    return float(_mean_over_processes(local, float(len(values))))
