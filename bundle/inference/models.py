"""The shipped models by name: the fine-tuned SNN at T=3 (default), a sibling fine-tuned for T=2 (``snn_t2``:
less energy, a little less Dice), the converted SNN, the ANN, and the ANN quantised to INT8 (``ann_int8``, CPU).

Every model comes back as MONAI sees a network: image ``[B, 1, *spatial]`` in, class scores out.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from bundle.errors import InputError
from bundle.inference.catalog import (
    COARSE_CONFIDENCE_FLOORS,
    CONFIDENCE_FLOORS,
    CPU_ONLY,
    MADE_BY,
    MIRRORED_CONFIDENCE_FLOORS,
    MODEL_FILES,
)
from bundle.networks import ConvertibleUNet
from bundle.networks.checkpoint import input_record, load_weights
from bundle.spiking.checkpoint import build, read
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = ["MODEL_FILES", "check_device", "load_model", "mirrored"]


def _load_int8(path: Path) -> tuple[nn.Module, dict]:
    """The INT8 ANN of ``path`` (a file of :func:`bundle.networks.quantized.save_int8`) and its info."""
    from bundle.networks.quantized import load_int8

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network = load_int8(saved)
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, TypeError) as e:
        raise InputError(f"{path}: not an INT8 checkpoint of this bundle ({type(e).__name__}); "
                         "make one with scripts/quantize_ann.py.") from None  # fmt: skip
    info = {"model": "ann_int8", "checkpoint": str(path), "timesteps": 0, "neuron": "relu", "precision": "int8",
            **input_record(saved), **floors("ann_int8")}  # fmt: skip
    return network, info


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch device, or :class:`InputError` if this machine does not have it."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"device {device!r}: not a device ({e}); use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device}: no CUDA GPU is available on this machine; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
    return device


def load_model(
    model: str = "snn",
    models_dir: str | Path | None = None,
    ckpt: str | Path | None = None,
    timesteps: int | None = None,
    device: torch.device | str = "cpu",
    spatial_dims: int = 3,
    channels: tuple[int, ...] = (16, 32, 64, 128),
    multi_step: bool = False,
    kernel: str = "compiled",
    adaptive: str = "off",
    patience: int = 1,
    tolerance: float = 1e-3,
) -> tuple[nn.Module, dict]:
    """Load ``model`` (``"snn"``, ``"snn_t2"``, ``"snn_converted"``, ``"ann"`` or ``"ann_int8"``) in eval mode, and
    describe it.

    ``ckpt`` overrides the file in ``models_dir``; ``timesteps`` overrides the SNN's trained T.
    ``spatial_dims``/``channels`` describe the ANN only (SNN checkpoints record their own).
    ``kernel``: the SNN neurons' inference step, ``"compiled"`` (fused; eager where compiling fails) or ``"eager"``.
    ``adaptive``/``patience``/``tolerance``: adaptive T for SNNs (see :class:`SpikingSegmenter`; ``"off"``:
    every window runs T steps); ``timesteps`` is then the most a window may run. Ignored for the ANN.
    Returns ``(network, info)`` with info keys ``model``, ``checkpoint``, ``timesteps`` (0 for the ANN; the
    maximum when adaptive), ``neuron``, ``standardization`` (the input contract the checkpoint records), ``confidence_floor`` (below it a mask is flagged), and for an adaptive SNN ``adaptive``, ``patience``, ``tolerance``.
    """
    from bundle.inference.settings import InferenceSettings

    # the one validation of these values (InputError naming the key); the checkpoint's own checks follow
    InferenceSettings(model=model, timesteps=timesteps, neuron_kernel=kernel, multi_step=multi_step,
                      adaptive=adaptive, patience=patience, tolerance=tolerance)  # fmt: skip
    check_device(device)
    if model in CPU_ONLY and torch.device(device).type != "cpu":
        raise InputError(f"{model}: runs on the CPU only (PyTorch's quantized kernels); use --device cpu.")
    if ckpt is None and models_dir is None:
        from bundle.resources import models_dir as shipped  # the one models folder: a checkout's or a wheel's

        models_dir = shipped()
    path = Path(ckpt) if ckpt else Path(models_dir) / MODEL_FILES[model]
    if not path.is_file():
        maker = MADE_BY[model] if MADE_BY[model].endswith(".py") else f"the '{MADE_BY[model]}' stage"
        raise InputError(f"{path}: not found; run {maker} first (or pass its path).")
    if model == "ann_int8":
        return _load_int8(path)
    if model == "ann":
        try:
            saved = torch.load(path, map_location=device, weights_only=True)  # read once: weights and input record
            network = load_weights(ConvertibleUNet(spatial_dims, 1, 3, channels), path, MADE_BY[model], device, saved)
        except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, TypeError) as e:
            raise InputError(f"{path}: not an ANN checkpoint of this bundle ({type(e).__name__}).") from None
        record = input_record(saved)
        return network, {"model": model, "checkpoint": str(path), "timesteps": 0, "neuron": "relu", **record,
                         **floors(model)}  # fmt: skip
    ckpt = read(path, MADE_BY[model])  # read once; the graph is rebuilt from its settings
    try:
        snn, settings = build(ckpt, None, device)
    except (KeyError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise InputError(f"{path}: not an SNN checkpoint of this bundle ({type(e).__name__}: {first}).") from None
    steps = int(settings["timesteps"] if timesteps is None else timesteps)
    network = SpikingSegmenter(
        snn,
        timesteps=steps,
        readout=settings.get("readout", "membrane"),
        out_threshold=settings.get("out_threshold"),
        multi_step=multi_step,
        kernel=kernel,
        adaptive=adaptive,
        patience=int(patience),
        tolerance=float(tolerance),
    )
    info = {"model": model, "checkpoint": str(path), "timesteps": steps, "neuron": settings["neuron"],
            **input_record(ckpt), **floors(model)}  # fmt: skip
    if adaptive != "off":
        info.update(adaptive=adaptive, patience=int(patience), tolerance=float(tolerance))
    return network.to(device).eval(), info


def floors(model: str) -> dict:
    """The confidence floors a model's masks are judged by (:func:`bundle.inference.confidence.floor_for`)."""
    return {"confidence_floor": CONFIDENCE_FLOORS[model],
            "coarse_confidence_floor": COARSE_CONFIDENCE_FLOORS.get(model)}  # fmt: skip


def mirrored(network: nn.Module, info: dict) -> tuple[nn.Module, dict]:
    """``(network, info)`` of :func:`load_model`, mirrored at inference (:mod:`bundle.networks.mirroring`), with the
    confidence floor measured mirrored."""
    from bundle.networks.mirroring import Mirrored

    floor = MIRRORED_CONFIDENCE_FLOORS.get(info.get("model", ""), info.get("confidence_floor"))
    # no coarse floor: none was measured mirrored (the SNNs' mirrored floors are below their 2-3 mm ones; the ANN's,
    # 0.833, is above its 0.808: a mirrored ANN flags 2-3 mm scans more readily)
    return Mirrored(network).eval(), {**info, "mirror": True, "confidence_floor": floor,
                                      "coarse_confidence_floor": None}  # fmt: skip
