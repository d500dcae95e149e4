"""Whole-head test images made from the template, with the transform that made them known exactly.

Used by the tests and by ``studies/localization_study.py``: the template is moved by a random affine
(rotation, translation, per-axis scaling), resampled onto a scanner-like grid (another axis order and
direction, 0.9-1.3 mm voxels, a whole-head field of view), and given a smooth multiplicative bias field
and Rician-like noise. Optionally: a smooth random deformation (a crude stand-in for another subject's
anatomy), a contrast change (gamma), and a crude "neck" (a soft-tissue cylinder below the template) is added,
because real scans reach lower than the template and pull an intensity centre of mass down.

Such images share the template's anatomy, so they test the registration's reach (pose, grid,
orientation, intensity), not its accuracy across subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

__all__ = ["ORIENTATIONS", "Case", "add_neck", "direction_of", "make_case", "true_centroid"]

# axis codes of the voxel axes (the letter each axis points TO, as in nibabel's aff2axcodes)
ORIENTATIONS = {
    "RAS": "RAS",  # axial, NIfTI-style
    "LPS": "LPS",  # axial, DICOM-style
    "sagittal": "PIL",  # slices along left-right (the third axis), as many sagittal DICOM series
    "coronal": "LIP",  # slices along posterior-anterior
}
_LPS_AXIS = {"L": (0, 1.0), "R": (0, -1.0), "P": (1, 1.0), "A": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def direction_of(codes: str) -> np.ndarray:
    """The 3x3 direction matrix (columns: voxel axes in LPS) of axis codes such as ``"PIL"``."""
    d = np.zeros((3, 3))
    for col, c in enumerate(codes.upper()):
        row, sign = _LPS_AXIS[c]
        d[row, col] = sign
    if sorted(np.abs(d).argmax(0)) != [0, 1, 2]:
        raise ValueError(f"axis codes {codes!r} must name each of L/R, A/P, S/I once")
    return d


@dataclass
class Case:
    image: sitk.Image  # the synthetic whole-head image (float32)
    transform: sitk.AffineTransform  # its affine part: template point (LPS mm) -> image point (LPS mm)
    to_template: sitk.Transform  # the exact map image point -> template point (deformation included)
    params: dict = field(default_factory=dict)  # what was drawn, for reports


def true_centroid(case: Case, label: sitk.Image, margin_mm: float = 30.0) -> np.ndarray:
    """Where a template label's centroid really is in ``case.image`` (LPS mm), deformation included.

    The label (e.g. :func:`~bundle.localization.template.atlas_label`) is pulled through the case's exact
    transform onto a 1 mm grid around its affine position, and its interpolated mass averaged.
    """
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label)
    centre = np.array(case.transform.TransformPoint(stats.GetCentroid(1)))
    size = np.array(label.GetSize()) + 2 * int(margin_mm)
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetOrigin((centre - (size - 1) / 2).tolist())
    pulled = sitk.Resample(sitk.Cast(label, sitk.sitkFloat32), grid, case.to_template, sitk.sitkLinear, 0.0)
    w = sitk.GetArrayFromImage(pulled)  # [z, y, x]
    idx = np.argwhere(w > 0)
    mean_idx = (idx * w[w > 0][:, None]).sum(0) / w.sum()
    return np.array(grid.TransformContinuousIndexToPhysicalPoint(mean_idx[::-1].tolist()))


def _deformation(source: sitk.Image, rng: np.random.Generator, amplitude_mm: float) -> sitk.BSplineTransform:
    """A smooth random displacement over ``source`` (B-spline, ~50 mm control spacing, RMS ~amplitude)."""
    mesh = [max(1, round(n * s / 50.0)) for n, s in zip(source.GetSize(), source.GetSpacing(), strict=True)]
    bspline = sitk.BSplineTransformInitializer(source, mesh, order=3)
    n = len(bspline.GetParameters())
    bspline.SetParameters((rng.normal(0, amplitude_mm * 1.8, n)).tolist())  # cubic B-splines damp ~1.8x
    return bspline


def add_neck(template: sitk.Image, length_mm: float = 70.0, radius_mm: float = 45.0, level: float = 0.35) -> sitk.Image:
    """The template extended ``length_mm`` downwards with a soft-tissue cylinder under the brain stem."""
    sp = np.array(template.GetSpacing())
    extra = round(length_mm / sp[2])
    arr = sitk.GetArrayFromImage(template)  # [z, y, x]
    _z, y, x = np.mgrid[0:extra, 0 : arr.shape[1], 0 : arr.shape[2]].astype(np.float32)
    centre_idx = template.TransformPhysicalPointToContinuousIndex((0.0, 20.0, 0.0))  # LPS: 20 mm posterior
    r = np.hypot((x - centre_idx[0]) * sp[0], (y - centre_idx[1]) * sp[1])
    neck = np.clip((radius_mm - r) / 4.0, 0, 1) * level * float(np.percentile(arr, 99))
    out = sitk.GetImageFromArray(np.concatenate([neck.astype(arr.dtype), arr], axis=0))
    out.SetSpacing(template.GetSpacing())
    out.SetDirection(template.GetDirection())
    out.SetOrigin(template.TransformIndexToPhysicalPoint((0, 0, -extra)))
    return out


def _bias(shape: tuple[int, ...], rng: np.random.Generator, strength: float) -> np.ndarray:
    """exp(low-order polynomial) over the image, +-``strength`` or so: a smooth coil-like field."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [x, y, z, x * y, y * z, x * z, x * x, y * y, z * z]
    field_ = sum(rng.uniform(-1, 1) * t for t in terms)
    return np.exp(strength * field_ / 3.0).astype(np.float32)


