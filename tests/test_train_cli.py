"""The real `python -m monai.bundle run` CLI: a short ANN training on the synthetic default, and its errors."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from bundle.networks import ConvertibleUNet

SMALL = ["--channels", "[4,8,16,32]", "--num_workers", "0", "--synthetic_cases", "4", "--val_fraction", "0.25"]


def bundle_run(run_id: str, *args: str, configs=("configs/train.json",), timeout=600) -> subprocess.CompletedProcess:
    config = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config]
    cmd += ["--logging_file", "configs/logging.conf", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = bundle_run("training", "--output_dir", str(out), "--epochs", "2", "--val_interval", "1", *SMALL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_training_writes_a_loadable_checkpoint(trained):
    out, proc = trained
    ckpt = out / "models" / "model_ann.pt"
    assert ckpt.is_file()
    ConvertibleUNet(3, channels=(4, 8, 16, 32)).load_state_dict(torch.load(ckpt, map_location="cpu"), strict=True)
    log = proc.stdout + proc.stderr
    assert "[ann] epoch 2/2" in log and "ETA" in log  # progress with ETA
    assert "val_dice_anterior" in log and "val_dice_posterior" in log
    assert any((out / "tensorboard" / "ann").iterdir())


def test_validate_config_reloads_the_checkpoint(trained):
    out, _ = trained
    proc = bundle_run(
        "validate_ann", "--output_dir", str(out), *SMALL, configs=("configs/train.json", "configs/validate.json")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "eval_ann" / "val_mean_dice_raw.csv").is_file()


@pytest.mark.parametrize(
    "run_id, configs, missing, made_by",
    [
        ("validate_ann", ("configs/train.json", "configs/validate.json"), "model_ann.pt", "train_ann"),
        ("convert", ("configs/train.json",), "model_ann.pt", "train_ann"),
        ("finetune_snn", ("configs/train.json",), "model_snn_converted.pt", "convert"),
    ],
)
def test_stage_without_its_predecessor_names_file_and_run_id(tmp_path, run_id, configs, missing, made_by):
    proc = bundle_run(run_id, "--output_dir", str(tmp_path), *SMALL, configs=configs)
    assert proc.returncode == 1
    assert f"error: {tmp_path}/models/{missing}: not found; run the '{made_by}' stage first" in proc.stderr


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_bad_dataset_dir_is_one_clear_line(tmp_path, case):
    target = tmp_path / "nope" if case == "missing" else tmp_path
    proc = bundle_run("training", "--dataset_dir", str(target), "--output_dir", str(tmp_path / "o"), *SMALL)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: dataset_dir {target}:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_convert_stage_saves_an_snn_and_evaluates_it(trained):
    out, _ = trained
    proc = bundle_run("convert", "--output_dir", str(out), "--timesteps", "2", "--neuron", "ternary", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from bundle.spiking.conversion import load_snn

    _, settings = load_snn(ConvertibleUNet(3, channels=(4, 8, 16, 32)), out / "models" / "model_snn_converted.pt")
    assert settings["neuron"] == "ternary" and settings["timesteps"] == 2 and settings["mode"] == "99.9%"
    assert (out / "eval_snn_converted" / "val_mean_dice_raw.csv").is_file()


def test_2d_slice_wise_training(tmp_path):
    proc = bundle_run(
        "train_ann",
        "--output_dir",
        str(tmp_path),
        "--spatial_dims",
        "2",
        "--epochs",
        "1",
        "--val_interval",
        "1",
        "--batch_size",
        "2",
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ConvertibleUNet(2, channels=(4, 8, 16, 32)).load_state_dict(
        torch.load(tmp_path / "models" / "model_ann.pt", map_location="cpu"), strict=True
    )


def test_metadata_matches_the_network():
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/train.json",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert proc.returncode == 0 and "verified with no error" in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_finetune_stage_trains_the_converted_snn(trained):
    out, _ = trained
    assert bundle_run("convert", "--output_dir", str(out), "--timesteps", "2", *SMALL).returncode == 0
    proc = bundle_run(
        "finetune_snn", "--output_dir", str(out), "--finetune_epochs", "1", "--finetune_timesteps", "2", *SMALL
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[finetune] epoch 1/1" in proc.stdout + proc.stderr
    ckpt = torch.load(out / "models" / "model_snn_finetuned.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["timesteps"] == 2 and ckpt["settings"]["finetuned"]["epochs"] == 1
    assert 0 <= ckpt["settings"]["finetuned"]["best_val_mean_dice"] <= 1
    # self-contained: inference rebuilds it from the file alone
    from bundle.inference.models import load_model

    network, info = load_model("snn", ckpt=out / "models" / "model_snn_finetuned.pt")
    assert info["timesteps"] == 2 and network(torch.rand(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_direct_training_baseline_needs_no_ann(tmp_path):
    proc = bundle_run(
        "train_snn_direct",
        "--output_dir",
        str(tmp_path),
        "--finetune_epochs",
        "1",
        "--finetune_timesteps",
        "2",
        *SMALL,
        configs=("configs/train.json", "configs/train_snn_direct.json"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[direct] epoch 1/1" in proc.stdout + proc.stderr
    assert (tmp_path / "models" / "model_snn_direct.pt").is_file()
    assert not (tmp_path / "models" / "model_ann.pt").exists()


def test_interrupted_training_resumes_from_its_last_epoch(tmp_path):
    args = ["--output_dir", str(tmp_path), "--val_interval", "1", *SMALL]
    assert bundle_run("train_ann", "--epochs", "1", *args).returncode == 0
    assert (tmp_path / "resume" / "ann" / "last.pt").is_file()
    first = torch.load(tmp_path / "resume" / "ann" / "last.pt", map_location="cpu", weights_only=False)["best"]
    first_best = first["best_metric"]
    assert first["best_metric_epoch"] == 1
    proc = bundle_run("train_ann", "--epochs", "2", "--resume", "true", *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in log and "after epoch 1 of 2" in log
    assert "[ann] epoch 2/2" in log and "[ann] epoch 1/2" not in log
    # the best so far survives the resume: the evaluator's and the best-checkpoint saver's record
    best = torch.load(tmp_path / "resume" / "ann" / "last.pt", map_location="cpu", weights_only=False)["best"]
    assert best["best_metric_epoch"] in (1, 2) and best["best_metric"] >= first_best
    assert len(best["savers"]) == 1 and len(best["savers"][0]["_saved"]) == 1


def test_unknown_finetune_choice_is_one_clear_error():
    from bundle.errors import InputError
    from bundle.options import one_of

    assert one_of("cosine", ["cosine", "constant"], "finetune_lr_schedule") == "cosine"
    with pytest.raises(InputError, match="finetune_lr_schedule: 'cosin' is not one of cosine, constant"):
        one_of("cosin", ["cosine", "constant"], "finetune_lr_schedule")
