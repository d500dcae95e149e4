"""Networks: the conversion-ready ANN U-Net (and, later, its spiking counterparts)."""

from bundle.networks.unet import ConvertibleUNet, divisor

__all__ = ["ConvertibleUNet", "divisor"]
