"""Per-side crops in the network's frame, and pasting their label maps back into the image's grid.

The network was trained on Task04: hippocampus crops of about 35x50x35 voxels at 1 mm, cut along the
scanner's axes, with the hippocampus near the centre and 3-8 voxels of context on every side. So a crop
here is:

* centred on the template hippocampus centroid mapped into the image by the registration;
* in Task04's pose (``frame="task04"``, the default): the registration's rotation (not its scaling or
  shear) turns the crop into the template's pose, then a fixed 13 degrees about left-right into the
  mean pose of Task04's hippocampi. Measured (``studies/localization_study.py --poses``): the long
  axis of Task04's 208 labels is pitched -23.8 +- 7.1 degrees from the crop's anterior axis (yaw
  3.4 +- 4.8), CerebrA's in MNI pose -37.3.
  The network is pose-sensitive on one side: on template crops turned by -20/-13/-6/0/+6/+13/+20
  degrees (negative = steeper) it scores Dice 0.48/0.70/0.76/0.86/0.85/0.85/0.84. Heads in a scanner
  vary by 10-20 degrees; normalising the pose to the training mean leaves margin both ways.
  ``frame="template"`` stops at the MNI pose; ``frame="image"`` keeps the image's own axes in RAS
  order (what the network's ``Orientationd`` would do; no rotation, so an image with 1 mm voxels is
  copied, not interpolated: the grid is snapped to it). On synthetic heads rotated up to 20 degrees
  and deformed (``studies/localization_study.py --network --deform 4``, 10 cases, 20 crops) the
  task04 frame scored mean Dice 0.83 (min 0.80), the template frame 0.78 (min 0.71), the image frame
  0.69 (min 0.36);
* 1 mm isotropic, :data:`CROP_SIZE` = 34x48x34 voxels: Task04's own field of view (mean 35x50x35), with
  NO extra margin. Measured with the shipped SNN on 1 mm template crops against CerebrA (whole
  hippocampus, Dice inside the crop; ``studies/localization_study.py --crop-sizes``): 34x48x34 0.847,
  36x50x36 0.842, 40x56x40 0.772, 44x60x44 0.58, 48x64x48 0.48. The network has learnt Task04's
  framing (the hippocampus filling the middle of a small crop, zero padding around it); more context
  costs more than the margin buys. Off-centre by 2 / 4 / 6 mm (12 directions) the 34x48x34 crop still
  scores 0.845 / 0.813 / 0.762 (36x50x36: 0.822 / 0.770 / -, 32x46x32: 0.840 / 0.802 / 0.765). The
  inferer's 48x64x48 window zero-pads the crop as Task04 images were padded in training (one window).

Coordinates are SimpleITK's (LPS mm). :func:`to_nifti` / :func:`from_nifti` convert to the NIfTI (RAS)
world that MONAI's readers and nibabel use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import SimpleITK as sitk

__all__ = [
    "CROP_SIZE",
    "FRAMES",
    "TASK04_PITCH_DEG",
    "CropBox",
    "crop_box",
    "from_nifti",
    "paste_back",
    "ras_direction",
    "resample_crop",
    "template_axes",
    "to_nifti",
]

CROP_SIZE = (34, 48, 34)  # voxels (= mm) along R, A, S; see the module docstring
FRAMES = ("task04", "template", "image")  # crop poses, see the module docstring; the first is the default
TASK04_PITCH_DEG = 13.0  # MNI pose -> Task04's mean pose, about left-right (module docstring)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class CropBox:
    """A 1 mm grid of ``size`` voxels whose axes point R, A, S (as closely as the image's axes allow)."""

    side: str
    centre: np.ndarray  # LPS mm: the mapped hippocampus centroid
    origin: np.ndarray  # LPS mm: centre of voxel (0, 0, 0)
    direction: np.ndarray  # 3x3, columns = the crop's axes in LPS
    size: tuple[int, int, int]
    coverage: float  # fraction of the crop's voxels inside the image (1.0 = fully inside)

    def grid(self, pixel: int = sitk.sitkFloat32) -> sitk.Image:
        """An empty image with this box's geometry (a reference for resampling)."""
        g = sitk.Image(list(self.size), pixel)
        g.SetSpacing((1.0, 1.0, 1.0))
        g.SetOrigin(self.origin.tolist())
        g.SetDirection(self.direction.ravel().tolist())
        return g


def ras_direction(image: sitk.Image) -> np.ndarray:
    """The image's axes, reordered and flipped so that they point R, A, S (columns, LPS coordinates).

    Like nibabel's ``io_orientation``: each RAS axis takes the voxel axis closest to it. For an image
    that is not oblique this is exactly diag(-1, -1, 1).
    """
    d = np.array(image.GetDirection()).reshape(3, 3)
    ras = _LPS_TO_RAS @ d  # voxel axes in RAS
    out = np.zeros((3, 3))
    free = [0, 1, 2]
    # assign the most clear-cut axes first (largest component), as nibabel does
    for j in np.argsort(-np.abs(ras).max(axis=0)):
        k = max(free, key=lambda r: abs(ras[r, j]))
        free.remove(k)
        out[:, k] = d[:, j] * np.sign(ras[k, j])
    return out


def template_axes(matrix: np.ndarray, pitch_deg: float = 0.0) -> np.ndarray:
    """The template's R, A, S axes in the image (columns, LPS): the rotation part of the registration's
    3x3 ``matrix`` (template -> image), scaling and shear removed (polar decomposition), after turning
    the template by ``pitch_deg`` about its left-right axis (positive: the hippocampus less steep)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64).reshape(3, 3))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:  # a reflection is no pose: keep a proper rotation
        rotation = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    pitch = np.array(sitk.Euler3DTransform((0, 0, 0), np.deg2rad(pitch_deg), 0, 0).GetMatrix()).reshape(3, 3)
    return rotation @ pitch @ _LPS_TO_RAS


def crop_box(
    image: sitk.Image,
    centre: np.ndarray,
    side: str,
    size: tuple[int, int, int] = CROP_SIZE,
    axes: np.ndarray | None = None,
) -> CropBox:
    """The crop of ``size`` voxels around ``centre`` (LPS mm).

    By default along the image's own axes in RAS order, snapped to its voxel centres; ``axes`` (3x3,
    columns R, A, S in LPS, e.g. :func:`template_axes`) turns the crop into another pose instead.
    """
    direction = ras_direction(image) if axes is None else np.asarray(axes, dtype=np.float64)
    half = (np.asarray(size, dtype=np.float64) - 1) / 2
    origin = np.asarray(centre, dtype=np.float64) - direction @ half
    if axes is None:  # snap: with 1 mm voxels the crop then copies voxels instead of interpolating them
        index = image.TransformPhysicalPointToContinuousIndex(origin.tolist())
        origin = np.array(image.TransformIndexToPhysicalPoint([round(v) for v in index]))
    return CropBox(side, np.asarray(centre, dtype=np.float64), origin, direction, tuple(int(s) for s in size),
                   _coverage(image, origin, direction, size))  # fmt: skip


def _coverage(image: sitk.Image, origin: np.ndarray, direction: np.ndarray, size: tuple[int, ...]) -> float:
    """Fraction of the box's voxel centres that fall inside the image (checked on a 4 mm subgrid)."""
    axes = [np.arange(0, n, 4, dtype=np.float64) for n in size]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    points = origin + idx @ direction.T
    d = np.array(image.GetDirection()).reshape(3, 3)
    cont = (points - np.array(image.GetOrigin())) @ np.linalg.inv(d).T / np.array(image.GetSpacing())
    inside = np.all((cont > -0.5) & (cont < np.array(image.GetSize()) - 0.5), axis=1)
    return float(inside.mean())


