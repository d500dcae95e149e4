"""Batch inference: a folder of NIfTI images -> one uint8 mask per image, in the image's own geometry.

The per-image pipeline is MONAI's: the training pre-processing (RAS, 1 mm, intensity scaling), the
sliding-window inferer, softmax/argmax, ``Invertd`` back to the input's shape, affine and orientation,
and ``NibabelWriter``. The loop over images is ours because MONAI's evaluator stops at the first bad
file, while here one bad file must only cost its own mask.

Next to the masks, ``volumes.csv`` holds one row per image: anterior (head) and posterior (body and
tail) hippocampus volumes in mm^3, the time taken, the estimated energy of that inference for every
model (:meth:`bundle.spiking.activity.ActivityMonitor.totals`: what the network computed on the windows
the inferer ran, ``windows`` of shape ``window``), the ANN's energy on the same windows and the ratio of
the two, for SNN models the timesteps run per window and the mean firing rate, and the SHA-256 of the
input image, of the mask and of the model.
A rerun keeps an existing mask only when all three still match: a file that merely has a mask's name,
a mask of an earlier version of the image, of another model, or edited since, is never taken as done.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai import transforms as mt
from monai.data import MetaTensor, NibabelWriter
from monai.inferers import Inferer
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bundle.data.transforms import preprocessing
from bundle.errors import InputError
from bundle.inference.inputs import dicom_series, find_images, load_image, output_name
from bundle.inference.qc import save_qc
from bundle.localization import CROP_SIZE, GOOD_SIMILARITY, SIDES, field_of_view, from_nifti, localize, to_nifti
from bundle.options import as_bool, one_of
from bundle.spiking.activity import ActivityMonitor
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = [
    "ACTIVITY_FIELDS",
    "CSV_FIELDS",
    "LABELS",
    "LOCALIZE_MODES",
    "Report",
    "Segmentation",
    "VolumeSegmenter",
    "activity_text",
    "adaptive_settings",
    "describe",
    "energy_note",
    "file_sha256",
    "finish",
    "metatensor",
    "model_fingerprint",
    "segment_folder",
    "voxel_volume",
    "write_mask",
    "write_qc",
]

logger = logging.getLogger("bundle.inference")

LABELS = {1: "anterior", 2: "posterior"}
CSV_FIELDS = [
    "case", "image", "mask", "status", "message", "flag", "anterior_mm3", "posterior_mm3", "total_ml",
    "left_anterior_mm3", "left_posterior_mm3", "left_ml", "right_anterior_mm3", "right_posterior_mm3", "right_ml",
    "localized", "similarity", "seconds", "read_s", "register_s", "network_s",
    "model", "timesteps", "mean_timesteps", "mean_firing_rate", "energy_uj", "ann_energy_uj", "energy_vs_ann",
    "windows", "window", "qc", "image_sha256", "mask_sha256", "model_sha256",
]  # fmt: skip
# the energy account of every model (see ActivityMonitor.totals); SNNs add mean_timesteps, mean_firing_rate
ACTIVITY_FIELDS = (
    "windows",
    "window",
    "mean_timesteps",
    "mean_firing_rate",
    "energy_uj",
    "ann_energy_uj",
    "energy_vs_ann",
)


def record_failure(row: dict, path: str | Path, error: Exception) -> None:
    """Mark one image's row as failed with a one-line message naming the file, and log it."""
    if isinstance(error, InputError):
        message = str(error)  # already names the file
    else:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        message = f"{path}: {type(error).__name__}: {first}"
    row.update(status="failed", message=message)
    logger.error(f"error: {message}")


