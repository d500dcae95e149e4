"""The SNN checkpoint format: ``{"state_dict": ..., "settings": ...}`` in one ``torch.save`` file.

``state_dict`` holds every weight and every threshold/scale of the converted graph; ``settings`` holds
what rebuilds that graph (``neuron``, ``v_init``, ``channel_wise``, ``spatial_dims``, ``channels``) and
what inference needs (``timesteps``, ``readout``, ``out_threshold``), plus the record of how it was made
(``mode``, ``finetuned``...). Each file is read once: :func:`read` then :func:`build`, or :func:`load_snn`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from bundle.errors import InputError
from bundle.networks import ConvertibleUNet
from bundle.spiking.conversion import CONVERSION_DEFAULTS, structure

__all__ = ["build", "load_settings", "load_snn", "read", "save_snn", "write"]


def write(state_dict: dict, path: str | Path, settings: dict) -> Path:
    """Write an SNN checkpoint (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "settings": dict(settings)}, path)
    return path


def save_snn(snn: nn.Module, path: str | Path, settings: dict) -> Path:
    """Save the SNN's weights and thresholds (all in its state dict) with the settings that rebuild it."""
    return write(snn.state_dict(), path, settings)


def read(path: str | Path, made_by: str = "convert") -> dict:
    """The checkpoint at ``path`` as a dict, or :class:`InputError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; run the '{made_by}' stage first (or pass its path).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}).") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "settings"} <= ckpt.keys():
        raise InputError(f"{path}: not an SNN checkpoint of this bundle (no 'state_dict' and 'settings').")
    return ckpt


def build(
    ckpt: dict, ann_template: nn.Module | None = None, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """The SNN of a checkpoint read by :func:`read`, on ``ann_template``'s architecture, and its settings.

    The graph is rebuilt by :func:`bundle.spiking.conversion.structure` (the ANN is not run, nothing is
    calibrated), then every weight and threshold is loaded strictly: another architecture fails loudly.
    Without a template, the U-Net is the one ``settings`` records (``spatial_dims``, ``channels``).
    """
    settings = ckpt["settings"]
    if ann_template is None:
        ann_template = ConvertibleUNet(settings["spatial_dims"], 1, 3, settings["channels"])
    dims = 3 if any(isinstance(m, nn.Conv3d) for m in ann_template.modules()) else 2
    size = 2 ** len([m for m in ann_template.modules() if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d))])
    in_ch = next(m for m in ann_template.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))).in_channels
    probe = [torch.rand(1, in_ch, *[size] * dims) + 0.1]  # run only for channel-wise scales
    kwargs = {k: settings.get(k, CONVERSION_DEFAULTS[k]) for k in ("channel_wise", "neuron", "v_init")}
    snn = structure(ann_template.to(device), probe, device=device, **kwargs)
    snn.load_state_dict(ckpt["state_dict"], strict=True)
    return snn.to(device), settings


def load_snn(
    ann_template: nn.Module | None, path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Read and rebuild the SNN saved at ``path`` (see :func:`build`)."""
    return build(read(path), ann_template, device)


def load_settings(path: str | Path) -> dict:
    """The settings saved with an SNN checkpoint (no network is built)."""
    return read(path)["settings"]
