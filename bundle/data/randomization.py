"""Domain randomisation: training images given the contrasts, resolutions and pipelines of other sites.

Task04 comes from one site and one protocol; a network trained on it alone learns that site's intensity
profile and fails on other scanners' T1 scans (issue 31). Following SynthSeg's domain randomisation, every
stage that trains sees each image, now and then, with a random bias field, gamma in both directions, a
monotone non-linear intensity curve, changed contrast and offset, noise, blur, a 1.5-3 mm acquisition put
back on the 1 mm grid (isotropic, or thick slices along one axis), a FreeSurfer-style 0-255 rescale, or
a slab of voxels zeroed as a brain mask would. MONAI's transforms where MONAI has one; the acquisitions and
the last two are here because MONAI lacks them: ``RandSimulateLowResolution`` samples the coarse grid by
nearest neighbour, which moves the image by up to a voxel against its label (the label put through the same
2 mm acquisition keeps only Dice 0.68-0.85 of itself), so a network trained or scored with it learns or pays
for a displacement no scanner makes; ours averages each coarse voxel (as a coil integrates over it) and stays
centred (the label keeps Dice 0.94-0.96).

Every transform acts on ``image`` only and keeps its shape and grid: the label stays right as it is.
Inputs are expected on a [0, 1] scale (``preprocessing`` puts them there first) and are standardised
after (:mod:`bundle.data.standardization`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
import torch.nn.functional as F
from monai import transforms as mt
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type

__all__ = [
    "DEFAULT_STRENGTH",
    "RandLowResolutiond",
    "RandPipelineRescaled",
    "RandThickSlicesd",
    "RandZeroSlabd",
    "randomization",
]

# The default strength: each transform below fires with its listed probability (strength 0: none).
DEFAULT_STRENGTH = 0.5


class _RandImaged(RandomizableTransform, MapTransform):
    """One random draw per call (``randomize``), then :meth:`apply` to every key: the shared loop of the
    image-only transforms below (MONAI's dictionary transforms each repeat it)."""

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def apply(self, image):
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = self.apply(d[key])
        return d


class RandThickSlicesd(_RandImaged):
    """A thick-slice acquisition put back on the 1 mm grid: along one random axis, ``thickness`` mm slices
    (mean of the voxels each one covers), then linear interpolation back to the input's shape.

    Args:
        keys: image keys (labels must not be given: they stay as they are).
        prob: probability of a change.
        thickness: (min, max) slice thickness in voxels of the input grid.
        axes: spatial axes that may be the slice axis (0-based, after the channel).
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        thickness: tuple[float, float] = (1.5, 3.0),
        axes: tuple[int, ...] = (0, 1, 2),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, prob, allow_missing_keys)
        self.thickness, self.axes = (float(thickness[0]), float(thickness[1])), tuple(axes)
        self._axis, self._thickness = 0, 1.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._axis = int(self.R.choice(self.axes))
        self._thickness = float(self.R.uniform(*self.thickness))

    def apply(self, image):
        return thick_slices(image, self._axis, self._thickness)


class RandLowResolutiond(_RandImaged):
    """An isotropic acquisition of ``voxel`` mm (uniform in the range) put back on the 1 mm grid, centred.

    Args:
        keys: image keys (labels must not be given: they stay as they are).
        prob: probability of a change.
        voxel: (min, max) voxel size in voxels of the input grid.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        voxel: tuple[float, float] = (1.5, 3.0),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, prob, allow_missing_keys)
        self.voxel, self._voxel = (float(voxel[0]), float(voxel[1])), 1.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._voxel = float(self.R.uniform(*self.voxel))

    def apply(self, image):
        return low_resolution(image, [self._voxel] * (len(image.shape) - 1))


def thick_slices(image, axis: int, thickness: float):
    """``image`` ``[C, *spatial]`` as if acquired with ``thickness``-voxel slices along spatial ``axis``."""
    spatial = image.shape[1:]
    voxel = [1.0] * len(spatial)
    voxel[min(axis, len(spatial) - 1)] = thickness
    return low_resolution(image, voxel)


def low_resolution(image, voxel):
    """``image`` ``[C, *spatial]`` as if acquired with voxels of ``voxel`` (per spatial axis, in input voxels):
    each coarse voxel the mean of what it covers, then linear interpolation back to the input's grid."""
    x = torch.as_tensor(image, dtype=torch.float32)
    spatial = x.shape[1:]
    size = [max(2, int(round(n / float(v)))) if v > 1.0 else n for n, v in zip(spatial, voxel)]
    mode = "trilinear" if len(spatial) == 3 else "bilinear"
    low = F.interpolate(x[None], size=size, mode="area")
    back = F.interpolate(low, size=list(spatial), mode=mode, align_corners=False)[0]
    return convert_to_dst_type(back, dst=image, dtype=torch.float32)[0]


