"""The refine round's wiring: where stage 3 writes when a round follows, and what the round is given."""

import torch
from conftest import REPO
from monai.bundle import ConfigParser

from bundle.training.refine import round_overrides


def parsed(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "train.json"))
    parser.update({"bundle_root": str(REPO), "output_dir": "/o", **overrides})
    return parser


def test_stage_3_writes_round_1_when_a_refine_round_follows_and_the_final_model_when_none_does():
    on = parsed()
    assert on.get_parsed_content("refine_epochs") > 0  # the default: the shipped T=3 model is a refined one
    assert on.get_parsed_content("snn_round1_ckpt") == "/o/models/model_snn_finetuned_round1.pt"
    assert on.get_parsed_content("snn_finetuned_ckpt") == "/o/models/model_snn_finetuned.pt"
    off = parsed(refine_epochs=0)
    assert off.get_parsed_content("snn_round1_ckpt") == "/o/models/model_snn_finetuned.pt"


def test_the_round_inherits_the_runs_values_and_gets_its_own_settings():
    values = {"seed": 3, "device": torch.device("cpu"), "finetune_timesteps": 4, "refine_epochs": 6, "amp": True}
    got = round_overrides(
        values, {"output_dir": "/o"}, epochs=6, timesteps=3, learning_rate=1e-4, lr_schedule="cosine",
        start_ckpt="/o/models/r1.pt", out_ckpt="/o/models/final.pt",
    )  # fmt: skip
    assert got["seed"] == 3 and got["amp"] is True and got["output_dir"] == "/o"
    assert got["device"] == "cpu"  # a config override takes the string
    assert got["finetune_timesteps"] == 3 and got["finetune_epochs"] == 6 and got["finetune_learning_rate"] == 1e-4
    assert got["snn_converted_ckpt"] == "/o/models/r1.pt" and got["snn_finetuned_ckpt"] == "/o/models/final.pt"
    assert got["finetune_name"] == "refine" and got["refine_epochs"] == 0  # a round does not refine again
