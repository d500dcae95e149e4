"""The inferer for a network's dimensionality: one place decides how a volume is tiled."""

from __future__ import annotations

from collections.abc import Sequence

from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

__all__ = ["make_inferer"]


def make_inferer(spatial_dims: int, roi_size: Sequence[int], sw_batch_size: int = 4, overlap: float = 0.25) -> Inferer:
    """Sliding window over 3D volumes; for a 2D network, slice by slice along S (RAS axis 2).

    ``roi_size`` must be divisible by the network's :func:`bundle.networks.divisor`: windows smaller
    than the roi are zero-padded by the inferer, outside the (convertible) network.
    """
    roi = list(roi_size)
    if spatial_dims == 3:
        return SlidingWindowInferer(roi_size=roi, sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian")
    if spatial_dims == 2:
        return SliceInferer(roi_size=roi, sw_batch_size=max(sw_batch_size, 16), spatial_dim=2, overlap=overlap)
    raise ValueError(f"spatial_dims must be 2 or 3 but is {spatial_dims!r}.")
