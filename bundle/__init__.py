"""Spiking U-Net hippocampus segmentation bundle: ANN training, SNN conversion and fine-tuning."""

__version__ = "0.4.0"
