"""What every training stage shares: the run's settings, its data, the U-Net's shape, validation and records.

``configs/train.json`` declares one :class:`TrainingRun` and hands it to each stage
(:mod:`~bundle.training.ann_stage`, :mod:`~bundle.training.conversion_stage`,
:mod:`~bundle.training.finetune_stage`). Nothing is read or written when it is built: the data, loaders and
output folders come into being when a stage first asks, after :meth:`TrainingRun.initialize` has checked
every value. Under ``torchrun`` (``distributed: true``, ``configs/multi_gpu_train.json``) the loaders get
distributed samplers and only rank 0 writes; in one process the same code runs without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader, Dataset, DistributedSampler
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, StatsHandler, TensorBoardStatsHandler, from_engine
from monai.inferers import SimpleInferer
from monai.utils import path_to_sqlite_uri, set_determinism
from torch import nn

from bundle import config_checks, errors, runtime
from bundle.data import datalist, transforms
from bundle.inference.inferers import make_inferer
from bundle.networks import divisor
from bundle.networks.checkpoint import checked_unet
from bundle.networks.precision import MixedPrecision
from bundle.options import as_bool
from bundle.training import distributed, metrics, tracking
from bundle.training.stages import Stages

__all__ = ["RunSettings", "TrainingRun", "config_values"]


@dataclass(frozen=True)
class RunSettings:
    """The run's own keys (names as in ``configs/train.json``): where, on what data, with which U-Net."""

    output_dir: str = "runs"
    ckpt_dir: str = "runs/models"
    dataset_dir: str | None = None
    download: bool = False
    synthetic_cases: int = 24
    val_fraction: float = 0.2
    seed: int = 0
    split_seed: int = 0
    device: Any = "cpu"
    num_workers: int = 2
    distributed: bool = False
    resume: bool = False
    spatial_dims: int = 3
    num_classes: int = 3
    channels: Sequence[int] = (16, 32, 64, 128)
    activation: str = "relu"
    levels: int = 4
    patch_size: Any = "default"
    roi_size: Any = "default"
    window: str = "fit"
    standardization: str = "histogram"
    randomize: float = 0.5
    batch_size: int = 4
    tracking_uri: str | None = None
    experiment_name: str = "hippocampus_snn"

    def __post_init__(self):
        # "default" and "small" are the per-dimension presets of bundle.data.transforms
        for key, table in (("patch_size", transforms.PATCH_SIZE), ("roi_size", transforms.ROI_SIZE)):
            value = getattr(self, key)
            if value == "small":
                table = transforms.SMALL_PATCH_SIZE
            if value in ("default", "small", None) and self.spatial_dims in table:
                object.__setattr__(self, key, list(table[self.spatial_dims]))


def config_values(*settings: Any) -> dict[str, Any]:
    """The config keys and values of settings objects (their ``config_values()``, else their fields)."""
    values: dict[str, Any] = {}
    for s in settings:
        own = s.config_values() if hasattr(s, "config_values") else {f.name: getattr(s, f.name) for f in fields(s)}
        values.update(own)
    return values