def voxel_volume(affine: np.ndarray | torch.Tensor) -> float:
    """mm^3 per voxel from a NIfTI affine."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return float(abs(np.linalg.det(a)))


LOCALIZE_MODES = ("auto", "on", "off")
# Plausible adult hippocampus (head + body) per side, mL: Task04's labels span 2.4-4.4 mL; adult
# whole-hippocampus volumes in the literature ~2.5-4.5 mL. Outside this range a mask is likely wrong.
PLAUSIBLE_ML = (1.5, 6.0)
# |left - right| / mean: right is usually 2-5 % larger (SD ~5-10 %); beyond 25 % is rare in adults.
MAX_ASYMMETRY = 0.25


@dataclass
class Segmentation:
    """What segmenting one image gives: the mask in the image's own grid, and what to report about it."""

    mask: MetaTensor  # [1, *shape] uint8, the input's affine
    activity: dict  # energy account, all windows of all crops: ACTIVITY_FIELDS (see ActivityMonitor.totals)
    localized: bool = False
    reason: str = ""  # why localised or not (the auto decision)
    similarity: float | None = None  # registration score (localised only)
    sides: dict = field(default_factory=dict)  # {"left"/"right": {"anterior_mm3", "posterior_mm3"}}
    seconds: dict = field(default_factory=dict)  # read, register, network, ...
    views: dict = field(default_factory=dict)  # for the QC picture: {name: (image, mask)} RAS arrays
    head: tuple | None = None  # for the QC picture: (head RAS array, {side: (low, high) voxel corners})

    def flags(self) -> list[str]:
        """Reasons to look at this mask before trusting its volumes (empty: nothing looks wrong)."""
        flags = []
        if self.similarity is not None and self.similarity < GOOD_SIMILARITY:
            flags.append(f"registration poor (similarity {self.similarity:.2f} < {GOOD_SIMILARITY:.2f})")
        volumes = {s: (v["anterior_mm3"] + v["posterior_mm3"]) / 1000 for s, v in self.sides.items()}
        if not volumes:
            voxel = voxel_volume(self.mask.affine)
            volumes = {"hippocampus": float((self.mask > 0).sum()) * voxel / 1000}
        lo, hi = PLAUSIBLE_ML
        for side, ml in volumes.items():
            if not lo <= ml <= hi:
                flags.append(f"{side} volume {ml:.2f} mL outside {lo}-{hi} mL")
        if len(self.sides) == 2 and min(volumes.values()) > 0:
            left, right = volumes["left"], volumes["right"]
            asym = abs(left - right) / ((left + right) / 2)
            if asym > MAX_ASYMMETRY:
                flags.append(f"left/right asymmetry {asym:.0%} > {MAX_ASYMMETRY:.0%}")
        return flags


def metatensor(image: nib.Nifti1Image, name: str) -> MetaTensor:
    """A NIfTI image in memory as MONAI's reader would have loaded it (channel first, float32)."""
    arr = np.asanyarray(image.dataobj).astype(np.float32)
    affine = torch.as_tensor(np.asarray(image.affine, dtype=np.float64))
    meta = {"original_affine": affine.clone(), "spatial_shape": np.array(arr.shape), "filename_or_obj": name,
            "original_channel_dim": "no_channel", "space": "RAS"}  # fmt: skip
    return MetaTensor(torch.from_numpy(arr[None]), affine=affine, meta=meta)


def _nifti_field_of_view(image: nib.Nifti1Image):
    """The ``auto`` decision for a NIfTI image from nibabel's header (as MONAI reads it; ITK refuses some
    headers nibabel accepts, e.g. slightly non-orthonormal direction cosines)."""
    header = image.header
    extent = np.asarray(header.get_data_shape()[:3], dtype=np.float64) * np.asarray(header.get_zooms()[:3])
    probe = sitk.Image([2, 2, 2], sitk.sitkUInt8)  # only its size x spacing matters to field_of_view
    probe.SetSpacing((extent / 2).tolist())
    return field_of_view(probe)


