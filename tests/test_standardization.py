"""Intensity standardisation: one scale for any site, and the same code in every path."""

import numpy as np
import pytest
import torch
from monai import transforms as mt

from bundle.data.standardization import REFERENCE, histogram_landmarks, standardize, tissue_mask


def _image(seed=0, shape=(30, 40, 30)):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    grey = 0.45 + 0.1 * ((z / 0.8) ** 2 + (y / 0.8) ** 2 < 0.5)
    white = 0.8 * ((z / 0.5) ** 2 + (y / 0.6) ** 2 + (x / 0.6) ** 2 < 1)
    image = np.maximum(grey, white) + 0.03 * rng.standard_normal(shape)
    return np.clip(image, 0.01, None).astype(np.float32)


def test_histogram_maps_tissue_landmarks_to_the_reference():
    out = standardize(_image() * 700 + 13, "histogram")
    assert np.allclose(histogram_landmarks(out), REFERENCE, atol=0.02)


@pytest.mark.parametrize(
    "curve",
    [lambda x: x * 37.0 + 5.0, lambda x: x**0.5, lambda x: x**2.0, lambda x: np.log1p(20 * x)],
    ids=["linear", "gamma_0.5", "gamma_2", "log"],
)
def test_monotone_contrast_changes_are_undone(curve):
    image = _image()
    a, b = standardize(image, "histogram"), standardize(curve(image), "histogram")
    tissue = tissue_mask(image)
    assert np.abs(a - b)[tissue].mean() < 0.03  # the percentile mode moves by up to 0.2 for these
    if curve(np.float32(2.0)) != 2.0 * 37.0 + 5.0:
        p = standardize(curve(image), "percentile") - standardize(image, "percentile")
        assert np.abs(p)[tissue].mean() > np.abs(a - b)[tissue].mean()


def test_background_and_zeroed_voxels_do_not_move_the_tissue_scale():
    """A crop with a third of its voxels zeroed (a brain mask's cut) gives its tissue the same values."""
    image = _image()
    zeroed = image.copy()
    zeroed[:10] = 0.0
    a, b = standardize(image, "histogram"), standardize(zeroed, "histogram")
    assert np.abs(a[10:] - b[10:]).mean() < 0.05
    pa, pb = standardize(image, "percentile"), standardize(zeroed, "percentile")
    assert np.abs(pa[10:] - pb[10:]).mean() > np.abs(a[10:] - b[10:]).mean()


def test_metatensor_keeps_its_affine_and_type():
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))
    image = MetaTensor(torch.as_tensor(_image())[None], affine=affine)
    out = mt.Compose([mt.Lambda(lambda x: standardize(x, "histogram"))])(image)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine) and out.dtype == torch.float32


def test_constant_and_unknown():
    assert np.all(standardize(np.full((8, 8, 8), 3.0, np.float32), "histogram") == 0.0)
    with pytest.raises(ValueError, match="standardization 'zscore'"):
        standardize(_image(), "zscore")


def _case(decathlon):
    return {"image": str(decathlon / "imagesTr" / "hippocampus_003.nii.gz"),
            "label": str(decathlon / "labelsTr" / "hippocampus_003.nii.gz")}  # fmt: skip


@pytest.mark.parametrize("mode", ["percentile", "histogram"])
def test_training_validation_and_batch_inference_standardise_alike(decathlon, mode):
    """The validation transforms (training's view) and VolumeSegmenter (CLI, bundle run, evaluate, Label app)
    give the network the same numbers for the same file."""
    from bundle.data.transforms import val_transforms
    from bundle.inference.inferers import make_inferer
    from bundle.inference.inputs import load_image
    from bundle.inference.segment import VolumeSegmenter, metatensor
    from bundle.networks import ConvertibleUNet

    case = _case(decathlon)
    trained = val_transforms(mode)(case)["image"]
    segmenter = VolumeSegmenter(ConvertibleUNet(3, 1, 3, (4, 8, 16, 32)), make_inferer(3, [48, 64, 48]),
                                standardization=mode)  # fmt: skip
    served = segmenter.pre({"image": metatensor(load_image(case["image"]), case["image"])})["image"]
    assert torch.allclose(torch.as_tensor(trained), torch.as_tensor(served), atol=1e-5)
    calibration = __import__("bundle.data.transforms", fromlist=["x"]).calibration_transforms([48, 64, 48], mode)
    shown = calibration({"image": case["image"]})["image"]
    assert torch.allclose(torch.as_tensor(shown).amax(), torch.as_tensor(trained).amax(), atol=1e-5)


def test_a_checkpoint_carries_its_standardisation_to_inference(tmp_path):
    """An ANN saved with an input record is served with that standardisation; one without it (the shipped
    0.9 models) with the legacy percentile scale."""
    from bundle.inference.models import load_model
    from bundle.networks import ConvertibleUNet
    from bundle.networks.checkpoint import InputRecord

    net = ConvertibleUNet(3, 1, 3, (16, 32, 64, 128))
    torch.save({"model": net.state_dict(), "input": InputRecord("histogram").state_dict()}, tmp_path / "new.pt")
    torch.save({"model": net.state_dict()}, tmp_path / "old.pt")
    assert load_model("ann", ckpt=tmp_path / "new.pt")[1]["standardization"] == "histogram"
    assert load_model("ann", ckpt=tmp_path / "old.pt")[1]["standardization"] == "percentile"


def test_set_input_contract_rewrites_ann_and_snn_records(tmp_path):
    """scripts/set_input_contract.py: the record changes, the weights do not."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    from set_input_contract import set_contract

    from bundle.networks import ConvertibleUNet
    from bundle.networks.checkpoint import input_record

    net = ConvertibleUNet(3, 1, 3, (4, 8, 16, 32))
    torch.save({"model": net.state_dict()}, tmp_path / "ann.pt")
    torch.save({"state_dict": {"w": torch.ones(2)}, "settings": {"neuron": "ternary"}}, tmp_path / "snn.pt")
    for name in ("ann.pt", "snn.pt"):
        assert set_contract(tmp_path / name, "histogram") == ("percentile", "histogram")
        saved = torch.load(tmp_path / name, weights_only=True)
        assert input_record(saved)["standardization"] == "histogram"
    weights = torch.load(tmp_path / "ann.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
