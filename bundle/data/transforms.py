"""The one definition of the bundle's transforms, shared by training, conversion, fine-tuning and inference.

Pre-processing survives Task04's habits: float32 and uint8 images, float labels, intensity maxima
from ~1e2 to over 1e6, any orientation (-> RAS) and spacing (-> 1 mm), and standardises intensities
(:mod:`bundle.data.standardization`: the mode is part of a model's input contract). Training adds domain
randomisation (:mod:`bundle.data.randomization`: other sites' contrasts and resolutions) before that
standardisation, so the network learns to see through what standardisation cannot undo.
Augmentation keeps the anterior/posterior meaning: flips only along left-right (RAS axis 0), small
rotations and scalings, and intensity changes an MRI scanner could produce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai import transforms as mt

from bundle.data.randomization import randomization
from bundle.data.standardization import DEFAULT_STANDARDIZATION, STANDARDIZATIONS, Standardized

__all__ = [
    "PATCH_SIZE",
    "RAS_LABELS",
    "ROI_SIZE",
    "calibration_transforms",
    "postprocessing",
    "preprocessing",
    "train_transforms",
    "val_transforms",
]

# Orientationd warns that its default labels are changing: pin the meaning of "RAS" explicitly.
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
# Default sizes by spatial_dims: training patch (divisible by 8; nnU-Net's 40x56x40 for this task: about a whole
# Task04 crop with its padding, as the fitted inference window sees it) and inference window (one window covers
# a whole Task04 crop); 2D is one R-A slice.
PATCH_SIZE = {3: (40, 56, 40), 2: (48, 64)}
ROI_SIZE = {3: (48, 64, 48), 2: (48, 64)}
# the quick preset's cheaper patch (0.8.0's default)
SMALL_PATCH_SIZE = {3: (32, 48, 32), 2: (48, 64)}


def preprocessing(
    keys: Sequence[str] = ("image", "label"),
    pixdim: Sequence[float] = (1.0, 1.0, 1.0),
    standardization: str = DEFAULT_STANDARDIZATION,
    randomize: float = 0.0,
) -> list:
    """Load -> channel first -> float32 -> RAS -> ``pixdim`` spacing -> [randomise] -> standardise.

    Works for ``keys=("image",)`` (inference) and ``("image", "label")`` (training).
    ``standardization``: ``"histogram"`` or ``"percentile"`` (see :mod:`bundle.data.standardization`; it
    must be the mode the model was trained with). ``randomize``: domain randomisation strength (0: none;
    training only).
    """
    if standardization not in STANDARDIZATIONS:
        raise ValueError(f"standardization {standardization!r}: choose one of {list(STANDARDIZATIONS)}.")
    keys = list(keys)
    has_label = "label" in keys
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    xs = [
        mt.LoadImaged(keys=keys, ensure_channel_first=True, image_only=True),
        mt.EnsureTyped(keys="image", dtype=torch.float32),
        mt.Orientationd(keys=keys, axcodes="RAS", labels=RAS_LABELS),
        mt.Spacingd(keys=keys, pixdim=list(pixdim), mode=modes),
    ]
    # Percentiles, not min/max: a few bright voxels must not decide the scale of the whole image.
    unit = mt.ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    shifts = randomization(randomize, keys="image")
    if shifts:
        xs += [unit, *shifts]  # the randomisation works on a [0, 1] scale
    xs.append(unit if standardization == "percentile" else Standardized(keys="image", mode=standardization))
    if has_label:
        # Float labels (some Task04 files) carry 0.999... after resampling: round before casting.
        xs += [mt.Lambdad(keys="label", func=torch.round), mt.EnsureTyped(keys="label", dtype=torch.uint8)]
    return xs


def _crop(spatial_dims: int, patch_size: Sequence[int]) -> list:
    """Pad to the patch, then take a random patch (3D) or a random slice along S (2D)."""
    patch = list(patch_size)
    if spatial_dims == 3:
        return [
            mt.SpatialPadd(keys=["image", "label"], spatial_size=patch),
            mt.RandSpatialCropd(keys=["image", "label"], roi_size=patch, random_size=False),
        ]
    # 2D: slices of the R-A plane, drawn more often through the hippocampus than around it.
    return [
        mt.SpatialPadd(keys=["image", "label"], spatial_size=[*patch, -1]),
        mt.RandCropByPosNegLabeld(
            keys=["image", "label"], label_key="label", spatial_size=[*patch, 1], pos=2.0, neg=1.0, num_samples=4
        ),
        mt.SqueezeDimd(keys=["image", "label"], dim=-1),
    ]


def _augment(spatial_dims: int) -> list:
    rotate = (0.26, 0.26, 0.26) if spatial_dims == 3 else 0.26  # +-15 degrees
    return [
        mt.RandAffined(
            keys=["image", "label"],
            prob=0.3,
            rotate_range=rotate,
            scale_range=[0.15] * spatial_dims,
            mode=["bilinear", "nearest"],
            padding_mode="zeros",
        ),
        mt.RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),  # left-right only
        mt.RandGaussianNoised(keys="image", prob=0.15, std=0.03),
        mt.RandGaussianSmoothd(keys="image", prob=0.1, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        mt.RandScaleIntensityd(keys="image", prob=0.15, factors=0.25),
        mt.RandShiftIntensityd(keys="image", prob=0.15, offsets=0.1),
        mt.RandAdjustContrastd(keys="image", prob=0.15, gamma=(0.7, 1.5)),
    ]


def train_transforms(
    spatial_dims: int = 3,
    patch_size: Sequence[int] = PATCH_SIZE[3],
    augment: bool = True,
    standardization: str = DEFAULT_STANDARDIZATION,
    randomize: float = 0.0,
):
    """Pre-processing (with domain randomisation of strength ``randomize``), random patch (3D) or slices (2D),
    augmentation. Patch sizes must suit the network."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3 but is {spatial_dims!r}.")
    if len(patch_size) != spatial_dims:
        raise ValueError(
            f"patch_size {list(patch_size)} must have {spatial_dims} sizes for spatial_dims={spatial_dims}."
        )
    pre = preprocessing(standardization=standardization, randomize=randomize if augment else 0.0)
    xs = pre + _crop(spatial_dims, patch_size) + (_augment(spatial_dims) if augment else [])
    return mt.Compose(xs + [mt.EnsureTyped(keys="label", dtype=torch.long)])