class VolumeSegmenter:
    """One image (a file or a DICOM series folder) -> :class:`Segmentation`, mask in the file's geometry.

    ``localize``: ``auto`` (default: whole heads are localised, crops are not, decided per image from
    the field of view), ``on`` or ``off``. A localised image is registered to the MNI template, each
    hippocampus is cut out as a Task04-like crop (RAS, 1 mm), segmented, and pasted back.
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: Inferer,
        device: torch.device | str = "cpu",
        amp: bool = False,
        localize: str = "auto",
        qc: bool = False,
    ):
        self.network, self.inferer, self.device = network.eval(), inferer, torch.device(device)
        # mixed precision: float16 on CUDA, bfloat16 on CPU; SNN membranes stay float32 (see neurons)
        self.amp = {"device_type": self.device.type, "dtype": torch.float16 if self.device.type == "cuda" else torch.bfloat16,
                    "enabled": as_bool(amp, "amp")}  # fmt: skip
        self.localize = one_of(localize, LOCALIZE_MODES, "localize")
        self.qc = as_bool(qc, "qc")
        self._lock = threading.Lock()  # the SNN's membranes and the activity hooks are per-call state
        # the pipeline's pre-processing without its LoadImaged: every image is read once, by load_image
        self.pre = mt.Compose(preprocessing(["image"])[1:])
        self.post = mt.Compose(
            [
                mt.Activationsd(keys="pred", softmax=True),
                mt.AsDiscreted(keys="pred", argmax=True),
                mt.Invertd(keys="pred", transform=self.pre, orig_keys="image", nearest_interp=True, to_tensor=True),
            ]
        )

    def __call__(
        self, path: str | Path, image: nib.Nifti1Image | sitk.Image | None = None, read_s: float = 0.0
    ) -> Segmentation:
        """Segment the image at ``path``; ``image``: that image already read by :func:`load_image` (in
        ``read_s`` seconds), so that nothing reads the file twice."""
        if image is None:
            t = time.perf_counter()
            image = load_image(path)
            read_s = time.perf_counter() - t
        with self._lock:
            return self._segment(Path(path), image, read_s)

    def _segment(self, path: Path, image: nib.Nifti1Image | sitk.Image, read_s: float) -> Segmentation:
        t = time.perf_counter()
        nifti = isinstance(image, nib.Nifti1Image)
        fov = _nifti_field_of_view(image) if nifti else field_of_view(image)
        whole = fov.localize if self.localize == "auto" else self.localize == "on"
        reason = fov.reason if self.localize == "auto" else f"localize {self.localize} ({fov.reason.split(':')[0]})"
        logger.info(f"{path.name}: {reason}")
        monitor = ActivityMonitor(self.network)  # every model, counted the same way on the windows it runs
        with monitor:
            if whole:
                seg = self._localized(path, from_nifti(image) if nifti else image, reason, read_s)
            else:
                data = self.pre({"image": metatensor(image if nifti else to_nifti(image), str(path))})
                seconds = {"read": read_s + time.perf_counter() - t}  # reading and pre-processing
                t = time.perf_counter()
                mask, ras_label = self._infer(data, self.post)
                seconds["network"] = time.perf_counter() - t
                seg = Segmentation(mask, {}, False, reason, seconds=seconds)
                seg.views = {"image": (data["image"][0].numpy(), ras_label)} if self.qc else {}
        if monitor.windows:
            totals = monitor.totals()
            seg.activity = {k: totals[k] for k in ACTIVITY_FIELDS if k in totals}
        return seg

    def _infer(self, data: dict, post: mt.Compose) -> tuple[MetaTensor, np.ndarray]:
        """The network through the inferer on one pre-processed image: the label map in the input's grid,
        and in the pre-processed (RAS, 1 mm) grid."""
        x = data["image"].unsqueeze(0).to(self.device)
        with torch.no_grad(), torch.autocast(**self.amp):
            pred = self.inferer(x, self.network)
        data["pred"] = pred[0].float().cpu()
        ras_label = data["pred"].argmax(0).numpy().astype(np.uint8)
        mask = post(data)["pred"]
        return (mask.to(torch.uint8) if isinstance(mask, MetaTensor) else MetaTensor(mask.to(torch.uint8))), ras_label

    def _localized(self, path: Path, image: sitk.Image, reason: str, read_s: float) -> Segmentation:
        loc = localize(image, name=str(path))
        seconds = {"read": read_s, **{k: v for k, v in loc.seconds.items() if k != "read"}}
        t = time.perf_counter()
        labels, sides, views = {}, {}, {}
        for side in SIDES:
            crop = to_nifti(loc.crop(side))
            data = self.pre({"image": metatensor(crop, f"{path}:{side}")})
            label, _ = self._infer(data, self.post)
            arr = np.asarray(label[0]).astype(np.uint8)
            labels[side] = (arr, crop.affine)
            sides[side] = {
                f"{name}_mm3": float((arr == k).sum()) * voxel_volume(crop.affine) for k, name in LABELS.items()
            }
            views[side] = (np.asanyarray(crop.dataobj), arr)
        seconds["network"] = time.perf_counter() - t
        t = time.perf_counter()
        pasted = to_nifti(loc.paste(labels))
        mask = metatensor(pasted, str(path)).to(torch.uint8)
        seconds["paste"] = time.perf_counter() - t
        head = None
        if self.qc:
            canonical = nib.as_closest_canonical(to_nifti(image))
            inv = np.linalg.inv(canonical.affine)
            boxes = {}
            for side, (_, affine) in labels.items():
                corners = np.array(
                    [
                        affine @ [i, j, k, 1]
                        for i in (0, CROP_SIZE[0] - 1)
                        for j in (0, CROP_SIZE[1] - 1)
                        for k in (0, CROP_SIZE[2] - 1)
                    ]
                )
                vox = (inv @ corners.T)[:3].T
                boxes[side] = (vox.min(0), vox.max(0))
            head = (np.asanyarray(canonical.dataobj), boxes)
        return Segmentation(mask, {}, True, reason, loc.registration.similarity, sides, seconds, views, head)


def describe(seg: Segmentation) -> dict:
    """The ``volumes.csv`` fields of one segmentation: volumes (both sides and each), flags, timings."""
    voxel = voxel_volume(seg.mask.affine)
    row = {f"{name}_mm3": round(float((seg.mask == k).sum()) * voxel, 1) for k, name in LABELS.items()}
    row["total_ml"] = round((row["anterior_mm3"] + row["posterior_mm3"]) / 1000, 3)
    for side, volumes in seg.sides.items():
        row.update({f"{side}_{k}": round(v, 1) for k, v in volumes.items()})
        row[f"{side}_ml"] = round(sum(volumes.values()) / 1000, 3)
    row["localized"] = "yes" if seg.localized else "no"
    row["similarity"] = "" if seg.similarity is None else f"{seg.similarity:.3f}"
    row["flag"] = "; ".join(seg.flags())
    row.update({f"{k}_s": f"{v:.2f}" for k, v in seg.seconds.items() if k in ("read", "register", "network")})
    row.update({k: activity_text(k, v) for k, v in seg.activity.items()})
    return row


def activity_text(key: str, value) -> str:
    """An activity field as the CSV writes it: energies to 0.1 uJ, rates and ratios to 4 significant digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if key.endswith("_uj") else f"{value:.4g}"


