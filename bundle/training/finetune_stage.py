"""Stage 3: spike-based fine-tuning of the converted SNN with surrogate gradients through time
(``finetune_snn``), and the refine round, which is a second instance of the same stage.

One :class:`FinetuneStage` per round: it starts from an SNN checkpoint (or, ``start="random"``, from a
spiking U-Net calibrated on random weights: the direct-training baseline), trains it with MONAI's
``SupervisedTrainer`` at ``timesteps``, keeps the best validation checkpoint and writes it as a
self-contained SNN checkpoint recording how it was trained (:func:`~bundle.training.finetune.save_finetuned`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from functools import cached_property

import torch
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointSaver, LrScheduleHandler, ValidationHandler

from bundle import errors
from bundle.networks.checkpoint import load_weights_if
from bundle.networks.precision import MixedPrecision
from bundle.networks.unet import fresh_copy
from bundle.options import as_bool, one_of
from bundle.spiking import checkpoint
from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.neurons import set_surrogate
from bundle.spiking.segmenter import SpikingSegmenter
from bundle.training import distributed
from bundle.training.averaging import WeightAverage
from bundle.training.context import TrainingRun
from bundle.training.conversion_stage import ConversionSettings
from bundle.training.finetune import FreshOptimizerAtRestart, learnable_scales, param_groups, save_finetuned
from bundle.training.losses import finetune_loss
from bundle.training.progress import ProgressLogger
from bundle.training.resume import BestSoFar, resumable
from bundle.training.schedules import lr_schedule
from bundle.training.spike_metrics import SpikeActivity

__all__ = ["FinetuneSettings", "FinetuneStage", "refine_settings"]

logger = logging.getLogger(__name__)
STARTS = ("converted", "random")


@dataclass(frozen=True)
class FinetuneSettings:
    """One fine-tuning round's settings; their config keys are ``finetune_<name>`` (``refine_<name>`` for
    the four a refine round sets itself)."""

    epochs: int = 9
    timesteps: int = 4
    learning_rate: float = 1e-4
    loss: str = "dice"
    lr_schedule: str = "restart"
    restart_epoch: int = 4
    restart_gain: float = 0.5
    restart_fresh_optimizer: bool = False
    warmup_epochs: int = 0
    learn_scales: bool = True
    scale_learning_rate: float = 1e-3
    surrogate: str = "atan"
    surrogate_alpha: float = 2.0
    amp: bool = False
    ema_decay: float = 0.0
    rate_penalty: float = 0.0
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    val_interval: int = 1
    prefix: str = "finetune_"

    def config_values(self) -> dict:
        return {self.prefix + k: v for k, v in asdict(self).items() if k != "prefix"}

    def recipe(self, randomize: float) -> dict:
        own = {k: v for k, v in asdict(self).items() if k not in ("prefix", "val_interval")}
        return {**own, "randomize": randomize}


def refine_settings(
    base: FinetuneSettings, epochs: int, timesteps: int, learning_rate: float, lr_schedule: str
) -> FinetuneSettings:
    """The refine round: stage 3's settings with its own epochs, T, learning rate and schedule."""
    return replace(base, epochs=epochs, timesteps=timesteps, learning_rate=learning_rate, lr_schedule=lr_schedule,
                   prefix="refine_")  # fmt: skip


