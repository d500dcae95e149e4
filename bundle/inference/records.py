"""What a batch run records per image: the ``volumes.csv`` row, the fingerprints that decide whether an
existing mask may be kept, and the run's :class:`Report`.

``volumes.csv`` holds one row per image: anterior (head) and posterior (body and tail) hippocampus volumes
in mm^3 (per side for whole heads), flags, the time taken, the estimated energy of that inference for every
model (:meth:`bundle.spiking.activity.ActivityMonitor.totals`: what the network computed on the windows the
inferer ran) in two accounts: compute only (``energy_uj``; the FP32 ANN's on the same windows and the ratio of
the two) and compute plus memory traffic (``energy_sram_uj``, ``energy_dram_uj``), with the INT8 ANN's on the
same windows in all three (``int8_*``; :mod:`bundle.spiking.energy`), for SNN models the timesteps run per window
and the mean firing rate, and the SHA-256 of the input image, of the mask and of the model.
A rerun keeps an existing mask only when all three still match: a file that merely has a mask's name, a
mask of an earlier version of the image, of another model, or edited since, is never taken as done.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from bundle.errors import InputError
from bundle.inference.inputs import dicom_series
from bundle.inference.outputs import remove_partial
from bundle.inference.volume import LABELS, Segmentation, voxel_volume
from bundle.spiking.segmenter import SpikingSegmenter

__all__ = [
    "CSV_FIELDS",
    "Report",
    "activity_text",
    "adaptive_settings",
    "describe",
    "energy_note",
    "failure_message",
    "file_sha256",
    "kept_mask_problem",
    "memory_note",
    "model_fingerprint",
    "read_table",
    "record_failure",
    "write_table",
]

logger = logging.getLogger("bundle.inference")

CSV_FIELDS = [
    "case", "image", "mask", "status", "message", "flag", "anterior_mm3", "posterior_mm3", "total_ml",
    "left_anterior_mm3", "left_posterior_mm3", "left_ml", "right_anterior_mm3", "right_posterior_mm3", "right_ml",
    "localized", "similarity", "confidence", "seconds", "read_s", "register_s", "network_s", "write_s",
    "model", "timesteps", "mean_timesteps", "mean_firing_rate", "energy_uj", "ann_energy_uj", "energy_vs_ann",
    "energy_sram_uj", "energy_dram_uj", "int8_energy_uj", "int8_energy_sram_uj", "int8_energy_dram_uj", "windows", "window", "qc", "image_sha256", "mask_sha256", "model_sha256",
]  # fmt: skip


def failure_message(path: str | Path, error: BaseException) -> str:
    """One line naming the file and what went wrong with it."""
    if isinstance(error, InputError):
        return str(error)  # already names the file
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{path}: {type(error).__name__}: {first}"


def record_failure(row: dict, path: str | Path, error: BaseException) -> None:
    """Mark one image's row as failed with a one-line message naming the file, and log it."""
    row.update(status="failed", message=failure_message(path, error))
    logger.error(f"error: {row['message']}")


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
    row["confidence"] = "" if seg.confidence is None else f"{seg.confidence:.3f}"
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


@dataclass
class Report:
    """What one batch run did; ``failed`` decides the exit status."""

    output_dir: Path
    rows: list[dict] = field(default_factory=list)
    table_error: str | None = None  # the last failure to write volumes.csv, if any
    finished: list[float] = field(default_factory=list)  # time.perf_counter() as each image was recorded

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
        f", energy {energy:.0f} uJ per image{mean_t} (compute only; ANN on the same windows {ann:.0f} uJ: ratio "
        f"{energy / ann:.3f}){memory_note(rows)}; {windows:g} window(s) of {', '.join(shapes) or '?'} per image"
    )


def memory_note(rows: list[dict]) -> str:
    """``"; with memory traffic SRAM ... / DRAM ... uJ (INT8 ANN ... / ... uJ)"`` (means of the rows), or ``""``."""
    keys = ("energy_sram_uj", "energy_dram_uj", "int8_energy_sram_uj", "int8_energy_dram_uj")
    rows = [r for r in rows if all(r.get(k, "") not in ("", None) for k in keys)]
    if not rows:
        return ""
    sram, dram, int8_sram, int8_dram = (float(np.mean([float(r[k]) for r in rows])) for k in keys)
    return (
        f"; with memory traffic SRAM {sram:.0f} / DRAM {dram:.0f} uJ "
        f"(INT8 ANN on the same windows {int8_sram:.0f} / {int8_dram:.0f} uJ: ratio {sram / int8_sram:.2f} / {dram / int8_dram:.2f})"
    )


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


def read_table(path: Path) -> dict[str, dict]:
    """The rows of an existing ``volumes.csv`` by case (empty if there is none)."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {e}); move it away to start a new one.") from None
    if rows and "case" not in rows[0]:
        raise InputError(f"{path}: not a volumes.csv of this tool (no 'case' column); move it away.")
    return {r["case"]: r for r in rows}


def write_table(path: Path, table: dict[str, dict]) -> str | None:
    """Atomically, after every image: an interrupted run keeps the rows of the images it finished.

    Returns None, or a one-line error naming the file (a full disk must not stop the batch).
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(table[k] for k in sorted(table))
        os.replace(partial, path)
    except OSError as e:
        remove_partial(partial)
        return f"{path}: cannot write ({e.strerror or e}); the masks are written, this table is not up to date."
    return None


def kept_mask_problem(target: Path, row: dict | None, image_sha: str, model_sha: str) -> str | None:
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