def make_case(
    source: sitk.Image,
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    max_rotation_deg: float = 20.0,
    max_translation_mm: float = 30.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    spacing_range: tuple[float, float] = (0.9, 1.3),
    orientation: str | None = None,
    fov_mm: tuple[float, float, float] = (200.0, 240.0, 220.0),
    bias: float = 0.3,
    noise: float = 0.03,
    deform_mm: float = 0.0,
    gamma_range: tuple[float, float] = (1.0, 1.0),
) -> Case:
    """One synthetic whole head from ``source`` (the template, any spacing), see the module docstring.

    ``centre`` (LPS mm) is where rotation and scaling pivot (default: the source's centre); ``fov_mm``
    is the field of view along left-right, anterior-posterior and inferior-superior; ``noise`` is the
    noise sigma relative to the 99th intensity percentile; ``deform_mm`` the RMS of a smooth random
    deformation applied in template space before the affine; intensities are raised to a power drawn
    from ``gamma_range`` (a different T1 contrast).
    """
    if centre is None:
        centre = np.array(source.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in source.GetSize()]))
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    shift = rng.uniform(-max_translation_mm, max_translation_mm, 3)
    scales = rng.uniform(*scale_range, 3)
    rot = sitk.Euler3DTransform((0, 0, 0), *angles)
    matrix = np.array(rot.GetMatrix()).reshape(3, 3) @ np.diag(scales)
    forward = sitk.AffineTransform(matrix.ravel().tolist(), shift.tolist(), centre.tolist())

    orientation = orientation or str(rng.choice(list(ORIENTATIONS)))
    codes = ORIENTATIONS.get(orientation, orientation)
    direction = direction_of(codes)
    spacing = rng.uniform(*spacing_range, 3)
    spacing[:2] = spacing[0] if rng.random() < 0.5 else spacing[:2]  # often square in-plane pixels
    # each voxel axis covers the field of view of the anatomical axis it runs along
    fov = np.array([fov_mm[int(np.abs(direction[:, k]).argmax())] for k in range(3)])
    size = np.ceil(fov / spacing).astype(int)
    centre_out = np.array(forward.TransformPoint(centre.tolist())) + rng.uniform(-10, 10, 3)
    origin = centre_out - direction @ ((size - 1) / 2 * spacing)

    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin(origin.tolist())
    to_template: sitk.Transform = forward.GetInverse()
    if deform_mm > 0:  # image point -> affine inverse -> deformation -> template point
        to_template = sitk.CompositeTransform([_deformation(source, rng, deform_mm), forward.GetInverse()])
    moved = sitk.Resample(sitk.Cast(source, sitk.sitkFloat32), grid, to_template, sitk.sitkLinear, 0.0)

    arr = sitk.GetArrayFromImage(moved)
    gamma = float(rng.uniform(*gamma_range))
    if gamma != 1.0:
        top = float(arr.max()) or 1.0
        arr = top * (np.clip(arr, 0, None) / top) ** gamma
    top = float(np.percentile(arr, 99)) or 1.0
    arr *= _bias(arr.shape, rng, bias)
    n1, n2 = rng.normal(0, noise * top, (2, *arr.shape)).astype(np.float32)
    arr = np.sqrt((arr + n1) ** 2 + n2**2)  # magnitude images have Rician noise
    image = sitk.GetImageFromArray(arr.astype(np.float32))
    image.CopyInformation(grid)
    params = {
        "rotation_deg": np.rad2deg(angles).round(2).tolist(),
        "translation_mm": shift.round(2).tolist(),
        "scale": scales.round(3).tolist(),
        "orientation": codes,
        "spacing_mm": spacing.round(3).tolist(),
        "size": size.tolist(),
        "deform_mm": deform_mm,
        "gamma": round(gamma, 3),
    }
    return Case(image, forward, to_template, params)