def val_transforms(standardization: str = DEFAULT_STANDARDIZATION):
    """Whole volumes, pre-processed only; the inferer pads and tiles them for the network."""
    return mt.Compose(preprocessing(standardization=standardization) + [mt.EnsureTyped(keys="label", dtype=torch.long)])


def postprocessing(num_classes: int = 3, with_label: bool = True):
    """Class scores -> one-hot argmax (and a one-hot label) for MONAI's Dice metrics."""
    xs = [
        mt.Activationsd(keys="pred", softmax=True),
        mt.AsDiscreted(keys="pred", argmax=True, to_onehot=num_classes),
    ]
    if with_label:
        xs.append(mt.AsDiscreted(keys="label", to_onehot=num_classes))
    return mt.Compose(xs)


def calibration_transforms(
    roi_size: Sequence[int], standardization: str = DEFAULT_STANDARDIZATION, randomize: float = 0.0
):
    """Whole images as the inferer shows them to the network: zero-padded (or cropped) to one window; with
    ``randomize``, under the training's domain randomisation (thresholds fit the range of inputs it meets)."""
    roi = list(roi_size)
    return mt.Compose(
        preprocessing(["image"], standardization=standardization, randomize=randomize)
        + [mt.SpatialPadd(keys="image", spatial_size=roi), mt.CenterSpatialCropd(keys="image", roi_size=roi)]
    )
