"""The ANN side: the conversion-ready U-Net, its checkpoints and mixed precision.

The spiking networks it converts into live in :mod:`bundle.spiking`.
"""

from bundle.networks.unet import ConvertibleUNet, divisor

__all__ = ["ConvertibleUNet", "divisor"]