class FinetuneStage:
    """A fine-tuning round from ``start_ckpt`` to ``out_ckpt``, named ``name`` (its logs, history, resume
    folder and MLflow run). ``ann_ckpt`` is read only for distillation (``distill_weight`` > 0);
    ``randomize``, when given, is this round's domain randomisation strength instead of the run's."""

    def __init__(
        self,
        run: TrainingRun,
        settings: FinetuneSettings,
        name: str = "finetune",
        start_ckpt: str | None = None,
        out_ckpt: str = "runs/models/model_snn_finetuned.pt",
        ann_ckpt: str | None = None,
        start: str = "converted",
        conversion: ConversionSettings | None = None,
        randomize: float | None = None,
    ):
        self.context, self.settings, self.name = run, settings, name
        self.start_ckpt, self.out_ckpt, self.ann_ckpt = start_ckpt, out_ckpt, ann_ckpt
        self.start, self.conversion, self.randomize = start, conversion or ConversionSettings(), randomize

    @property
    def strength(self) -> float:
        """This round's randomisation strength: its own, else the run's."""
        return self.context.settings.randomize if self.randomize is None else self.randomize

    # ---- the network ----
    @cached_property
    def loaded(self) -> tuple[torch.nn.Module, dict]:
        """The SNN to fine-tune and the settings that rebuild it."""
        run, s = self.context, self.settings
        if one_of(self.start, STARTS, "finetune_start") == "converted":
            return errors.or_exit(checkpoint.load_snn, run.unet(), self.start_ckpt, run.device)
        c = self.conversion  # the conversion stage's calibration, applied to a random U-Net
        images = one_at_a_time(run.calibration_loader(c.calibration_cases))
        snn = convert(fresh_copy(run.unet()), images, mode=c.norm_mode, channel_wise=c.channel_wise,
                      neuron=c.neuron, v_init=c.v_init, device=run.device)  # fmt: skip
        settings = {
            "mode": c.norm_mode, "channel_wise": c.channel_wise, "neuron": c.neuron, "v_init": c.v_init,
            "timesteps": s.timesteps, "readout": "membrane", "spatial_dims": run.settings.spatial_dims,
            "channels": list(run.settings.channels), "standardization": run.settings.standardization,
            "trained_from": "random weights (direct training)",
        }  # fmt: skip
        return snn, settings

    @cached_property
    def segmenter(self) -> SpikingSegmenter:
        s, c = self.settings, self.conversion
        snn = set_surrogate(learnable_scales(self.loaded[0], s.learn_scales), s.surrogate, s.surrogate_alpha)
        return SpikingSegmenter(snn, s.timesteps, "membrane", multi_step=c.multi_step, kernel=c.neuron_kernel)

    @cached_property
    def loss(self) -> torch.nn.Module:
        run, s = self.context, self.settings
        teacher = load_weights_if(s.distill_weight > 0, run.unet(), self.ann_ckpt, "train_ann", run.device)
        return finetune_loss(s.loss, self.segmenter, rate_penalty=s.rate_penalty, distill_weight=s.distill_weight,
                             temperature=s.distill_temperature, ann=teacher)  # fmt: skip

    @cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        return torch.optim.Adam(param_groups(self.segmenter, s.learning_rate, s.scale_learning_rate), lr=s.learning_rate)

    @cached_property
    def lr_scheduler(self):
        s = self.settings
        return lr_schedule(s.lr_schedule, self.optimizer, s.epochs, s.restart_epoch, s.restart_gain, s.warmup_epochs)

    # ---- the engines ----
    @cached_property
    def val_handlers(self) -> list:
        run = self.context
        saver = None
        if distributed.is_main():
            saver = CheckpointSaver(save_dir=run.path("resume", self.name), save_dict={"model": self.segmenter},
                                    save_key_metric=True, key_metric_filename="best.pt")  # fmt: skip
        return [SpikeActivity(self.segmenter), run.stats(), run.tensorboard(self.name, train=False), saver,
                *run.tracking(self.name, "validator")]  # fmt: skip

    @cached_property
    def evaluator(self):
        return self.context.evaluator(self.segmenter, self.val_handlers, self.settings.amp)

    @cached_property
    def ema(self) -> WeightAverage:
        return WeightAverage(self.segmenter, self.evaluator, self.settings.ema_decay)

    @cached_property
    def trainer(self) -> SupervisedTrainer:
        run, s = self.context, self.settings
        network = self.loss.network
        progress = None
        if distributed.is_main():
            history = run.path("history", f"{self.name}.csv")
            progress = ProgressLogger(evaluator=self.evaluator, stage=self.name, history_file=history)
        handlers = [
            distributed.SyncBuffers(self.segmenter) if run.is_distributed else None,
            LrScheduleHandler(self.lr_scheduler, print_lr=False),
            FreshOptimizerAtRestart(self.optimizer, s.lr_schedule, s.restart_epoch, s.epochs, s.restart_fresh_optimizer),
            self.ema,
            ValidationHandler(validator=self.evaluator, interval=s.val_interval, epoch_level=True),
            run.tensorboard(self.name, train=True),
            progress,
            *run.tracking(self.name, "trainer"),
        ]
        return SupervisedTrainer(
            device=run.device,
            max_epochs=s.epochs,
            train_data_loader=run.train_loader_with(self.strength),
            network=MixedPrecision(distributed.ddp(network) if run.is_distributed else network, s.amp),
            optimizer=self.optimizer,
            loss_function=self.loss,
            inferer=run.train_inferer,
            train_handlers=[h for h in handlers if h is not None],
        )

    # ---- the round ----
    def spec(self) -> dict:
        inputs = [self.start_ckpt] if self.start == "converted" else []
        return {"inputs": inputs, "outputs": [self.out_ckpt], "settings": self.settings.recipe(self.strength)}

    def run(self) -> None:
        """Fine-tune (nothing when ``epochs`` is 0; a finished round is skipped with ``--resume true``)."""
        if self.settings.epochs <= 0:
            return
        self.context.stages.run(self.name, self._finetune, self.spec())

    def _finetune(self) -> None:
        run, s = self.context, self.settings
        run.seed()
        source = self.start_ckpt if self.start == "converted" else "random weights"
        logger.info(f"[{self.name}] {source} -> {self.out_ckpt}: {s.epochs} epochs at T={s.timesteps}, "
                    f"lr {s.learning_rate} {s.lr_schedule}, randomize {self.strength}")  # fmt: skip
        resumable(
            self.trainer, run.path("resume", self.name), run.settings.resume, model=self.segmenter,
            optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, ema=self.ema,
            best=BestSoFar(self.evaluator, self.val_handlers),
        ).run()  # fmt: skip
        distributed.main_only(self._save)

    def _save(self) -> None:
        s, state = self.settings, self.evaluator.state
        record = {k: v for k, v in asdict(s).items() if k not in ("prefix", "val_interval", "amp", "surrogate_alpha")}
        record["restart_fresh_optimizer"] = as_bool(s.restart_fresh_optimizer, "finetune_restart_fresh_optimizer")
        record["learn_scales"] = as_bool(s.learn_scales, "finetune_learn_scales")
        record["randomize"] = self.strength
        save_finetuned(self.context.path("resume", self.name, "best.pt"), self.loaded[1], self.out_ckpt,
                       **record, best_val_mean_dice=state.best_metric, best_epoch=state.best_metric_epoch)  # fmt: skip
