"""A U-Net built to be converted into a spiking network.

Every design choice here serves SpikingJelly 2.0's FX converter (``ann2snn.FXConverter``) and the
rate-coded IF neurons that replace its ReLUs:

* one ``nn.ReLU`` *module* per activation (the tracer rejects ``F.relu``; each module becomes its
  own IF layer with its own calibrated threshold);
* ``Conv -> BatchNorm -> ReLU`` so BatchNorm folds into the convolution before conversion;
* strided convolutions to go down (max-pooling spike trains is not rate-preserving) and
  transposed convolutions + ReLU to go up (``F.interpolate`` is not traceable, and the ReLU makes
  every layer after the first receive spikes once converted);
* concatenated skips and no padding inside the network: inputs must have a spatial size divisible by
  ``2 ** (len(channels) - 1)`` (the transforms and inferers take care of that);
* no activation after the last layer: softmax belongs to post-processing, outside the SNN.

``activation="qcfs"`` puts a :class:`~bundle.networks.qcfs.QCFS` module (``levels`` steps, trainable
threshold) where each ``nn.ReLU`` would be: a conversion-aware ANN whose converted SNN follows it
closely from ``T = levels`` timesteps (state-dict keys are those of the ReLU network plus one
``threshold`` per activation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bundle.networks.qcfs import ACTIVATIONS, QCFS

__all__ = ["ConvertibleUNet", "divisor", "fresh_copy"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _activation(kind: str = "relu", levels: int = 4) -> nn.Module:
    """One activation module: ``nn.ReLU`` or :class:`QCFS` with ``levels`` steps."""
    return nn.ReLU() if kind == "relu" else QCFS(levels)


def divisor(channels: Sequence[int]) -> int:
    """Spatial sizes a :class:`ConvertibleUNet` with these ``channels`` accepts are multiples of this."""
    return 2 ** (len(channels) - 1)


class ConvBNReLU(nn.Sequential):
    """``Conv(k) -> BatchNorm -> ReLU``; ``stride=2`` with ``kernel_size=2`` halves the size.

    ``act`` makes the activation module (default ``nn.ReLU``).
    """

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, act=nn.ReLU):
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(
            _CONV[spatial_dims](in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False),
            _BN[spatial_dims](out_ch),
            act(),
        )


class TwoConv(nn.Sequential):
    """Two ``ConvBNReLU`` blocks (3x3 or 3x3x3), the basic U-Net unit."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, act=nn.ReLU):
        super().__init__(
            ConvBNReLU(spatial_dims, in_ch, out_ch, act=act), ConvBNReLU(spatial_dims, out_ch, out_ch, act=act)
        )


class Down(nn.Sequential):
    """Strided ``ConvBNReLU`` (kernel 2, stride 2) then ``TwoConv``."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, act=nn.ReLU):
        super().__init__(
            ConvBNReLU(spatial_dims, in_ch, out_ch, kernel_size=2, stride=2, act=act),
            TwoConv(spatial_dims, out_ch, out_ch, act=act),
        )


class UpCat(nn.Module):
    """Transposed convolution (x2) and ReLU, concatenation with the skip, then ``TwoConv``."""

    def __init__(self, spatial_dims: int, in_ch: int, skip_ch: int, out_ch: int, act=nn.ReLU):
        super().__init__()
        # ReLU after the up-sampling: in the SNN it becomes a neuron, so the decoder's inputs are
        # spikes like the skip's, not analog values that would cost full MACs every timestep.
        self.up = nn.Sequential(_CONV_T[spatial_dims](in_ch, skip_ch, kernel_size=2, stride=2), act())
        self.convs = TwoConv(spatial_dims, 2 * skip_ch, out_ch, act=act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class ConvertibleUNet(nn.Module):
    """U-Net for 2D or 3D segmentation that SpikingJelly's FX converter accepts.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for a single MRI contrast).
        out_channels: classes including background (3: background, anterior, posterior).
        channels: feature width per resolution level, top to bottom. The depth is
            ``len(channels) - 1`` down-samplings, so inputs must be divisible by ``2 ** depth``.
            Default ``(16, 32, 64, 128)``.
        activation: ``"relu"`` (default) or ``"qcfs"`` (:class:`~bundle.networks.qcfs.QCFS`, conversion-aware).
        levels: L, the quantisation levels of a ``"qcfs"`` network (ignored for ``"relu"``); its converted
            SNN reproduces it at ``T = L`` (exactly for one layer fed a constant input).

    Input ``[B, in_channels, *spatial]``, output ``[B, out_channels, *spatial]`` raw class scores.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128),
        activation: str = "relu",
        levels: int = 4,
    ):
        super().__init__()
        if spatial_dims not in _CONV:
            raise ValueError(f"spatial_dims must be 2 or 3 but is {spatial_dims!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS} but is {activation!r}.")
        if isinstance(levels, bool) or int(levels) != levels or int(levels) < 1:
            raise ValueError(f"levels must be a positive integer but is {levels!r}.")
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels needs at least two positive widths but is {channels!r}.")
        self.spatial_dims = spatial_dims
        self.channels = tuple(channels)
        self.activation, self.levels = activation, int(levels)

        def act():
            return _activation(activation, int(levels))

        self.stem = TwoConv(spatial_dims, in_channels, channels[0], act=act)
        self.downs = nn.ModuleList(Down(spatial_dims, a, b, act=act) for a, b in zip(channels[:-1], channels[1:]))
        self.ups = nn.ModuleList(
            UpCat(spatial_dims, b, a, a, act=act) for a, b in reversed(list(zip(channels[:-1], channels[1:])))
        )
        self.head = _CONV[spatial_dims](channels[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def fresh_copy(network: nn.Module) -> nn.Module:
    """The same architecture with newly initialised weights (for training a spiking network from scratch)."""
    import copy

    clone = copy.deepcopy(network)
    for module in clone.modules():
        if module is not clone and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return clone
