"""``ann_init_ckpt``: the ANN stage continues from a trained ANN (refining it on new data settings)."""

import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser

from bundle.networks import ConvertibleUNet


def ann_stage(decathlon, tmp_path, **overrides):
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "train.json"))
    parser.update({"dataset_dir": str(decathlon), "output_dir": str(tmp_path / "out"), "channels": [4, 8, 16],
                   "num_workers": 0, "device": "cpu", **overrides})  # fmt: skip
    return parser.get_parsed_content("ann")


def test_the_ann_stage_starts_from_the_given_ann_and_says_so_in_its_recipe(decathlon, tmp_path):
    trained = ConvertibleUNet(3, 1, 3, (4, 8, 16))
    for p in trained.parameters():
        torch.nn.init.normal_(p)  # anything a fresh network would not be
    ckpt = tmp_path / "model_ann.pt"
    torch.save({"model": trained.state_dict(), "input": {"standardization": "histogram"}}, ckpt)

    stage = ann_stage(decathlon, tmp_path, ann_init_ckpt=str(ckpt))
    started = stage.network.state_dict()
    assert all(torch.equal(v, started[k]) for k, v in trained.state_dict().items())
    assert stage.network.training  # trained on, not left in eval mode by the load
    assert stage.settings.recipe(stage.context)["init_ckpt"] == str(ckpt)  # a resumed run notices a new start

    fresh = ann_stage(decathlon, tmp_path)
    assert "init_ckpt" not in fresh.settings.recipe(fresh.context)  # recipes from before the key still match
    assert not torch.equal(next(iter(fresh.network.parameters())), next(iter(trained.parameters())))


def test_a_missing_or_foreign_start_is_one_line_naming_the_file(decathlon, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: .*nothing\.pt: not found"):
        ann_stage(decathlon, tmp_path, ann_init_ckpt=str(tmp_path / "nothing.pt")).network
    wider = tmp_path / "wider.pt"
    torch.save({"model": ConvertibleUNet(3, 1, 3, (8, 16, 32)).state_dict()}, wider)
    with pytest.raises(SystemExit, match=r"^error: .*wider\.pt: does not fit this network"):
        ann_stage(decathlon, tmp_path, ann_init_ckpt=str(wider)).network