def resample_crop(image: sitk.Image, box: CropBox) -> sitk.Image:
    """``image`` in the box (float32, linear interpolation; 0 outside the image, like Task04's padding)."""
    return sitk.Resample(image, box.grid(), sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def paste_back(reference: sitk.Image, labels: Mapping[str, sitk.Image]) -> tuple[sitk.Image, int]:
    """Each side's label crop put into ``reference``'s grid (nearest neighbour), combined; 0 elsewhere.

    Returns the uint8 label image and the number of voxels both sides claimed (kept: the first side's
    label; with two hippocampi ~50 mm apart this is 0 unless a localisation went wrong).
    """
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape[:3], np.uint8)
    overlap = 0
    for crop in labels.values():
        moved = sitk.Resample(crop, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        arr = sitk.GetArrayViewFromImage(moved)
        overlap += int(np.count_nonzero((out > 0) & (arr > 0)))
        out = np.where(out > 0, out, arr)
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(reference)
    return result, overlap


def to_nifti(image: sitk.Image) -> nib.Nifti1Image:
    """A SimpleITK image as a NIfTI image (array ``[x, y, z]``, RAS affine), e.g. for MONAI's readers."""
    d = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ d @ np.diag(image.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.array(image.GetOrigin())
    arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def from_nifti(image: nib.Nifti1Image | tuple[np.ndarray, np.ndarray]) -> sitk.Image:
    """A NIfTI image (or an ``(array [x, y, z], RAS affine)`` pair) as a SimpleITK image."""
    arr, affine = (np.asanyarray(image.dataobj), image.affine) if hasattr(image, "affine") else image
    arr, affine = np.asarray(arr), np.asarray(affine, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:  # MONAI's channel-first [1, x, y, z]
        arr = arr[0]
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    m = _LPS_TO_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    out.SetSpacing(spacing.tolist())
    out.SetDirection((m / spacing).ravel().tolist())
    out.SetOrigin((_LPS_TO_RAS @ affine[:3, 3]).tolist())
    return out
