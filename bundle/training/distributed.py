"""One process per device under ``torchrun``: process group, device, rank-0-only work, and DDP.

Everything here is a no-op in a single process, so ``configs/train.json`` calls it unconditionally and
``configs/multi_gpu_train.json`` only swaps in samplers, DDP wrappers and rank-0 handler lists.
NCCL on CUDA, gloo on CPU (what the 2-process CI test uses).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
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
    "rank",
    "require_shares",
    "unwrap",
    "world_size",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_device(device: str | None = None) -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available (or ``device`` says cuda), else the CPU."""
    if device is not None and not str(device).startswith("cuda"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def init(backend: str | None = None) -> None:
    """Join the process group that ``torchrun`` describes in the environment (once)."""
    if is_distributed():
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "configs/multi_gpu_train.json needs torchrun: torchrun --nproc_per_node=N -m monai.bundle run ..."
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend=backend)
    logger.info(f"{world_size()} processes ({backend}); rank 0 logs and saves")
    if not is_main():
        logging.disable(logging.INFO)  # one log: the other ranks report only warnings and errors


def cleanup() -> None:
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def main_only(fn: Callable[..., T], *args, **kwargs) -> T | None:
    """Run ``fn`` on rank 0 (files are written once), then let every rank continue together."""
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result


def main_first(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on rank 0 first (it may write files, e.g. the synthetic data), then on the others."""
    if is_main():
        result = fn(*args, **kwargs)
        barrier()
        return result
    barrier()
    return fn(*args, **kwargs)


def ddp(module: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Wrap ``module`` in ``DistributedDataParallel`` when there are several processes."""
    if not is_distributed():
        return module
    device = torch.device(device) if device is not None else next(module.parameters()).device
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module.to(device), device_ids=ids)


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
        if is_distributed():
            for buffer in unwrap(self.network).buffers():
                dist.broadcast(buffer, src=0)


def require_shares(datalists: dict[str, list]) -> dict[str, list]:
    """Every process needs a validation case (MONAI's metric gathering waits for all of them)."""
    if len(datalists["val"]) < world_size():
        raise InputError(
            f"{len(datalists['val'])} validation case(s) for {world_size()} processes: every process needs one; "
            "use fewer processes or a larger val_fraction."
        )
    return datalists
