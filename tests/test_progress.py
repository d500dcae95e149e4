"""The per-epoch history file: what the trainer writes, the plot scripts read back, typed."""

import pytest
from ignite.engine import Engine

from bundle.training.progress import ProgressLogger, read_history


def test_history_written_by_the_logger_reads_back_typed(tmp_path):
    losses = iter([0.9, 0.7, 0.5, 0.3])
    engine = Engine(lambda e, batch: {"loss": next(losses)})
    ProgressLogger(stage="t", history_file=tmp_path / "h.csv").attach(engine)
    engine.run([0, 1], max_epochs=2)
    rows = read_history(tmp_path / "h.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["mean_loss"] == pytest.approx(0.8) and rows[1]["last_loss"] == pytest.approx(0.3)
    assert all(r["val_metric"] is None and r["seconds"] >= 0.0 for r in rows)  # no evaluator: no metric


def test_a_missing_history_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv: no such history file"):
        read_history(tmp_path / "nope.csv")
