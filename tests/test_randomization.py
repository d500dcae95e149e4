"""Domain randomisation and the named shifts: each does what it says, seeded, with the grid and label kept."""

import numpy as np
import pytest
import torch
from monai import transforms as mt

from bundle.data.randomization import (
    RandPipelineRescaled,
    RandLowResolutiond,
    RandThickSlicesd,
    RandZeroSlabd,
    pipeline_rescale,
    randomization,
    low_resolution,
    thick_slices,
    zero_slab,
)
from bundle.data.shifts import SHIFTS, apply_shift


def _image(seed=0, shape=(24, 32, 20)):
    """A smooth phantom on [0, 1]: a bright ellipsoid on a darker ramp, a little texture."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = 0.3 + 0.2 * (x + 1) / 2 + 0.4 * ((z / 0.6) ** 2 + (y / 0.5) ** 2 + (x / 0.7) ** 2 < 1)
    return torch.as_tensor((image + 0.02 * rng.standard_normal(shape))[None], dtype=torch.float32)


def test_every_transform_keeps_shape_and_leaves_the_label_alone():
    image = _image()
    label = (image > 0.6).to(torch.uint8)
    for t in randomization(strength=3.0):  # strength 3: most of them fire
        t.set_random_state(1)
        out = t({"image": image.clone(), "label": label.clone()})
        assert out["image"].shape == image.shape, type(t).__name__
        assert torch.isfinite(torch.as_tensor(out["image"])).all(), type(t).__name__
        assert torch.equal(torch.as_tensor(out["label"]), label), type(t).__name__


def test_same_seed_same_result_other_seed_other_result():
    image = _image()
    chain = mt.Compose(randomization(strength=3.0))
    a = chain.set_random_state(7)({"image": image.clone()})["image"]
    b = chain.set_random_state(7)({"image": image.clone()})["image"]
    c = chain.set_random_state(8)({"image": image.clone()})["image"]
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert not torch.equal(torch.as_tensor(a), torch.as_tensor(c))


def test_strength_zero_is_off_and_out_of_range_refused():
    assert randomization(0.0) == []
    with pytest.raises(ValueError, match="strength"):
        randomization(-1.0)


def test_thick_slices_blur_one_axis_only():
    image = torch.zeros(1, 16, 16, 16)
    image[0, :, :, 8] = 1.0  # a sheet across axis 2
    out = thick_slices(image, axis=2, thickness=3.0)
    assert out.shape == image.shape
    assert float(out[0, 5, 5, 8]) < 0.9 and float(out[0, 5, 5, 7]) > 0.05  # smeared along axis 2
    along_0 = thick_slices(image, axis=0, thickness=3.0)
    assert torch.allclose(along_0, image, atol=1e-6)  # constant along axis 0: unchanged


def test_low_resolution_stays_centred_on_its_label():
    # MONAI's RandSimulateLowResolution moves a blob by about a voxel; an acquisition must not.
    idx = torch.stack(torch.meshgrid(*[torch.arange(24.0)] * 3, indexing="ij"))
    blob = (((idx - torch.tensor([11.0, 12.0, 13.0]).view(3, 1, 1, 1)) ** 2).sum(0) < 25).float()[None]
    out = low_resolution(blob, [2.0, 2.0, 2.0])
    assert out.shape == blob.shape
    centre = [float((idx[i] * out[0]).sum() / out[0].sum()) for i in range(3)]
    assert all(abs(c - e) < 0.1 for c, e in zip(centre, (11.0, 12.0, 13.0)))
    kept = out[0] > 0.5
    assert 2 * float((kept & (blob[0] > 0)).sum()) / float(kept.sum() + blob.sum()) > 0.9
    assert int(((out > 0.05) & (out < 0.95)).sum()) > 0  # averaged: the edge is partial-volume


def test_pipeline_rescale_puts_white_matter_at_110_in_whole_numbers():
    image = _image() * 1234.5
    out = pipeline_rescale(image, white=110.0)
    bright = out[out > torch.quantile(out.flatten(), 0.5)]
    assert abs(float(torch.quantile(bright, 0.9)) - 110.0) <= 1.0
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    assert torch.equal(out, torch.round(out))


def test_zero_slab_zeroes_one_face():
    out = zero_slab(torch.ones(1, 10, 20, 30), axis=1, side=1, fraction=0.2)
    assert float(out[0, :, 16:, :].sum()) == 0.0 and float(out[0, :, :16, :].min()) == 1.0


@pytest.mark.parametrize("cls", [RandLowResolutiond, RandThickSlicesd, RandPipelineRescaled, RandZeroSlabd])
def test_probability_zero_changes_nothing(cls):
    image = _image()
    t = cls(keys="image", prob=0.0)
    assert torch.equal(torch.as_tensor(t({"image": image})["image"]), image)


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_named_shift_is_seeded_and_keeps_the_grid(name):
    image = _image() * 500 + 20  # any intensity scale
    a, b = apply_shift(name, image, seed=3), apply_shift(name, image, seed=3)
    assert a.shape == image.shape and torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if name != "none":
        assert not torch.allclose(torch.as_tensor(a).float(), image / image.max(), atol=1e-3)


def test_unknown_shift_is_refused():
    with pytest.raises(ValueError, match="shift 'nope'"):
        apply_shift("nope", _image())
