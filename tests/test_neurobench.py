"""NeuroBench's metrics on the bundle's networks (bundle/spiking/neurobench_adapter.py), cross-checked against our
own counts (bundle/spiking/activity.py) where both apply. Needs the [neuromorphic] extra."""

import pytest
import torch
from conftest import tiny_snn, tiny_unet, trained_like
from test_energy_accounts import Hand, run, window

from bundle.networks.quantized import quantize
from bundle.spiking.segmenter import SpikingSegmenter

pytest.importorskip("neurobench")
from bundle.spiking.neurobench_adapter import neurobench_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_neurobench_counts_equal_ours_and_the_hand_values_without_padding():
    # 1x1x1 kernels (no padding: both conventions count the same products); 1.5 is analog, so the image costs MACs;
    # 4 neurons fire at both steps (v: 1.5 -> 0.5 -> 2.0 -> 1.0)
    snn = SpikingSegmenter(Hand(), timesteps=2)
    x = window(4, 1.5)
    nb, ours = neurobench_metrics(snn, [x]), run(snn, x)
    assert nb["synops_effective_macs"] == ours["macs"] == 8  # 4 non-zero voxels x 1 channel x 2 steps
    assert nb["synops_effective_acs"] == ours["synops"] == 16  # 4 spikes x 2 channels x 2 steps
    assert nb["synops_dense"] == 2 * ours["ann_macs"] == 48  # 24 products a step
    assert nb["activation_sparsity"] == 1 - ours["mean_firing_rate"] == 0.5
    assert nb["parameters"] == 3 and nb["footprint_bytes"] == 12 and nb["connection_sparsity"] == 0
    ann = neurobench_metrics(Hand(spiking=False).eval(), [x])
    assert ann["synops_dense"] == 24 and ann["synops_effective_macs"] == 4 + 4 * 2 and ann["synops_effective_acs"] == 0


def test_neurobench_sees_every_layer_of_a_converted_unet_and_its_int8_twin():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 16)
    ann = trained_like(tiny_unet(3), x)
    snn = SpikingSegmenter(tiny_snn(ann, x), 3).eval()
    nb = {name: neurobench_metrics(net, [x[:1], x[1:]]) for name, net in
          (("ann", ann), ("snn", snn), ("int8", quantize(ann, [x[:1]])))}  # fmt: skip
    ours = {name: run(net, x) for name, net in (("ann", ann), ("snn", snn))}
    # the same spikes; products with the zero padding are ours (outputs x inputs x kernel), not NeuroBench's:
    # on a 16^3 window 17-18 % of a 3x3x3 layer's taps fall outside (on a 48x64x48 window about 3 %)
    assert nb["snn"]["activation_sparsity"] == pytest.approx(1 - ours["snn"]["mean_firing_rate"])
    for key, mine in (
        ("synops_dense", 3 * ours["ann"]["ann_macs"] / 2),
        ("synops_effective_acs", ours["snn"]["synops"] / 2),
    ):
        assert 0.78 < nb["snn"][key] / mine < 0.9, key
    assert nb["snn"]["synops_effective_macs"] > 0  # the image into the first layer, every step
    assert nb["ann"]["synops_effective_acs"] == 0 and nb["ann"]["synops_dense"] == pytest.approx(
        nb["snn"]["synops_dense"] / 3
    )
    assert nb["int8"]["synops_dense"] == nb["ann"]["synops_dense"]  # every quantized layer is seen, transposed ones too
    assert nb["int8"]["footprint_bytes"] < nb["ann"]["footprint_bytes"] / 3
    assert 0.3 < nb["int8"]["activation_sparsity"] < 0.7 and nb["int8"]["synops_effective_macs"] > 0
