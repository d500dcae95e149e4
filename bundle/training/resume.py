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
from monai.handlers import CheckpointSaver

from bundle.options import as_bool

__all__ = ["BestSoFar", "resumable"]

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
        saved = torch.load(path, map_location="cpu", weights_only=False)
        # files from before an object was added (e.g. "best") load what they have
        Checkpoint.load_objects(to_load={k: v for k, v in state.items() if k in saved}, checkpoint=saved)
        trainer.state.max_epochs = max(max_epochs, trainer.state.epoch)
        logger.info(f"resuming from {path} after epoch {trainer.state.epoch} of {trainer.state.max_epochs}")
    elif resume:
        logger.warning(f"resume requested but {path} does not exist: starting from the beginning")
    saver = Checkpoint(state, DiskSaver(str(save_dir), require_empty=False), filename_pattern="last.{ext}", n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    return trainer


class BestSoFar:
    """The validation best so far, kept across a resume: the evaluator's best metric and epoch, and the
    record of each ``CheckpointSaver`` among ``handlers`` (without it, a resumed run's first validation
    would overwrite the best checkpoint whatever its score)."""

    def __init__(self, evaluator: Engine, handlers: list | None = None):
        self.evaluator = evaluator
        self.savers = [
            h for h in handlers or [] if isinstance(h, CheckpointSaver) and h._key_metric_checkpoint is not None
        ]

    def state_dict(self) -> dict:
        return {
            "best_metric": self.evaluator.state.best_metric,
            "best_metric_epoch": self.evaluator.state.best_metric_epoch,
            "savers": [s._key_metric_checkpoint.state_dict() for s in self.savers],
        }

    def load_state_dict(self, state: dict) -> None:
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        for saver, saved in zip(self.savers, state["savers"]):
            saver.load_state_dict(saved)
