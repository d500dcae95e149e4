"""Batch inference: a folder of images -> one uint8 mask per image, in the image's own geometry, and
``volumes.csv``.

The per-image pipeline is :class:`bundle.inference.volume.VolumeSegmenter` (MONAI's transforms, inferer and
``Invertd``); this module is the loop over a folder. It is ours because MONAI's evaluator stops at the first
bad file, while here one bad file must only cost its own mask; what is recorded per image, and when an
existing mask may be kept, is :mod:`bundle.inference.records`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from monai.inferers import Inferer
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bundle.errors import InputError
from bundle.inference.inputs import find_images, load_image, output_name
from bundle.inference.outputs import write_mask, write_qc
from bundle.inference.records import (
    CSV_FIELDS,
    Report,
    activity_text,
    adaptive_settings,
    describe,
    energy_note,
    file_sha256,
    kept_mask_problem,
    model_fingerprint,
    read_table,
    record_failure,
    write_table,
)
from bundle.inference.volume import (
    ACTIVITY_FIELDS,
    LABELS,
    LOCALIZE_MODES,
    Segmentation,
    VolumeSegmenter,
    metatensor,
    voxel_volume,
)
from bundle.options import as_bool

# the folder loop, and the names the configs, the evaluator and the Label app import from here
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
    table = read_table(out / "volumes.csv")
    for note in notes:
        logger.warning(f"warning: {note}")
    segmenter = VolumeSegmenter(
        network, inferer, device, amp, localize, qc, info.get("standardization", "percentile"),
        info.get("confidence_floor"),
    )  # fmt: skip
    report = Report(out)
    model_sha = model_fingerprint(
        info, as_bool(amp, "amp"), localize=localize, roi_size=list(getattr(inferer, "roi_size", []) or []),
        overlap=getattr(inferer, "overlap", None), inferer=type(inferer).__name__, **adaptive_settings(network),
    )  # fmt: skip
    claimed: dict[str, Path] = {}  # mask name -> the readable image that takes it
    recorded: dict[str, Path] = {}  # volumes.csv row -> the image this run recorded there

    def save_table() -> None:
        error = write_table(out / "volumes.csv", table)
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
                        problem = kept_mask_problem(target, earlier, image_sha, model_sha)
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
