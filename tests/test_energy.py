"""One energy account: the ANN and the SNN counted by the same code on the windows the inferer runs."""

import csv
import json

import pytest
import torch
from conftest import tiny_snn, tiny_unet, trained_like
from monai.inferers import SlidingWindowInferer

from bundle.spiking.activity import E_AC_PJ, E_MAC_PJ, ActivityMonitor, dense_macs, energy_line
from bundle.spiking.segmenter import SpikingSegmenter

ROI = (16, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (conftest.py)


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    ann = tiny_unet(3)
    x = torch.rand(2, 1, *ROI)
    ann = trained_like(ann, x)
    return ann, SpikingSegmenter(tiny_snn(ann, x), 3).eval()


def _windows(network, inferer, volume):
    """Run ``network`` through ``inferer``; return its totals and the windows the inferer gave it."""
    seen = []
    hook = network.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        with ActivityMonitor(network) as monitor, torch.no_grad():
            inferer(volume, network)
    finally:
        hook.remove()
    return monitor.totals(), seen


def test_ann_and_snn_are_counted_on_the_same_windows(networks):
    ann, snn = networks
    inferer = SlidingWindowInferer(ROI, sw_batch_size=3, overlap=0.25)
    volume = torch.rand(1, 1, 30, 20, 18)  # several windows, in batches of up to 3
    per_window = dense_macs(ann, torch.zeros(1, 1, *ROI))
    a, seen = _windows(ann, inferer, volume)
    n = sum(s[0] for s in seen)
    assert n > 3 and a["windows"] == n and a["window"] == "16x16x16"
    assert a["macs"] == pytest.approx(per_window * n) and a["synops"] == 0  # the ANN: dense MACs, every window
    assert a["energy_uj"] == pytest.approx(a["macs"] * E_MAC_PJ * 1e-6)
    assert a["ann_energy_uj"] == pytest.approx(a["energy_uj"]) and a["energy_vs_ann"] == pytest.approx(1.0)
    assert "mean_timesteps" not in a and "mean_firing_rate" not in a

    s, seen_snn = _windows(snn, inferer, volume)
    assert seen_snn == seen and s["windows"] == n and s["window"] == a["window"]
    assert s["ann_macs"] == pytest.approx(a["macs"])  # the ANN-equivalent of the SNN's windows is the ANN's count
    assert s["energy_uj"] == pytest.approx((s["macs"] * E_MAC_PJ + s["synops"] * E_AC_PJ) * 1e-6)
    assert s["energy_vs_ann"] == pytest.approx(s["energy_uj"] / a["energy_uj"])
    assert s["mean_timesteps"] == 3 and 0 < s["mean_firing_rate"] < 1
    line = energy_line(s)
    assert f"{n} window(s) of 16x16x16" in line and "mean T 3.00" in line


def test_summary_per_window_agrees_with_totals(networks):
    ann, snn = networks
    x = torch.rand(2, 1, *ROI)
    with ActivityMonitor(snn) as monitor, torch.no_grad():
        snn(x)
    per_window, totals = monitor.summary(ann_macs=dense_macs(ann, x[:1])), monitor.totals()
    assert per_window["timesteps"] == 3
    assert per_window["energy_uj"] * 2 == pytest.approx(totals["energy_uj"])
    assert per_window["ann_energy_uj"] * 2 == pytest.approx(totals["ann_energy_uj"])


def test_volumes_csv_and_metrics_csv_account_every_model(decathlon, tmp_path):
    """The shipped ANN and SNN on one Task04-sized case: same (fitted) window, same ANN-equivalent energy, ratio in
    a column."""
    from bundle.inference.evaluate import evaluate_folder
    from bundle.inference.inferers import make_inferer
    from bundle.inference.models import load_model
    from bundle.inference.segment import segment_folder

    case = "hippocampus_001"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{case}.nii.gz").write_bytes((decathlon / "imagesTr" / f"{case}.nii.gz").read_bytes())
    inferer = make_inferer(3, [48, 64, 48])
    rows = {}
    for model, kwargs in (("ann", {}), ("snn", {"timesteps": 2, "kernel": "eager"})):
        network, info = load_model(model, **kwargs)
        segment_folder(tmp_path / "in", tmp_path / model, network, inferer, info, progress=False)
        rows[model] = next(csv.DictReader((tmp_path / model / "volumes.csv").open()))
    ann, snn = rows["ann"], rows["snn"]
    window = tuple(int(v) for v in ann["window"].split("x"))  # fitted to the case: at most the 48x64x48 roi
    assert all(w % 8 == 0 and w <= r for w, r in zip(window, (48, 64, 48))), window
    expected = dense_macs(load_model("ann")[0], torch.zeros(1, 1, *window)) * E_MAC_PJ * 1e-6  # ~20-39 mJ
    assert float(ann["energy_uj"]) == pytest.approx(expected, rel=1e-3)
    assert ann["ann_energy_uj"] == ann["energy_uj"] == snn["ann_energy_uj"] and float(ann["energy_vs_ann"]) == 1
    assert ann["windows"] == snn["windows"] == "1" and ann["window"] == snn["window"]
    assert ann["mean_timesteps"] == ann["mean_firing_rate"] == ""
    assert float(snn["mean_timesteps"]) == 2 and 0 < float(snn["mean_firing_rate"]) < 1
    ratio = float(snn["energy_uj"]) / float(snn["ann_energy_uj"])
    assert float(snn["energy_vs_ann"]) == pytest.approx(ratio, rel=1e-3) and 0 < ratio < 1

    data = tmp_path / "data"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
        (data / sub / f"{case}.nii.gz").write_bytes((decathlon / f"{sub}Tr" / f"{case}.nii.gz").read_bytes())
    network, info = load_model("ann")
    summary = evaluate_folder(data, tmp_path / "eval", network, inferer, info, overlays=0, progress=False)
    metrics = next(csv.DictReader((tmp_path / "eval" / "metrics.csv").open()))
    assert metrics["energy_uj"] == ann["energy_uj"] and metrics["window"] == ann["window"]
    assert summary["window"] == [ann["window"]] and summary["energy_vs_ann"]["mean"] == 1.0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))["windows"]["mean"] == 1
