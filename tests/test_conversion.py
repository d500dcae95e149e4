"""ANN -> SNN conversion of the 2D and 3D U-Net, the spiking segmenter's readouts, checkpoints, activity."""

import pytest
import torch
from conftest import tiny_unet, trained_like
from torch import nn

from bundle.errors import InputError
from bundle.networks import ConvertibleUNet
from bundle.spiking.activity import E_AC_PJ, E_MAC_PJ, ActivityMonitor, dense_macs
from bundle.spiking.checkpoint import load_snn, save_snn
from bundle.spiking.conversion import convert, one_at_a_time, output_threshold
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

SHAPES = {2: (32, 32), 3: (16, 16, 16)}


def _ann(spatial_dims, seed=0):
    """A small U-Net with BatchNorm statistics (as after training) and no head bias to hide behind."""
    torch.manual_seed(seed)
    net = tiny_unet(spatial_dims)
    x = torch.rand(4, 1, *SHAPES[spatial_dims])
    net = trained_like(net, x)
    with torch.no_grad():
        net.head.bias.zero_()
    return net, x


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("neuron", ["binary", "ternary"])
@pytest.mark.parametrize("mode, channel_wise", [("max", False), ("99.9%", True)])
def test_conversion_follows_the_ann(spatial_dims, neuron, mode, channel_wise):
    ann, x = _ann(spatial_dims)
    with torch.no_grad():
        ann_out = ann(x)
        snn = convert(ann, one_at_a_time([x]), mode=mode, channel_wise=channel_wise, neuron=neuron)
        kinds = {IFNeuron: "binary", GuardedTernaryIFNode: "ternary"}
        found = [kinds[type(m)] for m in snn.modules() if type(m) in kinds]
        assert found == [neuron] * sum(isinstance(m, nn.ReLU) for m in ann.modules())
        assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.BatchNorm3d)) for m in snn.modules())
        scores = SpikingSegmenter(snn, 64).scores_at(x, [2, 64])
    assert scores[64].shape == ann_out.shape
    assert _corr(scores[64], ann_out) > 0.95
    assert _corr(scores[64], ann_out) > _corr(scores[2], ann_out)


def test_ann_is_left_unchanged():
    ann, x = _ann(2)
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    convert(ann, one_at_a_time([x]))
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())


def test_same_input_twice_gives_the_same_output():
    ann, x = _ann(3)
    seg = SpikingSegmenter(convert(ann, one_at_a_time([x]), neuron="ternary"), 4)
    with torch.no_grad():
        assert torch.equal(seg(x), seg(x))


def test_multi_step_matches_single_step():
    ann, x = _ann(2)
    snn = convert(ann, one_at_a_time([x]))
    with torch.no_grad():
        single = SpikingSegmenter(snn, 8)(x)
        multi = SpikingSegmenter(snn, 8, multi_step=True)(x)
    assert torch.allclose(single, multi, atol=1e-5)


def test_readouts():
    ann, x = _ann(2)
    snn = convert(ann, one_at_a_time([x]))
    threshold = output_threshold(ann, one_at_a_time([x]))
    with torch.no_grad():
        ann_out = ann(x)
        membrane = SpikingSegmenter(snn, 32, readout="membrane")(x)
        rate = SpikingSegmenter(snn, 32, readout="rate", out_threshold=threshold)(x)
    assert threshold > 0
    assert membrane.min() < 0 and rate.min() >= 0  # a spiking output layer cannot say "negative"
    assert rate.max() <= threshold + 1e-6
    assert _corr(membrane, ann_out) > _corr(rate, ann_out)
    with pytest.raises(ValueError, match="readout"):
        SpikingSegmenter(snn, 4, readout="max")


