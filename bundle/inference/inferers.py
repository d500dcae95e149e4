"""The inferer for a network's dimensionality: one place decides how a volume is tiled."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

from bundle.inference.catalog import WINDOWS

__all__ = ["WINDOWS", "FittedWindowInferer", "make_inferer"]


class FittedWindowInferer(Inferer):
    """Sliding windows of ``roi_size`` at most, shrunk to the image (each side rounded up to ``divisor``).

    A fine-tuned SNN trained on patches that hold (almost) no padding can fail on a window that is 40% zero
    padding, as a 36x50x35 Task04 crop is inside a fixed 48x64x48 window (docs/RESULTS.md, "The window"):
    here the padding is at most ``divisor - 1`` voxels a side, and a small image costs one small window.
    Images larger than ``roi_size`` are tiled by ``roi_size`` windows exactly as :class:`SlidingWindowInferer`.
    """

    def __init__(self, roi_size: Sequence[int], divisor: int = 8, sw_batch_size: int = 4, overlap: float = 0.25,
                 mode: str = "gaussian") -> None:  # fmt: skip
        super().__init__()
        if any(r % divisor for r in roi_size):
            raise ValueError(f"roi_size {list(roi_size)} must be divisible by {divisor}.")
        self.roi_size, self.divisor = tuple(int(r) for r in roi_size), int(divisor)
        self.sw_batch_size, self.overlap, self.mode = sw_batch_size, overlap, mode
        self._inferers: dict[tuple[int, ...], SlidingWindowInferer] = {}  # one per window size (its weight map)

    def window(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        d = self.divisor
        return tuple(min(r, -(-int(s) // d) * d) for r, s in zip(self.roi_size, spatial_shape))

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        roi = self.window(inputs.shape[2:])
        inferer = self._inferers.get(roi)
        if inferer is None:  # a race between server threads only builds the same inferer twice
            inferer = self._inferers.setdefault(
                roi, SlidingWindowInferer(roi, sw_batch_size=self.sw_batch_size, overlap=self.overlap, mode=self.mode)
            )
        return inferer(inputs, network, *args, **kwargs)


def make_inferer(spatial_dims: int, roi_size: Sequence[int], sw_batch_size: int = 4, overlap: float = 0.25,
                 window: str = "fit", divisor: int = 8) -> Inferer:  # fmt: skip
    """Sliding window over 3D volumes; for a 2D network, slice by slice along S (RAS axis 2).

    ``roi_size`` must be divisible by the network's :func:`bundle.networks.divisor`. ``window``: ``"fit"``
    (default) shrinks the window to an image smaller than ``roi_size`` (:class:`FittedWindowInferer`);
    ``"fixed"`` always uses ``roi_size``, zero-padding small images up to it, outside the network.
    """
    roi = list(roi_size)
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)} but is {window!r}.")
    if spatial_dims == 3:
        if window == "fit":
            return FittedWindowInferer(roi, divisor, sw_batch_size=sw_batch_size, overlap=overlap)
        return SlidingWindowInferer(roi_size=roi, sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian")
    if spatial_dims == 2:
        return SliceInferer(roi_size=roi, sw_batch_size=max(sw_batch_size, 16), spatial_dim=2, overlap=overlap)
    raise ValueError(f"spatial_dims must be 2 or 3 but is {spatial_dims!r}.")