def write_qc(seg: Segmentation, path: Path, title: str) -> Path:
    """The QC picture of one segmentation (see :mod:`bundle.inference.qc`)."""
    parts = [f"{s}: {sum(v.values()) / 1000:.2f} mL" for s, v in seg.sides.items()] or [
        f"{float((seg.mask > 0).sum()) * voxel_volume(seg.mask.affine) / 1000:.2f} mL"
    ]
    flags = seg.flags()
    note = ", ".join(parts) + (f"  FLAG: {'; '.join(flags)}" if flags else "")
    return save_qc(path, title, seg.views, seg.head, note)


@dataclass
class Report:
    """What one batch run did; ``failed`` decides the exit status."""

    output_dir: Path
    rows: list[dict] = field(default_factory=list)
    table_error: str | None = None  # the last failure to write volumes.csv, if any

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> int:
        """Images without a trustworthy mask, plus 1 if volumes.csv could not be written."""
        return self.count("failed") + self.count("conflict") + (self.table_error is not None)

    def line(self) -> str:
        done = [r for r in self.rows if r["status"] == "ok"]
        flagged = sum(bool(r.get("flag")) for r in done)
        mean_s = f", {np.mean([float(r['seconds']) for r in done]):.1f} s per image" if done else ""
        mean_s += energy_note(done)
        conflicts = f", {self.count('conflict')} kept unverified" if self.count("conflict") else ""
        conflicts += f", {flagged} flagged (see the flag column)" if flagged else ""
        table = f"; NOT WRITTEN: {self.table_error}" if self.table_error else ""
        return (
            f"{self.count('ok')} segmented, {self.count('skipped')} skipped (mask exists), "
            f"{self.count('failed')} failed{conflicts}{mean_s}; masks and volumes.csv in {self.output_dir}{table}"
        )


