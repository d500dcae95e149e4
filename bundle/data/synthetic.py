"""Synthetic hippocampus-like MRI volumes: the bundle's embedded default dataset.

Each case is a curved tube along the anterior-posterior axis with a thick head (label 1, anterior)
tapering into a thin body (label 2, posterior), set in grey/white-matter-like tissue next to a dark
ventricle-like cavity, with a smooth bias field, noise, random size, intensity scale and dtype, as in
Task04. They are written in the Decathlon layout (``dataset.json``, ``imagesTr``, ``labelsTr``) so the
real data path reads them. They teach the pipeline, not the anatomy: never report Dice on them as
hippocampus results.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["synthesize_case", "write_synthetic_dataset"]

_GENERATOR_VERSION = 1


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field: a coarse random grid upsampled trilinearly."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, cells, cells, cells)).astype(np.float32))
    field = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)
    return field[0, 0].numpy()


def synthesize_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image/label pair in RAS voxel order (axis 0: R, 1: A, 2: S), 1 mm voxels.

    Returns:
        image ``[X, Y, Z]`` float32 or uint8 with a random intensity maximum in [1e2, 1e6];
        label ``[X, Y, Z]`` uint8 with 0 background, 1 anterior (head), 2 posterior (body).
    """
    shape = (int(rng.integers(31, 44)), int(rng.integers(40, 60)), int(rng.integers(28, 48)))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"), axis=-1)

    # Centre line from the anterior head (t=0) to the posterior tail (t=1), bending medially and up.
    length = shape[1] * rng.uniform(0.55, 0.75)
    t = np.linspace(0.0, 1.0, 80, dtype=np.float32)
    y0 = shape[1] / 2 + length / 2 + rng.uniform(-2, 2)
    centre = np.stack(
        [
            shape[0] / 2 + rng.uniform(-3, 3) + rng.uniform(2, 5) * np.sin(np.pi * t) * rng.choice([-1, 1]),
            y0 - length * t,
            shape[2] / 2 + rng.uniform(-3, 3) + rng.uniform(2, 6) * (t - 0.5),
        ],
        axis=-1,
    )
    head_r, tail_r = rng.uniform(4.5, 6.5), rng.uniform(3.0, 4.0)
    radius = tail_r + (head_r - tail_r) * np.exp(-(((t - 0.15) / 0.35) ** 2))

    dist = np.linalg.norm(grid[..., None, :] - centre, axis=-1)  # [X, Y, Z, 80]
    nearest = dist.argmin(-1)
    rel = np.take_along_axis(dist, nearest[..., None], -1)[..., 0] / radius[nearest]
    rel = rel + 0.15 * _smooth_field(rng, shape, 6)  # irregular boundary
    inside = rel < 1.0
    head = t[nearest] < rng.uniform(0.35, 0.45)
    label = np.where(inside, np.where(head, 1, 2), 0).astype(np.uint8)

    # Tissue: white-matter-like background with grey-matter patches, a dark cavity above the head.
    tissue = 0.70 + 0.08 * _smooth_field(rng, shape, 5)
    tissue = np.where(_smooth_field(rng, shape, 7) > 0.6, 0.52, tissue)
    cavity_c = centre[10] + np.array([rng.uniform(-4, 4), 0.0, head_r + rng.uniform(1, 3)])
    cavity = np.linalg.norm((grid - cavity_c) / np.array([4.0, 9.0, 2.5]), axis=-1) < 1.0
    tissue = np.where(cavity & ~inside, 0.15, tissue)
    tissue = np.where(inside, 0.50 + 0.03 * _smooth_field(rng, shape, 4), tissue)

    bias = np.exp(0.15 * _smooth_field(rng, shape, 3))
    noisy = tissue * bias + rng.normal(0.0, rng.uniform(0.02, 0.06), shape)
    image = np.clip(noisy, 0.0, None) * 10 ** rng.uniform(2, 6)
    if rng.random() < 0.4:  # Task04 ships some images as uint8
        image = np.round(255 * image / image.max()).astype(np.uint8)
    return image.astype(image.dtype if image.dtype == np.uint8 else np.float32), label


def write_synthetic_dataset(out_dir: str | Path, num_cases: int = 24, seed: int = 0) -> Path:
    """Write ``num_cases`` synthetic cases in the Decathlon layout under ``out_dir`` and return it.

    Reuses an existing folder written with the same ``num_cases``, ``seed`` and generator version.
    """
    out = Path(out_dir)
    manifest = out / "dataset.json"
    stamp = {"num_cases": int(num_cases), "seed": int(seed), "version": _GENERATOR_VERSION}
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("synthetic") == stamp:
                return out
        except json.JSONDecodeError:
            pass
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])  # RAS, 1 mm, like Task04
    training = []
    for i in range(num_cases):
        image, label = synthesize_case(rng)
        name = f"synthetic_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), out / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, affine), out / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    manifest.write_text(
        json.dumps(
            {
                "name": "SyntheticHippocampus",
                "description": "Synthetic hippocampus-like volumes (bundle.data.synthetic)",
                "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
                "modality": {"0": "MRI"},
                "numTraining": num_cases,
                "training": training,
                "synthetic": stamp,
            },
            indent=2,
        )
    )
    return out
