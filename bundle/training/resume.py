"""Resumable training: the whole training state after every epoch, reloaded on request.

MONAI's ``CheckpointSaver`` names interval checkpoints by epoch and cannot hold the trainer that owns
it (a config cannot reference the trainer inside the trainer's own handler list), so this attaches
ignite's ``Checkpoint`` with a fixed file name after the trainer is built.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable, Transform

from bundle.options import as_bool

__all__ = ["BestSoFar", "RandomState", "resumable"]

logger = logging.getLogger(__name__)


def resumable(trainer: Engine, save_dir: str | Path, resume: bool = False, **objects) -> Engine:
    """Save ``trainer`` and ``objects`` (model, optimizer, scheduler...) to ``save_dir/last.pt`` every epoch.

    With ``resume``, first restore them from that file if it exists, and carry on to the configured
    ``max_epochs``. Every random-number generator is saved and restored with them (:class:`RandomState`),
    so a resumed run draws the same shuffles and augmentations as one that was never stopped.
    Returns the trainer, so a config can write ``resumable(...).run()``.
    """
    save_dir = Path(save_dir)
    loader = getattr(trainer, "data_loader", None)
    state = {"trainer": trainer, **objects, "random": RandomState([loader] if loader is not None else [])}
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
    ranking of each ``CheckpointSaver`` among ``handlers`` (without it, a resumed run's first validation
    would overwrite the best checkpoint whatever its score).

    The savers' ranking is rebuilt from the best metric through their public ``load_state_dict`` (ignite's
    ``Checkpoint`` state format: ``{"_saved": [(priority, filename)]}``; MONAI's saver writes its fixed
    file name whatever the entry's name), so nothing private is read.
    """

    def __init__(self, evaluator: Engine, handlers: list | None = None):
        self.evaluator = evaluator
        self.savers = [h for h in handlers or [] if isinstance(h, CheckpointSaver)]

    def state_dict(self) -> dict:
        return {
            "best_metric": self.evaluator.state.best_metric,
            "best_metric_epoch": self.evaluator.state.best_metric_epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        best = state["best_metric"]
        self.evaluator.state.best_metric = best
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        if best is not None and state["best_metric_epoch"] > 0:
            for saver in self.savers:
                saver.load_state_dict({"_saved": [(float(best), "best")]})


class RandomState:
    """Python's, NumPy's and torch's generators (CPU and CUDA), and those of the random transforms.

    DataLoader workers and samplers draw their seeds from torch's generator at every epoch, so restoring
    it restores them. Random transforms that run in the main process (``num_workers`` 0) keep their own
    NumPy generator per transform: those of the loaders' datasets are saved too.
    """

    def __init__(self, loaders: Iterable = ()):
        self.transforms = [t for loader in loaders for t in _random_transforms(getattr(loader, "dataset", None))]

    def state_dict(self) -> dict:
        return {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "transforms": [t.R.get_state() for t in self.transforms],
        }

    def load_state_dict(self, state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        if len(state["transforms"]) != len(self.transforms):
            logger.warning("warning: the data transforms changed since the checkpoint; their random state is new")
            return
        for t, saved in zip(self.transforms, state["transforms"]):
            t.R.set_state(saved)


def _random_transforms(dataset) -> list[Randomizable]:
    """Every generator-holding transform, nested ones included (``RandAffined`` draws from the
    generators of its ``RandAffine`` and that one's ``RandAffineGrid``, not only its own)."""
    found: dict[int, Randomizable] = {}

    def walk(obj) -> None:
        if isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif isinstance(obj, (Transform, Randomizable)) and id(obj) not in found:
            if isinstance(obj, Randomizable):
                found[id(obj)] = obj
            else:
                found[id(obj)] = None
            for value in vars(obj).values():
                walk(value)

    walk(getattr(dataset, "transform", None))
    return [t for t in found.values() if t is not None]
