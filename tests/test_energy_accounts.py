"""The two energy accounts (bundle/spiking/energy.py) on networks small enough to count by hand."""

from collections import OrderedDict

import pytest
import torch
from conftest import tiny_snn, tiny_unet, trained_like
from torch import nn

from bundle.spiking.activity import ActivityMonitor
from bundle.spiking.energy import E_DRAM_BIT, E_SRAM_BIT, event_bits
from bundle.spiking.neurons import IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

pytestmark = pytest.mark.usefixtures("one_thread")


class Hand(nn.Module):
    """stem.0.0: Conv3d(1->1, 1x1x1, weight 1) -> IF neuron (threshold 1) -> head: Conv3d(1->2, 1x1x1, weight 1),
    named as the converter names them; with ``spiking=False`` a ReLU where the neuron is (the ANN)."""

    def __init__(self, spiking: bool = True):
        super().__init__()
        conv = nn.Conv3d(1, 1, 1, bias=False)
        head = nn.Conv3d(1, 2, 1, bias=False)
        for c in (conv, head):
            nn.init.ones_(c.weight)
        act = nn.Sequential(OrderedDict(if_node=IFNeuron(1.0, 0.0))) if spiking else nn.ReLU()
        self.stem = nn.Sequential(nn.Sequential(OrderedDict([("0", conv), ("spiking_0", act)])))
        self.head = head

    def forward(self, x):
        return self.head(self.stem(x))


def window(ones: int, value: float = 1.0) -> torch.Tensor:
    """One 2x2x2 window with ``ones`` voxels at ``value`` and the rest 0."""
    x = torch.zeros(1, 1, 2, 2, 2)
    x.view(-1)[:ones] = value
    return x


def run(network: nn.Module, x: torch.Tensor) -> dict:
    with ActivityMonitor(network) as monitor, torch.no_grad():
        network(x)
    return monitor.totals()


def test_snn_counts_equal_the_hand_computed_values():
    # T=2; 4 of 8 inputs are 1.0: the 4 neurons they drive fire at both steps (v = 1 >= 1, reset to 0)
    s = run(SpikingSegmenter(Hand(), timesteps=2), window(4))
    assert s["mean_firing_rate"] == 0.5 and s["spikes_per_neuron"] == 1.0
    assert s["macs"] == 2 * 4  # the analog image: its non-zero inputs x 1 output channel, every step
    assert s["synops"] == 2 * 4 * 2  # 4 spikes a step, each to 2 output channels
    assert s["energy_uj"] == pytest.approx((8 * 4.6 + 16 * 0.9) * 1e-6)
    # memory traffic, bits: weights (1 and 2) fetched every step; membranes (8 neurons, and the 16 readout
    # accumulators) read and written every step; the image read every step; 8 spikes written and read as
    # events of log2(8) + 1 = 4 bits
    assert event_bits(8) == 4
    stem = 1 * 2 * 32 + 2 * (8 * 2) * 32 + 8 * 2 * 32 + 8 * 4
    head = 2 * 2 * 32 + 2 * (16 * 2) * 32 + 8 * 4
    assert s["traffic_mbit"] * 1e6 == pytest.approx(stem + head) == 3840
    assert s["energy_sram_uj"] == pytest.approx((51.2 + 3840 * E_SRAM_BIT) * 1e-6)
    assert s["energy_dram_uj"] == pytest.approx((51.2 + 3840 * E_DRAM_BIT) * 1e-6)
    # the FP32 and INT8 ANN on the same window: 8 + 16 dense MACs; weights once, each map read or written once
    assert s["ann_energy_uj"] == pytest.approx(24 * 4.6e-6) and s["int8_energy_uj"] == pytest.approx(24 * 0.3e-6)
    ann_bits = (1 + 2) * 32 + (8 + 8 + 8 + 16) * 32
    assert ann_bits == 1376
    assert s["ann_energy_sram_uj"] == pytest.approx((24 * 4.6 + 1376 * E_SRAM_BIT) * 1e-6)
    assert s["int8_energy_dram_uj"] == pytest.approx((24 * 0.3 + 1376 / 4 * E_DRAM_BIT) * 1e-6)


def test_ann_counts_equal_the_hand_computed_values_and_its_own_baseline():
    a = run(Hand(spiking=False).eval(), window(4))
    assert a["macs"] == 24 and a["synops"] == 0 and "mean_firing_rate" not in a
    assert a["energy_uj"] == pytest.approx(24 * 4.6e-6) == pytest.approx(a["ann_energy_uj"])
    assert a["traffic_mbit"] * 1e6 == pytest.approx(1376)
    for memory in ("sram", "dram"):
        assert a[f"energy_{memory}_uj"] == pytest.approx(a[f"ann_energy_{memory}_uj"])


def test_the_memory_account_grows_with_firing():
    quiet, busy = (run(SpikingSegmenter(Hand(), timesteps=2), window(n)) for n in (2, 6))
    assert busy["mean_firing_rate"] > quiet["mean_firing_rate"]
    assert busy["traffic_mbit"] > quiet["traffic_mbit"]
    for key in ("energy_sram_uj", "energy_dram_uj"):
        assert busy[key] > quiet[key]
    assert busy["int8_energy_dram_uj"] == pytest.approx(quiet["int8_energy_dram_uj"])  # the ANN's does not


def test_the_memory_account_grows_with_timesteps_on_a_converted_unet():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16, 16)
    ann = trained_like(tiny_unet(3), x)
    snn = tiny_snn(ann, x)
    totals = {t: run(SpikingSegmenter(snn, timesteps=t).eval(), x) for t in (2, 4)}
    for key in ("energy_uj", "energy_sram_uj", "energy_dram_uj", "traffic_mbit"):
        assert totals[4][key] > totals[2][key], key
    for key in ("ann_energy_dram_uj", "int8_energy_sram_uj"):
        assert totals[4][key] == pytest.approx(totals[2][key]), key
    # memory traffic costs more than arithmetic, for both networks, and more in DRAM than in SRAM
    for t in totals.values():
        assert t["energy_uj"] < t["energy_sram_uj"] < t["energy_dram_uj"]
        assert t["int8_energy_uj"] < t["ann_energy_uj"] and t["int8_energy_dram_uj"] < t["ann_energy_dram_uj"]


def test_summaries_print_both_accounts():
    from bundle.cli import _energy
    from bundle.inference.records import CSV_FIELDS, energy_note

    values = {"energy_uj": 2000.0, "ann_energy_uj": 20000.0, "energy_sram_uj": 2500.0, "energy_dram_uj": 50000.0,
              "int8_energy_uj": 1300.0, "int8_energy_sram_uj": 1250.0, "int8_energy_dram_uj": 5000.0}  # fmt: skip
    assert set(values) <= set(CSV_FIELDS)
    row = {**{k: str(v) for k, v in values.items()}, "windows": "1", "window": "40x56x40", "mean_timesteps": "3"}
    note = energy_note([row])
    assert "energy 2000 uJ per image, mean T 3.00 (compute only; ANN on the same windows 20000 uJ: ratio 0.100)" in note
    assert (
        "with memory traffic SRAM 2500 / DRAM 50000 uJ (INT8 ANN on the same windows 1250 / 5000 uJ: ratio 2.00 / 10.00)"
        in note
    )
    summary = {k: {"mean": v} for k, v in {**values, "windows": 1.0}.items()} | {"window": ["40x56x40"]}
    line = _energy(summary)
    assert (
        "compute only" in line
        and "SRAM 2500 / DRAM 50000 uJ/volume (INT8 ANN 1250 / 5000 uJ, ratio 2.00 / 10.00)" in line
    )
