"""studies/benchmark.py on the CPU: it runs, prints the SNN/ANN ratios and writes its JSON and plot."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow  # ~45 s: a benchmark, not a behaviour; `pytest -m slow` runs it
def test_benchmark_prints_ratios_per_timestep(tmp_path):
    out = tmp_path / "cpu.json"
    cmd = [sys.executable, "studies/benchmark.py", "--cases", "1", "--timesteps", "2", "--repeats", "1"]
    cmd += [
        "--train_steps",
        "1",
        "--calibration_images",
        "1",
        "--batch_size",
        "1",
        "--kernel",
        "eager",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("snn T=2") and "SNN/ANN" in line and "/T" in line for line in lines), proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    snn = {row["T"]: row for row in result["inference"] if row["model"] == "snn"}
    assert set(snn) == {2} and snn[2]["ratio_per_T"] > 0 and snn[2]["peak_mb"] >= 0
    assert abs(snn[2]["ratio_per_T"] * 2 - snn[2]["ratio"]) < 1e-9
    assert result["training"]["snn_step_s"] > 0 and out.with_suffix(".png").is_file()
