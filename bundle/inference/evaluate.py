"""Evaluation against reference labels: per-case Dice, HD95 and volumes, a summary, and overlays.

Each image goes through exactly the batch-inference pipeline (:class:`VolumeSegmenter`), and is
scored in its own geometry against its label as stored on disk. The energy columns are the batch
inference's (``volumes.csv``): every model, counted on the windows the inferer ran, with the ANN's
energy on the same windows (``ann_energy_uj``), their ratio and the input (``windows`` of ``window``).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.transforms import LoadImage
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bundle.data.datalist import find_pairs, is_nifti, split_datalist
from bundle.errors import InputError
from bundle.inference.inputs import output_name, read_sitk
from bundle.inference.overlays import save_overlay
from bundle.inference.segment import (
    ACTIVITY_FIELDS,
    LABELS,
    VolumeSegmenter,
    activity_text,
    energy_note,
    metatensor,
    record_failure,
    voxel_volume,
    write_mask,
)
from bundle.localization import to_nifti
from bundle.options import as_bool

__all__ = ["METRIC_FIELDS", "check_failures", "describe_activity", "evaluate_folder"]

logger = logging.getLogger("bundle.inference")

METRIC_FIELDS = (
    ["case", "status", "message"]
    + [f"dice_{n}" for n in LABELS.values()]
    + [f"hd95_{n}_mm" for n in LABELS.values()]
    + [f"{n}_mm3_{w}" for n in LABELS.values() for w in ("pred", "true")]
    + [
        "seconds",
        "mean_timesteps",
        "mean_firing_rate",
        "energy_uj",
        "ann_energy_uj",
        "energy_vs_ann",
        "energy_sram_uj",
        "energy_dram_uj",
        "int8_energy_uj",
        "int8_energy_sram_uj",
        "int8_energy_dram_uj",
        "windows",
        "window",
    ]
)
_TEXT_FIELDS = ("window",)  # not averaged in the summary


def _scores(mask: torch.Tensor, label: torch.Tensor, spacing: np.ndarray) -> dict:
    """Dice and HD95 (mm) per class; NaN where a class is absent from prediction or reference."""
    pred, ref = one_hot(mask[None, None].long(), 3), one_hot(label[None, None].long(), 3)
    dice = compute_dice(pred, ref, include_background=False, ignore_empty=True)[0]
    hd = compute_hausdorff_distance(pred, ref, include_background=False, percentile=95, spacing=spacing.tolist())[0]
    out = {}
    for i, name in enumerate(LABELS.values()):
        out[f"dice_{name}"] = round(float(dice[i]), 4)
        h = float(hd[i])
        out[f"hd95_{name}_mm"] = round(h, 2) if np.isfinite(h) else float("nan")
    return out


def _check_label(label, mask, path: str) -> torch.Tensor:
    """The reference label as integer classes, if it lies on the image's grid and holds 0/1/2 only."""
    if label.shape != mask.shape:
        raise InputError(f"{path}: shape {tuple(label.shape[1:])} differs from its image's {tuple(mask.shape[1:])}.")
    if not np.allclose(np.asarray(label.affine), np.asarray(mask.affine), atol=1e-3):
        raise InputError(f"{path}: its affine differs from its image's (not on the same voxel grid).")
    values = torch.unique(torch.as_tensor(label))
    if not torch.isfinite(values).all() or not set(values.tolist()) <= {0.0, 1.0, 2.0}:
        raise InputError(f"{path}: label values {values[:8].tolist()} are not all in {{0, 1, 2}}.")
    return torch.as_tensor(label).round()


