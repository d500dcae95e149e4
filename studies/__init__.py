"""Experiments, benchmarks and plots: the lab notebook, apart from the product (see studies/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ROOT", "dataset_dir", "render_block"]

ROOT = Path(__file__).resolve().parents[1]


def dataset_dir() -> Path:
    """Task04: ``$TASK04_DIR``, else ``../shared/data/Task04_Hippocampus`` beside the checkout (the one place
    studies read the dataset path from)."""
    return Path(os.environ.get("TASK04_DIR", ROOT.parent / "shared" / "data" / "Task04_Hippocampus"))


def render_block(page: Path, begin: str, end: str, body: str) -> str:
    """``page``'s text with what lies between its ``begin`` and ``end`` markers replaced by ``body``: how the studies
    write their figures into README, RESULTS and the model card (numbers written once, ``tests/test_docs.py``)."""
    text = page.read_text(encoding="utf-8")
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"error: {page}: needs one {begin.strip()} ... {end.strip()} block")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}{body}{end}{rest.split(end, 1)[1]}"
