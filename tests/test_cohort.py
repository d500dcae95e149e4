"""Cohorts: one folder segmented by two worker processes, two torchrun ranks (gloo) and a local Ray cluster gives
the masks of one process, one ``volumes.csv`` row per image; a run killed mid-way resumes without redoing
finished masks. Real processes throughout (the CLI and torchrun as a user starts them), the ANN on 4 crops."""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from bundle.errors import InputError
from bundle.inference.cohort import segment_cohort
from bundle.inference.ranks import share
from bundle.inference.settings import InferenceSettings
from bundle.inference.table import JOURNAL_PREFIX, ResultTable, read_journals

CASES = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006"]
ANN = InferenceSettings.from_config(model="ann", device="cpu")


@pytest.fixture(scope="module")
def images(decathlon, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort") / "in"
    folder.mkdir()
    available = sorted(p.name for p in (decathlon / "imagesTr").glob("hippocampus_*.nii.gz"))
    for name in [f"{c}.nii.gz" for c in CASES if f"{c}.nii.gz" in available] or available[:4]:
        (folder / name).write_bytes((decathlon / "imagesTr" / name).read_bytes())
    return folder


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict[str, str]:
    """mask SHA-256 by case, from one process."""
    out = tmp_path_factory.mktemp("reference")
    report = segment_cohort(images, out, ANN, progress=False)
    assert report.failed == 0
    return masks(out)


def rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "volumes.csv").open()))


def masks(out: Path) -> dict[str, str]:
    """Every case's mask SHA-256 as recorded, checked against the file on disk (byte-identical masks)."""
    import hashlib

    found = {}
    for row in rows(out):
        if row["status"] in ("ok", "skipped"):
            assert hashlib.sha256(Path(row["mask"]).read_bytes()).hexdigest() == row["mask_sha256"]
            found[row["case"]] = row["mask_sha256"]
    return found


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bundle.cli", "segment", *args, "--model", "ann", "--device", "cpu"]