def evaluate_folder(
    dataset_dir: str | Path,
    output_dir: str | Path,
    network: nn.Module,
    inferer,
    info: dict | None = None,
    split: str = "all",
    val_fraction: float = 0.2,
    seed: int = 0,
    overlays: int = 3,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = True,
    amp: bool = False,
    localize: str = "auto",
) -> dict:
    """Segment the labelled images of ``dataset_dir`` and score them; write CSV, JSON summary, masks, PNGs.

    ``split``: ``"all"`` pairs, or the ``"val"``/``"train"`` part of the training split (same seed and
    fraction as training, so ``"val"`` never includes a case the model was trained on).
    Returns the summary (means and standard deviations per metric, case counts).
    """
    info = info or {}
    overwrite, progress = as_bool(overwrite, "overwrite"), as_bool(progress, "progress")
    if split not in ("all", "val", "train"):
        raise InputError(f"split {split!r}: choose 'all', 'val' or 'train'.")
    if dataset_dir is None:
        raise InputError("no dataset: pass --dataset_dir (labelled images to evaluate on).")
    pairs = find_pairs(dataset_dir, scanner_formats=True)
    if split != "all":
        train, val = split_datalist(pairs, val_fraction, seed)
        pairs = val if split == "val" else train
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder.")
    for name in ("metrics.csv", "summary.json"):
        if (out / name).exists() and not overwrite:
            raise InputError(f"{out / name}: exists; use --overwrite to replace it, or choose another output folder.")
    try:
        (out / "masks").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create the output folder ({e.strerror}).") from None
    segmenter = VolumeSegmenter(
        network, inferer, device, amp, localize, standardization=info.get("standardization", "percentile"),
        confidence_floor=info.get("confidence_floor"), coarse_confidence_floor=info.get("coarse_confidence_floor"),
    )  # fmt: skip
    nifti_loader = LoadImage(image_only=True, ensure_channel_first=True)

    def loader(path: str):  # NIfTI as MONAI reads it; NRRD, MHA, DICOM series by SimpleITK, same frame
        return nifti_loader(path) if is_nifti(Path(path)) else metatensor(to_nifti(read_sitk(path)), str(path))

    rows = []
    logger.info(f"evaluating {info.get('model', 'the network')} on {len(pairs)} labelled case(s) ({split})")
    with logging_redirect_tqdm():
        for i, pair in enumerate(tqdm(pairs, desc="evaluate", unit="case", disable=not progress)):
            image = Path(pair["image"])
            row = {"case": output_name(image)[: -len(".nii.gz")]}
            start = time.perf_counter()
            try:
                seg = segmenter(image)  # reads and checks it once (load_image)
                mask, activity = seg.mask, seg.activity
                label = _check_label(loader(pair["label"]), mask, pair["label"])
                spacing = np.sqrt((np.asarray(mask.affine, dtype=float)[:3, :3] ** 2).sum(0))
                row.update(_scores(mask[0], label[0], spacing))
                voxel = voxel_volume(mask.affine)
                for k, name in LABELS.items():
                    row[f"{name}_mm3_pred"] = round(float((mask == k).sum()) * voxel, 1)
                    row[f"{name}_mm3_true"] = round(float((label == k).sum()) * voxel, 1)
                row.update(describe_activity(activity))
                row.update(status="ok", message="", seconds=f"{time.perf_counter() - start:.2f}")
                write_mask(mask, out / "masks" / output_name(image))
                if i < overlays:
                    save_overlay(
                        np.asarray(loader(pair["image"]))[0], mask[0].numpy(), out / "overlays" / f"{row['case']}.png",
                        label=label[0].numpy(), title=f"{row['case']}: Dice anterior {row['dice_anterior']:.3f}, "
                        f"posterior {row['dice_posterior']:.3f} ({info.get('model', '')})",
                    )  # fmt: skip
                logger.info(
                    f"{row['case']}: Dice {row['dice_anterior']:.3f} / {row['dice_posterior']:.3f}, "
                    f"HD95 {row['hd95_anterior_mm']} / {row['hd95_posterior_mm']} mm"
                )
            except Exception as e:  # noqa: BLE001 - this case's failure only
                record_failure(row, image, e)
            rows.append(row)
    with (out / "metrics.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    summary = _summary(rows, info, split)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")

    def f(key: str, digits: int) -> str:
        value = summary[key]["mean"] if isinstance(summary[key], dict) else summary[key]
        return "-" if value is None else f"{value:.{digits}f}"

    logger.info(
        f"{summary['cases_ok']} case(s) scored, {summary['cases_failed']} failed: mean Dice {f('mean_dice', 4)} "
        f"(anterior {f('dice_anterior', 4)}, posterior {f('dice_posterior', 4)}), "
        f"HD95 {f('hd95_anterior_mm', 2)} / {f('hd95_posterior_mm', 2)} mm{energy_note([r for r in rows if r['status'] == 'ok'])}; "
        f"results in {out}"
    )
    return summary


def describe_activity(activity: dict) -> dict:
    """The energy account of one case as CSV text (the same columns as ``volumes.csv``)."""
    return {k: activity_text(k, v) for k, v in activity.items() if k in ACTIVITY_FIELDS}


def _summary(rows: list[dict], info: dict, split: str) -> dict:
    """Mean and std per metric over scored cases; ``n`` counts finite values (HD95 is undefined where a
    class is missing from prediction or reference: ``undefined`` counts those cases). JSON-safe: no NaN."""
    ok = [r for r in rows if r["status"] == "ok"]
    summary: dict = {**info, "split": split, "cases_ok": len(ok), "cases_failed": len(rows) - len(ok)}
    for key in METRIC_FIELDS[3:]:
        if key in _TEXT_FIELDS:
            summary[key] = sorted({r[key] for r in ok if r.get(key)})
            continue
        raw = np.array([float(r[key]) for r in ok if r.get(key, "") != ""], dtype=float)
        values = raw[np.isfinite(raw)]
        summary[key] = {
            "mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None,
            "n": len(values),
            "undefined": int(len(raw) - len(values)),
        }
    dice = [summary[f"dice_{n}"]["mean"] for n in LABELS.values()]
    summary["mean_dice"] = float(np.mean(dice)) if None not in dice else None
    return summary


def check_failures(summary: dict) -> dict:
    """Exit with status 1 if any case could not be scored (for configs: the exit code tells)."""
    if summary["cases_failed"]:
        raise SystemExit(1)
    return summary