def test_checkpoint_roundtrip(tmp_path):
    ann, x = _ann(3)
    snn = convert(ann, one_at_a_time([x]), mode="99.9%", channel_wise=True, neuron="ternary")
    settings = {"mode": "99.9%", "channel_wise": True, "neuron": "ternary", "v_init": 0.5, "timesteps": 4}
    path = save_snn(snn, tmp_path / "snn.pt", settings)
    rebuilt, loaded = load_snn(ConvertibleUNet(3, channels=(4, 8, 16)), path)
    assert loaded == settings
    with torch.no_grad():
        assert torch.equal(SpikingSegmenter(snn, 4)(x), SpikingSegmenter(rebuilt, 4)(x))
    with pytest.raises(RuntimeError):  # another architecture fails loudly
        load_snn(ConvertibleUNet(3, channels=(4, 8, 32)), path)
    with pytest.raises(InputError, match="run the 'convert' stage first"):
        load_snn(ConvertibleUNet(3, channels=(4, 8, 16)), tmp_path / "missing.pt")


def test_loading_a_checkpoint_runs_no_calibration_and_reads_the_file_once(tmp_path, monkeypatch):
    from bundle.spiking import calibration, checkpoint

    ann, x = _ann(3)
    snn = convert(ann, one_at_a_time([x]), mode="99.9%", neuron="ternary")
    path = save_snn(
        snn,
        tmp_path / "snn.pt",
        {
            "neuron": "ternary",
            "v_init": 0.5,
            "channel_wise": False,
            "spatial_dims": 3,
            "channels": [4, 8, 16],
            "timesteps": 4,
        },
    )

    def no_calibration(*_args, **_kwargs):
        raise AssertionError("a checkpoint load calibrated the network")

    reads = []
    real_load = torch.load
    monkeypatch.setattr(calibration.SharedCalibrationRecipe, "calibrate", no_calibration)
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    rebuilt, _ = checkpoint.load_snn(None, path)  # the U-Net comes from the settings
    assert reads == [path]
    with torch.no_grad():
        assert torch.equal(SpikingSegmenter(snn, 4)(x), SpikingSegmenter(rebuilt, 4)(x))


def test_a_file_that_is_not_an_snn_checkpoint_is_named_in_one_line(tmp_path):
    from bundle.spiking.checkpoint import read

    garbage, ann_file = tmp_path / "garbage.pt", tmp_path / "ann.pt"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"model": {}}, ann_file)
    with pytest.raises(InputError, match=r"garbage.pt: not a readable checkpoint"):
        read(garbage)
    with pytest.raises(InputError, match=r"ann.pt: not an SNN checkpoint of this bundle"):
        read(ann_file)


def test_percentile_calibration_refuses_oversized_images_clearly():
    ann, _ = _ann(3)
    big = torch.rand(1, 1, 176, 176, 176)  # 5.4M voxels x 4 channels in the first layer > 2**24
    with pytest.raises(InputError, match=r"activations in one layer, more than torch.quantile's 2\*\*24"):
        convert(ann, [big], mode="99.9%")


def test_bad_settings():
    ann, x = _ann(2)
    with pytest.raises(ValueError, match="neuron"):
        convert(ann, [x[:1]], neuron="lif")
    with pytest.raises(ValueError, match="v_init"):
        convert(ann, [x[:1]], v_init=1.5)


def test_activity_and_energy_accounting():
    ann, x = _ann(2)
    snn = convert(ann, one_at_a_time([x]))
    steps = 8
    with ActivityMonitor(snn) as monitor, torch.no_grad():
        SpikingSegmenter(snn, steps)(x)
        monitor.add_images(x.shape[0], steps)
    rates = monitor.firing_rates()
    assert len(rates) == sum(isinstance(m, nn.ReLU) for m in ann.modules())
    assert all(0.0 <= r <= 1.0 for r in rates.values()) and max(rates.values()) > 0
    s = monitor.summary(ann_macs=dense_macs(ann, x[:1]))
    stem = ann.stem[0][0]
    stem_macs = x[0, 0].numel() * stem.out_channels * stem.in_channels * 9
    assert s["macs"] == pytest.approx(steps * stem_macs)  # only the analog image costs MACs
    assert 0 < s["synops"] < steps * s["ann_macs"]
    assert s["energy_uj"] == pytest.approx((s["macs"] * E_MAC_PJ + s["synops"] * E_AC_PJ) * 1e-6)
