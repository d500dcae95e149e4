"""Batch inference: a folder of images -> one uint8 mask per image, in the image's own geometry, and
``volumes.csv``.

The per-image pipeline is :class:`bundle.inference.volume.VolumeSegmenter` (MONAI's transforms, inferer and
``Invertd``); this module is the loop over a folder. It is ours because MONAI's evaluator stops at the first
bad file, while here one bad file must only cost its own mask; what is recorded per image, and when an
existing mask may be kept, is :mod:`bundle.inference.records`. The loop runs in one process that owns
``volumes.csv`` (:mod:`bundle.inference.table`) and gives the images out to an executor: itself
(:func:`segment_folder`), or worker processes, Ray or torchrun ranks (:mod:`bundle.inference.cohort`), which
all run :func:`bundle.inference.workers.segment_one`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

import torch
from monai.inferers import Inferer
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bundle.errors import InputError
from bundle.inference.inputs import find_images, output_name
from bundle.inference.outputs import write_mask, write_qc
from bundle.inference.records import (
    CSV_FIELDS,
    Report,
    activity_text,
    adaptive_settings,
    describe,
    energy_note,
    failure_message,
    file_sha256,
    kept_mask_problem,
    model_fingerprint,
    read_table,
    record_failure,
)
from bundle.inference.table import ResultTable
from bundle.inference.volume import (
    ACTIVITY_FIELDS,
    LABELS,
    LOCALIZE_MODES,
    Segmentation,
    VolumeSegmenter,
    metatensor,
    voxel_volume,
)
from bundle.inference.workers import ImageTask, InlineExecutor, lost
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
    "fingerprint",
    "finish",
    "mask_groups",
    "metatensor",
    "model_fingerprint",
    "prepare_folders",
    "record_failure",
    "run_images",
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
    kept, reported). ``volumes.csv`` keeps one row per case; rows of other cases are kept; an interrupted run
    loses no finished image (:mod:`bundle.inference.table`). Raises :class:`InputError` only when there is
    nothing to do at all (no input folder, no images, an output folder that cannot be made or is the input
    folder, an unreadable ``volumes.csv``). Several processes, GPUs or machines: :mod:`bundle.inference.cohort`.
    """
    images, out = prepare_folders(input_dir, output_dir)
    record = info or {}
    segmenter = VolumeSegmenter(
        network, inferer, device, amp, localize, qc, standardization=record.get("standardization", "percentile"),
        confidence_floor=record.get("confidence_floor"), coarse_confidence_floor=record.get("coarse_confidence_floor"),
    )  # fmt: skip
    model_sha = fingerprint(network, inferer, info or {}, amp, localize)
    table = ResultTable(out / "volumes.csv")
    report = run_images(images, out, InlineExecutor(segmenter), table, model_sha, info, overwrite, qc, progress)
    report.table_error = table.close()
    if log_summary:
        logger.info(report.line())
    return report


def prepare_folders(input_dir: str | Path | None, output_dir: str | Path) -> tuple[list[Path], Path]:
    """The images of ``input_dir`` (a warning logged for every other file) and the output folder, made if
    missing; :class:`InputError` when there is nothing to do (see :func:`segment_folder`)."""
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
    read_table(out / "volumes.csv")  # unreadable: one error before any work
    for note in notes:
        logger.warning(f"warning: {note}")
    return images, out


def fingerprint(network: nn.Module, inferer: Inferer, info: dict, amp: bool, localize: str) -> str:
    """The ``model_sha256`` of masks made by this network through this inferer (:func:`model_fingerprint`)."""
    return model_fingerprint(
        info, as_bool(amp, "amp"), localize=localize, roi_size=list(getattr(inferer, "roi_size", []) or []),
        overlap=getattr(inferer, "overlap", None), inferer=type(inferer).__name__, **adaptive_settings(network),
        **({"mirror": True} if info.get("mirror") else {}),  # absent when off: earlier fingerprints stay valid
    )  # fmt: skip


def mask_groups(images: list[Path]) -> list[list[Path]]:
    """The images grouped by the mask name they would take (``a.nii.gz`` and ``a.nrrd``), in listing order:
    a group is one unit of work, its images tried in order (the first readable one takes the name)."""
    groups: dict[str, list[Path]] = {}
    for path in images:
        groups.setdefault(output_name(path), []).append(path)
    return list(groups.values())


