"""The refine round: stage 3's fine-tuned SNN fine-tuned once more, at its own timesteps, rate and epochs.

The shipped default SNN is stage 3's T=4 model fine-tuned again for 6 epochs at T=3 (docs/RESULTS.md,
"The shipped frontier"), so `training` ends with this round. The round is the ``finetune_snn`` workflow
itself, parsed again with the round's overrides: it gets everything stage 3 has (resume, validation,
best-epoch checkpoint, history, tracking) without a second copy of the config's fine-tuning section, which
a MONAI bundle config cannot instantiate twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["refine", "round_overrides"]

logger = logging.getLogger(__name__)


def round_overrides(
    values: Mapping[str, Any],
    paths: Mapping[str, Any],
    *,
    epochs: int,
    timesteps: int,
    learning_rate: float,
    lr_schedule: str,
    start_ckpt: str,
    out_ckpt: str,
) -> dict[str, Any]:
    """The keys the round's ``finetune_snn`` run is given: every user-facing value of this run (``values``,
    the config's ``config_values``, so stacked configs and command-line overrides carry over), its paths, and
    the round's own settings on top."""
    resolved = {k: str(v) if isinstance(v, torch.device) else v for k, v in {**values, **paths}.items()}
    return {
        **resolved,
        "snn_converted_ckpt": str(start_ckpt),
        "snn_finetuned_ckpt": str(out_ckpt),
        "finetune_timesteps": int(timesteps),
        "finetune_epochs": int(epochs),
        "finetune_learning_rate": float(learning_rate),
        "finetune_lr_schedule": lr_schedule,
        "finetune_name": "refine",
        "refine_epochs": 0,  # the round itself does not refine again
    }


def refine(
    config_files: str | Sequence[str],
    values: Mapping[str, Any],
    paths: Mapping[str, Any],
    *,
    handlers: Sequence | None = None,
    **settings: Any,
) -> None:
    """Run the round whose ``settings`` are :func:`round_overrides`' keywords (``epochs`` 0: nothing).
    ``handlers``: the run's top-level handlers, whose MLflow handler (``--tracking mlflow``) the round's own
    run inherits."""
    if int(settings["epochs"]) <= 0:
        return
    from monai.bundle import run
    from monai.handlers import MLFlowHandler

    overrides = round_overrides(values, paths, **settings)
    files = [config_files] if isinstance(config_files, str) else list(config_files)
    tracking = "mlflow" if any(isinstance(h, MLFlowHandler) for h in handlers or []) else None
    logger.info(
        f"[refine] {settings['start_ckpt']} -> {settings['out_ckpt']}: {settings['epochs']} epochs at "
        f"T={settings['timesteps']}, lr {settings['learning_rate']} {settings['lr_schedule']}"
    )
    # logging_file False: the run's own logging stays as the outer command set it
    run("finetune_snn", config_file=files, logging_file=False, tracking=tracking, **overrides)
