"""A cohort: one folder of images segmented by many workers, with the rules of a one-process run.

``settings.workers`` and ``settings.engine`` (config keys ``workers``, ``engine``, ``ray_address``; ``hippo-snn
segment --workers N [--engine ray --ray-address ADDR]``) choose who runs :func:`bundle.inference.workers.segment_one`:

- ``workers 1``: this process (exactly :func:`bundle.inference.segment.segment_folder`);
- ``engine local``: N processes of this machine (``concurrent.futures``), each with its share of the cores;
- ``engine ray``: N Ray tasks at a time on a Ray cluster (``ray_address``; a local one when None): several
  machines that see the same input and output folders (a shared file system).

In every case this process lists the images, decides which are done (the hashes in ``volumes.csv``), gives
the others out, and is the one owner of ``volumes.csv``; the masks do not depend on the number of workers.
Several GPUs or machines under ``torchrun``: :mod:`bundle.inference.ranks` (``configs/multi_gpu_inference.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from bundle.inference.records import Report
from bundle.inference.segment import fingerprint, mask_groups, prepare_folders, run_images
from bundle.inference.settings import InferenceSettings
from bundle.inference.table import ResultTable
from bundle.inference.workers import InlineExecutor, ProcessExecutor

__all__ = ["make_executor", "segment_cohort"]

logger = logging.getLogger("bundle.inference")


def segment_cohort(
    input_dir: str | Path | None,
    output_dir: str | Path,
    settings: InferenceSettings,
    overwrite: bool = False,
    progress: bool = True,
    log_summary: bool = True,
    network: nn.Module | None = None,
    info: dict | None = None,
) -> Report:
    """Segment every image of ``input_dir`` into ``output_dir`` with ``settings`` (its ``workers`` and ``engine``
    too); the rules and the result of :func:`bundle.inference.segment.segment_folder`.

    ``network``, ``info``: the model of ``settings`` already loaded (:meth:`InferenceSettings.load`), else it is
    loaded here (on the CPU when workers load their own). Raises :class:`bundle.errors.InputError` when there is
    nothing to do at all, or the engine cannot start.
    """
    images, out = prepare_folders(input_dir, output_dir)
    workers = min(settings.workers, len(mask_groups(images)))
    inline = workers == 1 and settings.engine == "local"
    device = settings.resolved_device()
    if network is None:
        network, info = settings.load(device if inline else "cpu")  # the parent needs its fingerprint only
    info = info or {}
    model_sha = fingerprint(network, settings.inferer(), info, settings.amp, settings.localize)
    if inline:
        executor = InlineExecutor(settings.segmenter(network, info, device))
    else:
        del network  # the workers load their own
        executor = make_executor(settings, workers)
    table = ResultTable(out / "volumes.csv")
    try:
        report = run_images(images, out, executor, table, model_sha, info, overwrite, settings.qc, progress)
    finally:
        executor.close()
        report_error = table.close()
    report.table_error = report_error
    if log_summary:
        logger.info(report.line())
    return report


def make_executor(settings: InferenceSettings, workers: int):
    """The executor of ``settings.engine`` with ``workers`` workers (``submit(task) -> Future``, ``slots``)."""
    if settings.engine == "ray":
        from bundle.inference.ray_engine import RayExecutor

        return RayExecutor(settings, workers, settings.ray_address)
    return ProcessExecutor(settings, workers)
