"""A small convertible CNN for the image-classification side of the binary vs ternary comparison."""

from __future__ import annotations

from torch import nn

__all__ = ["ConvertibleCNN"]


class ConvertibleCNN(nn.Sequential):
    """``[B, 1, 8, 8]`` digits -> ``[B, classes]`` scores, built like the U-Net for conversion.

    Conv-BN-ReLU blocks (BN folds), a strided convolution instead of pooling, ``nn.Flatten`` and a
    linear read-out with no activation.
    """

    def __init__(self, in_channels: int = 1, classes: int = 10, width: int = 16, size: int = 8):
        def block(i, o, k=3, s=1):
            return [
                nn.Conv2d(i, o, k, stride=s, padding=(k - 1) // 2 if s == 1 else 0, bias=False),
                nn.BatchNorm2d(o),
                nn.ReLU(),
            ]

        super().__init__(
            *block(in_channels, width),
            *block(width, width),
            *block(width, 2 * width, k=2, s=2),
            *block(2 * width, 2 * width),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 2) ** 2, classes),
        )
