"""One of the bundle's models as a MONAI Label infer task, run by the bundle's own batch-inference code.

MONAI Label's usual task runs pre-transforms, the inferer, inverse and post-transforms on its request
dictionary. Here all of that is :class:`bundle.inference.segment.VolumeSegmenter`, the class behind
``hippo-snn segment`` and ``configs/inference.json``: the task hands it the image file and writes the
mask it returns. So the app's masks are the batch inference's masks, voxel for voxel, and MONAI Label's
request keys (``image_path`` and the rest) never reach a MONAI transform (see docs/monailabel.md, the
``Spacingd`` breakage).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from typing import Any

import torch
from fastapi import HTTPException
from monai.data import MetaTensor
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from bundle.errors import InputError
from bundle.inference.inputs import load_image
from bundle.inference.segment import LABELS, VolumeSegmenter, describe, write_mask
from bundle.inference.settings import InferenceSettings
from lib.configs.segmentation import ModelChoice

__all__ = ["LABEL_IDS", "BundleSegmentation"]

logger = logging.getLogger(__name__)

LABEL_IDS = {name: value for value, name in LABELS.items()}  # {"anterior": 1, "posterior": 2}


class BundleSegmentation(BasicInferTask):
    """Segment the hippocampus with one bundle model; the result is a uint8 NIfTI in the image's geometry.

    Args:
        choice: which model, from which checkpoint, at which T (see :mod:`lib.configs.segmentation`).
        settings: the bundle's inference settings (:class:`bundle.inference.settings.InferenceSettings`: window,
            precision, neuron kernel, adaptive T, localisation), the same as ``hippo-snn``'s.

    The model is loaded once per device (the first one when the server starts, so a bad checkpoint stops
    the server rather than the first click). Requests for the same model run one at a time: the spiking
    neurons and the activity counters hold per-run state.
    """

    def __init__(self, choice: ModelChoice, settings: InferenceSettings):
        super().__init__(
            path=str(choice.checkpoint),
            network=None,
            type=InferType.SEGMENTATION,
            labels=dict(LABEL_IDS),
            dimension=3,
            description=choice.description,
        )
        self.choice, self.settings = choice, settings
        self._segmenters: dict[str, tuple[VolumeSegmenter, dict]] = {}
        self._lock = threading.Lock()
        _, info = self._segmenter("cuda" if torch.cuda.is_available() else "cpu")
        if info["timesteps"]:
            self.description = f"{choice.description}, T={info['timesteps']}"
        logger.info(f"{choice.name}: {info['checkpoint']} (T={info['timesteps']}, neuron {info['neuron']})")

    def _segmenter(self, device: str) -> tuple[VolumeSegmenter, dict]:
        if device not in self._segmenters:
            # the bundle's inference settings (configs/inference.json: window, precision, adaptive T, localize)
            # with this task's model, checkpoint and T
            settings = self.settings.replace(
                model=self.choice.name, ckpt=str(self.choice.checkpoint), timesteps=self.choice.timesteps
            )
            network, info = settings.load(device)
            self._segmenters[device] = (settings.segmenter(network, info, device), info)
        return self._segmenters[device]

    def pre_transforms(self, data=None) -> list:
        return []  # VolumeSegmenter loads and pre-processes the file itself

    def post_transforms(self, data=None) -> list:
        return []  # ... and returns the final mask, inverted to the file's geometry

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cpu") -> dict:
        path = data.get("image")
        if not isinstance(path, str):
            raise HTTPException(status_code=400, detail="this app segments image files only (an image id).")
        try:
            t = time.perf_counter()
            image = load_image(path)  # read and checked once; the segmenter takes it as it is
            read_s = time.perf_counter() - t
        except InputError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        with self._lock:
            segmenter, info = self._segmenter(device)
            try:
                seg = segmenter(path, image, read_s)
            except InputError as e:  # e.g. the template does not fit: not a whole-head T1
                raise HTTPException(status_code=422, detail=str(e)) from None
        data["pred"] = seg.mask
        # the batch inference's volumes.csv fields: volumes (each side for whole heads), flag, timings
        described = {k: v for k, v in describe(seg).items() if v != ""}
        data["result"] = {
            "model": info["model"],
            "timesteps": info["timesteps"],
            "checkpoint": os.path.basename(info["checkpoint"]),
            **{k: _number(v) for k, v in described.items()},
        }
        return data

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[str, dict]:
        """Write the mask as the batch inference does (uint8 NIfTI, the input's affine); returns the file."""
        mask: MetaTensor = data["pred"]
        fd, out = tempfile.mkstemp(prefix=f"{self.choice.name}_", suffix=".nii.gz")
        os.close(fd)
        write_mask(mask, out)
        return out, dict(data.get("result", {}))


def _number(value: Any) -> Any:
    """Numbers as numbers in the JSON answer (``describe`` formats some as text for the CSV)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
