"""The one source of inference settings: :class:`InferenceSettings`, read from ``configs/inference.json``.

``hippo-snn`` (its defaults, then its options), the MONAI bundle run (``configs/inference.json`` builds one
from its own keys and command-line overrides) and the MONAI Label app (the config, then its ``--conf``) all
make one of these, validated once, here, and build the model, the inferer and the per-image segmenter from
it: changing the config changes all three alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bundle.errors import InputError
from bundle.inference.catalog import ADAPTIVE_RULES, CPU_ONLY, ENGINES, KERNELS, LOCALIZE_MODES, MODEL_FILES, WINDOWS
from bundle.options import as_bool

__all__ = ["SETTINGS", "InferenceSettings", "inference_settings"]


@dataclass(frozen=True)
class InferenceSettings:
    """How to segment: which model, at which T, tiled how, in which precision, with which whole-head handling.

    Args:
        model: a name of :data:`bundle.inference.catalog.MODEL_FILES` (``snn`` default).
        models_dir: folder of the model files (None: the bundle's ``models/``); ``ckpt``: one file instead.
        timesteps: SNN timesteps (None: the checkpoint's own; the maximum with ``adaptive``).
        spatial_dims, channels: the ANN's geometry (SNN checkpoints record their own).
        roi_size, sw_batch_size, overlap, window: the sliding window (``window`` ``fit`` or ``fixed``).
        multi_step, neuron_kernel: how SNN neurons step (``compiled`` or ``eager``).
        amp: mixed precision (bfloat16 on CPUs that have it, float16 on CUDA).
        localize: ``auto``, ``on`` or ``off`` (whole heads); ``qc``: QC picture per image.
        mirror: also segment each window mirrored left-right and average (twice the compute and energy;
            :mod:`bundle.networks.mirroring`).
        adaptive, patience, tolerance: adaptive T for SNNs (``off`` or ``stable``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or None (CUDA where present).
        workers: processes that share a batch (1: this one; each gets its share of the cores), or Ray tasks
            at once with ``engine`` ``ray`` (:mod:`bundle.inference.cohort`); masks do not depend on it.
        engine: ``local`` (processes on this machine) or ``ray`` (a Ray cluster: ``ray_address``, or a local
            one when None).
        queue_size: the MONAI Label app's requests per model, running and waiting, beyond which it answers 503.

    Every value is checked when the object is made; a bad one is :class:`InputError` naming the key.
    """

    model: str = "snn"
    models_dir: str | None = None
    ckpt: str | None = None
    timesteps: int | None = None
    spatial_dims: int = 3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    roi_size: tuple[int, ...] = (48, 64, 48)
    sw_batch_size: int = 4
    overlap: float = 0.25
    window: str = "fit"
    multi_step: bool = False
    neuron_kernel: str = "compiled"
    amp: bool = False
    localize: str = "auto"
    qc: bool = False
    mirror: bool = False
    adaptive: str = "off"
    patience: int = 1
    tolerance: float = 1e-3
    device: str | None = None
    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None
    queue_size: int = 16

    def __post_init__(self) -> None:
        def choose(key: str, choices) -> None:
            if getattr(self, key) not in choices:
                raise InputError(f"{key} {getattr(self, key)!r}: choose one of {', '.join(map(str, choices))}.")

        def whole(key: str, low: int, optional: bool = False) -> int | None:
            value = getattr(self, key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < low:
                raise InputError(f"{key} {value!r}: must be a whole number >= {low}.")
            return int(value)

        set_ = object.__setattr__  # frozen: normalise in place, once
        choose("model", MODEL_FILES)
        choose("window", WINDOWS)
        choose("neuron_kernel", KERNELS)
        choose("localize", LOCALIZE_MODES)
        choose("adaptive", ADAPTIVE_RULES)
        choose("spatial_dims", (2, 3))
        choose("engine", ENGINES)
        set_(self, "workers", whole("workers", 1))
        set_(self, "queue_size", whole("queue_size", 1))
        set_(self, "timesteps", whole("timesteps", 1, optional=True))
        set_(self, "patience", whole("patience", 1))
        set_(self, "sw_batch_size", whole("sw_batch_size", 1))
        for key in ("multi_step", "amp", "qc", "mirror"):
            set_(self, key, as_bool(getattr(self, key), key))
        if not 0.0 <= float(self.tolerance) < 1.0:
            raise InputError(f"tolerance {self.tolerance!r}: must be a fraction in [0, 1).")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise InputError(f"overlap {self.overlap!r}: must be a fraction in [0, 1).")
        set_(self, "tolerance", float(self.tolerance))
        set_(self, "overlap", float(self.overlap))
        set_(self, "channels", tuple(int(c) for c in self.channels))
        set_(self, "roi_size", tuple(int(r) for r in self.roi_size))
        if len(self.roi_size) != self.spatial_dims:
            raise InputError(f"roi_size {list(self.roi_size)}: needs {self.spatial_dims} sizes.")
        if self.adaptive != "off" and self.multi_step:
            raise InputError("adaptive timesteps need single-step inference: set multi_step false.")
        for key in ("models_dir", "ckpt", "device", "ray_address"):
            value = getattr(self, key)
            set_(self, key, None if value in (None, "", "none", "null") else str(value))

    @classmethod
    def from_config(cls, config_file: str | Path | None = None, **overrides: object) -> InferenceSettings:
        """The settings of ``config_file`` (default: the bundle's ``configs/inference.json``), then ``overrides``
        whose value is not None (a command line's options left out)."""
        values = inference_settings(config_file)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: object) -> InferenceSettings:
        """A copy with ``changes`` whose value is not None (validated again)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resolved_device(self):
        """The torch device: ``device``, or CUDA where present (not for a CPU-only model), else the CPU; checked."""
        import torch

        from bundle.inference.models import check_device

        gpu = torch.cuda.is_available() and self.model not in CPU_ONLY
        return check_device(self.device or ("cuda" if gpu else "cpu"))

    def load(self, device=None):
        """``(network, info)`` of :func:`bundle.inference.models.load_model` for these settings (mirrored with
        ``mirror``)."""
        from bundle.inference.models import load_model, mirrored

        network, info = load_model(
            self.model, models_dir=self.models_dir, ckpt=self.ckpt, timesteps=self.timesteps,
            device=device or self.resolved_device(), spatial_dims=self.spatial_dims, channels=self.channels,
            multi_step=self.multi_step, kernel=self.neuron_kernel, adaptive=self.adaptive, patience=self.patience,
            tolerance=self.tolerance,
        )  # fmt: skip
        return mirrored(network, info) if self.mirror else (network, info)

    def inferer(self):
        """The sliding-window inferer of these settings (:func:`bundle.inference.inferers.make_inferer`)."""
        from bundle.inference.inferers import make_inferer
        from bundle.networks import divisor

        return make_inferer(
            self.spatial_dims, self.roi_size, self.sw_batch_size, self.overlap, self.window, divisor(self.channels)
        )

    def segmenter(self, network, info: dict, device=None):
        """The per-image pipeline (:class:`bundle.inference.volume.VolumeSegmenter`) for a loaded model."""
        from bundle.inference.volume import VolumeSegmenter

        return VolumeSegmenter(
            network, self.inferer(), device or self.resolved_device(), self.amp, self.localize, self.qc,
            info.get("standardization", "percentile"), info.get("confidence_floor"),
            info.get("coarse_confidence_floor"),
        )  # fmt: skip


# the keys of configs/inference.json that make an InferenceSettings
SETTINGS = tuple(f.name for f in dataclasses.fields(InferenceSettings))


def inference_settings(config_file: str | Path | None = None) -> dict:
    """The :data:`SETTINGS` values of ``config_file`` (default: the bundle's ``configs/inference.json``) as a dict;
    keys the config lacks keep :class:`InferenceSettings`' defaults."""
    from monai.bundle import ConfigParser

    if config_file is None:
        from bundle.resources import bundle_file

        config_file = bundle_file("configs/inference.json")
    path = Path(config_file)
    try:
        parser = ConfigParser()
        parser.read_config(str(path))
        values = {}
        for key in SETTINGS:
            if key in ("models_dir", "device"):  # paths and devices relative to where it runs: the caller's
                continue
            if key in parser.config:
                values[key] = parser.get_parsed_content(key)
        return values
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: cannot read the bundle's inference settings ({type(e).__name__}: {e}).") from None
