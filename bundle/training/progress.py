"""Epoch progress with elapsed time and ETA (MONAI's StatsHandler logs values, not time left)."""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

__all__ = ["ProgressLogger"]


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLogger:
    """Logs ``epoch e/E  loss  epoch time  elapsed  ETA  best metric`` after every epoch.

    Args:
        name: logger name (``logging.conf`` routes it).
        evaluator: optional validation engine whose best key metric is shown.
        stage: a label for the log lines, e.g. ``"ann"``.
    """

    def __init__(self, name: str = "bundle.progress", evaluator: Engine | None = None, stage: str = "train"):
        self.logger = logging.getLogger(name)
        self.evaluator = evaluator
        self.stage = stage
        self._start = 0.0
        self._epoch_start = 0.0
        self._first_epoch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        self._first_epoch = engine.state.epoch  # non-zero when resumed

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start = time.perf_counter()

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        done = engine.state.epoch - self._first_epoch
        per_epoch = (now - self._start) / max(done, 1)
        eta = per_epoch * (engine.state.max_epochs - engine.state.epoch)
        output = engine.state.output
        loss = (output[0] if isinstance(output, list) else output)["loss"]  # decollated or not
        msg = (
            f"[{self.stage}] epoch {engine.state.epoch}/{engine.state.max_epochs}"
            f"  loss {float(loss):.4f}  epoch {now - self._epoch_start:.1f}s"
            f"  elapsed {_hms(now - self._start)}  ETA {_hms(eta)}"
        )
        if self.evaluator is not None and self.evaluator.state.best_metric_epoch > 0:
            msg += f"  best {self.evaluator.state.best_metric:.4f} (epoch {self.evaluator.state.best_metric_epoch})"
        self.logger.info(msg)

    def _completed(self, engine: Engine) -> None:
        self.logger.info(
            f"[{self.stage}] finished {engine.state.epoch} epochs in {_hms(time.perf_counter() - self._start)}"
        )
