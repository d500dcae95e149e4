"""One process per device under ``torchrun``, on ``ignite.distributed``: rank-0-only work, DDP, one log.

Everything here is a no-op in a single process (ignite's serial model), so ``configs/train.json`` calls
it unconditionally and ``configs/multi_gpu_train.json`` only swaps in samplers and DDP wrappers;
handlers that write (TensorBoard, checkpoints, history) are ``_disabled_`` on other ranks by
``@is_not_rank0`` in ``train.json`` itself. NCCL on CUDA, gloo on CPU (what the 2-process CI test uses).
What ignite lacks and this adds: the config-facing error for a missing ``torchrun``, BatchNorm buffers
synchronised before validation, and a clear error when a rank would get no validation case.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

import ignite.distributed as idist
import torch
from ignite.distributed.utils import one_rank_only
from ignite.engine import Engine, Events
from torch import nn

from bundle.errors import InputError

__all__ = [
    "SyncBuffers",
    "barrier",
    "cleanup",
    "ddp",
    "init",
    "is_main",
    "local_device",
    "main_first",
    "main_only",
    "on_this_rank",
    "require_shares",
    "unwrap",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def is_main() -> bool:
    return idist.get_rank() == 0


def local_device(device: str | None = None) -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (or ``device`` says cuda), else the CPU.

    Read from torchrun's environment, so it is right before :func:`init` too (config checks run first).
    """
    if device is not None and not str(device).startswith("cuda"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def init(backend: str | None = None) -> None:
    """Join the process group that ``torchrun`` describes (once); other ranks log warnings only."""
    if idist.get_world_size() > 1:
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "configs/multi_gpu_train.json needs torchrun: torchrun --nproc_per_node=N -m monai.bundle run ..."
        )
    idist.initialize(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    if not is_main():
        # not monai.utils.RankFilter: it filters only the handlers that exist when it is added, and MONAI's
        # StatsHandler makes its own later; this also keeps other ranks' warnings and errors
        logging.disable(logging.INFO)
    logger.info(f"{idist.get_world_size()} processes ({idist.backend()}); rank 0 logs and saves")


def cleanup() -> None:
    if idist.get_world_size() > 1:
        idist.barrier()
        idist.finalize()


def barrier() -> None:
    idist.barrier()


def main_only(fn: Callable[..., T], *args, **kwargs) -> T | None:
    """Run ``fn`` on rank 0 (files are written once), then let every rank continue together."""
    return one_rank_only(rank=0, with_barrier=True)(fn)(*args, **kwargs)


def main_first(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on rank 0 first (it may write files, e.g. the synthetic data), then on the others."""
    with idist.one_rank_first(rank=0):
        return fn(*args, **kwargs)


def on_this_rank(*handler_lists: list | None) -> list:
    """The handlers of ``handler_lists`` that run on this process, in one list.

    A handler ``_disabled_`` by ``@is_not_rank0`` is dropped from a list the config references directly,
    but stays as ``None`` in one that an expression builds; this drops it there too.
    """
    return [h for handlers in handler_lists for h in handlers or [] if h is not None]


def ddp(module: nn.Module) -> nn.Module:
    """``module`` on this process's device, in ``DistributedDataParallel`` when there are several processes."""
    return idist.auto_model(module) if idist.get_world_size() > 1 else module


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (evaluators run it without collectives)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class SyncBuffers:
    """At each epoch's end, before validation: rank 0's buffers (BatchNorm statistics) on every process.

    DDP broadcasts buffers at the start of each forward, then every process updates its BatchNorm
    statistics from its own batch; without this, each process would validate a slightly different
    network from the one rank 0 saves.
    """

    def __init__(self, network: nn.Module):
        self.network = network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_world_size() > 1:
            for buffer in unwrap(self.network).buffers():
                buffer.copy_(idist.broadcast(buffer, src=0))


def require_shares(datalists: dict[str, list]) -> dict[str, list]:
    """Every process needs a validation case (MONAI's metric gathering waits for all of them)."""
    if len(datalists["val"]) < idist.get_world_size():
        raise InputError(
            f"{len(datalists['val'])} validation case(s) for {idist.get_world_size()} processes: every process "
            "needs one; use fewer processes or a larger val_fraction."
        )
    return datalists
