"""Datalists: which image/label files a run uses, checked before any training starts.

Three sources, one output (a list of ``{"image": path, "label": path}`` dicts):

* a Decathlon-layout folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``), such as Task04_Hippocampus;
* a plain folder of NIfTI pairs: ``images/`` + ``labels/`` (or ``imagesTr/`` + ``labelsTr/``) matched by
  file name, or a flat folder where ``case.nii.gz`` pairs with ``case_label.nii.gz`` / ``case_seg.nii.gz``;
* no folder at all (``dataset_dir`` null): the embedded synthetic default (:mod:`bundle.data.synthetic`).

Every problem is reported with the file it concerns, so a user can fix their data in one pass.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import partition_dataset

from bundle.data.images import read_nifti
from bundle.data.synthetic import write_synthetic_dataset
from bundle.errors import InputError
from bundle.options import as_bool

__all__ = [
    "NIFTI_SUFFIXES",
    "DatasetError",
    "check_cases",
    "download_task04",
    "find_pairs",
    "is_nifti",
    "prepare_datalists",
    "split_datalist",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# what evaluation also reads (SimpleITK); training stays on NIfTI, which its checks read with nibabel
SCANNER_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".nhdr", ".mha", ".mhd")
_LABEL_SUFFIXES = ("_label", "_seg", "_mask")
_PAIRED_FOLDERS = (("imagesTr", "labelsTr"), ("images", "labels"))


class DatasetError(InputError):
    """The dataset cannot be used as given; the message names the file(s) and the problem."""


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def _is_scanner_image(path: Path) -> bool:
    """Any image file evaluation reads, or a folder (a DICOM series: checked when it is read)."""
    if path.name.startswith("."):
        return False
    return path.is_dir() or (path.is_file() and path.name.lower().endswith(SCANNER_SUFFIXES))


def _stem(path: Path) -> str:
    for suffix in SCANNER_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name if path.is_dir() else path.stem


def _from_decathlon(root: Path) -> list[dict]:
    manifest = root / "dataset.json"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["training"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetError(f"{manifest}: not a Decathlon dataset.json with a 'training' list ({e}).") from e
    pairs = []
    for entry in entries:
        image, label = root / entry["image"], root / entry["label"]
        if not image.is_file():
            raise DatasetError(f"{image}: listed in {manifest} but missing.")
        if not label.is_file():
            raise DatasetError(f"{image}: has no label ({label} is missing).")
        pairs.append({"image": str(image.resolve()), "label": str(label.resolve())})
    return pairs


def _from_folders(images_dir: Path, labels_dir: Path, accept=is_nifti) -> list[dict]:
    labels = {_stem(p): p for p in labels_dir.iterdir() if accept(p) and p.is_file()}
    pairs = []
    for image in sorted(p for p in images_dir.iterdir() if accept(p)):
        label = labels.get(_stem(image))
        if label is None:
            raise DatasetError(f"{image}: has no label (expected {labels_dir / image.name}).")
        pairs.append({"image": str(image.resolve()), "label": str(label.resolve())})
    return pairs


def _from_flat(root: Path, accept=is_nifti) -> list[dict]:
    files = {_stem(p): p for p in root.iterdir() if accept(p) and p.is_file()}
    label_stems = {s for s in files if s.endswith(_LABEL_SUFFIXES)}
    pairs = []
    for stem in sorted(set(files) - label_stems):
        label = next((files[stem + sfx] for sfx in _LABEL_SUFFIXES if stem + sfx in files), None)
        if label is None:
            raise DatasetError(f"{files[stem]}: has no label (expected {stem}_label.nii.gz beside it).")
        pairs.append({"image": str(files[stem].resolve()), "label": str(label.resolve())})
    return pairs


def find_pairs(dataset_dir: str | Path, scanner_formats: bool = False) -> list[dict]:
    """List the image/label pairs of a Decathlon or plain folder (see module docstring).

    ``scanner_formats``: also NRRD, MHA/MHD files and DICOM series folders (evaluation; training reads NIfTI).
    """
    accept = _is_scanner_image if scanner_formats else is_nifti
    root = Path(dataset_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset_dir {root}: does not exist.")
    if not root.is_dir():
        raise DatasetError(f"dataset_dir {root}: is not a folder.")
    if (root / "dataset.json").is_file():
        pairs = _from_decathlon(root)
    else:
        folders = next(((root / i, root / l) for i, l in _PAIRED_FOLDERS if (root / i).is_dir()), None)
        if folders is not None and not folders[1].is_dir():
            raise DatasetError(f"dataset_dir {root}: has {folders[0].name}/ but no {folders[1]}/ beside it.")
        pairs = _from_folders(*folders, accept=accept) if folders else _from_flat(root, accept=accept)
    if not pairs:
        raise DatasetError(f"dataset_dir {root}: holds no NIfTI image/label pairs (.nii or .nii.gz).")
    return pairs


AFFINE_TOLERANCE_MM = 0.1  # image and label grids further apart than this (or a tenth of a voxel) are refused


def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole voxel array and the affine: a truncated .nii.gz often has a readable header but no data."""
    try:
        img = nib.load(path)
        return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises many types for broken files; all mean "unreadable"
        raise DatasetError(f"{path}: unreadable NIfTI ({type(e).__name__}: {e}).") from e