def energy_note(rows: list[dict]) -> str:
    """``", energy ... uJ per image (ANN ... uJ on the same windows: ratio ...; N window(s) of ...)"``, or ``""``."""
    rows = [r for r in rows if r.get("energy_uj", "") != "" and r.get("ann_energy_uj", "") != ""]
    if not rows:
        return ""
    energy, ann = (float(np.mean([float(r[k]) for r in rows])) for k in ("energy_uj", "ann_energy_uj"))
    windows = float(np.mean([float(r.get("windows") or 0) for r in rows]))
    shapes = sorted({r.get("window", "") for r in rows} - {""})
    steps = [float(r["mean_timesteps"]) for r in rows if r.get("mean_timesteps", "") != ""]
    mean_t = f", mean T {np.mean(steps):.2f}" if steps else ""
    return (
        f", energy {energy:.0f} uJ per image{mean_t} (ANN on the same windows {ann:.0f} uJ: ratio {energy / ann:.3f}; "
        f"{windows:g} window(s) of {', '.join(shapes) or '?'} per image)"
    )


def write_mask(mask: MetaTensor, target: str | Path) -> Path:
    """Write a ``[1, *shape]`` mask as uint8 NIfTI with its own affine, via a temporary name (an
    interrupted run never leaves a half-written mask)."""
    target = Path(target)
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(mask, channel_dim=0)
    writer.set_metadata(mask.meta, resample=False)
    partial = target.with_name(f".{target.name}.partial.nii.gz")
    try:
        writer.write(str(partial), verbose=False)
        os.replace(partial, target)
    except OSError as e:
        _remove_partial(partial)
        raise InputError(f"{target}: cannot write the mask ({e.strerror or e}).") from None
    return target


def _remove_partial(partial: Path) -> None:
    """Free the space a failed write took; leave alone anything that is not a plain file we made."""
    if partial.is_file() and not partial.is_symlink():
        partial.unlink(missing_ok=True)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes; of a DICOM series folder, of its files' names and bytes in order."""
    digest = hashlib.sha256()
    path = Path(path)
    files = [Path(f) for f in dicom_series(path)] if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode())
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def model_fingerprint(info: dict, amp: bool = False, **settings: object) -> str:
    """SHA-256 of what decides a model's masks: its checkpoint's bytes, its name, T, the precision and
    ``settings`` (localisation mode, sliding window)."""
    digest = hashlib.sha256()
    checkpoint = info.get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        digest.update(file_sha256(checkpoint).encode())
    digest.update(f"|{info.get('model', '')}|T={info.get('timesteps', '')}|amp={bool(amp)}".encode())
    digest.update("".join(f"|{k}={settings[k]}" for k in sorted(settings)).encode())
    return digest.hexdigest()


def adaptive_settings(network: nn.Module) -> dict:
    """The adaptive-T rule of an SNN, for its fingerprint (empty when off: fixed-T fingerprints stay as they were)."""
    seg = next((m for m in network.modules() if isinstance(m, SpikingSegmenter)), None)
    if seg is None or seg.adaptive == "off":
        return {}
    return {"adaptive": seg.adaptive, "patience": seg.patience, "tolerance": seg.tolerance}


