"""Where the bundle's own files are: its root folder, ``configs/`` and ``models/``.

Two layouts hold them:

* a source checkout (a clone, run in place or installed with ``pip install -e .``): the repository root,
  the folder above this package;
* a wheel install (``pip install .`` or a built wheel): ``bundle/monai_bundle/`` inside site-packages, where
  pyproject.toml's package-dir mapping puts a copy of ``configs/`` (with ``schema/``) and ``models/``.

Either root is a MONAI bundle folder, so MONAI's tools take it as ``--bundle_root``::

    python -m monai.bundle run run --config_file "$(python -m bundle.resources configs/inference.json)" \\
        --bundle_root "$(python -m bundle.resources)" --dataset_dir IN --output_dir OUT

``python -m bundle.resources [RELATIVE_PATH]`` prints the bundle root (or a file under it) and exits 1 with
one ``error:`` line where it is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bundle.errors import InputError

__all__ = ["CHECKOUT_ROOT", "INSTALLED_ROOT", "bundle_file", "bundle_root", "configs_dir", "models_dir"]

PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_ROOT = PACKAGE_DIR / "monai_bundle"  # wheel install: pyproject.toml maps configs/ and models/ here
CHECKOUT_ROOT = PACKAGE_DIR.parent  # source checkout: the repository root


def _is_root(folder: Path) -> bool:
    return (folder / "configs" / "metadata.json").is_file() and (folder / "configs" / "inference.json").is_file()


def bundle_root() -> Path:
    """The bundle folder (holding ``configs/`` and ``models/``) of this installed or checked-out package.

    The wheel's copy comes first: in a checkout it does not exist, and after a wheel install the folder above
    the package is site-packages, which holds no bundle.
    """
    for root in (INSTALLED_ROOT, CHECKOUT_ROOT):
        if _is_root(root):
            return root
    raise InputError(
        f"the bundle's configs were not found in {INSTALLED_ROOT} (wheel install) nor in {CHECKOUT_ROOT} "
        "(source checkout): reinstall the package, or run from a clone of the bundle."
    )


def configs_dir() -> Path:
    """``<bundle root>/configs``."""
    return bundle_root() / "configs"


def models_dir() -> Path:
    """``<bundle root>/models`` (the shipped checkpoints)."""
    return bundle_root() / "models"


def bundle_file(relative: str | Path) -> Path:
    """A file of the bundle, e.g. ``bundle_file("configs/inference.json")``; :class:`InputError` if missing."""
    path = bundle_root() / relative
    if not path.exists():
        raise InputError(f"{relative}: not in the bundle at {path.parent}.")
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        print(bundle_file(args[0]) if args else bundle_root())
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
