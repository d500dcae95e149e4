"""Affine registration of a whole-head T1 image to the shipped 2 mm MNI template, with SimpleITK.

Why SimpleITK: it is already a dependency, needs no download, and on the 2-core CPU this recipe takes
a few seconds per image with centroid errors of about 1 mm on the synthetic study cases; ANTsPy
(antspyx, ~100 MB more) was slower at equal accuracy (figures: ``scripts/localization_study.py`` and
the assets README).

Recipe (fixed = template, moving = the image, so the result maps template points to image points,
which is the direction the hippocampus boxes travel):

1. the image is block-averaged to about 2 mm and its intensities clipped to the 0.5-99.5 percentiles;
2. start: translation that lines up the head centres (Otsu foreground centroids) plus a coarse
   exhaustive search over pitch and up-down shift at 8 mm (real scans reach lower than the template,
   heads tilt most around left-right);
3. rigid (Euler3D), then affine, multi-resolution (shrink 4/2/1 over the 2 mm template), Mattes mutual
   information inside the dilated template brain mask, regular-step gradient descent;
4. score: the normalised correlation between template and registered image inside the template brain
   mask, both smoothed with a 4 mm Gaussian (so that it measures where the brain is, not whether its
   folds match the average brain's). On the synthetic study cases (``scripts/localization_study.py``):
   correct registrations score 0.85-0.97, and 0.6-0.7 when a smooth 8 mm RMS deformation stands in
   for a very different brain; the true transform spoiled by 10 mm + 10 degrees scores 0.4-0.5, by
   20 mm + 15 degrees 0.2-0.3; noise and a blob ~0.05-0.1. Hence :data:`MIN_SIMILARITY` = 0.4: below,
   the registration has failed (or the image is not a whole-head T1); below :data:`GOOD_SIMILARITY`
   = 0.6 it is suspect (a warning), not necessarily wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from bundle.localization.template import Template, load_template

__all__ = ["GOOD_SIMILARITY", "MIN_SIMILARITY", "Registration", "prepare_moving", "register", "similarity"]

MIN_SIMILARITY = 0.4  # below: registration failed or the image is not a whole-head T1 (see module docstring)
GOOD_SIMILARITY = 0.6  # below: a suspect registration, worth a warning
SCORE_SIGMA_MM = 4.0
WORK_SPACING_MM = 2.0


@dataclass
class Registration:
    transform: sitk.AffineTransform  # template point (LPS mm) -> image point (LPS mm)
    similarity: float  # smoothed normalised correlation in the template brain mask, see MIN_SIMILARITY
    metric: float  # final Mattes MI value (negative; lower is better)
    seconds: dict[str, float] = field(default_factory=dict)  # by step

    @property
    def ok(self) -> bool:
        return self.similarity >= MIN_SIMILARITY

    @property
    def quality(self) -> str:
        """``"good"``, ``"suspect"`` (MIN_SIMILARITY..GOOD_SIMILARITY) or ``"failed"``."""
        return "good" if self.similarity >= GOOD_SIMILARITY else "suspect" if self.ok else "failed"


def prepare_moving(image: sitk.Image) -> sitk.Image:
    """float32, block-averaged to about 2 mm (anti-aliased and 8-30x fewer voxels), percentile-clipped."""
    factors = [max(1, round(WORK_SPACING_MM / s)) for s in image.GetSpacing()]
    small = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
    arr = sitk.GetArrayViewFromImage(small)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return sitk.Clamp(small, sitk.sitkFloat32, float(lo), float(hi))


def _head_centre(image: sitk.Image) -> np.ndarray:
    """Centroid (LPS mm) of the Otsu foreground: the head, whatever its intensity scale and background."""
    fg = sitk.OtsuThreshold(image, 0, 1)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(fg)
    if not stats.HasLabel(1):
        return np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    return np.array(stats.GetCentroid(1))


def _mask_centre(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return np.array(stats.GetCentroid(1))


def _method(mask: sitk.Image, shrink: list[int], sigmas_mm: list[float], seed: int) -> sitk.ImageRegistrationMethod:
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    r.SetMetricFixedMask(mask)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(0.25, seed)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetShrinkFactorsPerLevel(shrink)
    r.SetSmoothingSigmasPerLevel(sigmas_mm)
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return r


def _initial(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, centre: np.ndarray, seed: int
) -> sitk.Euler3DTransform:
    """Head centres lined up, then the best pitch / up-down shift of a coarse grid (MI at 8 mm)."""
    init = sitk.Euler3DTransform()
    init.SetCenter(centre.tolist())
    init.SetTranslation((_head_centre(moving) - _head_centre(fixed)).tolist())
    r = _method(mask, [4], [4.0], seed)
    # parameters: rx, ry, rz, tx, ty, tz; steps of 10 degrees in pitch (rx) and 12 mm in z
    r.SetOptimizerAsExhaustive(numberOfSteps=[2, 0, 0, 0, 0, 2], stepLength=1.0)
    r.SetOptimizerScales([1.0 / np.deg2rad(10.0), 1, 1, 1, 1, 1.0 / 12.0])
    r.SetInitialTransform(init, inPlace=True)
    r.Execute(fixed, moving)
    return init


def _optimise(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, transform: sitk.Transform, shrink: list[int],
    sigmas: list[float], step_mm: float, seed: int, iterations: int = 100,
) -> float:  # fmt: skip
    r = _method(mask, shrink, sigmas, seed)
    r.SetOptimizerAsRegularStepGradientDescent(
        learningRate=step_mm,
        minStep=0.01,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetInitialTransform(transform, inPlace=True)
    r.Execute(fixed, moving)
    return float(r.GetMetricValue())


def similarity(moving: sitk.Image, transform: sitk.Transform, template: Template | None = None) -> float:
    """Normalised correlation of template and ``moving`` (mapped by ``transform``) inside the brain mask,
    both smoothed by :data:`SCORE_SIGMA_MM`: 1 = same intensity pattern, ~0 = unrelated."""
    template = template or load_template()
    warped = sitk.Resample(moving, template.image, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    inside = sitk.GetArrayViewFromImage(template.brain) > 0
    a, b = (sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(x, SCORE_SIGMA_MM))[inside].astype(np.float64)
            for x in (template.image, warped))  # fmt: skip
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def register(image: sitk.Image, template: Template | None = None, seed: int = 1) -> Registration:
    """Affine transform taking template points (LPS mm) to ``image`` points, and its similarity score.

    Never raises for a poor match: check :attr:`Registration.ok` (``similarity >= MIN_SIMILARITY``).
    """
    template = template or load_template()
    times: dict[str, float] = {}
    t = time.perf_counter()
    fixed = template.image
    mask = sitk.BinaryDilate(template.brain, [2, 2, 2])  # brain + 4 mm: its outline counts too
    moving = prepare_moving(image)
    centre = _mask_centre(template.brain)  # rotations pivot at the brain's centre
    times["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    rigid = _initial(fixed, moving, mask, centre, seed)
    times["initialise"] = time.perf_counter() - t

    t = time.perf_counter()
    _optimise(fixed, moving, mask, rigid, [4, 2], [4.0, 2.0], 2.0, seed)
    times["rigid"] = time.perf_counter() - t

    t = time.perf_counter()
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    metric = _optimise(fixed, moving, mask, affine, [2, 1], [2.0, 0.0], 1.0, seed)  # 2 mm steps overshoot
    times["affine"] = time.perf_counter() - t

    t = time.perf_counter()
    score = similarity(moving, affine, template)
    times["score"] = time.perf_counter() - t
    return Registration(affine, score, metric, times)
