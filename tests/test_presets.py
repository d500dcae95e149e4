"""What the training presets resolve to: the default patch and the quick preset's smaller one."""

import pytest
from conftest import REPO
from monai.bundle import ConfigParser


def parsed(*configs: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "configs" / c) for c in configs])
    parser.update({"bundle_root": str(REPO), "output_dir": "/o", **overrides})
    return parser


@pytest.mark.parametrize(
    "configs, dims, patch",
    [
        (("train.json",), 3, [40, 56, 40]),  # about a whole Task04 crop (0.9.0)
        (("train.json", "quick.json"), 3, [32, 48, 32]),  # the 30-minute preset keeps the cheaper patch
        (("train.json", "quick.json"), 2, [48, 64]),  # and does not break the 2D network
    ],
)
def test_patch_size_per_preset(configs, dims, patch):
    assert parsed(*configs, spatial_dims=dims).get_parsed_content("context#settings").patch_size == patch


def test_quick_preset_is_short_and_keeps_the_weight_average_off():
    quick = parsed("train.json", "quick.json")
    values = {k: quick.get_parsed_content(k) for k in ("epochs", "ema_decay", "finetune_epochs", "refine_epochs")}
    assert values == {"epochs": 30, "ema_decay": 0.0, "finetune_epochs": 5, "refine_epochs": 0}
