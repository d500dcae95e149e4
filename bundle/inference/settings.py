"""The one source of inference settings: ``configs/inference.json``, read through MONAI's ConfigParser.

``hippo-snn`` (its defaults), the MONAI bundle run ids and the MONAI Label app all take the network
geometry, sliding window, precision and neuron settings from here, so changing the config changes all
three alike.
"""

from __future__ import annotations

from pathlib import Path

from bundle.errors import InputError

__all__ = ["SETTINGS", "inference_settings"]

# plain values of configs/inference.json that every inference front end needs
SETTINGS = (
    "spatial_dims",
    "channels",
    "roi_size",
    "sw_batch_size",
    "overlap",
    "window",
    "multi_step",
    "neuron_kernel",
    "amp",
    "localize",
    "model",
    "timesteps",
    "adaptive",
    "patience",
    "tolerance",
)


def inference_settings(config_file: str | Path | None = None) -> dict:
    """The :data:`SETTINGS` values of ``config_file`` (default: the bundle's ``configs/inference.json``)."""
    from monai.bundle import ConfigParser

    if config_file is None:
        from bundle.resources import bundle_file

        config_file = bundle_file("configs/inference.json")
    path = Path(config_file)
    try:
        parser = ConfigParser()
        parser.read_config(str(path))
        return {key: parser.get_parsed_content(key) for key in SETTINGS}
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: cannot read the bundle's inference settings ({type(e).__name__}: {e}).") from None