def grid_offset_mm(affine_a: np.ndarray, affine_b: np.ndarray, shape: tuple[int, ...]) -> float:
    """How far apart (mm) the same voxel lies in two grids of ``shape``: the largest distance over the
    grid's corners, so a shift, a rotation and a wrong spacing all count."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    return float(np.linalg.norm((affine_a @ corners - affine_b @ corners)[:3], axis=0).max())


def check_cases(pairs: list[dict], num_classes: int = 3) -> None:
    """Read every pair and raise :class:`DatasetError` naming each file that cannot be trained on.

    Checks: the image passes :func:`bundle.data.images.read_nifti` (the reader inference uses: readable,
    3D or 4D with one channel, numeric, finite); the label is a readable NIfTI with the image's shape, lies
    on the same grid (its affine places no voxel more than a tenth of a voxel, and at most
    ``AFFINE_TOLERANCE_MM``, from the image's), and holds integers in ``[0, num_classes)``.
    """
    problems = []
    for pair in pairs:
        try:
            nifti = read_nifti(pair["image"], DatasetError)  # readable, one 3D volume, finite: as inference checks
            image, image_affine = np.asanyarray(nifti.dataobj), np.asarray(nifti.affine, dtype=np.float64)
            label, label_affine = _read(pair["label"])
            if label.shape[:3] != image.shape or label.ndim not in (3, 4):
                raise DatasetError(
                    f"{pair['label']}: shape {label.shape} does not match its image {pair['image']} {image.shape}."
                )
            offset = grid_offset_mm(image_affine, label_affine, image.shape)
            spacing = float(np.linalg.norm(image_affine[:3, :3], axis=0).min())
            tolerance = min(AFFINE_TOLERANCE_MM, 0.1 * spacing)
            if offset > tolerance:
                raise DatasetError(
                    f"{pair['label']}: its affine places voxels up to {offset:.2f} mm from where its image "
                    f"{pair['image']} has them (tolerance {tolerance:.2f} mm): the label does not lie on the image."
                )
            values = np.unique(label)
            if not np.all((values == np.round(values)) & (values >= 0) & (values < num_classes)):
                raise DatasetError(
                    f"{pair['label']}: label values {values[:8].tolist()} are not integers in [0, {num_classes})."
                )
        except DatasetError as e:
            problems.append(str(e))
    if problems:
        for p in problems:
            logger.error(p)
        extra = f" (and {len(problems) - 1} more, listed in the log)" if len(problems) > 1 else ""
        raise DatasetError(problems[0] + extra)


def split_datalist(pairs: list[dict], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic shuffled split: the same cases and seed always give the same validation set."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1) but is {val_fraction!r}.")
    if len(pairs) < 2:
        raise DatasetError(f"need at least 2 cases to split into train and validation, got {len(pairs)}.")
    ordered = sorted(pairs, key=lambda p: p["image"])  # independent of directory listing order
    train, val = partition_dataset(ordered, ratios=[1.0 - val_fraction, val_fraction], shuffle=True, seed=seed)
    if not val:
        train, val = train[:-1], train[-1:]
    return list(train), list(val)


def download_task04(root_dir: str | Path) -> Path:
    """Download and extract MSD Task04_Hippocampus with MONAI (needs internet); return its folder."""
    from monai.apps import DecathlonDataset, download_and_extract

    root = Path(root_dir)
    target = root / "Task04_Hippocampus"
    if not (target / "dataset.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract(
            url=DecathlonDataset.resource["Task04_Hippocampus"],
            filepath=root / "Task04_Hippocampus.tar",
            output_dir=str(root),
            hash_val=DecathlonDataset.md5["Task04_Hippocampus"],
            hash_type="md5",
        )
    return target


def prepare_datalists(
    dataset_dir: str | None,
    val_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
    synthetic_dir: str = "runs/synthetic_data",
    synthetic_cases: int = 24,
    num_classes: int = 3,
) -> dict[str, list[dict]]:
    """Resolve the data source, check every case, and split it.

    Args:
        dataset_dir: a Decathlon or plain folder; ``None`` or ``""`` selects the synthetic default.
        val_fraction: fraction of cases held out for validation.
        seed: split seed (also seeds the synthetic generator).
        download: fetch Task04 with MONAI into ``dataset_dir`` first (needs internet).
        synthetic_dir, synthetic_cases: where and how many synthetic cases to write.

    Returns:
        ``{"train": [...], "val": [...]}``.
    """
    if as_bool(download, "download"):
        if not dataset_dir:
            raise ValueError("download=true needs a dataset_dir to download into.")
        dataset_dir = str(download_task04(dataset_dir))
    if not dataset_dir:
        dataset_dir = str(write_synthetic_dataset(synthetic_dir, synthetic_cases, seed))
        logger.info(f"dataset_dir not set: using {synthetic_cases} synthetic cases in {dataset_dir}")
    pairs = find_pairs(dataset_dir)
    check_cases(pairs, num_classes)
    train, val = split_datalist(pairs, val_fraction, seed)
    logger.info(f"{dataset_dir}: {len(train)} training and {len(val)} validation cases (split seed {seed})")
    return {"train": train, "val": val}
