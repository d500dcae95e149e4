"""Config input checked before a run writes anything: unknown keys and invalid values are one-line errors.

``monai.bundle`` adds any ``--key value`` it is given to the config, so a typo (``--epochz 3``) is
silently ignored, and a bad value (``--epochs -1``) fails deep inside a trainer after logs and
TensorBoard files were written. Every config's ``initialize`` therefore starts with
:func:`check_config`: keys from the command line and from stacked config files must be keys of the
bundle's own configs (the closest one is suggested), and the values a researcher turns are checked
against :data:`RULES`.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from bundle.errors import InputError
from bundle.inference.catalog import ENGINES, MODEL_FILES, WINDOWS
from bundle.options import as_bool

__all__ = ["RULES", "check_config", "check_keys", "check_values", "command_line_keys"]

# arguments of `monai.bundle run` and of ConfigWorkflow itself: not config keys
_RUN_ARGS = {
    "run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
    "workflow_type", "properties_path", "workflow_name",
}  # fmt: skip
_SPECIAL = {"_target_", "_disabled_", "_requires_", "_mode_", "_desc_"}


def _whole(low: int) -> Callable[[Any], str | None]:
    def rule(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        return None if ok else f"a whole number >= {low}"

    return rule


def _number(low: float, high: float = math.inf, low_open: bool = True, high_open: bool = False):
    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            ok = False
        else:
            ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        return None if ok else f"a number in {lo}{low}, {high}{hi}"

    return rule


def _choice(*choices: Any) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else "one of " + ", ".join(map(str, choices))


def _boolean(v: Any) -> str | None:
    try:
        as_bool(v)
        return None
    except InputError:
        return "true or false"


def _sizes(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(i, int) and i > 0 for i in v)
    return None if ok else "a list of whole numbers > 0"


def _channels(v: Any) -> str | None:
    return None if _sizes(v) is None and len(v) >= 2 else "a list of at least 2 whole numbers > 0"


def _norm_mode(v: Any) -> str | None:
    if isinstance(v, str) and (v.lower() == "max" or v.endswith("%")):
        try:
            return None if v.lower() == "max" or 0 < float(v[:-1]) <= 100 else "'max', a percentile like '99.9%'"
        except ValueError:
            pass
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1:
        return None
    return "'max', a percentile like '99.9%' or a fraction in (0, 1]"


def _device(v: Any) -> str | None:
    try:
        device = torch.device(v)
    except (RuntimeError, TypeError):
        return "a device such as cpu, cuda or cuda:1"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "a device of this machine (no CUDA GPU is available here; use cpu)"
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        return f"a device of this machine (it has {torch.cuda.device_count()} CUDA GPU(s))"
    return None


def _optional(rule: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else rule(v)


RULES: dict[str, Callable[[Any], str | None]] = {
    # data
    "val_fraction": _number(0.0, 1.0, high_open=True),
    "seed": _whole(0),
    "split_seed": _whole(0),
    "num_workers": _whole(0),
    "synthetic_cases": _whole(2),
    "randomize": _number(0.0, 3.0, low_open=False),
    "download": _boolean,
    # ANN
    "spatial_dims": _choice(2, 3),
    "channels": _channels,
    "patch_size": _sizes,
    "roi_size": _sizes,
    "epochs": _whole(1),
    "batch_size": _whole(1),
    "learning_rate": _number(0.0),
    "val_interval": _whole(1),
    "resume": _boolean,
    "distributed": _boolean,
    "amp": _boolean,
    "activation": _choice("relu", "qcfs"),
    "levels": _whole(1),
    "qcfs_init_percentile": _number(0.0, 100.0, high_open=False),
    "qcfs_threshold_learning_rate": _optional(_number(0.0)),
    "ema_decay": _number(0.0, 1.0, low_open=False, high_open=True),
    "finetune_amp": _boolean,
    "finetune_ema_decay": _number(0.0, 1.0, low_open=False, high_open=True),
    "device": _device,
    # conversion
    "timesteps": _whole(1),
    "neuron": _choice("binary", "ternary"),
    "norm_mode": _norm_mode,
    "channel_wise": _boolean,
    "v_init": _number(0.0, 1.0, low_open=False, high_open=True),
    "readout": _choice("membrane", "rate"),
    "multi_step": _boolean,
    "neuron_kernel": _choice("compiled", "eager"),
    "calibration_cases": _whole(1),
    # fine-tuning
    "finetune_start": _choice("converted", "random"),
    "finetune_timesteps": _whole(1),
    "finetune_epochs": _whole(1),
    "finetune_learning_rate": _number(0.0),
    "finetune_loss": _choice("dice", "dice_ce"),
    "adaptive": _choice("off", "stable"),
    "patience": _whole(1),
    "tolerance": _number(0.0, 1.0, low_open=False, high_open=True),
    "finetune_rate_penalty": _number(0.0, low_open=False),
    "finetune_distill_weight": _number(0.0, low_open=False),
    "finetune_distill_temperature": _number(0.0),
    "finetune_lr_schedule": _choice("cosine", "restart", "constant"),
    "finetune_restart_epoch": _whole(1),
    "finetune_restart_gain": _number(0.0),
    "finetune_restart_fresh_optimizer": _boolean,
    "finetune_warmup_epochs": _whole(0),
    "finetune_learn_scales": _boolean,
    "finetune_scale_learning_rate": _number(0.0),
    "finetune_surrogate": _choice("atan", "sigmoid", "piecewise_quadratic"),
    "finetune_surrogate_alpha": _number(0.0),
    "finetune_val_interval": _whole(1),
    "refine_epochs": _whole(0),
    "refine_timesteps": _whole(1),
    "refine_learning_rate": _number(0.0),
    "refine_lr_schedule": _choice("cosine", "restart", "constant"),
    # inference
    "model": _choice(*MODEL_FILES),
    "inference_timesteps": _optional(_whole(1)),
    "sw_batch_size": _whole(1),
    "overlap": _number(0.0, 1.0, low_open=False, high_open=True),
    "overwrite": _boolean,
    "localize": _choice("auto", "on", "off"),
    "window": _choice(*WINDOWS),
    "qc": _boolean,
    "progress": _boolean,
    "split": _choice("all", "val", "train"),
    "overlays": _whole(0),
    "workers": _whole(1),
    "engine": _choice(*ENGINES),
    "queue_size": _whole(1),
}


def check_values(values: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` for the first value that breaks its rule, and for shape mismatches."""
    for key, value in values.items():
        problem = RULES[key](value) if key in RULES else None
        if problem:
            name = "timesteps" if key == "inference_timesteps" else key
            raise InputError(f"{name}: {value!r} is not allowed; it must be {problem}.")
    dims, channels = values.get("spatial_dims"), values.get("channels")
    for key in ("patch_size", "roi_size"):
        size = values.get(key)
        if size is None or dims is None:
            continue
        if len(size) != dims:
            raise InputError(f"{key}: {list(size)} has {len(size)} sizes; spatial_dims is {dims}.")
        if key == "patch_size" and channels:
            step = 2 ** (len(channels) - 1)
            if any(s % step for s in size):
                raise InputError(
                    f"{key}: {list(size)} must be divisible by {step} (2 ** depth, depth = len(channels) - 1)."
                )


