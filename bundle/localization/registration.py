"""Affine registration of a whole-head T1 image to the shipped 2 mm MNI template, with SimpleITK.

Why SimpleITK and not ANTsPy: it is already a dependency (antspyx adds ~90 MB) and it was the more
robust of the two on the study's synthetic whole heads (``studies/localization_study.py --ants``; 20
cases, rotations <= 20 degrees, translations <= 30 mm, scaling 0.9-1.1, 0.9-1.3 mm grids, 4 orientations):
hippocampus centroid error median 0.18 mm, max 0.34 mm, 20 of 20 (this recipe). ANTsPy ``Affine`` on the
same prepared image, template and mask: median 0.10 mm but one case off by 12-180 mm in two of three
runs (its sampling is not seeded); ``AffineFast``: median 0.5 mm, one 152 mm failure in one run. Speed
is similar: ~2-4 s per image here for either on an idle 2-core CPU (8.1 s vs 5.7 s with other jobs
running), far inside the 20 s budget.

Recipe (fixed = template, moving = the image, so the result maps template points to image points,
which is the direction the hippocampus boxes travel):

1. the image is block-averaged to about 2 mm and its intensities clipped to the 0.5-99.5 percentiles;
2. start: translation that lines up the head centres (Otsu foreground centroids) plus a coarse
   exhaustive search over pitch and up-down shift at 8 mm (real scans reach lower than the template,
   heads tilt most around left-right);
3. rigid (Euler3D), similarity (one scale), then affine, multi-resolution (shrink 4/2 for the first two,
   2/1 for the affine, over the 2 mm template), Mattes mutual information on 25% of the dilated template
   brain mask, regular-step gradient descent (at most 100 iterations a level);
4. score: the normalised correlation between template and registered image inside the template brain
   mask, both smoothed with a 4 mm Gaussian (so that it measures where the brain is, not whether its
   folds match the average brain's). Study figures (``studies/localization_study.py``): correct
   registrations score 0.96-0.99 on affine-only cases, 0.89-0.95 with a smooth 4 mm RMS deformation
   standing in for another brain, 0.80-0.85 with an extreme 8 mm one (where one case, 11 mm off,
   scored 0.52); the true transform spoiled by 10 mm + 10 degrees scores 0.38-0.46 (median; max 0.61),
   by 20 mm + 15 degrees 0.27-0.28 (max 0.41); noise 0.08-0.14, a smooth blob 0.27. Hence
   :data:`MIN_SIMILARITY` = 0.4: below, the registration failed or the image is not a whole-head T1
   (``localize`` raises); below :data:`GOOD_SIMILARITY` = 0.6 it is suspect (a warning). The score
   catches gross failures; it cannot tell a 5-10 mm error from an unusual brain.
5. a score below :data:`SETTLED_SIMILARITY`: the similarity and affine stages again from the next of
   :data:`START_SCALES`, then once more from the initial alignment (step 2) at the head's measured size
   (:func:`head_scale`; a head much larger than the template can leave the rigid stage 20-40 mm off). A later fit
   replaces the best so far if it settles (a scan that registers well at once pays nothing), or if it scores
   higher and, unlike that one, has the scale of the head (within :data:`HEAD_SCALE_TOLERANCE`): the template's
   brain fitted to the skull of a smaller head is larger than the head allows.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk

from bundle.localization.template import Template, load_template

__all__ = [
    "GOOD_SIMILARITY",
    "HEAD_SCALE_TOLERANCE",
    "MIN_SIMILARITY",
    "SETTLED_SIMILARITY",
    "START_SCALES",
    "Registration",
    "head_scale",
    "prepare_moving",
    "register",
    "similarity",
]

MIN_SIMILARITY = 0.4  # below: registration failed or the image is not a whole-head T1 (see module docstring)
GOOD_SIMILARITY = 0.6  # below: a suspect registration, worth a warning
# Starting scales of the similarity stage: the first, then the next while none scores SETTLED_SIMILARITY; a later
# start replaces the first only when it settles. A head smaller than the template started at scale 1 can fit the
# template's brain to its skull: of 12 synthetic heads at scale 0.78-0.86, 2 were refused and 3 more landed > 10 mm
# off from 1.0 alone, none with 0.85 (docs/localization/small_heads*.json). No start above 1: at scale 1.12-1.2 a
# start at 1.15 changed none of 8 registrations (docs/localization/large_heads*.json).
START_SCALES = (1.0, 0.85)
SETTLED_SIMILARITY = 0.8  # right registrations of real 1 mm heads score 0.73-0.93, of synthetic ones 0.93-0.99
# A fit's scale against the head's (head_scale): right fits of the real heads 0.94-1.00, of synthetic ones up to
# 1.07 (a field of view that cuts the head makes it look smaller); the template's brain fitted to the skull of ROBEX's
# reference head 1.13, its right fit 0.95 (studies/real_scans, docs/RESULTS.md "A fit the size of the head").
HEAD_SCALE_TOLERANCE = 1.08
SCORE_SIGMA_MM = 4.0
WORK_SPACING_MM = 2.0


@dataclass
class Registration:
    transform: sitk.AffineTransform  # template point (LPS mm) -> image point (LPS mm)
    similarity: float  # smoothed normalised correlation in the template brain mask, see MIN_SIMILARITY
    metric: float  # final Mattes MI value (negative; lower is better)
    seconds: dict[str, float] = field(default_factory=dict)  # by step
    head_scale: float = float("nan")  # the head's width and length over the template's (head_scale)

    @property
    def scale(self) -> float:
        """The transform's overall scale (cube root of its determinant): 1 = the template's size."""
        return float(abs(np.linalg.det(np.array(self.transform.GetMatrix()).reshape(3, 3))) ** (1 / 3))

    @property
    def fits_head(self) -> bool:
        """Whether the fit's scale is the head's, within :data:`HEAD_SCALE_TOLERANCE` (True if unmeasured)."""
        if not np.isfinite(self.head_scale) or self.head_scale <= 0:
            return True
        return abs(np.log(self.scale / self.head_scale)) <= np.log(HEAD_SCALE_TOLERANCE)

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


# The cranium's share of a head, from the vertex down: scans of real people often reach far below the
# template's field of view (neck, shoulders), which pulls a whole-foreground centroid 20-40 mm down (two
# real 1 mm heads with necks failed registration so, 2026-12-07, docs/RESULTS.md "Scans from other sites").
CRANIUM_MM = 150.0


def _foreground_points(image: sitk.Image) -> np.ndarray:
    """LPS mm of the Otsu foreground's voxels."""
    fg = sitk.OtsuThreshold(image, 0, 1)
    index = np.argwhere(sitk.GetArrayViewFromImage(fg) > 0)[:, ::-1]  # (x, y, z) voxel indices
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (index * np.array(image.GetSpacing())) @ direction.T


