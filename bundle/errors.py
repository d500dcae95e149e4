"""User-facing errors: bad data or a missing prerequisite, reported as one line, not a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["InputError", "or_exit", "require_file", "require_new_folder"]


class InputError(ValueError):
    """Something the user handed us cannot be used; the message names the file and the problem."""


def or_exit(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; turn an :class:`InputError` into a one-line ``error: ...`` exit (status 1).

    For config expressions: ``monai.bundle`` wraps every exception in a long ``RuntimeError``
    traceback, but lets ``SystemExit`` through.
    """
    try:
        return fn(*args, **kwargs)
    except InputError as e:
        raise SystemExit(f"error: {e}") from None


def require_file(path: str, made_by: str) -> str:
    """Raise :class:`InputError` naming ``path`` and the run id ``made_by`` that creates it."""
    from pathlib import Path

    if not Path(path).is_file():
        raise InputError(f"{path}: not found; run the '{made_by}' stage first (or pass its path).")
    return path


def require_new_folder(path: str, what: str) -> str:
    """``path`` if it does not exist or is an empty folder; otherwise :class:`InputError` (nothing is overwritten)."""
    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise InputError(f"{p}: already holds {what}; choose a new output_dir (nothing was overwritten).")
    return path
