"""The refine round's wiring: a second instance of the fine-tuning stage, with stage 3's settings and its own."""

from conftest import REPO
from monai.bundle import ConfigParser


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
    finetune, refine = on.get_parsed_content("finetune"), on.get_parsed_content("refine")
    assert finetune.out_ckpt == refine.start_ckpt == "/o/models/model_snn_finetuned_round1.pt"
    assert refine.out_ckpt == "/o/models/model_snn_finetuned.pt"
    assert finetune.context is refine.context  # one run: its data and records are shared, not re-parsed
    off = parsed(refine_epochs=0)
    assert off.get_parsed_content("snn_round1_ckpt") == "/o/models/model_snn_finetuned.pt"
    assert off.get_parsed_content("finetune").out_ckpt == "/o/models/model_snn_finetuned.pt"


def test_the_round_inherits_stage_3s_settings_and_gets_its_own():
    p = parsed(finetune_ema_decay=0.5, finetune_loss="dice_ce", refine_timesteps=2, refine_epochs=4)
    stage3, round2 = p.get_parsed_content("finetune#settings"), p.get_parsed_content("refine#settings")
    assert round2.ema_decay == stage3.ema_decay == 0.5 and round2.loss == stage3.loss == "dice_ce"
    assert (round2.timesteps, round2.epochs, round2.lr_schedule) == (2, 4, "cosine")
    assert (stage3.timesteps, stage3.epochs, stage3.lr_schedule) == (4, 9, "restart")
    # each checked under its own keys
    assert round2.config_values()["refine_timesteps"] == 2 and stage3.config_values()["finetune_timesteps"] == 4
