"""The shipped template: the MNI ICBM152 2009c T1 at 2 mm, its brain mask, and where the hippocampi are.

Everything is read from ``assets/`` next to this file (made by ``scripts/make_template_assets.py``):
localisation never downloads anything. Coordinates in ``hippocampus_regions.json`` are MNI RAS mm, as
neuroimaging papers quote them; SimpleITK works in LPS, so :class:`Region` converts once, here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["ASSETS", "SIDES", "Region", "Template", "atlas_label", "load_template", "ras_to_lps"]

ASSETS = Path(__file__).resolve().parent / "assets"
SIDES = ("left", "right")  # the subject's left and right
T1_FILE = "mni_icbm152_t1_2mm.nii.gz"
MASK_FILE = "mni_icbm152_brainmask_2mm.nii.gz"
REGIONS_FILE = "hippocampus_regions.json"


def ras_to_lps(point: np.ndarray | list[float]) -> np.ndarray:
    """RAS <-> LPS (the same flip both ways): negate x and y."""
    return np.asarray(point, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Region:
    """One hippocampus in the template, in LPS mm (SimpleITK's physical space)."""

    side: str
    centroid: np.ndarray  # LPS mm
    corners: np.ndarray  # [8, 3] LPS mm: the corners of the atlas label's bounding box
    volume_mm3: float


@dataclass(frozen=True)
class Template:
    image: sitk.Image  # float32 whole-head T1, 2 mm, values 0..255
    brain: sitk.Image  # uint8 brain mask on the same grid
    regions: dict[str, Region]  # by side


def _read(name: str, pixel: int) -> sitk.Image:
    path = ASSETS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: template asset missing; re-make it with scripts/make_template_assets.py")
    return sitk.ReadImage(str(path), pixel)


@lru_cache(maxsize=1)
def load_template() -> Template:
    """The template (read once per process; treat the images as read-only)."""
    info = json.loads((ASSETS / REGIONS_FILE).read_text(encoding="utf-8"))["regions"]
    regions = {}
    for side in SIDES:
        r = info[side]
        lo, hi = np.asarray(r["bbox_min_ras_mm"]), np.asarray(r["bbox_max_ras_mm"])
        corners = np.array([[(lo, hi)[b >> k & 1][k] for k in range(3)] for b in range(8)])
        regions[side] = Region(side, ras_to_lps(r["centroid_ras_mm"]), ras_to_lps(corners), float(r["volume_mm3"]))
    return Template(_read(T1_FILE, sitk.sitkFloat32), _read(MASK_FILE, sitk.sitkUInt8), regions)


def atlas_label(side: str) -> sitk.Image:
    """CerebrA's hippocampus of ``side`` at 1 mm, a uint8 0/1 mask cropped around it (for evaluation)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    return _read(f"cerebra_hippocampus_{side}_1mm.nii.gz", sitk.sitkUInt8)
