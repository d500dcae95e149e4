"""Intensity standardisation: one image's intensities put on a common scale before the network sees them.

MRI intensities have no physical unit: two scanners (or one scanner and a pipeline such as FreeSurfer's
0-255 rescale, N4, skull-stripping) give the same tissue different values and different contrast curves.
The network must see the same numbers for the same tissue, in training and in every inference path, so
all of them call :func:`standardize` (via :func:`bundle.data.transforms.preprocessing`).

Modes:

* ``"percentile"``: the crop's 0.5-99.5 percentiles to [0, 1] (the bundle's scale up to version 0.9;
  shipped checkpoints without an ``input`` record were trained with it). It counts every voxel, so the
  scale moves with how much background, zeroed tissue or skull the crop holds.
* ``"histogram"``: piecewise-linear histogram standardisation (Nyul and Udupa 1999, TorchIO's
  ``HistogramStandardization``): the tissue's percentiles :data:`LANDMARKS` are mapped onto reference
  values :data:`REFERENCE` (Task04's average, ``studies/histogram_reference.py``). Tissue is every voxel
  above the crop's minimum (by more than :data:`TISSUE_FLOOR` of its range, for rounding), so voxels a brain
  mask, a field-of-view edge or a pipeline set to zero do not count, and which voxels count does not change
  under any increasing change of contrast (a floor at a fraction of the bright tissue would: gamma 2 pushed
  Task04's CSF under a 5 % floor). Such a change moves the landmarks with the tissue and is undone, up to the
  curve's shape between landmarks.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

__all__ = [
    "DEFAULT_STANDARDIZATION",
    "LANDMARKS",
    "REFERENCE",
    "STANDARDIZATIONS",
    "Standardize",
    "Standardized",
    "histogram_landmarks",
    "standardize",
    "tissue_mask",
]

STANDARDIZATIONS = ("percentile", "histogram")
DEFAULT_STANDARDIZATION = "histogram"
# Percentiles of the tissue voxels used as landmarks (TorchIO's default set: 1, 10..90, 99, plus 5 and 95).
LANDMARKS = (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0)
# Where the landmarks land: the mean of Task04's training images' landmarks, each image scaled so that its
# 1st and 99th tissue percentiles are 0 and 1 (studies/histogram_reference.py writes these numbers).
REFERENCE = (0.0, 0.0798, 0.1722, 0.2937, 0.3721, 0.4543, 0.551, 0.6518, 0.7372, 0.8116, 0.8819, 0.925, 1.0)
# Voxels within this fraction of the range (99th percentile - minimum) of the minimum are background (zeroed).
TISSUE_FLOOR = 1e-3


def tissue_mask(image: np.ndarray, floor: float = TISSUE_FLOOR) -> np.ndarray:
    """Voxels above the minimum by more than ``floor`` x (99th percentile of the others - minimum); all voxels if
    that leaves too few."""
    values = image[image > image.min()] if (image > image.min()).any() else image.ravel()
    top = float(np.percentile(values, 99.0))
    mask = image > image.min() + floor * (top - image.min())
    if mask.sum() < 0.01 * image.size or mask.sum() < 64:  # a nearly empty crop: use everything
        mask = np.ones_like(image, dtype=bool)
    return mask


def histogram_landmarks(image: np.ndarray, landmarks: Sequence[float] = LANDMARKS) -> np.ndarray:
    """The tissue's percentiles ``landmarks`` of one image (any intensity scale)."""
    return np.percentile(image[tissue_mask(image)], list(landmarks)).astype(np.float64)


def _piecewise(image: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map ``source`` landmarks onto ``target`` linearly between them, and with the end segments' slopes beyond."""
    source = np.maximum.accumulate(source)
    keep = np.concatenate([[True], np.diff(source) > 1e-8 * max(1.0, abs(float(source[-1])))])
    source, target = source[keep], np.asarray(target, dtype=np.float64)[keep]
    if len(source) < 2:  # a constant image: nothing to spread
        return np.zeros_like(image, dtype=np.float32)
    out = np.interp(image, source, target)
    low, high = image < source[0], image > source[-1]
    slope_low = (target[1] - target[0]) / (source[1] - source[0])
    slope_high = (target[-1] - target[-2]) / (source[-1] - source[-2])
    out[low] = target[0] + (image[low] - source[0]) * slope_low
    out[high] = target[-1] + (image[high] - source[-1]) * slope_high
    return out.astype(np.float32)


def standardize(image: np.ndarray | torch.Tensor, mode: str = DEFAULT_STANDARDIZATION):
    """``image`` (any shape, any intensity scale) standardised by ``mode``; same type as given, float32.

    ``"histogram"`` output: tissue landmarks on :data:`REFERENCE`, clipped to [-0.2, 1.5] (near-black
    voxels go below 0, the brightest above 1, as far as a typical contrast puts them).
    """
    if mode not in STANDARDIZATIONS:
        raise ValueError(f"standardization {mode!r}: choose one of {list(STANDARDIZATIONS)}.")
    is_tensor = isinstance(image, torch.Tensor)
    arr = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    arr = arr.astype(np.float64)
    if mode == "percentile":
        low, high = np.percentile(arr, [0.5, 99.5])
        out = np.clip((arr - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(arr)
        out = out.astype(np.float32)
    else:
        out = np.clip(_piecewise(arr, histogram_landmarks(arr), np.asarray(REFERENCE)), -0.2, 1.5)
    # a MetaTensor keeps its affine and the record of earlier transforms (Invertd needs them)
    return convert_to_dst_type(out, dst=image, dtype=torch.float32)[0] if is_tensor else out


class Standardize(Transform):
    """Array transform: :func:`standardize` with a fixed ``mode``."""

    def __init__(self, mode: str = DEFAULT_STANDARDIZATION):
        if mode not in STANDARDIZATIONS:
            raise ValueError(f"standardization {mode!r}: choose one of {list(STANDARDIZATIONS)}.")
        self.mode = mode

    def __call__(self, img):
        return standardize(img, self.mode)


class Standardized(MapTransform):
    """Dictionary version of :class:`Standardize`."""

    def __init__(self, keys: KeysCollection, mode: str = DEFAULT_STANDARDIZATION, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.standardizer = Standardize(mode)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.standardizer(d[key])
        return d
