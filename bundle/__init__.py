"""Spiking U-Net hippocampus segmentation bundle: ANN training, SNN conversion and fine-tuning."""

from importlib.metadata import PackageNotFoundError, version

try:  # one version, pyproject.toml's (configs/metadata.json repeats it; tests/test_bundle_tools.py checks)
    __version__ = version("snn-hippocampus")
except PackageNotFoundError:  # run from a checkout without installing
    __version__ = "0+unknown"