def command_line_keys(argv: Iterable[str]) -> tuple[list[str], list[str]]:
    """The ``--key`` overrides and the config files of a ``monai.bundle`` command line."""
    keys, files, args = [], [], list(argv)
    for i, token in enumerate(args):
        if not token.startswith("--") or token == "--":
            continue
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_") if "#" not in key and "::" not in key else key
        if key == "config_file":
            files = _file_list(value if eq else (args[i + 1] if i + 1 < len(args) else ""))
        elif key not in _RUN_ARGS:
            keys.append(key.replace("::", "#"))
    return keys, files


def _bundle_argv() -> list[str]:
    """This process's arguments if it is ``python -m monai.bundle`` (or torchrun of it); else none: a
    program that runs a workflow in-process has its own arguments, which are not config keys."""
    program = Path(sys.argv[0]) if sys.argv else Path()
    return sys.argv[1:] if program.parts[-3:] == ("monai", "bundle", "__main__.py") else []


def _file_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            return [str(v) for v in ast.literal_eval(value)]
        except (ValueError, SyntaxError):
            return []
    return [v for v in value.split(",") if v]


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every id of a config (``a``, ``a#b``, ``a#0``...) and its value."""
    ids = {}
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for k, v in items:
        path = f"{prefix}#{k}" if prefix else str(k)
        path = path.replace("::", "#")
        ids[path] = v
        if not (isinstance(v, dict) and "_target_" in v):  # a component's arguments are its own business
            ids.update(_flatten(v, path))
    return ids


def _known_ids(configs_dir: Path) -> dict[str, Any]:
    known: dict[str, Any] = {}
    for path in sorted(configs_dir.glob("*.json")):
        if path.name == "metadata.json":
            continue
        known.update(_flatten(json.loads(path.read_text(encoding="utf-8"))))
    return known


def _accepted(key: str, known: Mapping[str, Any]) -> bool:
    if key in known or key.startswith("_meta_"):
        return True
    parent, _, last = key.rpartition("#")
    if not parent:
        return False
    if last in _SPECIAL or last.isdigit():  # switching a known item off, or a new element of a known list
        return _accepted(parent, known) or parent in known
    value = known.get(parent)
    if not (isinstance(value, dict) and "_target_" in value):
        return False
    if last in value:  # one of its arguments
        return True
    # a new argument of a known component is allowed, unless it looks like a typo of one it has
    return not difflib.get_close_matches(last, [k for k in value if k not in _SPECIAL], n=1, cutoff=0.8)


def check_keys(keys: Iterable[str], known: Mapping[str, Any], source: str) -> None:
    """Raise :class:`InputError` for the first key that is not a known config id (closest one named)."""
    for key in keys:
        if not _accepted(key, known):
            parent = key.rpartition("#")[0]
            siblings = {k.rpartition("#")[2]: k for k in known if k.rpartition("#")[0] == parent}  # same level
            if isinstance(known.get(parent), dict):  # a component's arguments are not flattened
                siblings.update({k: f"{parent}#{k}" for k in known[parent] if k not in _SPECIAL})
            close = [siblings[c] for c in difflib.get_close_matches(key.rpartition("#")[2], list(siblings), n=1)]
            close = close or difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise InputError(f"{source}{key}: not a key of this bundle's configs{hint}.")


def check_config(bundle_root: str, values: Mapping[str, Any], argv: list[str] | None = None) -> None:
    """Check the command line's keys, stacked config files' keys, then ``values``; exit with one line if wrong.

    Called first in every config's ``initialize``, so nothing is written before a bad input is refused.
    """
    try:
        configs_dir = Path(bundle_root) / "configs"
        if not configs_dir.is_dir():
            from bundle.resources import configs_dir as installed_configs

            configs_dir = installed_configs()
        known = _known_ids(configs_dir)
        argv = list(_bundle_argv() if argv is None else argv)
        keys, files = command_line_keys(argv)
        check_keys(keys, known, "--")
        for f in files:
            path = Path(f)
            if path.suffix == ".json" and path.is_file() and path.resolve().parent != configs_dir.resolve():
                check_keys(_flatten(json.loads(path.read_text(encoding="utf-8"))), known, f"{path}: ")
        check_values(values)
    except InputError as e:
        raise SystemExit(f"error: {e}") from None
