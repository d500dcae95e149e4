"""Batch inference under ``torchrun``: each rank (one per GPU, or per CPU process) segments its share of the images.

    torchrun --nproc_per_node=4 -m monai.bundle run \\
        --config_file "['configs/inference.json','configs/multi_gpu_inference.json']" --dataset_dir IN --output_dir OUT

As MONAI's model-zoo bundles do with ``multi_gpu_evaluate.json``: ``configs/multi_gpu_inference.json`` only
replaces ``run``. The images are grouped by mask name and the groups dealt out round-robin to the ranks; each rank
decides, segments and journals its own images with the rules of :mod:`bundle.inference.segment` (hashes, kept
masks, one-line errors), on ``cuda:LOCAL_RANK`` or the CPU. Rank 0 alone writes ``volumes.csv``: after the last
image of every rank it merges their journals (:mod:`bundle.inference.table`), so a killed run resumes like any
other. ``torch.distributed`` (NCCL on GPUs, gloo on CPUs) only carries the errors and the rows for the summary.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from bundle.errors import InputError
from bundle.inference.records import Report
from bundle.inference.segment import fingerprint, mask_groups, prepare_folders, run_images
from bundle.inference.settings import InferenceSettings
from bundle.inference.table import ResultTable, merge_journals
from bundle.inference.workers import InlineExecutor, cpu_count

__all__ = ["rank_device", "segment_ranks", "share"]

logger = logging.getLogger("bundle.inference")


def share(images: list[Path], rank: int, world: int) -> list[Path]:
    """Rank ``rank``'s images: every ``world``-th group of images sharing a mask name, from the ``rank``-th."""
    return [path for group in mask_groups(images)[rank::world] for path in group]


def rank_device(settings: InferenceSettings) -> torch.device:
    """``cuda:LOCAL_RANK`` where CUDA is available and ``settings.device`` does not say ``cpu``; else the CPU."""
    if settings.device not in (None, "cuda") or not torch.cuda.is_available():
        return settings.resolved_device()
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")


def segment_ranks(
    input_dir: str | Path | None,
    output_dir: str | Path,
    settings: InferenceSettings,
    overwrite: bool = False,
    progress: bool = True,
) -> Report:
    """This rank's part of segmenting ``input_dir`` into ``output_dir``; every rank returns the whole run's report
    (so every rank exits 1 when any image failed). Raises :class:`InputError` on every rank when there is nothing
    to do, or outside ``torchrun``."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise InputError(
            "configs/multi_gpu_inference.json needs torchrun: torchrun --nproc_per_node=N -m monai.bundle run "
            "--config_file \"['configs/inference.json','configs/multi_gpu_inference.json']\" ..."
        )
    device = rank_device(settings)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cpu":
        torch.set_num_threads(max(1, cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if rank != 0:
        logging.disable(logging.INFO)  # one log: rank 0's (other ranks' warnings and errors still show)
    try:
        # rank 0 checks the folders and makes the output folder first; its refusal is every rank's
        error = [None]
        if rank == 0:
            try:
                prepare_folders(input_dir, output_dir)
            except InputError as e:
                error = [str(e)]
        dist.broadcast_object_list(error, src=0)
        if error[0]:
            raise InputError(error[0])
        images, out = _quiet(prepare_folders, input_dir, output_dir)  # rank 0 logged its warnings
        mine = share(images, rank, world)
        logger.info(f"{len(images)} image(s) over {world} ranks ({dist.get_backend()}); rank 0 writes volumes.csv")
        network, info = settings.load(device)
        model_sha = fingerprint(network, settings.inferer(), info, settings.amp, settings.localize)
        table = ResultTable(out / "volumes.csv", writer=f"rank{rank}", owner=False)
        executor = InlineExecutor(settings.segmenter(network, info, device))
        report = run_images(mine, out, executor, table, model_sha, info, overwrite, settings.qc, rank == 0 and progress)
        table.close()
        rows: list = [None] * world
        dist.all_gather_object(rows, report.rows)  # also waits for every rank's last image
        report = Report(out, [row for part in rows for row in part])
        table_error = [merge_journals(out / "volumes.csv") if rank == 0 else None]
        dist.broadcast_object_list(table_error, src=0)
        report.table_error = table_error[0]
        if rank == 0:
            logger.info(report.line())
        return report
    finally:
        logging.disable(logging.NOTSET)
        if started:
            dist.destroy_process_group()


def _quiet(fn, *args):
    """``fn(*args)`` without its warnings."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return fn(*args)
    finally:
        logging.disable(before)
