"""``auto``: does an image need localisation? Decided from its field of view alone (header only).

The network reads Task04-style crops: about 35x50x35 mm (the largest Task04 image is 43x59x47 mm).
A whole head is about 140-200 mm in every direction, and a clinical slab or a sagittal series still
exceeds 120 mm in two directions. So, with ``extent`` = voxels x spacing along each voxel axis:

* every extent < :data:`CROP_MAX_MM` (80 mm)            -> ``crop``: segment as it is, no localisation;
* at least two extents > :data:`HEAD_MIN_MM` (120 mm)    -> ``whole_head``: localise first;
* anything else (e.g. a 100 mm cube, or one long axis)  -> ``ambiguous``: not localised (today's
  behaviour), and the reason says so; the user should choose explicitly. Registration to a whole-head
  template needs most of a head, and such an image is too big to be a crop the network was made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bundle.errors import InputError

__all__ = ["CROP_MAX_MM", "HEAD_MIN_MM", "FieldOfView", "field_of_view"]

CROP_MAX_MM = 80.0
HEAD_MIN_MM = 120.0


@dataclass(frozen=True)
class FieldOfView:
    kind: str  # "crop", "whole_head" or "ambiguous"
    extent_mm: tuple[float, float, float]  # along the voxel axes
    reason: str

    @property
    def localize(self) -> bool:
        """Whether ``auto`` localises: only for a whole head."""
        return self.kind == "whole_head"


def _extent(image: sitk.Image | str | Path) -> tuple[np.ndarray, str]:
    if isinstance(image, sitk.Image):
        return np.array(image.GetSize()[:3]) * np.array(image.GetSpacing()[:3]), "image"
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image))
    try:
        reader.ReadImageInformation()  # the header only
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise InputError(f"{image}: unreadable image header ({first.strip()}).") from None
    size, spacing = np.array(reader.GetSize()), np.array(reader.GetSpacing())
    if len(size) == 4 and size[3] == 1:
        size, spacing = size[:3], spacing[:3]
    if len(size) != 3:
        raise InputError(f"{image}: is {len(size)}D (size {tuple(int(s) for s in size)}); expected one 3D volume.")
    return size * spacing, str(image)


def field_of_view(image: sitk.Image | str | Path) -> FieldOfView:
    """Classify ``image`` (a SimpleITK image or a file, of which only the header is read), see module doc."""
    extent, _ = _extent(image)
    ext = tuple(round(float(e), 1) for e in extent)
    shown = "x".join(f"{e:.0f}" for e in ext) + " mm"
    if max(ext) < CROP_MAX_MM:
        return FieldOfView(
            "crop", ext, f"field of view {shown}: every side < {CROP_MAX_MM:.0f} mm, a hippocampus crop; not localised"
        )
    big = sum(e > HEAD_MIN_MM for e in ext)
    if big >= 2:
        return FieldOfView(
            "whole_head", ext, f"field of view {shown}: {big} sides > {HEAD_MIN_MM:.0f} mm, a whole head; localised"
        )
    return FieldOfView(
        "ambiguous",
        ext,
        f"field of view {shown}: neither a crop (all sides < {CROP_MAX_MM:.0f} mm) nor a whole head (two sides > "
        f"{HEAD_MIN_MM:.0f} mm); not localised: choose localisation on or off explicitly",
    )
