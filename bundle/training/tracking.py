"""Experiment tracking for every stage, switched on by MONAI's own ``--tracking mlflow``.

MONAI's tracking patch adds MLflow handlers to three fixed config ids only (``train#handlers``,
``validate#handlers`` and the top-level ``handlers``), which covers the ANN stage. The conversion,
fine-tuning and direct stages run their own engines, so :func:`stage_handlers` gives each of them an
MLflow run of its own (named after the stage) whenever the patch has put an ``MLFlowHandler`` in the
top-level ``handlers`` list; without ``--tracking`` it returns nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.handlers import MLFlowHandler, from_engine

__all__ = ["stage_handlers"]


def stage_handlers(
    handlers: Sequence | None, stage: str, role: str, tracking_uri: str | None, experiment_name: str
) -> list:
    """MLflow handlers for one engine of ``stage`` (``role``: ``"trainer"``, ``"validator"`` of a
    trainer, or an ``"evaluator"`` that runs alone), or ``[]``.

    The trainer and the evaluator of a stage log to the same run (MLflow finds it by name); the trainer
    closes it at the end of the stage.
    """
    if not any(isinstance(h, MLFlowHandler) for h in handlers or []):
        return []
    common = {"tracking_uri": tracking_uri, "experiment_name": experiment_name, "run_name": stage}
    if role == "trainer":
        return [
            MLFlowHandler(
                **common,
                tag_name="train_loss",
                output_transform=from_engine(["loss"], first=True),
                close_on_complete=True,
            )
        ]
    # an evaluator that runs alone (the conversion stage) owns its run and closes it
    return [MLFlowHandler(**common, iteration_log=False, close_on_complete=role == "evaluator")]
