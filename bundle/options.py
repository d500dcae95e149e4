"""Config values given on the command line: ``--resume true`` arrives as the string ``"true"``."""

from __future__ import annotations

from bundle.errors import InputError

__all__ = ["as_bool", "one_of"]

_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", "none", "null", ""}


def as_bool(value: object, name: str = "option") -> bool:
    """``True``/``False`` from a bool, a number or a word such as ``true``/``false``/``yes``/``no``.

    monai.bundle's command line passes ``--key false`` as the (truthy) string ``"false"``.
    """
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)):
        return bool(value)
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InputError(f"{name}: {value!r} is not true or false.")


def one_of(value: object, choices: tuple | list, name: str = "option") -> str:
    """``value`` if it is one of ``choices``, else a one-line error naming the option (no silent default)."""
    if value not in choices:
        raise InputError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}.")
    return value
