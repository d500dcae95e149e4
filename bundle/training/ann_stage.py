"""Stage 1: the ANN, a convertible U-Net trained with Dice + cross-entropy (``train_ann``).

MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` on the run's loaders; the best validation
checkpoint (MONAI's ``CheckpointSaver``) carries the input contract (:class:`InputRecord`) beside the
weights; every epoch's whole state is kept for ``--resume`` (:mod:`bundle.training.resume`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import cached_property

import torch
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler, MetricsSaver, ValidationHandler
from monai.losses import DiceCELoss

from bundle import errors
from bundle.networks import qcfs
from bundle.networks.checkpoint import InputRecord, load_weights
from bundle.networks.precision import MixedPrecision
from bundle.spiking.conversion import one_at_a_time
from bundle.training import distributed
from bundle.training.averaging import WeightAverage
from bundle.training.context import TrainingRun
from bundle.training.progress import ProgressLogger
from bundle.training.resume import BestSoFar, resumable

__all__ = ["AnnSettings", "AnnStage", "trainer"]

NAME = "ann"
METRICS = ["val_mean_dice", "val_dice_anterior", "val_dice_posterior"]


@dataclass(frozen=True)
class AnnSettings:
    """Stage 1's keys (names as in ``configs/train.json``)."""

    ann_ckpt: str = "runs/models/model_ann.pt"
    epochs: int = 60
    learning_rate: float = 3e-3
    val_interval: int = 5
    amp: bool = False
    ema_decay: float = 0.995
    init_ckpt: str | None = None  # a trained ANN of this shape to start from (refining it on new data settings)
    qcfs_init_ckpt: str | None = None
    qcfs_init_percentile: float = 99.9
    qcfs_threshold_learning_rate: float | None = None
    calibration_cases: int = 32  # images that set QCFS thresholds when starting from a ReLU checkpoint

    def recipe(self, run: TrainingRun) -> dict:
        """What the stage's output depends on: a resumed run reuses the stage only while this is unchanged."""
        s = run.settings
        shape = {k: getattr(s, k) for k in ("spatial_dims", "channels", "activation", "levels", "patch_size")}
        data = {k: getattr(s, k) for k in ("batch_size", "standardization", "randomize")}
        own = asdict(self)
        own.pop("ann_ckpt")
        if self.init_ckpt is None:
            own.pop("init_ckpt")  # recipes written before the key keep matching
        if self.qcfs_init_ckpt is None:
            own.pop("calibration_cases")
        return {**own, **shape, **data}


class AnnStage:
    """Builds stage 1's network, optimizer, trainer and evaluator from ``run`` and ``settings``; :meth:`run`
    trains, keeping the best validation checkpoint at ``settings.ann_ckpt``."""

    def __init__(self, run: TrainingRun, settings: AnnSettings):
        self.context, self.settings = run, settings

    @cached_property
    def network(self) -> torch.nn.Module:
        s, run = self.settings, self.context
        network = run.unet()
        if s.init_ckpt:
            errors.or_exit(load_weights, network, s.init_ckpt, "train_ann", run.device)
            network.train()
        start = errors.or_exit(
            qcfs.start_from, network, s.qcfs_init_ckpt,
            one_at_a_time(run.calibration_loader(s.calibration_cases)), s.qcfs_init_percentile, run.device,
        )  # fmt: skip
        return distributed.ddp(start) if run.is_distributed else start

    @cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        groups = qcfs.param_groups(self.network, s.learning_rate, s.qcfs_threshold_learning_rate)
        return torch.optim.AdamW(groups, lr=s.learning_rate, weight_decay=1e-5)

    @cached_property
    def lr_scheduler(self):
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.settings.epochs)

    @cached_property
    def val_handlers(self) -> list:
        run, s = self.context, self.settings
        saver = None
        if distributed.is_main():
            saver = CheckpointSaver(
                save_dir=os.path.dirname(os.path.abspath(s.ann_ckpt)),
                save_dict={"model": distributed.unwrap(self.network), "input": InputRecord(run.settings.standardization)},
                save_key_metric=True, key_metric_filename=os.path.basename(s.ann_ckpt),
            )  # fmt: skip
        return [run.stats(), run.tensorboard(NAME, train=False), saver, *run.tracking(NAME, "validator")]

    @cached_property
    def evaluator(self):
        return self.context.evaluator(distributed.unwrap(self.network), self.val_handlers, self.settings.amp)

    @cached_property
    def ema(self) -> WeightAverage:
        return WeightAverage(self.network, self.evaluator, self.settings.ema_decay)

    @cached_property
    def trainer(self) -> SupervisedTrainer:
        run, s = self.context, self.settings
        progress = None
        if distributed.is_main():
            progress = ProgressLogger(evaluator=self.evaluator, stage=NAME, history_file=run.path("history", "ann.csv"))
        handlers = [
            distributed.SyncBuffers(self.network) if run.is_distributed else None,
            LrScheduleHandler(self.lr_scheduler, print_lr=False),
            ValidationHandler(validator=self.evaluator, interval=s.val_interval, epoch_level=True),
            run.tensorboard(NAME, train=True),
            progress,
            self.ema,
            *run.tracking(NAME, "trainer"),
        ]
        return SupervisedTrainer(
            device=run.device,
            max_epochs=s.epochs,
            train_data_loader=run.train_loader,
            network=MixedPrecision(self.network, s.amp),
            optimizer=self.optimizer,
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False, batch=True),
            inferer=run.train_inferer,
            train_handlers=[h for h in handlers if h is not None],
        )

    def spec(self) -> dict:
        return {"inputs": [], "outputs": [self.settings.ann_ckpt], "settings": self.settings.recipe(self.context)}

    def run(self) -> None:
        """Train (or, with ``--resume true``, skip a finished stage / continue an unfinished one)."""
        self.context.stages.run(NAME, self._train, self.spec())

    def _train(self) -> None:
        self.context.seed()
        trainer = self.trainer
        resumable(
            trainer, self.context.path("resume", NAME), self.context.settings.resume, model=self.network,
            optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, ema=self.ema,
            best=BestSoFar(self.evaluator, self.val_handlers),
        ).run()  # fmt: skip

    def validate(self) -> None:
        """Score ``ann_ckpt`` on the validation cases: per-case and per-class Dice CSVs in ``<output_dir>/eval_ann``."""
        run, s = self.context, self.settings
        errors.or_exit(errors.require_file, s.ann_ckpt, "train_ann")
        network = run.unet().to(run.device)
        handlers = [
            CheckpointLoader(load_path=s.ann_ckpt, load_dict={"model": network}, strict=True, map_location=run.device),
            run.stats(),
            MetricsSaver(
                save_dir=run.path("eval_ann"), metrics=METRICS, metric_details=["val_mean_dice"],
                batch_transform=lambda batch: [item["image"].meta for item in batch], summary_ops="*",
            ),
        ]  # fmt: skip
        run.evaluator(network, handlers, s.amp).run()


def trainer(stage: AnnStage, max_epochs: int) -> SupervisedTrainer:
    """Stage 1's trainer, for MONAI's workflow properties (``train#trainer`` with its ``max_epochs``)."""
    if int(max_epochs) != stage.settings.epochs:
        raise ValueError(f"train#trainer#max_epochs {max_epochs} != epochs {stage.settings.epochs}: set --epochs.")
    return stage.trainer