def _read_csv(path: Path) -> dict[str, dict]:
    """The rows of an existing ``volumes.csv`` by case (empty if there is none)."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e}); move it away to start a new one.") from None
    if rows and "case" not in rows[0]:
        raise InputError(f"{path}: not a volumes.csv of this tool (no 'case' column); move it away.")
    return {r["case"]: r for r in rows}


def _write_csv(path: Path, table: dict[str, dict]) -> str | None:
    """Atomically, after every image: an interrupted run keeps the rows of the images it finished.

    Returns None, or a one-line error naming the file (a full disk must not stop the batch).
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(table[k] for k in sorted(table))
        os.replace(partial, path)
    except OSError as e:
        _remove_partial(partial)
        return f"{path}: cannot write ({e.strerror or e}); the masks are written, this table is not up to date."
    return None


def _kept_mask_problem(target: Path, row: dict | None, image_sha: str, model_sha: str) -> str | None:
    """Why the mask on disk cannot be taken as this image's mask by this model (None: it can)."""
    if not row or not row.get("mask_sha256"):
        return "volumes.csv has no record of making it (not a mask of this tool, or its table was lost)"
    if row.get("image_sha256") != image_sha:
        return f"it was made from other image content ({row.get('image', '?')}: another image or an earlier version)"
    if row.get("model_sha256") != model_sha:
        return (
            f"it was made by another model or with other settings ({row.get('model', '?')}, "
            f"T={row.get('timesteps', '?')}; localisation, window, precision)"
        )
    if file_sha256(target) != row["mask_sha256"]:
        return "it changed since it was made (edited by hand?)"
    return None


