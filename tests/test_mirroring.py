"""Mirroring at inference (bundle/networks/mirroring.py): left-right equivariant class probabilities, counted as two
passes, and a setting that the config, the command line and the masks' fingerprint all see."""

import csv
import shutil

import pytest
import torch
from conftest import tiny_unet, trained_like

from bundle.cli import main
from bundle.inference.settings import InferenceSettings
from bundle.networks.mirroring import Mirrored
from bundle.spiking.activity import ActivityMonitor, dense_macs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mirrored():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 16)
    return Mirrored(trained_like(tiny_unet(), x)), x


def test_a_mirrored_network_is_left_right_equivariant_and_returns_log_probabilities(mirrored):
    net, x = mirrored
    with torch.no_grad():
        a, b, plain = net(x), net(x.flip(2)), net.network(x)
    assert torch.equal(b, a.flip(2))  # the same two passes, in the other order
    assert torch.allclose(a.exp().sum(1), torch.ones_like(a[:, 0]), atol=1e-5)
    assert not torch.allclose(a.exp(), plain.softmax(1), atol=1e-3)  # the mirror's pass counts


def test_a_mirrored_network_costs_two_passes(mirrored):
    net, x = mirrored
    with ActivityMonitor(net) as monitor, torch.no_grad():
        net(x[:1])
    assert monitor.totals()["macs"] == pytest.approx(2 * dense_macs(net.network, x[:1]))


def test_a_mirrored_model_is_judged_by_its_mirrored_confidence_floor():
    from bundle.inference.catalog import CONFIDENCE_FLOORS, MIRRORED_CONFIDENCE_FLOORS

    assert set(MIRRORED_CONFIDENCE_FLOORS) == set(CONFIDENCE_FLOORS)
    _, plain = InferenceSettings.from_config(model="snn", device="cpu").load()
    _, info = InferenceSettings.from_config(model="snn", device="cpu", mirror=True).load()
    assert plain["confidence_floor"] == CONFIDENCE_FLOORS["snn"] and "mirror" not in plain
    assert info["confidence_floor"] == MIRRORED_CONFIDENCE_FLOORS["snn"] and info["mirror"] is True


def rows(out):
    with (out / "volumes.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_mirror_from_the_command_line_makes_other_masks_and_keeps_the_plain_ones(task04, tmp_path, capsys):
    assert InferenceSettings.from_config().mirror is False  # configs/inference.json: off by default
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(task04 / "imagesTr" / "hippocampus_001.nii.gz", folder)
    plain, out = tmp_path / "plain", tmp_path / "mirrored"
    base = ["--model", "ann", "--device", "cpu", "--quiet"]
    assert main(["segment", str(folder), str(plain), *base]) == 0
    assert main(["segment", str(folder), str(out), *base, "--mirror"]) == 0
    p, m = rows(plain)[0], rows(out)[0]
    assert m["status"] == "ok" and m["model_sha256"] != p["model_sha256"] and not m["flag"] and not p["flag"]
    assert abs(float(m["anterior_mm3"]) - float(p["anterior_mm3"])) < 0.1 * float(p["anterior_mm3"])
    assert float(m["energy_uj"]) == pytest.approx(2 * float(p["energy_uj"]), rel=1e-4)  # rounded in the table
    # the mirrored masks are not taken for plain ones: a plain rerun into that folder keeps them and says why
    before = (out / "hippocampus_001.nii.gz").read_bytes()
    capsys.readouterr()
    assert main(["segment", str(folder), str(out), *base]) == 1
    assert "other settings" in capsys.readouterr().err
    assert (out / "hippocampus_001.nii.gz").read_bytes() == before