def test_two_workers_give_the_same_masks_and_a_killed_run_resumes(images, reference, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for image in images.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "zero.nii.gz").write_bytes(b"")  # bad input: one line, the others go on, across workers too
    out = tmp_path / "out"
    journal = out / f"{JOURNAL_PREFIX}main"
    run = subprocess.Popen(cli(str(folder), str(out), "--workers", "2", "--quiet"), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:  # kill it once the first image is recorded
            if journal.is_file() and '"status": "ok"' in journal.read_text(encoding="utf-8"):
                os.killpg(run.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    finished = {c for c, r in read_journals(out).items() if r["status"] == "ok"}
    assert finished, "the run was killed before it recorded an image"
    done = subprocess.run(
        cli(str(folder), str(out), "--workers", "2", "--quiet"), capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr  # the zero-byte file
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(folder / "zero.nii.gz") in errors[0] and "empty file" in errors[0], done.stderr
    assert f"{len(finished)} skipped" in done.stdout, done.stdout  # finished masks are not redone
    assert masks(out) == reference  # byte-identical to one process
    assert sorted(r["case"] for r in rows(out)) == sorted([*reference, "zero"])  # one row per image
    assert not list(out.glob(f"{JOURNAL_PREFIX}*")) and not list(out.glob(".*partial*"))


def test_two_torchrun_ranks_give_the_same_masks(images, reference, tmp_path):
    out = tmp_path / "out"
    configs = f"['{REPO / 'configs/inference.json'}','{REPO / 'configs/multi_gpu_inference.json'}']"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "monai.bundle", "run",
               "--config_file", configs, "--bundle_root", str(REPO), "--dataset_dir", str(images),
               "--output_dir", str(out), "--model", "ann", "--device", "cpu", "--progress", "false"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert masks(out) == reference and len(rows(out)) == len(reference)
    assert not list(out.glob(f"{JOURNAL_PREFIX}*"))
    # a rerun on the ranks keeps every mask
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
    assert done.returncode == 0 and f"0 segmented, {len(reference)} skipped" in done.stdout + done.stderr


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='ray not installed (pip install -e ".[cohort]")')
def test_a_local_ray_cluster_gives_the_same_masks(images, reference, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(cli(str(images), str(out), "--workers", "2", "--engine", "ray", "--quiet"),
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert masks(out) == reference and len(rows(out)) == len(reference)


def test_missing_ray_and_bad_worker_settings_are_one_line(images, tmp_path, monkeypatch):
    with pytest.raises(InputError, match="workers 0: must be a whole number >= 1"):
        ANN.replace(workers=0)
    with pytest.raises(InputError, match="engine 'spark': choose one of local, ray"):
        ANN.replace(engine="spark")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InputError, match=r"Ray is not installed here; pip install -e \".\[cohort\]\""):
        segment_cohort(images, tmp_path / "out", ANN.replace(workers=2, engine="ray"), progress=False)


def test_ranks_share_the_images_whole_groups_each(tmp_path):
    names = ["a.nii.gz", "a.nrrd", "b.nii.gz", "c.mha", "c.nii", "d.nii.gz", "e.nii.gz"]
    images = [tmp_path / n for n in names]
    shares = [share(images, rank, 3) for rank in range(3)]
    assert sorted(p for s in shares for p in s) == sorted(images)  # each image once
    for s in shares:  # images that would take one mask name stay on one rank
        assert not ({"a.nii.gz", "a.nrrd"} & {p.name for p in s}) or {"a.nii.gz", "a.nrrd"} <= {p.name for p in s}


def test_the_table_replays_journals_and_only_the_owner_writes_it(tmp_path):
    csv_path = tmp_path / "volumes.csv"
    rank1 = ResultTable(csv_path, writer="rank1", owner=False)
    rank1.set("b", {"case": "b", "status": "writing"})
    rank1.set("b", {"case": "b", "status": "ok"})
    rank1.close()
    assert not csv_path.exists()  # not the owner
    with (tmp_path / f"{JOURNAL_PREFIX}rank1").open("a") as f:
        f.write('{"t": 9e99, "row": {"case": "b", "sta')  # a line torn by a kill
    owner = ResultTable(csv_path)
    assert owner.get("b")["status"] == "ok"
    owner.set("a", {"case": "a", "status": "ok"})
    assert owner.close() is None
    assert [(r["case"], r["status"]) for r in rows(tmp_path)] == [("a", "ok"), ("b", "ok")]
    assert not list(tmp_path.glob(f"{JOURNAL_PREFIX}*"))
    assert json.loads(json.dumps(read_journals(tmp_path))) == {}


def test_a_whole_head_registers_the_same_in_any_process():
    """ITK sums its metric over threads in no fixed order; registration runs on one thread, so a cohort's workers
    give a whole head the mask one process gives it."""
    import numpy as np
    import SimpleITK as sitk

    from bundle.localization import load_template
    from bundle.localization.registration import register
    from bundle.localization.synthetic import make_case

    head = make_case(load_template().image, np.random.default_rng(3), spacing_range=(2.0, 2.0)).image
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        first, second = (register(head) for _ in range(2))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    assert first.transform.GetParameters() == second.transform.GetParameters()
    assert first.similarity == second.similarity


@pytest.mark.slow  # about a minute: worker start-ups and a registration
def test_the_throughput_study_runs_on_a_few_images(decathlon, tmp_path):
    out = tmp_path / "throughput.json"
    command = [sys.executable, str(REPO / "studies" / "cohort_throughput.py"), "--crops", str(decathlon), "--n", "2",
               "--heads", "1", "--workers", "1", "2", "--model", "ann", "--repeats", "1", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    for name in ("task04_crops", "whole_heads"):
        runs = result["sets"][name]["runs"]
        assert set(runs) == {"1", "2"} and all(r["identical_to_first"] and r["failed"] == 0 for r in runs.values())
        assert all(r["command"]["identical_to_first"] and r["command"]["wall_s"] > 0 for r in runs.values())
        assert set(runs["1"]["split_s"]) == {"read", "register", "network", "write", "other"}
    assert result["sets"]["whole_heads"]["runs"]["2"]["projected_10000_heads_h"] > 0
