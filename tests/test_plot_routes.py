"""studies/plot_routes.py: both routes' Dice against wall time, with the conversion's time from the stage records."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _history(path: Path, rows: list[tuple[int, float, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "mean_loss", "last_loss", "val_metric", "seconds"])
        for epoch, dice, seconds in rows:
            w.writerow([epoch, 0.5, 0.5, dice, seconds])


def _done(route: Path, stage: str, finished: str) -> None:
    (route / "resume" / stage).mkdir(parents=True, exist_ok=True)
    (route / "resume" / stage / "done.json").write_text(json.dumps({"stage": stage, "finished": finished}))


def _plot(tmp_path: Path, route: Path, direct: Path) -> dict:
    out = tmp_path / "routes.png"
    cmd = [sys.executable, "studies/plot_routes.py", "--route", str(route), "--direct", str(direct), "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "three stages: best 0.8500" in r.stdout and "direct: best 0.1000" in r.stdout
    assert out.stat().st_size > 10_000
    return json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))


def test_curves_and_conversion_time_from_stage_records(tmp_path):
    route, direct = tmp_path / "route", tmp_path / "direct"
    _history(route / "history" / "ann.csv", [(e, 0.5 + 0.05 * e, 60.0) for e in range(1, 11)])  # 10 min
    _history(route / "history" / "finetune.csv", [(1, 0.80, 120.0), (2, 0.85, 120.0)])
    _history(direct / "history" / "direct.csv", [(e, 0.1 * (e == 3), 120.0) for e in range(1, 6)])
    _done(route, "ann", "2026-12-01 12:00:00")
    _done(route, "convert", "2026-12-01 12:03:00")

    record = _plot(tmp_path, route, direct)
    assert record["conversion_s"] == 180.0
    ann, finetune, direct_pts = (record["minutes_dice"][k] for k in ("ann", "finetune", "direct"))
    assert [p[0] for p in ann] == [5.0, 10.0]  # the ANN validates every 5th epoch
    assert finetune == [[15.0, 0.8], [17.0, 0.85]]  # after 10 min of ANN and 3 of conversion
    assert [p[0] for p in direct_pts] == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_conversion_time_falls_back_without_records(tmp_path):
    route, direct = tmp_path / "route", tmp_path / "direct"
    _history(route / "history" / "ann.csv", [(5, 0.8, 60.0)])
    _history(route / "history" / "finetune.csv", [(1, 0.85, 60.0)])
    _history(direct / "history" / "direct.csv", [(1, 0.1, 60.0)])
    record = _plot(tmp_path, route, direct)
    assert record["conversion_s"] == 155.0
    assert record["minutes_dice"]["finetune"] == [[pytest.approx((60 + 155 + 60) / 60), 0.85]]