def run_images(
    images: list[Path],
    out: Path,
    executor,
    table: ResultTable,
    model_sha: str,
    info: dict | None = None,
    overwrite: bool = False,
    qc: bool = False,
    progress: bool = True,
) -> Report:
    """Segment ``images`` into ``out`` through ``executor`` (``submit(ImageTask) -> Future``, ``slots``: how many
    images it takes at once, ``workers``), recording every result in ``table``; the rules of :func:`segment_folder`.

    This process decides, per image, whether its mask is done, in conflict or to be made (hashes only: nothing
    is decoded), marks it ``writing`` in the table before any worker may write it, gives it out, and records
    the row that comes back: workers never write the table. Images sharing a mask name go out one at a time.
    """
    info, overwrite, progress = info or {}, as_bool(overwrite, "overwrite"), as_bool(progress, "progress")
    report = Report(out)
    if not images:  # a torchrun rank with no share
        return report
    claimed: dict[str, Path] = {}  # mask name -> the readable image that takes it
    recorded: dict[str, Path] = {}  # volumes.csv row -> the image this run recorded there
    ready = deque(deque(group) for group in mask_groups(images))
    in_flight: dict[Future, tuple[ImageTask, str, deque]] = {}
    logger.info(
        f"segmenting {len(images)} image(s) from {images[0].parent} with {info.get('model', 'the network')}"
        + (f" (T={info['timesteps']})" if info.get("timesteps") else "")
        + (f" on {executor.workers} workers" if executor.workers > 1 else "")
    )

    def record(row: dict, path: Path, case: str, target: Path) -> None:
        if row["status"] == "failed":
            logger.error(f"error: {row['message']}")
        elif row["status"] == "ok":
            if row.get("message"):
                logger.warning(f"warning: {out / 'qc' / f'{case}.png'}: {row['message']}")
            logger.info(
                f"{path.name}: anterior {float(row['anterior_mm3']):.0f} mm3, posterior "
                f"{float(row['posterior_mm3']):.0f} mm3, {row['seconds']} s"
                + (f"; FLAG: {row['flag']}" if row["flag"] else "")
            )
        if row["case"] in recorded and recorded[row["case"]] != path:
            row["case"] = path.name  # e.g. two unreadable images of one name: each keeps its own CSV row
        recorded[row["case"]] = path
        report.rows.append(row)
        if row["status"] == "failed" and target.exists() and row["case"] == case:
            row["message"] += f" (the mask on disk, {target.name}, is from an earlier run)"
        table.set(row["case"], row)
        report.finished.append(time.perf_counter())
        bar.update()

    def decide(path: Path) -> ImageTask | None:
        """Record what needs no worker (a taken name, a verified or conflicting mask); else the image's task."""
        path = path.resolve()  # any spelling of the same folder is the same image
        target = out.resolve() / output_name(path)
        case = output_name(path)[: -len(".nii.gz")]
        if case in recorded and recorded[case] != path:
            case = path.name  # the case's row is another image's of this run (one that could not be read)
        row = {"case": case, "image": str(path), "mask": str(target), "model_sha256": model_sha}
        row.update(model=info.get("model", ""), timesteps=info.get("timesteps", ""))
        try:
            if target.name in claimed:
                row["case"] = path.name  # its own CSV row: never replaces the row of the image that won the name
                raise InputError(f"{path}: its mask name {target.name} is already used by {claimed[target.name]}.")
            row["image_sha256"] = image_sha = file_sha256(path)
        except (InputError, OSError) as e:
            row.update(status="failed", message=failure_message(path, e))
            record(row, path, case, target)
            return None
        earlier = table.get(case)
        if target.exists() and not overwrite:
            if earlier and earlier.get("status") == "writing" and earlier.get("image_sha256") == image_sha:
                logger.info(f"{target.name}: left by an interrupted run; made again")
            else:
                claimed[target.name] = path
                problem = kept_mask_problem(target, earlier, image_sha, model_sha)
                if problem is None:
                    row = {**earlier, "status": "skipped"}
                    row["message"] = f"{target}: exists, made from this image by this model; kept."
                    logger.info(row["message"])
                    report.rows.append({**row})
                    bar.update()
                    return None
                kept = {**(earlier or row), "status": "conflict"}
                kept["message"] = (
                    f"{target}: exists but {problem}; kept. Use --overwrite to replace it, or another output folder."
                )
                logger.error(f"error: {kept['message']}")
                report.rows.append(kept)
                table.set(case, kept)
                bar.update()
                return None
        table.set(case, {**row, "status": "writing", "message": "started, not finished"})
        title = f"{path.name} ({info.get('model', '')}{', mirrored' if info.get('mirror') else ''})"
        return ImageTask(path, target, row, out / "qc" / f"{case}.png" if qc else None, title)

    with logging_redirect_tqdm(), tqdm(total=len(images), desc="segment", unit="image", disable=not progress) as bar:
        while ready or in_flight:
            while ready and len(in_flight) < executor.slots:
                group = ready.popleft()
                task = decide(group.popleft())
                if task is None:
                    if group:
                        ready.appendleft(group)
                    continue
                in_flight[executor.submit(task)] = (task, task.row["case"], group)
            if not in_flight:
                continue
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                task, case, group = in_flight.pop(future)
                try:
                    row, readable = future.result()
                except Exception as e:  # noqa: BLE001 - a dead worker or engine costs its images only
                    row, readable = lost(task, e)
                if readable:
                    claimed[task.target.name] = task.path
                record(row, task.path, case, task.target)
                if group:
                    ready.appendleft(group)
    return report


def finish(report: Report) -> Report:
    """Exit with status 1 if any image failed (for configs and scripts: the exit code tells)."""
    if report.failed:
        raise SystemExit(1)
    return report
