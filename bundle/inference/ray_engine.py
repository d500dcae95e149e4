"""Workers on a Ray cluster: each image is one Ray task; Ray places the tasks on its nodes' cores and GPUs.

    hippo-snn segment IN OUT --engine ray --workers 32 --ray-address ray://head:10001   # an existing cluster
    hippo-snn segment IN OUT --engine ray --workers 2                                   # a local one, started here

Ray is an optional dependency (``pip install -e ".[cohort]"``). Every node must see IN and OUT at the same
paths (a shared file system) and have this package installed; the model is loaded once per Ray worker process
and kept there. The driver (this process) decides, records and owns ``volumes.csv`` as in every other run
(:mod:`bundle.inference.segment`); a Ray task returns its row, or fails its own image only.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from bundle.errors import InputError
from bundle.inference.settings import InferenceSettings
from bundle.inference.workers import ImageTask, cpu_count, segment_one, settings_segmenter

__all__ = ["RayExecutor", "require_ray"]

logger = logging.getLogger("bundle.inference")


def require_ray():
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(
            'engine ray: Ray is not installed here; pip install -e ".[cohort]" (or pip install ray).'
        ) from None
    return ray


def _segment(settings: InferenceSettings, task: ImageTask, threads: int) -> tuple[dict, bool]:
    """One image in a Ray worker process (torch threads set, model loaded, on first use)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return segment_one(settings_segmenter(settings), task)


class RayExecutor:
    """``workers`` Ray tasks at a time, each with ``threads`` CPUs (default: the cluster's CPUs shared out) and,
    where the cluster has GPUs and ``settings.device`` is not ``cpu``, its share of one GPU.

    Joins the cluster at ``address`` (None: starts a local one with this machine's cores, stopped by
    :meth:`close`), or the one this process already joined.
    """

    def __init__(
        self, settings: InferenceSettings, workers: int, address: str | None = None, threads: int | None = None
    ):
        ray = require_ray()
        self._started = not ray.is_initialized()
        if self._started:
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                else:
                    ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING, object_store_memory=256 * 2**20)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - any failure to reach the cluster is one line
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise InputError(f"engine ray: cannot start or join {where} ({type(e).__name__}: {e}).") from None
        try:
            resources = ray.cluster_resources()
            self.workers, self.slots = workers, 2 * workers
            self.threads = threads or max(1, int(resources.get("CPU", 1)) // workers)
            gpus = resources.get("GPU", 0) if settings.device != "cpu" else 0
            options = {"num_cpus": self.threads, "max_retries": 0}
            if gpus:
                options["num_gpus"] = min(1.0, gpus / workers)
            # max_calls 0: a worker process is never recycled, so the model it loaded stays loaded
            self._task = ray.remote(max_calls=0)(_segment).options(**options)
            self._settings = ray.put(settings)
        except BaseException:
            self.close()
            raise
        logger.info(
            f"Ray: {int(resources.get('CPU', 0))} CPU(s), {gpus:g} GPU(s); {workers} task(s) at a time, "
            f"{self.threads} CPU(s) each"
        )

    def submit(self, task: ImageTask) -> Future:
        return self._task.remote(self._settings, task, self.threads).future()

    def close(self) -> None:
        if self._started:
            require_ray().shutdown()
