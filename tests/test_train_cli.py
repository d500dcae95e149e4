"""The real `python -m monai.bundle run` CLI: a short ANN training on the synthetic default, and its errors."""

import csv
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from bundle.networks import ConvertibleUNet

SMALL = ["--channels", "[4,8,16,32]", "--num_workers", "0", "--synthetic_cases", "4", "--val_fraction", "0.25"]
# three short stages: the uninterrupted reference of the kill-and-resume test
THREE_STAGES = [
    "--epochs", "2", "--val_interval", "1", "--timesteps", "2", "--calibration_cases", "2",
    "--finetune_epochs", "3", "--finetune_timesteps", "2", "--ema_decay", "0.5", "--finetune_ema_decay", "0.5",
    "--refine_epochs", "1", "--refine_timesteps", "1", *SMALL,
]  # fmt: skip
# one more round after the refine round, from its model, at its own T and randomisation (configs/shipped.json's kind)
ROUND = ["--refine_rounds", "[{'name': 'extra', 'start': 'model_snn_finetuned.pt', 'out': 'model_snn_extra.pt', "
         "'epochs': 1, 'timesteps': 2, 'randomize': 1.0}]"]  # fmt: skip


def bundle_command(run_id: str, *args: str, configs=("configs/train.json",)) -> list[str]:
    config = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config]
    return cmd + ["--logging_file", "configs/logging.conf", *args]


REFERENCE_HISTORY: dict[str, list[dict]] = {}


