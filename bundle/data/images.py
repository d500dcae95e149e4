"""Any scanner image read by SimpleITK and checked: NRRD, MetaImage, NIfTI, or a DICOM series folder.

One reader for batch inference (formats other than NIfTI, which MONAI's nibabel reader handles) and for
the whole-head localiser, so both refuse the same inputs with the same one-line messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bundle.errors import InputError

__all__ = ["dicom_series", "read_image"]


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
