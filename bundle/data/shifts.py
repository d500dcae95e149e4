"""Named, seeded acquisition shifts: what another site's scanner or pipeline does to an image.

The robustness benchmark (``studies/robustness.py``) scores every model on the validation cases under each
shift, and the whole-head examples use them too. They are the randomisation's transforms
(:mod:`bundle.data.randomization`) fired with certainty at one fixed strength, applied to the image as read
(RAS, 1 mm), before the model's own standardisation: what the network must undo is exactly what a user's
scan brings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai import transforms as mt

from bundle.data.randomization import RandLowResolutiond, RandPipelineRescaled, RandThickSlicesd, RandZeroSlabd

__all__ = ["COARSE_SHIFTS", "SHIFTS", "apply_shift"]


def _unit(image: torch.Tensor) -> torch.Tensor:
    """Percentiles 0.5-99.5 to [0, 1], as the randomisation sees its input."""
    return mt.ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)(image)


# name -> (one-line description, transform on {"image"} with certainty). Strengths are the randomisation's
# upper ranges or a typical value of what real scans differ by.
SHIFTS: dict[str, tuple[str, Callable[[], mt.Transform]]] = {
    "none": ("the image as it is", lambda: mt.Identityd(keys="image")),
    "bias": (
        "bias field, 3rd-degree, coefficients in +-0.05 (brightest/darkest point of a crop: x1.5, 1.4-1.7)",
        lambda: mt.RandBiasFieldd(keys="image", prob=1.0, degree=3, coeff_range=(-0.05, 0.05)),
    ),
    "gamma_0.5": ("gamma 0.5 (bright tissue compressed)", lambda: mt.AdjustContrastd(keys="image", gamma=0.5)),
    "gamma_2": ("gamma 2.0 (dark tissue compressed)", lambda: mt.AdjustContrastd(keys="image", gamma=2.0)),
    "curve": (
        "a random monotone non-linear intensity curve (8 control points)",
        lambda: mt.RandHistogramShiftd(keys="image", prob=1.0, num_control_points=8),
    ),
    "contrast_offset": (
        "intensities x1.5 then +0.2 (linear)",
        lambda: mt.Compose(
            [mt.ScaleIntensityd(keys="image", factor=0.5), mt.ShiftIntensityd(keys="image", offset=0.2)]
        ),
    ),
    "noise": (
        "Rician noise, sd 0.05 of the intensity range",
        lambda: mt.RandRicianNoised(keys="image", prob=1.0, std=0.05, relative=False, sample_std=False),
    ),
    "blur": (
        "Gaussian blur, sigma 1 voxel",
        lambda: mt.GaussianSmoothd(keys="image", sigma=1.0),
    ),
    "iso_2mm": (
        "a 2 mm isotropic acquisition (each voxel the mean of what it covers) put back on the 1 mm grid",
        lambda: RandLowResolutiond(keys="image", prob=1.0, voxel=(2.0, 2.0)),
    ),
    "slices_3mm": (
        "3 mm slices along one axis (random), back on the 1 mm grid",
        lambda: RandThickSlicesd(keys="image", prob=1.0, thickness=(3.0, 3.0)),
    ),
    "freesurfer": (
        "FreeSurfer-style: white matter at 110, 0-255, whole numbers",
        lambda: RandPipelineRescaled(keys="image", prob=1.0, white=(110.0, 110.0)),
    ),
    "zeroed_slab": (
        "15 % of one face's depth set to 0 (a brain mask's cut)",
        lambda: RandZeroSlabd(keys="image", prob=1.0, fraction=(0.15, 0.15)),
    ),
}

# the shifts that stand for a 2-3 mm acquisition: a scan like them is judged by its coarse confidence floor
# (bundle.inference.confidence.COARSE_SCAN_MM)
COARSE_SHIFTS = ("iso_2mm", "slices_3mm")


def apply_shift(name: str, image: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``image`` ``[C, *spatial]`` (RAS, 1 mm, any intensity scale) under shift ``name``, seeded by ``seed``.

    The image is first put on [0, 1] (0.5-99.5 percentiles), as the randomisation sees it.
    """
    if name not in SHIFTS:
        raise ValueError(f"shift {name!r}: choose one of {list(SHIFTS)}.")
    if name == "none":
        return image
    transform = SHIFTS[name][1]()
    if isinstance(transform, mt.Randomizable):  # Compose is one too
        transform.set_random_state(seed=seed)
    return transform({"image": _unit(image)})["image"]
