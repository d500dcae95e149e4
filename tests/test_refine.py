"""The refine round's wiring: a second instance of the fine-tuning stage, with stage 3's settings and its own."""

import pytest
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


def shipped(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "configs" / "train.json"), str(REPO / "configs" / "shipped.json")])
    parser.update({"bundle_root": str(REPO), "output_dir": "/o", **overrides})
    return parser


def test_the_shipped_run_list_chains_each_round_from_a_file_an_earlier_stage_wrote():
    """configs/shipped.json: the T=3 chain ends in model_snn_finetuned.pt, the T=2 chain in model_snn_t2.pt,
    and no round reads a file that no stage before it writes (a resume could not otherwise skip it)."""
    p = shipped()
    stages = [p.get_parsed_content(k) for k in ("finetune", "refine")] + p.get_parsed_content("rounds").stages
    written = {"/o/models/model_snn_converted.pt"}
    for stage in stages:
        assert stage.start_ckpt in written, f"{stage.name} reads {stage.start_ckpt}, which nothing before it writes"
        written.add(stage.out_ckpt)
    finals = {s.out_ckpt: s for s in stages if not any(t.start_ckpt == s.out_ckpt for t in stages)}
    assert set(finals) == {"/o/models/model_snn_finetuned.pt", "/o/models/model_snn_t2.pt"}
    default, t2 = finals["/o/models/model_snn_finetuned.pt"], finals["/o/models/model_snn_t2.pt"]
    # the recipes of the shipped files' last rounds (docs/RESULTS.md, 0.11.3)
    own = default.settings
    assert (own.timesteps, own.learning_rate, own.rate_penalty) == (3, 5e-5, 0.05)
    assert (t2.settings.timesteps, t2.settings.learning_rate, t2.randomize) == (2, 3e-5, 1.0)
    assert default.spec()["settings"]["randomize"] == 1.0  # the round's own, recorded for --resume
    # the lineage's start had no randomisation (0.9): the run's 0 for a stage without its own, the rounds' own on top
    assert stages[1].spec()["settings"]["randomize"] == 0.0
    assert [s.strength for s in stages[2:6]] == [0.5, 1.0, 1.5, 1.0]
    assert len({s.name for s in stages}) == len(stages)


@pytest.mark.parametrize(
    "rounds, message",
    [
        (
            [{"name": "x", "start": "a.pt", "out": "b.pt", "epoch": 3}],
            "'epoch' is not a setting of a round (did you mean 'epochs'?)",
        ),
        ([{"name": "x", "start": "a.pt"}], "out missing"),
        ([{"name": "refine", "start": "a.pt", "out": "b.pt"}], "name 'refine' is taken"),
        ([{"name": "x", "start": "a.pt", "out": "b.pt", "epochs": 0}], "(x) epochs: 0 is not allowed"),
        ([{"name": "x", "start": "a.pt", "out": "b.pt", "randomize": 9}], "(x) randomize: 9 is not allowed"),
        ([{"name": "x", "start": "a.pt", "out": "a.pt"}], "(x) start and out are the same file"),
        (["x"], "'x' is not a round"),
    ],
)
def test_a_wrong_round_stops_the_run_with_one_line_naming_it(rounds, message):
    with pytest.raises(SystemExit) as e:
        parsed(refine_rounds=rounds).get_parsed_content("rounds")
    assert str(e.value).startswith("error: refine_rounds[0]: ") and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
