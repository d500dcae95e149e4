"""Localisation of one image: read it, register the template to it, place one crop per hippocampus.

The caller segments each crop with the network (they are in its frame: RAS, 1 mm, Task04-sized) and
hands the label crops back to :meth:`Localization.paste`, which returns one label image in the input's
own grid. A bad input, or an image the template does not fit (noise, a phantom, not a head, a field of
view that misses a hippocampus), raises :class:`~bundle.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from bundle.data.images import read_image
from bundle.errors import InputError
from bundle.localization.crops import (
    CROP_SIZE,
    FRAMES,
    TASK04_PITCH_DEG,
    CropBox,
    crop_box,
    from_nifti,
    paste_back,
    resample_crop,
    template_axes,
)
from bundle.localization.registration import GOOD_SIMILARITY, MIN_SIMILARITY, Registration, register
from bundle.localization.template import SIDES, Template, load_template

__all__ = ["COARSEST_MEASURED_MM", "MIN_COVERAGE", "Localization", "coarser_than_measured", "localize", "read_image"]

MIN_COVERAGE = 0.5  # a crop less than half inside the image: that hippocampus is not in the field of view
# the coarsest voxels the registration and the models were measured on (the benchmark's 3 mm slices): a coarser
# scan that the template does not fit is told so, and one it does fit is flagged (bundle.inference.volume)
COARSEST_MEASURED_MM = 3.0


def coarser_than_measured(spacing_mm) -> bool:
    """Whether a scan's largest voxel side exceeds :data:`COARSEST_MEASURED_MM` by more than a quarter of a mm (the
    slack of the 2-3 mm confidence floor, :data:`bundle.inference.confidence.COARSE_SCAN_MM`)."""
    return max(float(s) for s in spacing_mm) > COARSEST_MEASURED_MM + 0.25


@dataclass
class Localization:
    name: str  # the file (or the name given), for messages
    image: sitk.Image  # the input as read: the grid that masks are pasted back into
    registration: Registration
    boxes: dict[str, CropBox]  # by side: "left", "right" (the subject's)
    seconds: dict[str, float] = field(default_factory=dict)  # read, register

    @property
    def warning(self) -> str | None:
        """One line naming the file if the registration is suspect (see ``registration.GOOD_SIMILARITY``)."""
        s = self.registration.similarity
        if s >= GOOD_SIMILARITY:
            return None
        return (
            f"{self.name}: the brain template fits this image poorly (similarity {s:.2f} < {GOOD_SIMILARITY:.2f}); "
            "check the crops."
        )

    def crop(self, side: str) -> sitk.Image:
        """The image inside ``side``'s box: float32, axes close to R, A, S, 1 mm, :data:`CROP_SIZE` voxels."""
        return resample_crop(self.image, self.boxes[side])

    def paste(self, labels: Mapping[str, sitk.Image | nib.Nifti1Image | tuple[np.ndarray, np.ndarray]]) -> sitk.Image:
        """Label crops by side (SimpleITK, NIfTI, or ``(array [x, y, z], RAS affine)``) -> one uint8 image
        in the input's grid, 0 outside the crops."""
        crops = {s: v if isinstance(v, sitk.Image) else from_nifti(v) for s, v in labels.items()}
        out, _ = paste_back(self.image, crops)
        return out


def localize(
    source: str | Path | sitk.Image,
    name: str | None = None,
    template: Template | None = None,
    size: tuple[int, int, int] = CROP_SIZE,
    min_similarity: float = MIN_SIMILARITY,
    frame: str = FRAMES[0],
) -> Localization:
    """Register the template to ``source`` (a file or a SimpleITK image) and place the two crops.

    ``frame`` (the crops' pose, see :mod:`bundle.localization.crops`): ``"task04"`` (default) the
    template's pose turned to Task04's mean; ``"template"`` the template's pose; ``"image"`` the image's
    own axes in RAS order.

    Raises :class:`InputError` naming the file if the registration scores below ``min_similarity``
    or a hippocampus's crop lies mostly outside the image.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, not {frame!r}")
    template = template or load_template()
    t = time.perf_counter()
    image = source if isinstance(source, sitk.Image) else read_image(source)
    name = name or (str(source) if not isinstance(source, sitk.Image) else "image")
    seconds = {"read": time.perf_counter() - t}
    t = time.perf_counter()
    reg = register(image, template)
    seconds["register"] = time.perf_counter() - t
    if reg.similarity < min_similarity:
        spacing = image.GetSpacing()[:3]
        why = "is it a whole-head T1-weighted MRI?"
        if coarser_than_measured(spacing):
            why = (f"its voxels are up to {max(spacing):.1f} mm, coarser than the {COARSEST_MEASURED_MM:.0f} mm "
                   "this bundle is measured on")  # fmt: skip
        raise InputError(
            f"{name}: the brain template does not fit this image (similarity {reg.similarity:.2f} < "
            f"{min_similarity:.2f}); {why}"
        )
    boxes = {}
    pitch = TASK04_PITCH_DEG if frame == "task04" else 0.0
    axes = None if frame == "image" else template_axes(reg.transform.GetMatrix(), pitch)
    for side in SIDES:
        centre = np.array(reg.transform.TransformPoint(template.regions[side].centroid.tolist()))
        boxes[side] = crop_box(image, centre, side, size, axes)
        if boxes[side].coverage < MIN_COVERAGE:
            raise InputError(
                f"{name}: the {side} hippocampus is outside the field of view "
                f"(only {boxes[side].coverage:.0%} of its crop lies inside the image)."
            )
    return Localization(name, image, reg, boxes, seconds)
