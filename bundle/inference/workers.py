"""What one worker does with one image, and the processes that do it on this machine.

A worker reads the image, segments it (:class:`bundle.inference.volume.VolumeSegmenter`), writes the mask (and
the QC picture) and returns the image's ``volumes.csv`` row; it never writes the table and never logs a
failure: the run's parent (:mod:`bundle.inference.segment`) decides which images to give out, and records and
reports what comes back. The same :func:`segment_one` runs in the parent itself (:class:`InlineExecutor`, one
process), in N local processes (:class:`ProcessExecutor`, on ``concurrent.futures``), in Ray tasks
(:mod:`bundle.inference.ray_engine`) and in ``torchrun`` ranks (:mod:`bundle.inference.ranks`).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from bundle.inference.inputs import load_image
from bundle.inference.outputs import write_mask, write_qc
from bundle.inference.processes import worker_context
from bundle.inference.records import describe, failure_message, file_sha256
from bundle.inference.settings import InferenceSettings
from bundle.inference.volume import VolumeSegmenter

__all__ = ["ImageTask", "InlineExecutor", "ProcessExecutor", "cpu_count", "lost", "segment_one", "settings_segmenter"]

logger = logging.getLogger("bundle.inference")


@dataclass(frozen=True)
class ImageTask:
    """One image to segment: where it is, where its mask goes, and the row its result completes."""

    path: Path
    target: Path
    row: dict = field(hash=False)
    qc: Path | None = None  # the QC picture's path, if one is asked for
    title: str = ""  # the QC picture's title


def segment_one(segmenter: VolumeSegmenter, task: ImageTask) -> tuple[dict, bool]:
    """Segment ``task``'s image into its mask; ``(row, readable)``, never raises for a bad image.

    ``row`` is the task's row completed (status ``ok`` with volumes, flags, timings and the mask's SHA-256, or
    ``failed`` with a one-line message naming the file); ``readable``: the image could be read (only a readable
    image takes its mask's name from another image of the same name).
    """
    row, readable, start = dict(task.row), False, time.perf_counter()
    try:
        t = time.perf_counter()
        image = load_image(task.path)
        readable = True
        seg = segmenter(task.path, image, time.perf_counter() - t)
        described = describe(seg)  # before writing: a failure after the write would orphan the mask
        t = time.perf_counter()
        write_mask(seg.mask, task.target)
        row.update(described)
        row["mask_sha256"] = file_sha256(task.target)
        row.update(status="ok", message="", write_s=f"{time.perf_counter() - t:.2f}")
        row["seconds"] = f"{time.perf_counter() - start:.2f}"
        if task.qc is not None:
            try:
                row["qc"] = str(write_qc(seg, task.qc, task.title))
            except Exception as e:  # noqa: BLE001 - the mask is good; a missing picture is a warning
                row["message"] = f"QC picture not written ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    except Exception as e:  # noqa: BLE001 - any failure is this image's alone: reported by the parent
        row.update(status="failed", message=failure_message(task.path, e))
    return row, readable


class InlineExecutor:
    """Runs each task at once in this process, with a segmenter already built (one process, as before)."""

    slots = workers = 1

    def __init__(self, segmenter: VolumeSegmenter):
        self.segmenter = segmenter

    def submit(self, task: ImageTask) -> Future:
        future: Future = Future()
        future.set_result(segment_one(self.segmenter, task))
        return future

    def close(self) -> None:
        pass


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, as a container or ``taskset`` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_SEGMENTERS: dict = {}  # per process: (settings, device) -> segmenter, the model loaded once


def settings_segmenter(settings: InferenceSettings, device: str | None = None) -> VolumeSegmenter:
    """This process's segmenter for ``settings`` (built, and its model loaded, on first use)."""
    device = device or str(settings.resolved_device())
    key = (settings, device)
    if key not in _SEGMENTERS:
        network, info = settings.load(device)
        _SEGMENTERS[key] = settings.segmenter(network, info, device)
    return _SEGMENTERS[key]


def _start_worker(threads: int, settings: InferenceSettings) -> None:
    import torch

    from bundle.runtime import tune_allocator

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    tune_allocator()
    try:  # the model loaded before the first image comes; a failure is reported per image by _run, as inline
        settings_segmenter(settings)
    except Exception:  # noqa: BLE001
        pass


def _run(settings: InferenceSettings, task: ImageTask) -> tuple[dict, bool]:
    return segment_one(settings_segmenter(settings), task)


class ProcessExecutor:
    """``workers`` processes of ``concurrent.futures``, each with ``threads`` torch threads (default: its share
    of this process's cores) and the model loaded once.

    Workers come from a fork server that has imported this module once (:mod:`bundle.inference.processes`;
    the CLI starts it before its own imports, so the two overlap) and all start, loading their model, before
    the first image is given out. (Segmenting in the parent while they start was tried: on 2 cores a third
    busy process cost 2.7 s on 24 crops.)

    A worker that dies (killed, out of memory) fails the images it held, each with one line; the pool is
    started again for the rest.
    """

    def __init__(self, settings: InferenceSettings, workers: int, threads: int | None = None):
        self.settings, self.workers = settings, workers
        self.threads = threads or max(1, cpu_count() // workers)
        self.slots = 2 * workers  # one queued behind each running image: no worker waits for the parent
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers, mp_context=worker_context(), initializer=_start_worker, initargs=(self.threads, self.settings)
        )
        for _ in range(self.workers):  # the pool forks a process per waiting call: all start (and load) now
            pool.submit(os.getpid)
        return pool

    def submit(self, task: ImageTask) -> Future:
        try:
            return self._pool.submit(_run, self.settings, task)
        except BrokenProcessPool:
            logger.warning("warning: a worker process died; starting the workers again")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return self._pool.submit(_run, self.settings, task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def lost(task: ImageTask, error: BaseException) -> tuple[dict, bool]:
    """The failed row of an image whose result never came back (its worker died under it, the engine failed)."""
    row = dict(task.row)
    if isinstance(error, BrokenProcessPool):
        message = f"{task.path}: its worker process died (killed, or out of memory?); run again to redo it."
    else:
        message = failure_message(task.path, error)
    row.update(status="failed", message=message)
    return row, False
