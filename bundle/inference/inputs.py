"""What batch inference reads: the images of a folder, each checked before the network sees it.

A folder is either a plain folder of ``.nii``/``.nii.gz`` files or a Decathlon task folder, whose
``imagesTs/`` (else ``imagesTr/``) is used. Problems with one file never stop the others: they come
back as one-line messages that name the file.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bundle.data.datalist import NIFTI_SUFFIXES, is_nifti
from bundle.errors import InputError

__all__ = ["MIN_EXTENT_MM", "MIN_VOXELS", "check_image", "find_images", "output_name"]

# A hippocampus is about 40 x 15 x 15 mm: an image smaller than this on any axis cannot hold one.
MIN_EXTENT_MM = 10.0
MIN_VOXELS = 4


def find_images(input_dir: str | Path) -> tuple[list[Path], list[str]]:
    """The NIfTI images to segment in ``input_dir``, and a note for every other (non-hidden) file there.

    Raises :class:`InputError` if the folder does not exist or holds no NIfTI image.
    """
    root = Path(input_dir).expanduser()
    if not root.exists():
        raise InputError(f"{root}: input folder does not exist.")
    if not root.is_dir():
        raise InputError(f"{root}: is not a folder (pass the folder that holds the images).")
    for sub in ("imagesTs", "imagesTr"):
        if (root / sub).is_dir() and any(is_nifti(p) for p in (root / sub).iterdir()):
            root = root / sub
            break
    images, skipped = [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue  # hidden files (macOS ._ companions, .DS_Store) are never images
        if is_nifti(p):
            images.append(p)
        elif p.is_file():
            skipped.append(f"{p}: not a NIfTI image (.nii or .nii.gz); skipped.")
    if not images:
        raise InputError(f"{root}: holds no NIfTI images (.nii or .nii.gz).")
    return images, skipped


def output_name(image: Path) -> str:
    """The mask's file name: the image's name, always as ``.nii.gz``."""
    for suffix in NIFTI_SUFFIXES:
        if image.name.endswith(suffix):
            return image.name[: -len(suffix)] + ".nii.gz"
    return image.name + ".nii.gz"


def check_image(path: str | Path) -> None:
    """Raise :class:`InputError` naming ``path`` unless it is a readable, finite, 3D NIfTI volume.

    A 4D file with a single volume (``[X, Y, Z, 1]``) is accepted. The voxel data is read in full:
    a truncated ``.nii.gz`` often has a readable header and breaks only there.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes).")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for broken files; all mean "unreadable"
        raise InputError(
            f"{path}: unreadable NIfTI ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
        ) from None
    shape = data.shape
    if len(shape) == 4 and shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        kind = f"{data.ndim}D" if data.ndim in (2, 4) else f"shape {shape}"
        raise InputError(f"{path}: is {kind} (shape {shape}); expected one 3D volume.")
    if min(data.shape) < 2:
        raise InputError(f"{path}: shape {shape} is a single slice; expected a 3D volume.")
    extent = np.asarray(data.shape) * np.linalg.norm(np.asarray(img.affine, dtype=np.float64)[:3, :3], axis=0)
    if min(data.shape) < MIN_VOXELS or extent.min() < MIN_EXTENT_MM:
        size = " x ".join(f"{e:.1f}" for e in extent)
        raise InputError(
            f"{path}: {'x'.join(map(str, data.shape))} voxels ({size} mm) is too small to hold a hippocampus "
            f"(at least {MIN_VOXELS} voxels and {MIN_EXTENT_MM:.0f} mm on every axis)."
        )
    if not np.issubdtype(data.dtype, np.number):
        raise InputError(f"{path}: voxel type {data.dtype} is not numeric.")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {bad} of {data.size} voxels are NaN or infinite.")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{path}: every voxel has the value {float(data.min())}; there is no image to segment.")
