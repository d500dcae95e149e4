"""The INT8 ANN (bundle/networks/quantized.py): PyTorch FX post-training quantisation, its checkpoint, its energy
account, and masks that agree with the FP32 ANN's."""

import pytest
import torch
from conftest import tiny_unet, trained_like

from bundle.networks.quantized import load_int8, quantize, save_int8
from bundle.spiking.activity import ActivityMonitor, dense_macs
from bundle.spiking.energy import E_MAC_FP32, E_MAC_INT8

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 16)
    ann = trained_like(tiny_unet(3), x)
    return ann, quantize(ann, [x[:1], x[1:]]), x


def test_int8_follows_the_ann_and_survives_its_checkpoint(pair, tmp_path):
    ann, int8, x = pair
    with torch.no_grad():
        a, q = ann(x), int8(x)
    assert q.dtype == torch.float32 and q.shape == a.shape
    assert (a - q).abs().max() < 0.05 * a.abs().max()
    assert (a.argmax(1) == q.argmax(1)).float().mean() > 0.95
    path = save_int8(int8, tmp_path / "int8.pt", ann, {"standardization": "histogram"}, source_sha256="abc")
    saved = torch.load(path, weights_only=True)
    assert saved["input"] == {"standardization": "histogram"} and saved["quantization"]["source_sha256"] == "abc"
    with torch.no_grad():
        assert torch.equal(load_int8(saved)(x), q)  # every scale, zero point and INT8 weight came back


def test_int8_is_counted_as_int8_on_the_same_windows(pair):
    ann, int8, x = pair
    with ActivityMonitor(int8) as monitor, torch.no_grad():
        int8(x)
    t = monitor.totals()
    macs = dense_macs(ann, x[:1]) * 2
    assert t["windows"] == 2 and t["macs"] == pytest.approx(macs) and t["synops"] == 0
    assert t["energy_uj"] == pytest.approx(macs * E_MAC_INT8 * 1e-6) == pytest.approx(t["int8_energy_uj"])
    assert t["ann_energy_uj"] == pytest.approx(macs * E_MAC_FP32 * 1e-6)
    for memory in ("sram", "dram"):  # its own account is the INT8 baseline's, a quarter of the FP32 ANN's traffic
        assert t[f"energy_{memory}_uj"] == pytest.approx(t[f"int8_energy_{memory}_uj"])
        assert t[f"energy_{memory}_uj"] < t[f"ann_energy_{memory}_uj"]


def test_shipped_int8_masks_agree_with_the_fp32_ann(task04):
    """One Task04 case through the batch pipeline: the INT8 model's mask against the FP32 ANN's, per class."""
    from bundle.inference.settings import InferenceSettings

    image = task04 / "imagesTr" / "hippocampus_001.nii.gz"
    masks = {}
    for model in ("ann", "ann_int8"):
        settings = InferenceSettings.from_config(model=model, device="cpu")
        network, info = settings.load()
        seg = settings.segmenter(network, info)(image)
        masks[model] = seg.mask[0]
        assert seg.activity["int8_energy_uj"] > 0
    assert info["precision"] == "int8" and seg.activity["energy_uj"] == pytest.approx(seg.activity["int8_energy_uj"])
    for k in (1, 2):
        a, q = masks["ann"] == k, masks["ann_int8"] == k
        dice = 2 * float((a & q).sum()) / float(a.sum() + q.sum())
        assert dice >= 0.97, (k, dice)


def test_four_bit_weights_stay_in_range_and_move_half_the_weight_bits(pair, tmp_path):
    ann, int8, x = pair
    w4 = quantize(ann, [x[:1], x[1:]], weight_bits=4)
    convs = [m for m in w4.modules() if hasattr(m, "weight") and callable(m.weight)]
    assert convs and all(m.weight().int_repr().abs().max() <= 7 for m in convs)
    saved = torch.load(save_int8(w4, tmp_path / "w4.pt", ann, {}), weights_only=True)
    assert saved["quantization"]["weight_bits"] == 4 and load_int8(saved).weight_bits == 4
    totals = {}
    for name, net in (("int8", int8), ("w4", w4)):
        with ActivityMonitor(net) as monitor, torch.no_grad():
            net(x)
        totals[name] = monitor.totals()
    assert totals["w4"]["energy_uj"] == pytest.approx(totals["int8"]["energy_uj"])  # same MACs
    weights = sum(m.weight().numel() for m in convs) * 2  # bits saved per window: 8 -> 4 for every weight, 2 windows
    saved_bits = (totals["int8"]["traffic_mbit"] - totals["w4"]["traffic_mbit"]) * 1e6
    assert saved_bits == pytest.approx(weights * 4)


def test_shipped_int8_was_made_from_the_shipped_ann():
    """A retrained ANN needs a new INT8 model: `.venv/bin/python scripts/quantize_ann.py` (then the energy studies)."""
    from conftest import REPO

    from bundle.inference.records import file_sha256

    saved = torch.load(REPO / "models" / "model_ann_int8.pt", weights_only=True)
    assert saved["quantization"]["source_sha256"] == file_sha256(REPO / "models" / "model_ann.pt"), (
        "models/model_ann_int8.pt was made from another model_ann.pt: run scripts/quantize_ann.py"
    )
    assert saved["input"] == torch.load(REPO / "models" / "model_ann.pt", weights_only=True)["input"]