def history(out, stage: str) -> list[dict]:
    with (out / "history" / f"{stage}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def bundle_run(run_id: str, *args: str, configs=("configs/train.json",), timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = bundle_command(run_id, *args, configs=configs)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A three-stage run, and its loss histories as they were when it finished (later tests rerun stages)."""
    out = tmp_path_factory.mktemp("run")
    tracking = ["--tracking", "mlflow"] if importlib.util.find_spec("mlflow") else []  # the 'tracking' extra
    proc = bundle_run("training", "--output_dir", str(out), *THREE_STAGES, *ROUND, *tracking)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    REFERENCE_HISTORY.update({stage: history(out, stage) for stage in ("ann", "finetune")})
    return out, proc


def test_training_writes_a_loadable_checkpoint(trained):
    out, proc = trained
    ckpt = out / "models" / "model_ann.pt"
    assert ckpt.is_file()
    saved = torch.load(ckpt, map_location="cpu")
    ConvertibleUNet(3, channels=(4, 8, 16, 32)).load_state_dict(saved["model"], strict=True)
    assert saved["input"] == {"standardization": "histogram"}  # the input contract travels with the weights
    log = proc.stdout + proc.stderr
    assert "[ann] epoch 2/2" in log and "ETA" in log  # progress with ETA
    assert "val_dice_anterior" in log and "val_dice_posterior" in log
    assert any((out / "tensorboard" / "ann").iterdir())


def test_mlflow_tracks_every_stage_with_spike_activity(trained):
    """--tracking mlflow: one run per stage; the spiking stages log firing rate and energy per validation."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow is the 'tracking' extra: pip install -e '.[tracking]'")
    out, _ = trained
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = {r.info.run_name: r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    assert {"ann", "convert", "finetune", "refine"} <= set(runs)
    assert {"train_loss", "val_mean_dice"} <= set(runs["ann"].data.metrics)
    for stage in ("convert", "finetune", "refine"):
        assert {"val_mean_dice", "val_firing_rate", "val_energy_uj", "val_energy_vs_ann"} <= set(runs[stage].data.metrics)
    assert "train_loss" in runs["finetune"].data.metrics


def test_validate_config_reloads_the_checkpoint(trained):
    out, _ = trained
    run_here("validate_ann", "--output_dir", str(out), *SMALL, configs=("configs/train.json", "configs/validate.json"))
    assert (out / "eval_ann" / "val_mean_dice_raw.csv").is_file()


def run_here(run_id: str, *args: str, configs=("configs/train.json",)) -> None:
    """``monai.bundle run`` in this process: the same workflow and checks without a new interpreter's
    start-up (about 10 s of imports on the 2-core CI machine). CLI values are parsed as the CLI parses them."""
    from monai.bundle.scripts import run

    overrides = {}
    for key, value in zip(args[::2], args[1::2]):
        try:
            overrides[key.lstrip("-")] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.lstrip("-")] = value
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        run(run_id, config_file=[str(REPO / c) for c in configs], bundle_root=str(REPO), **overrides)
    finally:
        os.chdir(cwd)


def bundle_run_here(run_id: str, *args: str, configs=("configs/train.json",)) -> str:
    """:func:`run_here` for runs that must stop before doing anything: the one-line error they exit with."""
    with pytest.raises(SystemExit) as e:
        run_here(run_id, *args, configs=configs)
    return str(e.value)


@pytest.mark.parametrize(
    "run_id, configs, missing, made_by",
    [
        ("validate_ann", ("configs/train.json", "configs/validate.json"), "model_ann.pt", "train_ann"),
        ("convert", ("configs/train.json",), "model_ann.pt", "train_ann"),
        ("finetune_snn", ("configs/train.json",), "model_snn_converted.pt", "convert"),
    ],
)
def test_stage_without_its_predecessor_names_file_and_run_id(tmp_path, run_id, configs, missing, made_by):
    error = bundle_run_here(run_id, "--output_dir", str(tmp_path), *SMALL, configs=configs)
    assert error.startswith(f"error: {tmp_path}/models/{missing}: not found; run the '{made_by}' stage first"), error


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_bad_dataset_dir_is_one_clear_line(tmp_path, case):
    target = tmp_path / "nope" if case == "missing" else tmp_path
    error = bundle_run_here("training", "--dataset_dir", str(target), "--output_dir", str(tmp_path / "o"), *SMALL)
    assert error.startswith(f"error: dataset_dir {target}:") and "\n" not in error, error


def test_convert_stage_saves_an_snn_and_evaluates_it(trained):
    out, proc = trained  # the three-stage run converted at T=2 (THREE_STAGES)
    from bundle.spiking.checkpoint import load_snn

    _, settings = load_snn(ConvertibleUNet(3, channels=(4, 8, 16, 32)), out / "models" / "model_snn_converted.pt")
    assert settings["neuron"] == "ternary" and settings["timesteps"] == 2 and settings["mode"] == "99.9%"
    assert (out / "eval_snn_converted" / "val_mean_dice_raw.csv").is_file()


def test_2d_slice_wise_training(tmp_path):
    run_here(
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
    ConvertibleUNet(2, channels=(4, 8, 16, 32)).load_state_dict(
        torch.load(tmp_path / "models" / "model_ann.pt", map_location="cpu")["model"], strict=True
    )


def test_metadata_matches_the_network(caplog):
    from monai.bundle.scripts import verify_net_in_out

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with caplog.at_level(logging.INFO):
            verify_net_in_out(
                "network_def", meta_file="configs/metadata.json", config_file="configs/train.json", device="cpu"
            )
    finally:
        os.chdir(cwd)
    assert "verified with no error" in caplog.text


def test_finetune_stage_trains_the_converted_snn(trained):
    out, proc = trained  # the three-stage run fine-tuned for 3 epochs at T=2 (THREE_STAGES)
    assert "[finetune] epoch 3/3" in proc.stdout + proc.stderr
    ckpt = torch.load(out / "models" / "model_snn_finetuned_round1.pt", map_location="cpu", weights_only=True)
    assert ckpt["settings"]["timesteps"] == 2 and ckpt["settings"]["finetuned"]["epochs"] == 3
    # validated and saved as a moving average of the weights (THREE_STAGES sets finetune_ema_decay)
    assert ckpt["settings"]["finetuned"]["ema_decay"] == 0.5
    # ANN, fine-tuning, the refine round and the further round (ROUND), which inherit the run's settings
    assert (proc.stdout + proc.stderr).count("moving average of the weights (decay 0.5)") == 4
    assert 0 <= ckpt["settings"]["finetuned"]["best_val_mean_dice"] <= 1


def test_refine_round_fine_tunes_stage_3s_model_again_at_its_own_timesteps(trained):
    """`training` ends with the refine round (refine_epochs > 0): stage 3's model, fine-tuned again at
    refine_timesteps, is the run's model_snn_finetuned.pt, and remembers the round before it."""
    out, proc = trained  # refine: 1 epoch at T=1 (THREE_STAGES)
    log = proc.stdout + proc.stderr
    assert "[refine] epoch 1/1" in log and "model_snn_finetuned_round1.pt -> " in log
    assert [r["epoch"] for r in history(out, "refine")] == ["1"]
    assert (out / "resume" / "refine" / "done.json").is_file()
    ckpt = torch.load(out / "models" / "model_snn_finetuned.pt", map_location="cpu", weights_only=True)
    settings = ckpt["settings"]
    assert settings["timesteps"] == 1 and settings["finetuned"]["epochs"] == 1
    assert settings["finetuned"]["lr_schedule"] == "cosine" and settings["finetuned"]["learning_rate"] == 1e-4
    assert [r["epochs"] for r in settings["finetuned_before"]] == [3]  # stage 3's round
    # self-contained: inference rebuilds it from the file alone
    from bundle.inference.models import load_model

    network, info = load_model("snn", ckpt=out / "models" / "model_snn_finetuned.pt")
    assert info["timesteps"] == 1 and network(torch.rand(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_a_further_round_trains_the_refine_rounds_model_at_its_own_settings(trained):
    """`refine_rounds`: after the refine round, each round fine-tunes the file it names, under its own T and
    randomisation, and records both; the refine round's file is left as it was."""
    out, proc = trained
    log = proc.stdout + proc.stderr
    assert "[extra] epoch 1/1" in log and "model_snn_finetuned.pt -> " in log and "randomize 1.0" in log
    assert (out / "resume" / "extra" / "done.json").is_file()
    ckpt = torch.load(out / "models" / "model_snn_extra.pt", map_location="cpu", weights_only=True)
    settings = ckpt["settings"]
    assert settings["timesteps"] == 2 and settings["finetuned"]["randomize"] == 1.0
    assert [r["timesteps"] for r in settings["finetuned_before"]] == [2, 1]  # stage 3 at T=2, the refine round at T=1
    assert settings["finetuned_before"][1]["randomize"] == 0.5  # the run's own, where a round sets none
    refined = torch.load(out / "models" / "model_snn_finetuned.pt", map_location="cpu", weights_only=True)
    assert refined["settings"]["timesteps"] == 1 and "randomize" in refined["settings"]["finetuned"]


@pytest.mark.slow  # long (a whole run or export); kept out of CI for time: pytest -m slow
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


def test_unknown_finetune_choice_is_one_clear_error():
    from bundle.errors import InputError
    from bundle.options import one_of

    assert one_of("restart", ["cosine", "restart", "constant"], "finetune_lr_schedule") == "restart"
    with pytest.raises(InputError, match="finetune_lr_schedule: 'cosin' is not one of cosine, constant"):
        one_of("cosin", ["cosine", "constant"], "finetune_lr_schedule")


def test_killed_in_finetuning_resumes_without_undoing_finished_stages(trained, tmp_path):
    """SIGKILL after the first fine-tuning epoch, then --resume true: the ANN and the converted SNN are
    not touched (byte for byte), and fine-tuning continues with the losses of a run never stopped."""
    assert trained and REFERENCE_HISTORY
    args = ["--output_dir", str(tmp_path), *THREE_STAGES]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(bundle_command("training", *args), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    last = tmp_path / "resume" / "finetune" / "last.pt"
    deadline = time.monotonic() + 400
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), (tmp_path / "killed.log").read_text(encoding="utf-8")[-3000:]
    assert not (tmp_path / "resume" / "finetune" / "done.json").exists(), "killed too late: fine-tuning had finished"
    models = tmp_path / "models"
    before = {name: (models / name).read_bytes() for name in ("model_ann.pt", "model_snn_converted.pt")}
    assert len(history(tmp_path, "finetune")) < 3

    resumed = bundle_run("training", *args, "--resume", "true")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "[ann] finished earlier" in log and "[convert] finished earlier" in log
    assert "[ann] epoch" not in log and "resuming from" in log
    assert {name: (models / name).read_bytes() for name in before} == before
    got, want = history(tmp_path, "finetune"), REFERENCE_HISTORY["finetune"]
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    for g, w in zip(got, want):
        assert abs(float(g["mean_loss"]) - float(w["mean_loss"])) <= 1e-6, (got, want)
    assert (tmp_path / "resume" / "finetune" / "done.json").is_file()
    assert (tmp_path / "resume" / "refine" / "done.json").is_file()  # the round after it ran too
    # the best so far survived the resume: the evaluator's and the best-checkpoint saver's record
    best = torch.load(tmp_path / "resume" / "finetune" / "last.pt", map_location="cpu", weights_only=False)["best"]
    assert best["best_metric_epoch"] in (1, 2, 3) and best["best_metric"] >= 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochz", "3"], "error: --epochz: not a key of this bundle's configs (did you mean 'epochs'?)"),
    ],
)
def test_bad_keys_and_values_fail_before_anything_is_written(tmp_path, args, message):
    out = tmp_path / "out"
    proc = bundle_run("training", "--output_dir", str(out), *SMALL, *args)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == message + ("." if message.endswith(")") else ""), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # no TensorBoard files, no synthetic data, no checkpoints folder


VALID = {"epochs": 60, "finetune_timesteps": 4, "val_fraction": 0.2, "neuron": "ternary", "spatial_dims": 3,
         "channels": [16, 32, 64, 128], "patch_size": [32, 48, 32], "device": "cpu", "resume": "false"}  # fmt: skip


@pytest.mark.parametrize(
    "argv, values, message",
    [
        (["run", "training", "--finetune_epoch", "2"], {}, "--finetune_epoch: not a key of this bundle's configs "
         "(did you mean 'finetune_epochs'?)"),
        (["run", "training", "--network_def#chanels", "[4,8]"], {}, "--network_def#chanels: not a key of "
         "this bundle's configs (did you mean 'network_def#channels'?)"),
        ([], {"epochs": -1}, "epochs: -1 is not allowed; it must be a whole number >= 1."),
        ([], {"finetune_timesteps": 0}, "finetune_timesteps: 0 is not allowed; it must be a whole number >= 1."),
        ([], {"val_fraction": 1.0}, "val_fraction: 1.0 is not allowed; it must be a number in (0.0, 1.0)."),
        ([], {"neuron": "trinary"}, "neuron: 'trinary' is not allowed; it must be one of binary, ternary."),
        ([], {"resume": "maybe"}, "resume: 'maybe' is not allowed; it must be true or false."),
        ([], {"patch_size": [30, 48, 32]}, "patch_size: [30, 48, 32] must be divisible by 8"),
    ],
)
def test_config_check_names_the_key_and_the_rule(argv, values, message):
    from bundle.config_checks import check_config

    check_config(str(REPO), VALID, ["run", "training", "--network_def#levels", "3"])  # fine
    with pytest.raises(SystemExit) as e:
        check_config(str(REPO), {**VALID, **values}, argv)
    assert str(e.value).startswith(f"error: {message}")


def test_unknown_key_in_a_stacked_config_is_refused(tmp_path):
    from bundle.config_checks import check_config

    extra = tmp_path / "mine.json"
    extra.write_text('{"finetune_epoch": 2, "train": {"dataloader": {"batch_size": 2}}}')
    argv = ["run", "training", "--config_file", f"['configs/train.json','{extra}']"]
    with pytest.raises(SystemExit) as e:
        check_config(str(REPO), VALID, argv)
    assert str(e.value) == (
        f"error: {extra}: finetune_epoch: not a key of this bundle's configs (did you mean 'finetune_epochs'?)."
    )