class RandPipelineRescaled(_RandImaged):
    """An image as FreeSurfer-style pipelines save it: white matter (estimated as the 90th percentile of the
    brighter half) put at ``white`` (FreeSurfer: 110), clipped to [0, 255] and rounded to whole numbers."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        white: tuple[float, float] = (100.0, 120.0),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, prob, allow_missing_keys)
        self.white, self._white = white, 110.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._white = float(self.R.uniform(*self.white))

    def apply(self, image):
        return pipeline_rescale(image, self._white)


def pipeline_rescale(image, white: float = 110.0):
    """``image`` linearly rescaled so that its white matter is at ``white``, clipped to 0-255, whole numbers."""
    x = torch.as_tensor(image, dtype=torch.float32)
    bright = x[x > torch.quantile(x.flatten(), 0.5)]
    wm = float(torch.quantile(bright, 0.9)) if bright.numel() else float(x.max())
    low = float(x.min())
    scaled = (x - low) * (white / max(wm - low, 1e-6))
    return convert_to_dst_type(torch.round(torch.clamp(scaled, 0.0, 255.0)), dst=image, dtype=torch.float32)[0]


class RandZeroSlabd(_RandImaged):
    """A slab at one face of the image set to zero, as a brain mask or a field-of-view edge leaves it.

    ``fraction``: (min, max) depth of the slab as a fraction of that axis' size.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        fraction: tuple[float, float] = (0.05, 0.2),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, prob, allow_missing_keys)
        self.fraction = fraction
        self._axis, self._side, self._fraction = 0, 0, 0.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._axis = int(self.R.randint(0, 3))
        self._side = int(self.R.randint(0, 2))
        self._fraction = float(self.R.uniform(*self.fraction))

    def apply(self, image):
        return zero_slab(image, self._axis, self._side, self._fraction)


def zero_slab(image, axis: int, side: int, fraction: float):
    """``image`` ``[C, *spatial]`` with its first (``side`` 0) or last ``fraction`` of spatial ``axis`` set to 0."""
    x = torch.as_tensor(image, dtype=torch.float32).clone()
    axis = min(axis, x.ndim - 2)
    n = x.shape[axis + 1]
    depth = max(1, int(round(fraction * n)))
    index = [slice(None)] * x.ndim
    index[axis + 1] = slice(0, depth) if side == 0 else slice(n - depth, n)
    x[tuple(index)] = 0.0
    return convert_to_dst_type(x, dst=image, dtype=torch.float32)[0]


def randomization(strength: float = DEFAULT_STRENGTH, keys: str = "image") -> list:
    """The domain randomisation transforms for ``keys``; each fires with (its probability x ``strength``).

    Expects the image on a [0, 1] scale; ``strength`` 0 returns no transforms. The order follows an
    acquisition: the scanner's bias field and contrast, then resolution and noise, then a pipeline's rescale
    or brain mask.
    """
    strength = float(strength)
    if not 0.0 <= strength <= 3.0:
        raise ValueError(f"randomization strength {strength!r}: must be between 0 (off) and 3.")
    if strength == 0.0:
        return []

    def p(base: float) -> float:
        return min(1.0, base * strength)

    return [
        mt.RandBiasFieldd(keys=keys, prob=p(0.3), degree=3, coeff_range=(-0.1, 0.1)),  # up to x2-x4 across a crop
        mt.RandAdjustContrastd(keys=keys, prob=p(0.3), gamma=(0.5, 2.0)),  # gamma below and above 1
        mt.RandHistogramShiftd(keys=keys, prob=p(0.3), num_control_points=(4, 10)),  # monotone curve
        mt.RandScaleIntensityd(keys=keys, prob=p(0.2), factors=0.5),
        mt.RandShiftIntensityd(keys=keys, prob=p(0.2), offsets=0.2),
        RandLowResolutiond(keys=keys, prob=p(0.15), voxel=(1.5, 3.0)),  # isotropic
        RandThickSlicesd(keys=keys, prob=p(0.2), thickness=(1.5, 3.0)),
        mt.RandGaussianSmoothd(keys=keys, prob=p(0.15), sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), sigma_z=(0.3, 1.2)),
        mt.RandRicianNoised(keys=keys, prob=p(0.2), std=0.05, relative=False, sample_std=True),
        RandPipelineRescaled(keys=keys, prob=p(0.1)),
        RandZeroSlabd(keys=keys, prob=p(0.1)),
    ]
