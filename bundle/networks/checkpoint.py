"""Loading a stage's checkpoint into its network, with errors that say which stage makes the file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bundle.errors import InputError, require_file

__all__ = ["InputRecord", "checked_unet", "input_record", "load_weights", "load_weights_if"]

# What a checkpoint without an input record was trained on: the bundle's scale up to version 0.9.
LEGACY_INPUT = {"standardization": "percentile"}


class InputRecord:
    """A model's input contract, saved beside its weights (``CheckpointSaver(save_dict={"model": ...,
    "input": InputRecord(...)})``), so that every inference path standardises images as training did."""

    def __init__(self, standardization: str):
        self.standardization = str(standardization)

    def state_dict(self) -> dict:
        return {"standardization": self.standardization}

    def load_state_dict(self, state: dict) -> None:
        self.standardization = str(state["standardization"])


def input_record(checkpoint: dict) -> dict:
    """The input contract of a loaded checkpoint: an ANN's ``input`` entry, an SNN's ``settings``, else legacy."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("input"), dict):
        return {**LEGACY_INPUT, **checkpoint["input"]}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("settings"), dict):
        return {k: checkpoint["settings"].get(k, v) for k, v in LEGACY_INPUT.items()}
    return dict(LEGACY_INPUT)


def load_weights(
    network: nn.Module, path: str | Path, made_by: str, device: torch.device | str = "cpu", state: dict | None = None
) -> nn.Module:
    """Load ``path`` (a state dict, or ``{"model": state dict}``) strictly into ``network``; return it in eval mode.

    Raises :class:`~bundle.errors.InputError` if the file is missing (naming the run id ``made_by``
    that writes it) or was saved from a different architecture.
    """
    if state is None:  # ``state``: the file already read (by a caller that also wants its input record)
        require_file(str(path), made_by)
        state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        sizes = [line.strip() for line in str(e).splitlines() if "size mismatch" in line]
        raise InputError(f"{path}: does not fit this network (other channels?): {(sizes or [str(e)])[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{path}: does not fit this network (other architecture?): missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return network.to(device).eval()


def checked_unet(*args, **kwargs) -> nn.Module:
    """A :class:`~bundle.networks.ConvertibleUNet` (same arguments) that refuses to be left untrained by a load.

    For ``network_def`` in the configs, which MONAI's own tools fill from a checkpoint (``monai.bundle.load``,
    ``ckpt_export``, ``onnx_export``): they call ``copy_model_state``, which copies only the weights whose
    names and shapes match, then hands ``load_state_dict`` the network's own tensors for the rest. An SNN
    checkpoint (``{"state_dict", "settings"}``) matches none, and used to come back as an untrained U-Net
    ("'dst' model updated: 0 of 110 variables"). This network raises one line instead.
    """
    from bundle.networks.unet import ConvertibleUNet

    network = ConvertibleUNet(*args, **kwargs)
    network.register_load_state_dict_pre_hook(_refuse_own_tensors)
    return network


def _refuse_own_tensors(module: nn.Module, state: dict, prefix: str, *_) -> None:
    own = module.state_dict()
    kept = [
        k for k, v in own.items()
        if isinstance(state.get(prefix + k), torch.Tensor) and state[prefix + k].data_ptr() == v.data_ptr()
    ]  # fmt: skip
    if kept:
        raise InputError(
            f"{len(kept)} of {len(own)} weights (e.g. {kept[0]}) were not in the checkpoint: it is not a state dict "
            "of this U-Net (the ANN, models/model_ann.pt). SNN checkpoints (models/model_snn_*.pt) load with "
            "bundle.inference.models.load_model('snn', 'snn_t2' or 'snn_converted', ckpt=PATH)."
        )


def load_weights_if(
    needed: bool, network: nn.Module, path: str | Path, made_by: str, device: torch.device | str = "cpu"
) -> nn.Module | None:
    """:func:`load_weights` when ``needed`` (e.g. the ANN as a distillation teacher), else ``None``.

    A stage that can use a checkpoint but does not by default must not require its file.
    """
    return load_weights(network, path, made_by, device) if needed else None

