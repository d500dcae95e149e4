"""Adaptive T: each window stops once its class map is stable; defaults keep the fixed-T behaviour."""

import pytest
import torch
from conftest import tiny_snn, tiny_unet, trained_like

from bundle.cli import parse_args
from bundle.spiking.activity import ActivityMonitor
from bundle.spiking.segmenter import SpikingSegmenter

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (conftest.py)


@pytest.fixture(scope="module")
def snn_and_x():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16, 16)  # a 3D net whose windows settle after different numbers of steps
    ann = trained_like(tiny_unet(3), x)  # BatchNorm statistics, so the network is not trivial
    return tiny_snn(ann, x), x


def _run(seg, x):
    with torch.no_grad():
        return seg.eval()(x)


def test_defaults_keep_fixed_T(snn_and_x):
    snn, x = snn_and_x
    seg = SpikingSegmenter(snn, 6)
    assert seg.adaptive == "off"
    out = _run(seg, x)
    assert torch.equal(out, seg.scores_at(x, [6])[6])
    assert seg.last_steps.tolist() == [6] * len(x) and seg.mean_steps() == 6.0


def test_each_window_stops_when_stable_and_keeps_that_steps_scores(snn_and_x):
    snn, x = snn_and_x
    seg = SpikingSegmenter(snn, 8, adaptive="stable", patience=1, tolerance=0.0)
    out = _run(seg, x)
    steps = seg.last_steps.tolist()
    assert all(2 <= s <= 8 for s in steps) and min(steps) < 8 and len(set(steps)) > 1, steps
    for i, s in enumerate(steps):  # what a fixed-T run of that window's steps gives
        ref = _run(SpikingSegmenter(snn, s), x[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], ref, rtol=0, atol=1e-6)
    # per window, not per batch: a window's result does not depend on its batch-mates
    alone = torch.cat([_run(seg, x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(alone, out, rtol=0, atol=1e-6)


def test_patience_tolerance_and_maximum(snn_and_x):
    snn, x = snn_and_x
    loose = SpikingSegmenter(snn, 8, adaptive="stable", patience=1, tolerance=0.99)
    _run(loose, x)
    assert loose.last_steps.tolist() == [2] * len(x)  # earliest stop: patience + 1
    patient = SpikingSegmenter(snn, 8, adaptive="stable", patience=3, tolerance=0.99)
    _run(patient, x)
    assert patient.last_steps.tolist() == [4] * len(x)
    capped = SpikingSegmenter(snn, 3, adaptive="stable", patience=5)
    out = _run(capped, x)
    assert capped.last_steps.tolist() == [3] * len(x)
    torch.testing.assert_close(out, _run(SpikingSegmenter(snn, 3), x), rtol=0, atol=1e-6)


def test_training_always_runs_all_steps(snn_and_x):
    snn, x = snn_and_x
    seg = SpikingSegmenter(snn, 5, adaptive="stable", tolerance=0.99).train()
    seg(x).sum().backward()
    assert seg.last_steps.tolist() == [5] * len(x)
    snn.zero_grad()


def test_activity_counts_the_steps_run(snn_and_x):
    snn, x = snn_and_x
    fixed, adaptive = SpikingSegmenter(snn, 8), SpikingSegmenter(snn, 8, adaptive="stable", tolerance=0.99)
    totals = {}
    for name, seg in (("fixed", fixed), ("adaptive", adaptive)):
        with ActivityMonitor(seg) as monitor:
            _run(seg, x)
        totals[name] = monitor.totals()
    assert totals["fixed"]["mean_timesteps"] == 8 and totals["adaptive"]["mean_timesteps"] == 2
    assert totals["adaptive"]["macs"] == pytest.approx(totals["fixed"]["macs"] / 4)  # the stem: every step
    assert totals["adaptive"]["energy_uj"] < totals["fixed"]["energy_uj"] / 2
    assert totals["adaptive"]["ann_energy_uj"] == totals["fixed"]["ann_energy_uj"]  # same windows, same ANN
    assert 0 < totals["adaptive"]["mean_firing_rate"] < 1


def test_bad_settings(snn_and_x):
    snn, _ = snn_and_x
    with pytest.raises(ValueError, match="adaptive"):
        SpikingSegmenter(snn, 4, adaptive="early")
    with pytest.raises(ValueError, match="patience"):
        SpikingSegmenter(snn, 4, adaptive="stable", patience=0)
    with pytest.raises(ValueError, match="tolerance"):
        SpikingSegmenter(snn, 4, adaptive="stable", tolerance=1.0)
    with pytest.raises(ValueError, match="single-step"):
        SpikingSegmenter(snn, 4, adaptive="stable", multi_step=True)


def test_cli_flags_and_model_loading():
    s = parse_args(["evaluate", "d", "o", "--adaptive", "stable", "--patience", "2", "--tolerance", "1e-4"]).settings
    assert (s.adaptive, s.patience, s.tolerance) == ("stable", 2, 1e-4)
    s = parse_args(["segment", "i", "o"]).settings  # defaults: configs/inference.json's
    assert (s.adaptive, s.patience, s.tolerance) == ("off", 1, 1e-3)

    from bundle.errors import InputError
    from bundle.inference.models import load_model
    from bundle.inference.segment import adaptive_settings

    network, info = load_model("snn", timesteps=8, kernel="eager", adaptive="stable", patience=2, tolerance=1e-4)
    assert (network.adaptive, network.patience, network.tolerance, network.timesteps) == ("stable", 2, 1e-4, 8)
    assert info["adaptive"] == "stable" and info["timesteps"] == 8
    assert adaptive_settings(network) == {"adaptive": "stable", "patience": 2, "tolerance": 1e-4}
    assert adaptive_settings(SpikingSegmenter(network.snn, 4)) == {}  # off: the fingerprint stays as it was
    with pytest.raises(InputError, match="patience"):
        load_model("snn", adaptive="stable", patience=0)


def test_an_adaptive_model_exports_as_fixed_T(snn_and_x, tmp_path):
    from bundle.inference.export import export_snn

    snn, x = snn_and_x
    path = export_snn(SpikingSegmenter(snn, 4, adaptive="stable", tolerance=0.5), tmp_path / "snn.ts", (16, 16, 16))
    with torch.no_grad():
        exported = torch.jit.load(str(path))(x[:1])
        fixed = SpikingSegmenter(snn, 4).eval()(x[:1])
    torch.testing.assert_close(exported, fixed, atol=1e-5, rtol=0)