def segment_folder(
    input_dir: str | Path | None,
    output_dir: str | Path,
    network: nn.Module,
    inferer: Inferer,
    info: dict | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = True,
    amp: bool = False,
    localize: str = "auto",
    qc: bool = False,
    log_summary: bool = True,
) -> Report:
    """Segment every image of ``input_dir`` into ``output_dir`` (created if missing); never raises per image.

    ``localize``: ``auto``/``on``/``off`` (see :class:`VolumeSegmenter`); ``qc``: also write
    ``qc/<case>.png`` per image; ``log_summary``: log the closing summary line (the CLI prints it itself,
    to stdout, so a terminal shows it once). Images whose mask looks wrong (poor registration, implausible volume,
    strong asymmetry) are written all the same, with the reason in the ``flag`` column.

    Existing masks are kept unless ``overwrite``; one is skipped as done only if ``volumes.csv`` records
    making it from this image's content with this model and it is unchanged (else status ``conflict``,
    kept, reported). ``volumes.csv`` is updated after every image; rows of other cases are kept.
    Raises :class:`InputError` only when there is nothing to do at all (no input folder, no images, an
    output folder that cannot be made or is the input folder, an unreadable ``volumes.csv``).
    """
    info = info or {}
    overwrite, progress = as_bool(overwrite, "overwrite"), as_bool(progress, "progress")
    if input_dir is None:
        raise InputError("no input folder: pass --dataset_dir (the folder of images to segment).")
    images, notes = find_images(input_dir)
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder.")
    sources = {images[0].parent.resolve(), *(p.resolve() for p in images if p.is_dir())}  # DICOM series too
    if out.exists() and out.resolve() in sources:
        raise InputError(
            f"{out}: is the input folder; masks are named like their images, choose another output folder."
        )
    if not out.exists():
        try:
            out.mkdir(parents=True)
        except OSError as e:
            raise InputError(f"{out}: cannot create the output folder ({e.strerror}).") from None
        logger.info(f"created output folder {out}")
    if not os.access(out, os.W_OK):
        raise InputError(f"{out}: output folder is not writable.")
    table = _read_csv(out / "volumes.csv")
    for note in notes:
        logger.warning(f"warning: {note}")
    segmenter = VolumeSegmenter(network, inferer, device, amp, localize, qc)
    report = Report(out)
    model_sha = model_fingerprint(
        info, as_bool(amp, "amp"), localize=localize, roi_size=list(getattr(inferer, "roi_size", []) or []),
        overlap=getattr(inferer, "overlap", None), inferer=type(inferer).__name__, **adaptive_settings(network),
    )  # fmt: skip
    claimed: dict[str, Path] = {}  # mask name -> the readable image that takes it
    recorded: dict[str, Path] = {}  # volumes.csv row -> the image this run recorded there

    def save_table() -> None:
        error = _write_csv(out / "volumes.csv", table)
        if error and error != report.table_error:
            logger.error(f"error: {error}")
        report.table_error = error

    logger.info(
        f"segmenting {len(images)} image(s) from {images[0].parent} with {info.get('model', 'the network')}"
        + (f" (T={info['timesteps']})" if info.get("timesteps") else "")
    )
    with logging_redirect_tqdm():
        for path in tqdm(images, desc="segment", unit="image", disable=not progress):
            path = path.resolve()  # any spelling of the same folder is the same image
            target = out.resolve() / output_name(path)
            case = output_name(path)[: -len(".nii.gz")]
            row = {"case": case, "image": str(path), "mask": str(target), "model_sha256": model_sha}
            row.update(model=info.get("model", ""), timesteps=info.get("timesteps", ""))
            start = time.perf_counter()
            try:
                if target.name in claimed:
                    row["case"] = path.name  # its own CSV row: never replaces the row of the image that won the name
                    raise InputError(f"{path}: its mask name {target.name} is already used by {claimed[target.name]}.")
                t = time.perf_counter()
                image = load_image(path)
                read_s = time.perf_counter() - t
                claimed[target.name] = path  # only a readable image takes the name: an unreadable one writes nothing
                row["image_sha256"] = image_sha = file_sha256(path)
                earlier = table.get(case)
                if target.exists() and not overwrite:
                    if earlier and earlier.get("status") == "writing" and earlier.get("image_sha256") == image_sha:
                        logger.info(f"{target.name}: left by an interrupted run; made again")
                    else:
                        problem = _kept_mask_problem(target, earlier, image_sha, model_sha)
                        if problem is None:
                            row = {**earlier, "status": "skipped"}
                            row["message"] = f"{target}: exists, made from this image by this model; kept."
                            logger.info(row["message"])
                            report.rows.append({**row})
                            continue
                        kept = {**(earlier or row), "status": "conflict"}
                        kept["message"] = (
                            f"{target}: exists but {problem}; kept. Use --overwrite to replace it, or another output folder."
                        )
                        logger.error(f"error: {kept['message']}")
                        report.rows.append(kept)
                        table[case] = kept
                        save_table()
                        continue
                table[case] = {**row, "status": "writing", "message": "started, not finished"}
                save_table()
                seg = segmenter(path, image, read_s)
                described = describe(seg)  # before writing: a failure after the write would orphan the mask
                write_mask(seg.mask, target)
                row.update(described)
                row.update(status="ok", message="", seconds=f"{time.perf_counter() - start:.2f}")
                row["mask_sha256"] = file_sha256(target)
                if qc:
                    try:
                        title = f"{path.name} ({info.get('model', '')})"
                        row["qc"] = str(write_qc(seg, out / "qc" / f"{case}.png", title))
                    except Exception as e:  # noqa: BLE001 - the mask is good; a missing picture is a warning
                        row["message"] = f"QC picture not written ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
                        logger.warning(f"warning: {out / 'qc' / f'{case}.png'}: {row['message']}")
                logger.info(
                    f"{path.name}: anterior {row['anterior_mm3']:.0f} mm3, posterior {row['posterior_mm3']:.0f} mm3, "
                    f"{row['seconds']} s" + (f"; FLAG: {row['flag']}" if row["flag"] else "")
                )
            except Exception as e:  # noqa: BLE001 - any failure is this image's alone: report it, go on
                record_failure(row, path, e)
            if row["case"] in recorded and recorded[row["case"]] != path:
                row["case"] = path.name  # e.g. two unreadable images of one name: each keeps its own CSV row
            recorded[row["case"]] = path
            report.rows.append(row)
            if row["status"] == "failed" and target.exists() and row["case"] == case:
                row["message"] += f" (the mask on disk, {target.name}, is from an earlier run)"
            table[row["case"]] = row
            save_table()
    if log_summary:
        logger.info(report.line())
    return report


def finish(report: Report) -> Report:
    """Exit with status 1 if any image failed (for configs and scripts: the exit code tells)."""
    if report.failed:
        raise SystemExit(1)
    return report
