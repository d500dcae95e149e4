"""Resumable training: the whole training state after every epoch, reloaded on request.

MONAI's ``CheckpointSaver`` names interval checkpoints by epoch and cannot hold the trainer that owns
it (a config cannot reference the trainer inside the trainer's own handler list), so this attaches
ignite's ``Checkpoint`` with a fixed file name after the trainer is built.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from bundle.options import as_bool

__all__ = ["resumable"]

logger = logging.getLogger(__name__)


def resumable(trainer: Engine, save_dir: str | Path, resume: bool = False, **objects) -> Engine:
    """Save ``trainer`` and ``objects`` (model, optimizer, scheduler...) to ``save_dir/last.pt`` every epoch.

    With ``resume``, first restore them from that file if it exists, and carry on to the configured
    ``max_epochs``. Returns the trainer, so a config can write ``resumable(...).run()``.
    """
    save_dir = Path(save_dir)
    state = {"trainer": trainer, **objects}
    path = save_dir / "last.pt"
    resume = as_bool(resume, "resume")
    if resume and path.is_file():
        max_epochs = trainer.state.max_epochs
        Checkpoint.load_objects(to_load=state, checkpoint=torch.load(path, map_location="cpu", weights_only=False))
        trainer.state.max_epochs = max(max_epochs, trainer.state.epoch)
        logger.info(f"resuming from {path} after epoch {trainer.state.epoch} of {trainer.state.max_epochs}")
    elif resume:
        logger.warning(f"resume requested but {path} does not exist: starting from the beginning")
    saver = Checkpoint(state, DiskSaver(str(save_dir), require_empty=False), filename_pattern="last.{ext}", n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    return trainer