class TrainingRun:
    """The shared parts of a training run, built on first use.

    Args:
        settings: the run's :class:`RunSettings`.
        handlers: the config's top-level ``handlers``, where MONAI's ``--tracking mlflow`` puts its
            MLflow handler; each stage then tracks to an MLflow run of its own name.
        network_factory: makes a new network for a stage (default: the convertible U-Net of the settings;
            a study swaps in another, e.g. ``{"_target_": "DynUNet", "_mode_": "callable", ...}``).
        divisor: what validation windows must be multiples of (default: the U-Net's, from ``channels``).
    """

    def __init__(
        self,
        settings: RunSettings,
        handlers: Sequence | None = None,
        network_factory: Callable[[], nn.Module] | None = None,
        divisor: int | None = None,
    ):
        self.settings = settings
        self.handlers = list(handlers or [])
        self.network_factory, self.divisor = network_factory, divisor
        self._loaders: dict[float, DataLoader] = {}  # training loaders under other randomisation strengths

    @cached_property
    def device(self) -> torch.device:
        """The run's device; under torchrun, this process's own GPU (``cuda:LOCAL_RANK``) when it has GPUs."""
        return distributed.local_device(str(self.settings.device)) if self.is_distributed else torch.device(self.settings.device)

    @property
    def is_distributed(self) -> bool:  # read when used: a bad value is refused by initialize's check first
        return as_bool(self.settings.distributed, "distributed")

    # ---- the start of every run id ----
    def initialize(self, bundle_root: str, stages: Sequence = ()) -> None:
        """Check every key and value (exit with one line if one is wrong), then seed and make the folders."""
        config_checks.check_config(bundle_root, config_values(self.settings, *[s.settings for s in stages]))
        if self.is_distributed:
            distributed.init()
        runtime.tune_allocator()
        self.seed()
        distributed.main_only(os.makedirs, self.settings.ckpt_dir, exist_ok=True)

    def finalize(self) -> None:
        if self.is_distributed:
            distributed.cleanup()

    def seed(self) -> None:
        """Every stage starts from the run's seed, whether the stages before it ran now or earlier."""
        set_determinism(seed=self.settings.seed)

    # ---- data ----
    @cached_property
    def datalists(self) -> dict[str, list]:
        s = self.settings
        lists = distributed.main_first(
            errors.or_exit, datalist.prepare_datalists, s.dataset_dir, val_fraction=s.val_fraction,
            seed=s.split_seed, download=s.download, synthetic_dir=str(Path(s.output_dir) / "synthetic_data"),
            synthetic_cases=s.synthetic_cases, num_classes=s.num_classes,
        )  # fmt: skip
        return errors.or_exit(distributed.require_shares, lists) if self.is_distributed else lists

    @cached_property
    def train_dataset(self) -> CacheDataset:
        return self._train_dataset(self.settings.randomize)

    @cached_property
    def train_loader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.settings.batch_size, shuffle=True)

    def train_loader_with(self, randomize: float | None) -> DataLoader:
        """The training loader under another randomisation strength (a refine round's own); None: the run's."""
        if randomize is None or float(randomize) == float(self.settings.randomize):
            return self.train_loader
        key = float(randomize)
        if key not in self._loaders:
            self._loaders[key] = self._loader(self._train_dataset(key), self.settings.batch_size, shuffle=True)
        return self._loaders[key]

    def _train_dataset(self, randomize: float) -> CacheDataset:
        s = self.settings
        preprocessing = transforms.train_transforms(
            s.spatial_dims, s.patch_size, standardization=s.standardization, randomize=randomize
        )
        return CacheDataset(self.datalists["train"], preprocessing, cache_rate=1.0, num_workers=s.num_workers)

    @cached_property
    def val_loader(self) -> DataLoader:
        transform = transforms.val_transforms(self.settings.standardization)
        dataset = CacheDataset(self.datalists["val"], transform, cache_rate=1.0, num_workers=self.settings.num_workers)
        return self._loader(dataset, 1, shuffle=False)

    def calibration_loader(self, cases: int) -> DataLoader:
        """The first ``cases`` training images, one window each, under the training's randomisation."""
        s = self.settings
        transform = transforms.calibration_transforms(s.roi_size, s.standardization, s.randomize)
        return self._loader(Dataset(self.datalists["train"][:cases], transform), 1, shuffle=False)

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        sampler = None
        if self.is_distributed:  # training batches split evenly; validation cases each seen once
            sampler = DistributedSampler(dataset, even_divisible=shuffle, shuffle=shuffle)
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            num_workers=self.settings.num_workers, pin_memory=torch.cuda.is_available(),
        )  # fmt: skip

    # ---- network and validation ----
    def unet(self) -> nn.Module:
        """A new U-Net of the run's shape (the config's ``network_def`` describes the same one for MONAI's tools)."""
        s = self.settings
        if self.network_factory is not None:
            return self.network_factory()
        return checked_unet(s.spatial_dims, 1, s.num_classes, channels=s.channels, activation=s.activation, levels=s.levels)

    @cached_property
    def train_inferer(self) -> SimpleInferer:
        return SimpleInferer()

    @cached_property
    def inferer(self):
        """Validation's sliding window, fitted to each image as inference fits it."""
        s = self.settings
        return make_inferer(s.spatial_dims, s.roi_size, window=s.window, divisor=self.divisor or divisor(s.channels))

    def evaluator(self, network: nn.Module, handlers: Sequence, amp: bool = False) -> SupervisedEvaluator:
        """Validation of ``network`` on the validation cases: mean Dice (the key metric) and each class's."""
        return SupervisedEvaluator(
            device=self.device,
            val_data_loader=self.val_loader,
            network=MixedPrecision(network, amp),
            inferer=self.inferer,
            postprocessing=transforms.postprocessing(self.settings.num_classes),
            key_val_metric={"val_mean_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))},
            additional_metrics={"val_dice_anterior": metrics.class_dice(1), "val_dice_posterior": metrics.class_dice(2)},
            val_handlers=[h for h in handlers if h is not None],
        )  # fmt: skip

    # ---- logs, records, tracking ----
    @cached_property
    def stages(self) -> Stages:
        return Stages(Path(self.settings.output_dir) / "resume", self.settings.resume)

    def path(self, *parts: str) -> str:
        return str(Path(self.settings.output_dir, *parts))

    def stats(self) -> StatsHandler:
        return StatsHandler(iteration_log=False)

    def tensorboard(self, stage: str, train: bool) -> TensorBoardStatsHandler | None:
        """Training loss per iteration (``train``) or validation metrics per epoch, on rank 0 only."""
        if not distributed.is_main():
            return None
        if train:
            return TensorBoardStatsHandler(
                log_dir=self.path("tensorboard", stage), tag_name="train_loss", iteration_log=True,
                output_transform=from_engine(["loss"], first=True),
            )  # fmt: skip
        return TensorBoardStatsHandler(log_dir=self.path("tensorboard", stage), iteration_log=False)

    def tracking(self, stage: str, role: str) -> list:
        """MLflow handlers for one engine of ``stage`` when ``--tracking mlflow`` is on (rank 0), else none."""
        if not distributed.is_main():
            return []
        uri = self.settings.tracking_uri or path_to_sqlite_uri(self.path("mlruns.db"))
        return tracking.stage_handlers(self.handlers, stage, role, uri, self.settings.experiment_name)
