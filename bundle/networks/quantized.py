"""The INT8 ANN: post-training static quantisation of :class:`~bundle.networks.unet.ConvertibleUNet` with
PyTorch's FX graph mode (``torch.ao.quantization.quantize_fx``), the fair baseline for the SNN's energy.

FX mode fuses every ``Conv -> BatchNorm -> ReLU`` into one quantized ``ConvReLU``, quantizes weights per output
channel (symmetric, 8 bits) and activations per tensor (8 bits, ranges from histogram observers run on
calibration windows), and keeps the skip concatenations in INT8. The network takes and returns float tensors
(quantize at the input, dequantize at the output) and runs on fbgemm's kernels, whatever engine made the file.

PyTorch 2.14 marks ``torch.ao.quantization`` as moving to ``torchao`` (pt2e); it still ships and works, and it
needs nothing beyond torch. The checkpoint (``models/model_ann_int8.pt``, made by ``scripts/quantize_ann.py``)
holds ``{"model": quantized state dict, "input": the ANN's input record, "quantization": {...}}``: the graph is
rebuilt from the U-Net's settings and the state dict fills in every scale, zero point and INT8 weight.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from bundle.networks.unet import ConvertibleUNet, divisor

__all__ = ["BACKEND", "build_int8", "load_int8", "quantize", "save_int8"]

# Not PyTorch's default "x86": on an AVX-512 VNNI CPU it hands 3D convolutions to oneDNN, whose output here was
# wrong (the posterior class vanished; the shipped file through fbgemm: Dice 0.997 against the FP32 ANN).
BACKEND = "fbgemm"


@contextmanager
def _quiet():
    """torch.ao's deprecation notice (the move to torchao), once per call, is not for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*migrat.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.ao")
        yield


def _mapping(backend: str, weight_bits: int):
    """PyTorch's default mapping for ``backend``; below 8 bits, its weight observers restricted to the symmetric
    range +-(2**(bits-1) - 1) (4 bits: integers -7..7 in the INT8 container the kernels take)."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    mapping = get_default_qconfig_mapping(backend)
    if weight_bits == 8:
        return mapping
    if not 2 <= int(weight_bits) < 8:
        raise ValueError(f"weight_bits must be 2-8 but is {weight_bits!r}.")
    top = 2 ** (int(weight_bits) - 1) - 1
    activation = mapping.global_qconfig.activation
    mapping.set_global(QConfig(activation, PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-top, quant_max=top)))  # fmt: skip
    transposed = QConfig(activation, MinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-top, quant_max=top))  # fmt: skip
    for kind in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        mapping.set_object_type(kind, transposed)
    return mapping


def _prepare(ann: nn.Module, backend: str, weight_bits: int = 8):
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = backend
    shape = (1, 1, *([divisor(ann.channels)] * ann.spatial_dims))
    mapping = _mapping(backend, weight_bits)
    return prepare_fx(copy.deepcopy(ann).cpu().eval(), mapping, (torch.zeros(shape),))


def quantize(
    ann: ConvertibleUNet, calibration: Iterable[torch.Tensor], backend: str = BACKEND, weight_bits: int = 8
) -> nn.Module:
    """``ann`` (unchanged) as an INT8 network, its activation ranges observed on ``calibration``.

    Args:
        ann: a trained :class:`ConvertibleUNet` (ReLU activations).
        calibration: image windows ``[B, 1, *spatial]``, pre-processed as the ANN's input (e.g. training windows).
        backend: the quantized engine, ``"fbgemm"`` (default; see :data:`BACKEND`) or ``"x86"``.
        weight_bits: 8 (default), or fewer: weights rounded to that many bits (symmetric), activations still 8.

    Returns a ``torch.fx.GraphModule`` in eval mode on the CPU: ``[B, 1, *spatial]`` float in, class scores out.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if getattr(ann, "activation", "relu") != "relu":
        raise ValueError(f"quantize needs a ReLU U-Net but this one has activation {ann.activation!r}.")
    with _quiet():
        prepared = _prepare(ann, backend, weight_bits)
        seen = 0
        with torch.no_grad():
            for x in calibration:
                prepared(x.float().cpu())
                seen += 1
        if not seen:
            raise ValueError("quantize needs at least one calibration window.")
        model = convert_fx(prepared).eval()
    model.weight_bits = int(weight_bits)  # read by the energy account (bundle.spiking.activity)
    return model


def build_int8(spatial_dims: int = 3, channels: Sequence[int] = (16, 32, 64, 128), backend: str = BACKEND) -> nn.Module:
    """An INT8 U-Net graph with placeholder scales, to be filled by ``load_state_dict`` of a saved one."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        prepared = _prepare(ConvertibleUNet(spatial_dims, 1, 3, channels), backend)
        with torch.no_grad():  # observers need one range: a ramp, replaced by the saved scales
            shape = (1, 1, *([divisor(channels)] * spatial_dims))
            prepared(torch.linspace(0, 1, int(torch.tensor(shape).prod())).reshape(shape))
        return convert_fx(prepared).eval()


def save_int8(model: nn.Module, path: str | Path, ann: ConvertibleUNet, record: dict, **provenance) -> Path:
    """Write ``model`` (from :func:`quantize` of ``ann``) with the ANN's input ``record`` and ``provenance``
    (e.g. the source checkpoint's SHA-256, the calibration windows)."""
    path = Path(path)
    quantization = {"backend": torch.backends.quantized.engine, "spatial_dims": ann.spatial_dims,
                    "channels": list(ann.channels), "weight_bits": getattr(model, "weight_bits", 8),
                    **provenance}  # fmt: skip
    torch.save({"model": model.state_dict(), "input": record, "quantization": quantization}, path)
    return path


def load_int8(saved: dict) -> nn.Module:
    """The INT8 network of a checkpoint ``saved`` (already read: ``torch.load(path, weights_only=False)``)."""
    q = saved["quantization"]  # its "backend" (the engine that made it) is not reused: see BACKEND
    model = build_int8(int(q["spatial_dims"]), tuple(q["channels"]))
    model.load_state_dict(saved["model"])
    model.weight_bits = int(q.get("weight_bits", 8))
    return model.eval()
