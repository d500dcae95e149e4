"""Epoch progress with elapsed time and ETA (MONAI's StatsHandler logs values, not time left; ignite's
``ProgressBar`` draws a tqdm bar for a terminal, not lines in a log file), and a per-epoch history file at full
precision (TensorBoard rounds nothing either, but is not a table)."""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

from ignite.engine import Engine, Events

__all__ = ["ProgressLogger", "read_history"]


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLogger:
    """Logs ``epoch e/E  loss  epoch time  elapsed  ETA  best metric`` after every epoch.

    Args:
        name: logger name (``logging.conf`` routes it).
        evaluator: optional validation engine whose best key metric is shown.
        stage: a label for the log lines, e.g. ``"ann"``.
        history_file: optional CSV, one row per epoch: mean training loss over the epoch, the last
            validation's key metric, the epoch's seconds. A resumed run keeps the rows of the epochs
            it does not redo.
    """

    FIELDS = ("epoch", "mean_loss", "last_loss", "val_metric", "seconds")

    def __init__(
        self,
        name: str = "bundle.progress",
        evaluator: Engine | None = None,
        stage: str = "train",
        history_file: str | Path | None = None,
    ):
        self.logger = logging.getLogger(name)
        self.evaluator = evaluator
        self.stage = stage
        self.history_file = Path(history_file) if history_file else None
        self._start = 0.0
        self._epoch_start = 0.0
        self._first_epoch = 0
        self._losses: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        self._first_epoch = engine.state.epoch  # non-zero when resumed

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start = time.perf_counter()
        self._losses = []

    def _iteration_completed(self, engine: Engine) -> None:
        self._losses.append(float(_loss(engine.state.output)))

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        done = engine.state.epoch - self._first_epoch
        per_epoch = (now - self._start) / max(done, 1)
        eta = per_epoch * (engine.state.max_epochs - engine.state.epoch)
        loss = _loss(engine.state.output)
        msg = (
            f"[{self.stage}] epoch {engine.state.epoch}/{engine.state.max_epochs}"
            f"  loss {float(loss):.4f}  epoch {now - self._epoch_start:.1f}s"
            f"  elapsed {_hms(now - self._start)}  ETA {_hms(eta)}"
        )
        if self.evaluator is not None and self.evaluator.state.best_metric_epoch > 0:
            msg += f"  best {self.evaluator.state.best_metric:.4f} (epoch {self.evaluator.state.best_metric_epoch})"
        self.logger.info(msg)
        if self.history_file is not None:
            self._write_history(engine.state.epoch, float(loss), now - self._epoch_start)

    def _write_history(self, epoch: int, last_loss: float, seconds: float) -> None:
        rows = []
        if self.history_file.is_file() and epoch > 1:
            with self.history_file.open(newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
        metric = ""
        if self.evaluator is not None and self.evaluator.state.metrics:
            key = getattr(self.evaluator.state, "key_metric_name", None) or next(iter(self.evaluator.state.metrics))
            metric = repr(float(self.evaluator.state.metrics.get(key, float("nan"))))
        mean = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        rows.append(dict(zip(self.FIELDS, (epoch, repr(mean), repr(last_loss), metric, f"{seconds:.2f}"))))
        self.history_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.history_file.with_name(f".{self.history_file.name}.partial")
        with partial.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, self.history_file)

    def _completed(self, engine: Engine) -> None:
        self.logger.info(
            f"[{self.stage}] finished {engine.state.epoch} epochs in {_hms(time.perf_counter() - self._start)}"
        )


def _loss(output) -> float:
    return (output[0] if isinstance(output, list) else output)["loss"]  # decollated or not


def read_history(path: str | Path) -> list[dict]:
    """The rows of a history file written by :class:`ProgressLogger`, typed: ``epoch`` int, ``seconds`` and
    the losses float, ``val_metric`` float or None (before the first validation). Epochs between
    validations carry the last validation's metric forward."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such history file")
    with path.open(newline="", encoding="utf-8") as f:
        return [
            {
                "epoch": int(r["epoch"]),
                "mean_loss": float(r["mean_loss"]),
                "last_loss": float(r["last_loss"]),
                "val_metric": float(r["val_metric"]) if r["val_metric"] else None,
                "seconds": float(r["seconds"]),
            }
            for r in csv.DictReader(f)
        ]
