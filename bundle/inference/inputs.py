"""What batch inference reads: the images of a folder, each checked before the network sees it.

A folder is either a plain folder of images or a Decathlon task folder, whose ``imagesTs/`` (else
``imagesTr/``) is used. Images are NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage
(``.mha``, ``.mhd``), or a DICOM series: a sub-folder holding one series (a folder with several series
is one clear error: give each its own folder). Problems with one image never stop the others: they come
back as one-line messages that name the file.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from bundle.data.datalist import NIFTI_SUFFIXES, is_nifti
from bundle.data.images import dicom_series, read_nifti
from bundle.data.images import read_image as read_sitk
from bundle.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_EXTENT_MM",
    "MIN_VOXELS",
    "dicom_series",
    "find_images",
    "is_image",
    "load_image",
    "output_name",
    "read_sitk",
]

IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".nhdr", ".mha", ".mhd")

# A hippocampus is about 40 x 15 x 15 mm: an image smaller than this on any axis cannot hold one.
MIN_EXTENT_MM = 10.0
MIN_VOXELS = 4


def is_image(path: Path) -> bool:
    """An image file of a supported format (by suffix), or a folder holding DICOM files."""
    if path.is_file():
        return path.name.lower().endswith(IMAGE_SUFFIXES)
    return path.is_dir() and bool(dicom_series(path, strict=False))


def find_images(input_dir: str | Path) -> tuple[list[Path], list[str]]:
    """The images to segment in ``input_dir``, and a note for every other (non-hidden) file there.

    Raises :class:`InputError` if the folder does not exist or holds no image.
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
    if dicom_series(root, strict=False):
        return [root], []  # the folder is itself one DICOM series
    images, skipped = [], []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue  # hidden files (macOS ._ companions, .DS_Store) are never images
        if p.name.lower().endswith(".raw") or p.name.lower().endswith(".zraw"):
            continue  # the data halves of .mhd/.nhdr headers
        if is_image(p):
            images.append(p)
        elif p.is_file() or p.is_dir():
            skipped.append(f"{p}: not an image (NIfTI, NRRD, MHA/MHD or a DICOM series folder); skipped.")
    if not images:
        raise InputError(f"{root}: holds no images (NIfTI .nii/.nii.gz, NRRD, MHA/MHD, or DICOM series folders).")
    return images, skipped


def output_name(image: Path) -> str:
    """The mask's file name: the image's name (a DICOM folder's name), always as ``.nii.gz``."""
    for suffix in IMAGE_SUFFIXES:
        if image.name.lower().endswith(suffix):
            return image.name[: -len(suffix)] + ".nii.gz"
    return image.name + ".nii.gz"


def load_image(path: str | Path) -> nib.Nifti1Image | sitk.Image:
    """The image at ``path`` read once and checked, in memory: nibabel's for NIfTI (as MONAI reads it),
    SimpleITK's for the other formats and DICOM series folders.

    Raises :class:`InputError` naming ``path`` unless it is a readable, finite 3D volume that can hold a
    hippocampus (the reader's checks in :mod:`bundle.data.images`, then size and a constant image here).
    """
    path = Path(path)
    if not is_nifti(path):
        image = read_sitk(path)
        _check_size(path, np.array(image.GetSize()), np.array(image.GetSpacing()))
        return image
    image = read_nifti(path)
    data = np.asanyarray(image.dataobj)
    _check_size(
        path, np.asarray(data.shape), np.linalg.norm(np.asarray(image.affine, dtype=np.float64)[:3, :3], axis=0)
    )
    if float(data.max()) == float(data.min()):
        raise InputError(f"{path}: every voxel has the value {float(data.min())}; there is no image to segment.")
    return image


def _check_size(path: Path, size: np.ndarray, spacing: np.ndarray) -> None:
    extent = size * spacing
    if size.min() < MIN_VOXELS or extent.min() < MIN_EXTENT_MM:
        raise InputError(
            f"{path}: {'x'.join(map(str, size))} voxels ({' x '.join(f'{e:.1f}' for e in extent)} mm) is too small "
            f"to hold a hippocampus (at least {MIN_VOXELS} voxels and {MIN_EXTENT_MM:.0f} mm on every axis)."
        )
