"""Per-class Dice for ignite: MONAI's MeanDice averages classes, we also report each one."""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import MeanDice
from monai.handlers.utils import from_engine

__all__ = ["class_dice", "select_class"]


def select_class(index: int) -> Callable:
    """Output transform keeping channel ``index`` of the one-hot ``pred`` and ``label`` of each case."""

    def _transform(output):
        preds, labels = from_engine(["pred", "label"])(output)
        return [p[index : index + 1] for p in preds], [y[index : index + 1] for y in labels]

    return _transform


def class_dice(index: int) -> MeanDice:
    """Dice of one class (``index`` into the one-hot channels), averaged over cases that contain it."""
    return MeanDice(include_background=True, output_transform=select_class(index))
