"""Experiments, benchmarks and plots: the lab notebook, apart from the product (see studies/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ROOT", "dataset_dir"]

ROOT = Path(__file__).resolve().parents[1]


def dataset_dir() -> Path:
    """Task04: ``$TASK04_DIR``, else ``../shared/data/Task04_Hippocampus`` beside the checkout (the one place
    studies read the dataset path from)."""
    return Path(os.environ.get("TASK04_DIR", ROOT.parent / "shared" / "data" / "Task04_Hippocampus"))