def _head_centre(image: sitk.Image) -> np.ndarray:
    """Centroid (LPS mm) of the Otsu foreground's top :data:`CRANIUM_MM` (from its most superior point): the
    head without the neck, whatever its intensity scale and background."""
    points = _foreground_points(image)
    if len(points) == 0:
        return np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    top = points[:, 2].max()  # LPS: +z is superior
    return points[points[:, 2] >= top - CRANIUM_MM].mean(axis=0)


def _width_and_length(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Left-right and front-back extents (0.5-99.5 percentiles) of the head above ``centre``: the cranium, without
    the neck, the chin or the nose, and without the vertex, which fields of view often cut."""
    above = points[points[:, 2] >= centre[2]]
    if len(above) < 100:
        return np.full(2, np.nan)
    lo, hi = np.percentile(above[:, :2], [0.5, 99.5], axis=0)
    return hi - lo


def head_scale(moving: sitk.Image, rigid: sitk.Euler3DTransform, template: Template) -> float:
    """The head's size over the template's: the geometric mean of its width and length over the template head's,
    both measured in the template's axes (``rigid`` maps template points to ``moving`` points) above the template
    brain's centre. NaN where the head shows too few voxels there."""
    centre = _mask_centre(template.brain)
    matrix = np.array(rigid.GetMatrix()).reshape(3, 3)
    c, t = np.array(rigid.GetCenter()), np.array(rigid.GetTranslation())
    points = (_foreground_points(moving) - c - t) @ matrix + c  # image -> template: R^T (p - c - t) + c
    ratio = _width_and_length(points, centre) / _width_and_length(_foreground_points(template.image), centre)
    return float(np.sqrt(np.prod(ratio))) if np.all(np.isfinite(ratio)) and np.all(ratio > 0) else float("nan")


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


def _continue(transform: sitk.Transform, previous: sitk.Transform) -> sitk.Transform:
    """``transform`` (more parameters) set to where ``previous`` ended."""
    transform.SetCenter(previous.GetCenter())
    transform.SetMatrix(previous.GetMatrix())
    transform.SetTranslation(previous.GetTranslation())
    return transform


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


_ONE_THREAD = threading.Lock()


@contextmanager
def _one_itk_thread():
    """ITK's filters and metrics on one thread meanwhile (one registration at a time in this process).

    ITK sums the metric over its threads in no fixed order: with 2 threads two registrations of one image differ
    (parameters at 1e-6, masks at a voxel), and ``ImageRegistrationMethod.SetNumberOfThreads(1)`` alone does not
    change that. On one thread the same image gives the same mask in every process (a cohort's workers, torchrun
    ranks, the Label app); on the 2-core CPU it was no slower (6.5 s against 6.7 s per head, 2026-12-07).
    """
    with _ONE_THREAD:
        before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        try:
            yield
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def register(image: sitk.Image, template: Template | None = None, seed: int = 1) -> Registration:
    """Affine transform taking template points (LPS mm) to ``image`` points, and its similarity score.

    Never raises for a poor match: check :attr:`Registration.ok` (``similarity >= MIN_SIMILARITY``). The same image
    gives the same transform in any process (ITK on one thread meanwhile: :func:`_one_itk_thread`).
    """
    with _one_itk_thread():
        return _register(image, template, seed)


def _register(image: sitk.Image, template: Template | None, seed: int) -> Registration:
    template = template or load_template()
    times: dict[str, float] = {}
    t = time.perf_counter()
    fixed = template.image
    mask = sitk.BinaryDilate(template.brain, [2, 2, 2])  # brain + 4 mm: its outline counts too
    moving = prepare_moving(image)
    centre = _mask_centre(template.brain)  # rotations pivot at the brain's centre
    times["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    initial = _initial(fixed, moving, mask, centre, seed)
    times["initialise"] = time.perf_counter() - t

    t = time.perf_counter()
    rigid = sitk.Euler3DTransform(initial)
    _optimise(fixed, moving, mask, rigid, [4, 2], [4.0, 2.0], 2.0, seed)
    times["rigid"] = time.perf_counter() - t

    first, *others = START_SCALES
    best = _scaled_affine(fixed, moving, mask, rigid, first, template, seed)
    # then the other starting scales from the rigid fit, and last the head's measured size (None) from the initial
    # alignment: a head much larger than the template can leave the rigid stage 20-40 mm off
    for start, scale in [*((rigid, s) for s in others), (initial, None)]:
        if best.similarity >= SETTLED_SIMILARITY:
            break
        if "head" not in times:
            t = time.perf_counter()
            best.head_scale = head_scale(moving, rigid, template)
            times["head"] = time.perf_counter() - t
        if scale is None and not np.isfinite(best.head_scale):
            continue
        scale = best.head_scale if scale is None else scale
        reg = replace(_scaled_affine(fixed, moving, mask, start, scale, template, seed), head_scale=best.head_scale)
        for step, seconds in reg.seconds.items():
            best.seconds[step] += seconds
        # a settled fit replaces the first, and so does a better-scoring one of the head's size where the first is not;
        # never merely the better-scoring: it can be another wrong fit that scores a little higher, above
        # GOOD_SIMILARITY (a large synthetic head: 0.58 at 15 mm off -> 0.63 at 38 mm off)
        resized = reg.fits_head and not best.fits_head and reg.similarity > best.similarity
        if reg.similarity >= SETTLED_SIMILARITY or resized:
            best = replace(reg, seconds=best.seconds)
    best.seconds = {**times, **best.seconds}
    return best


def _scaled_affine(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, rigid: sitk.Euler3DTransform, scale: float,
    template: Template, seed: int,
) -> Registration:  # fmt: skip
    """Similarity (one scale, starting at ``scale``) then affine stages from the rigid result, and the score."""
    # a head 10% larger than the template leaves the rigid stage a few mm off; a similarity stage (one
    # scale) gets the affine stage close enough not to slide into a local optimum (seen on 1 of 20 cases)
    times: dict[str, float] = {}
    t = time.perf_counter()
    scaled = _continue(sitk.Similarity3DTransform(), rigid)
    scaled.SetScale(scale)
    _optimise(fixed, moving, mask, scaled, [4, 2], [4.0, 2.0], 2.0, seed)
    times["similarity"] = time.perf_counter() - t

    t = time.perf_counter()
    affine = _continue(sitk.AffineTransform(3), scaled)
    metric = _optimise(fixed, moving, mask, affine, [2, 1], [2.0, 0.0], 1.0, seed)  # 2 mm steps overshoot
    times["affine"] = time.perf_counter() - t

    t = time.perf_counter()
    score = similarity(moving, affine, template)
    times["score"] = time.perf_counter() - t
    return Registration(affine, score, metric, times)
