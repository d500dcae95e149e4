"""Distributed training with torchrun: 2 CPU processes (gloo) on the synthetic default, and shared calibration."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import REPO

from bundle.errors import InputError
from bundle.networks import ConvertibleUNet
from bundle.spiking.checkpoint import load_snn
from bundle.spiking.conversion import convert
from bundle.training.distributed import SyncBuffers, require_shares

SMALL = ["--channels", "[4,8,16,32]", "--num_workers", "0", "--synthetic_cases", "8", "--val_fraction", "0.25"]


@pytest.mark.slow  # long (a whole run or export); kept out of CI for time: pytest -m slow
def test_torchrun_two_processes_train_all_three_stages(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        "['configs/train.json','configs/multi_gpu_train.json']",
    ]
    cmd += ["--logging_file", "configs/logging.conf", "--output_dir", str(out), "--epochs", "2", "--val_interval", "1"]
    cmd += [
        *SMALL,
        "--calibration_cases",
        "4",
        "--timesteps",
        "4",
        "--finetune_timesteps",
        "2",
        "--finetune_epochs",
        "1",
        "--refine_epochs",
        "1",
        "--refine_timesteps",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "2 processes (gloo); rank 0 logs and saves" in log
    for stage in ("[ann] epoch 1/2", "[ann] epoch 2/2", "[finetune] epoch 1/1", "[refine] epoch 1/1"):
        assert log.count(stage) == 1, stage  # logged by rank 0 only
    models = out / "models"
    ann = ConvertibleUNet(3, channels=(4, 8, 16, 32))
    ann.load_state_dict(torch.load(models / "model_ann.pt", map_location="cpu")["model"], strict=True)  # no "module." keys
    _, settings = load_snn(ann, models / "model_snn_finetuned_round1.pt")
    assert settings["timesteps"] == 2 and settings["finetuned"]["epochs"] == 1
    _, settings = load_snn(ann, models / "model_snn_finetuned.pt")  # the refine round, in both processes too
    assert settings["timesteps"] == 1 and [r["timesteps"] for r in settings["finetuned_before"]] == [2]
    # the converted SNN's evaluation gathered both processes' validation cases into one table
    rows = (out / "eval_snn_converted" / "val_mean_dice_raw.csv").read_text(encoding="utf-8").strip().splitlines()[1:]
    assert len(rows) == 2 and len({r.split(",")[0] for r in rows}) == 2
    assert (out / "resume" / "ann" / "last.pt").is_file() and (out / "resume" / "finetune" / "best.pt").is_file()
    writers = {f.name.split(".")[-2] for f in (out / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(writers) == 1  # TensorBoard files from rank 0's process only


def _net() -> ConvertibleUNet:
    torch.manual_seed(0)  # the same ANN in every process
    return ConvertibleUNet(3, channels=(4, 8))


def _calibrate_share(rank: int, world: int, init_file: str, images: list, kwargs: dict, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        snn = convert(_net(), images[rank::world], **kwargs)  # DistributedSampler's share, unshuffled
        results[rank] = {k: v.clone() for k, v in snn.state_dict().items() if k.endswith("scale")}
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "99.9%", "neuron": "ternary"}, {"mode": "max", "neuron": "binary", "channel_wise": True}],
)
def test_processes_calibrate_shares_into_what_one_process_finds(tmp_path, kwargs):
    """SpikingJelly's scales are moving averages: the shares are replayed in one process's order."""
    torch.manual_seed(1)
    images = [torch.rand(1, 1, 8, 8, 8) * (1 + i) for i in range(5)]  # shares of 3 and 2 images
    results = mp.Manager().dict()
    mp.spawn(_calibrate_share, args=(2, str(tmp_path / "init"), images, kwargs, results), nprocs=2, join=True)
    alone = {k: v for k, v in convert(_net(), images, **kwargs).state_dict().items() if k.endswith("scale")}
    assert alone.keys() == results[0].keys() and len(alone) > 0
    assert any(not torch.allclose(v, alone[k]) for k, v in _share_scales(images[0::2], kwargs).items())
    for key, value in alone.items():
        assert torch.allclose(results[0][key], results[1][key])  # every process holds the same network
        assert torch.allclose(results[0][key], value, rtol=1e-5), key


def _share_scales(images: list, kwargs: dict) -> dict:
    """One process's share alone: differs from the whole (else the test above would prove nothing)."""
    return {k: v for k, v in convert(_net(), images, **kwargs).state_dict().items() if k.endswith("scale")}


def _sync_buffers(rank: int, world: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        bn = next(m for m in _net().modules() if isinstance(m, torch.nn.BatchNorm3d))
        with torch.no_grad():
            bn.running_mean.fill_(float(rank + 1))  # each process's own BatchNorm statistics
        SyncBuffers(bn)(engine=None)
        results[rank] = bn.running_mean.clone()
    finally:
        dist.destroy_process_group()


def test_batchnorm_statistics_of_rank_0_reach_every_process_before_validation(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_sync_buffers, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
    assert torch.equal(results[0], torch.ones(4)) and torch.equal(results[1], torch.ones(4))


def test_too_few_validation_cases_for_the_processes_is_one_clear_error(monkeypatch):
    monkeypatch.setattr("ignite.distributed.get_world_size", lambda: 4)
    with pytest.raises(InputError, match="3 validation case\\(s\\) for 4 processes"):
        require_shares({"train": [{}] * 10, "val": [{}] * 3})
