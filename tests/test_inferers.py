"""How a volume is tiled: windows fitted to the image, or the fixed roi."""

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from bundle.inference.inferers import FittedWindowInferer, make_inferer
from bundle.inference.settings import inference_settings

ROI = (48, 64, 48)


class Recorder(torch.nn.Module):
    """Identity that remembers the window shapes it was given."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[2:]))
        return x * 1.0


def test_a_crop_smaller_than_the_roi_is_one_window_padded_only_to_the_divisor():
    net, image = Recorder(), torch.rand(1, 1, 36, 50, 35)
    out = make_inferer(3, ROI, sw_batch_size=4, overlap=0.25)(image, net)
    assert net.shapes == [(40, 56, 40)]  # not 48x64x48: at most 7 voxels of padding a side
    torch.testing.assert_close(out, image)


def test_a_large_image_is_tiled_by_roi_windows_and_a_small_side_is_fitted():
    net, image = Recorder(), torch.rand(1, 1, 100, 70, 20)
    out = make_inferer(3, ROI)(image, net)
    assert set(net.shapes) == {(48, 64, 24)} and len(net.shapes) > 1
    torch.testing.assert_close(out, image)


def test_fixed_is_monais_sliding_window_over_the_roi():
    inferer = make_inferer(3, ROI, window="fixed")
    assert type(inferer) is SlidingWindowInferer
    net = Recorder()
    inferer(torch.rand(1, 1, 36, 50, 35), net)
    assert net.shapes == [ROI]


def test_bad_window_and_roi_are_refused():
    with pytest.raises(ValueError, match="window must be one of fit, fixed"):
        make_inferer(3, ROI, window="auto")
    with pytest.raises(ValueError, match="must be divisible by 8"):
        FittedWindowInferer((44, 64, 48), divisor=8)


def test_the_bundle_fits_windows_by_default():
    assert inference_settings()["window"] == "fit"
