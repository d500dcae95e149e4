"""studies/plot_val_curves.py: several runs' validation curves from their history files, best epoch in the legend."""

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _history(run: Path, values: dict[int, float]) -> None:
    (run / "history").mkdir(parents=True)
    with (run / "history" / "ann.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "mean_loss", "last_loss", "val_metric", "seconds"])
        last = ""
        for epoch in range(1, 11):
            last = values.get(epoch, last)  # carried forward between validations, as the trainer writes it
            w.writerow([epoch, 0.5, 0.5, last, 30.0])


def _plot(tmp_path: Path, *specs: str):
    out = tmp_path / "curves.png"
    cmd = [sys.executable, "studies/plot_val_curves.py", *specs, "--val_interval", "5", "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120), out


def test_plots_each_run_and_names_the_missing_one(tmp_path):
    _history(tmp_path / "a", {5: 0.80, 10: 0.86})
    _history(tmp_path / "b", {5: 0.84, 10: 0.83})
    r, out = _plot(tmp_path, f"{tmp_path / 'a'}:live", f"{tmp_path / 'b'}:average")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    assert "live: best 0.8600 at epoch 10" in r.stdout and "average: best 0.8400 at epoch 5" in r.stdout

    r, _ = _plot(tmp_path, f"{tmp_path / 'a'}:live", str(tmp_path / "nope"))
    assert r.returncode != 0
    assert "nope" in r.stderr and "no such history file" in r.stderr
