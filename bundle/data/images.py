"""Images read once and checked: NIfTI by nibabel (:func:`read_nifti`, as MONAI's reader reads it), and
NRRD, MetaImage, NIfTI or a DICOM series folder by SimpleITK (:func:`read_image`).

The readers shared by training (:func:`bundle.data.datalist.check_cases`), batch inference and the
whole-head localiser, so all of them refuse the same inputs with the same one-line messages; each
returns the image in memory, so nothing needs to read the file again.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from bundle.errors import InputError

__all__ = ["dicom_series", "read_image", "read_nifti"]


def dicom_series(folder: Path, strict: bool = True) -> list[str]:
    """The files of the one DICOM series in ``folder`` (sorted by GDCM); ``[]`` if it holds none.

    With ``strict``, a folder holding several series raises :class:`InputError` naming them.
    """
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns about every folder without a series
    try:
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        return []
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not ids:
        return []
    if len(ids) > 1 and strict:
        raise InputError(
            f"{folder}: holds {len(ids)} DICOM series ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}); "
            "put each series in its own folder."
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def read_image(path: str | Path) -> sitk.Image:
    """A 3D scalar image from a file or a DICOM series folder.

    Raises :class:`InputError` naming ``path`` for anything else: missing, empty, unreadable, 2D, 4D,
    multi-channel, NaN or constant, a folder without (or with several) DICOM series.
    """
    path = Path(path)
    if path.is_dir():
        files = dicom_series(path)
        if not files:
            raise InputError(f"{path}: a folder without a DICOM series.")
    elif not path.is_file():
        raise InputError(f"{path}: no such file.")
    elif path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes).")
    try:
        image = sitk.ReadImage(files if path.is_dir() else str(path))
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        raise InputError(
            f"{path}: unreadable image ({(lines[-1] if lines else 'SimpleITK cannot read it')[:200]})."
        ) from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise InputError(f"{path}: size {image.GetSize()}; expected one 3D volume.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: {image.GetNumberOfComponentsPerPixel()} values per voxel; expected a scalar image.")
    data = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(data).all():
        raise InputError(f"{path}: {int((~np.isfinite(data)).sum())} of {data.size} voxels are NaN or infinite.")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{path}: every voxel has the value {float(data.min())}; there is no image to segment.")
    return image


def read_nifti(path: str | Path, error: type[InputError] = InputError) -> nib.Nifti1Image:
    """A NIfTI file as one 3D image in memory (voxels read in full), or ``error`` naming ``path``.

    A truncated ``.nii.gz`` often has a readable header and breaks only in its voxels, hence the full read.
    A 4D file with a single volume (``[X, Y, Z, 1]``) becomes 3D. Refused: empty, unreadable, not one 3D
    volume (or a single slice), non-numeric voxels, NaN or infinite voxels.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes).")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for broken files; all mean "unreadable"
        first = str(e).splitlines()[0] if str(e) else ""
        raise error(f"{path}: unreadable NIfTI ({type(e).__name__}: {first}).") from None
    shape = data.shape
    if len(shape) == 4 and shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        kind = f"{data.ndim}D" if data.ndim in (2, 4) else f"shape {shape}"
        raise error(f"{path}: is {kind} (shape {shape}); expected one 3D volume.")
    if min(data.shape) < 2:
        raise error(f"{path}: shape {shape} is a single slice; expected a 3D volume.")
    if not np.issubdtype(data.dtype, np.number):
        raise error(f"{path}: voxel type {data.dtype} is not numeric.")
    if not np.isfinite(data).all():
        raise error(f"{path}: {int((~np.isfinite(data)).sum())} of {data.size} voxels are NaN or infinite.")
    header = img.header.copy()
    header.set_data_shape(data.shape)
    return type(img)(data, img.affine, header)  # Nifti1Image or Nifti2Image, as the file was
