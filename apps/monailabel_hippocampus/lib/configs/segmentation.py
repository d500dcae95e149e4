"""What the app serves, read from ``--conf``: which of the bundle's models, from which files, at which T.

Every ``--conf`` key of the app is listed in :data:`CONF_KEYS`. The other inference settings (window,
precision, neuron kernel, adaptive T, localisation) are not conf keys: they are the bundle's own
``configs/inference.json``, read by :class:`bundle.inference.settings.InferenceSettings` as ``hippo-snn``
reads them, so the app and the batch inference cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bundle.errors import InputError
from bundle.inference.catalog import DESCRIPTIONS, MODEL_FILES
from bundle.resources import models_dir as shipped_models

__all__ = ["BUNDLE_ROOT", "CONF_KEYS", "DEFAULT_MODELS", "ModelChoice", "model_choices"]

logger = logging.getLogger(__name__)

BUNDLE_ROOT = Path(__file__).resolve().parents[4]  # apps/monailabel_hippocampus/lib/configs/ -> the bundle
DEFAULT_MODELS = ("snn", "ann")
CONF_KEYS = {
    "models": f"comma-separated models to serve, first = default: {', '.join(MODEL_FILES)} or 'all' "
    f"(default: {','.join(DEFAULT_MODELS)})",
    "models_dir": "folder holding the model files (default: the bundle's models/)",
    **{f"{m}_ckpt": f"checkpoint for '{m}' instead of <models_dir>/{f}" for m, f in MODEL_FILES.items()},
    "timesteps": "SNN timesteps T for every SNN model (default: each checkpoint's own T)",
    "inference_config": "an inference.json whose settings (window, amp, kernel, adaptive T, localize, qc, queue_size) "
    "the app serves, as hippo-snn reads them (default: the bundle's configs/inference.json)",
    "allow_remote": "true: allow a --host other than loopback, and any Host header (default: false, the app "
    "refuses to start)",
    "allow_admin": "true: also answer the admin endpoints: training, scoring, batch inference, sessions, deleting "
    "labels, editing image/label info, model file and dataset downloads, logs, reload (default: false: HTTP 403). "
    "Deleting or replacing images and replacing or deleting model files stay refused",
    "queue_size": "inference requests per model, running and waiting, beyond which the server answers 503 with "
    "Retry-After (default: queue_size of the bundle's configs/inference.json, 16)",
    "cors_origins": "comma-separated web origins allowed to call the server from a browser, e.g. "
    "http://localhost:3000 (default: none; never with credentials)",
}
# keys that MONAI Label itself reads from --conf
_MONAILABEL_KEYS = {"server_mode"}


@dataclass(frozen=True)
class ModelChoice:
    """One model to serve: its bundle name, its checkpoint file and an optional T override."""

    name: str
    checkpoint: Path
    timesteps: int | None = None

    @property
    def description(self) -> str:
        return f"{DESCRIPTIONS[self.name]} ({self.checkpoint.name})"


def model_choices(conf: Mapping[str, str]) -> list[ModelChoice]:
    """The models named by ``conf["models"]``, in that order; every checkpoint must exist.

    Raises :class:`InputError` naming the conf key or the missing file (the server then does not start).
    """
    for key in sorted(set(conf) - set(CONF_KEYS) - _MONAILABEL_KEYS):
        logger.warning(f"warning: --conf {key}: not a key of this app; ignored (keys: {', '.join(CONF_KEYS)})")
    names = [n.strip() for n in str(conf.get("models", ",".join(DEFAULT_MODELS))).split(",") if n.strip()]
    if names == ["all"]:
        names = list(MODEL_FILES)
    unknown = [n for n in names if n not in MODEL_FILES]
    if unknown or not names:
        raise InputError(f"--conf models {conf.get('models')!r}: choose from {', '.join(MODEL_FILES)} or 'all'.")
    timesteps = _timesteps(conf.get("timesteps"))
    models_dir = Path(conf.get("models_dir") or shipped_models()).expanduser()
    choices = []
    for name in dict.fromkeys(names):  # keep the order, drop repeats
        ckpt = conf.get(f"{name}_ckpt")
        path = Path(ckpt).expanduser() if ckpt else models_dir / MODEL_FILES[name]
        if not path.is_file():
            hint = f"pass --conf {name}_ckpt PATH" + (", or serve 'snn_converted'" if name in ("snn", "snn_t2") else "")
            raise InputError(f"{path}: model file for '{name}' not found; {hint}.")
        choices.append(ModelChoice(name, path.resolve(), None if name == "ann" else timesteps))
    return choices


def _timesteps(value: str | None) -> int | None:
    if value in (None, "", "none", "null"):
        return None
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if steps < 1:
        raise InputError(f"--conf timesteps {value!r}: must be a whole number >= 1.")
    return steps
