"""One image -> its mask: the per-image pipeline of batch inference, the evaluator and the MONAI Label app.

MONAI's pieces: the training pre-processing (RAS, 1 mm, the model's own intensity standardisation), the
sliding-window inferer, softmax/argmax, ``Invertd`` back to the input's shape, affine and orientation.
A whole head is first localised (:mod:`bundle.localization`): each hippocampus is cut out as a Task04-like
crop, segmented and pasted back. :class:`Segmentation` carries the mask and what to report about it,
including the reasons to look at it before trusting its volumes (:meth:`Segmentation.flags`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai import transforms as mt
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from bundle.data.standardization import DEFAULT_STANDARDIZATION
from bundle.data.transforms import preprocessing
from bundle.inference.catalog import LOCALIZE_MODES
from bundle.inference.confidence import confidence, floor_for
from bundle.inference.inputs import load_image
from bundle.localization import (
    COARSEST_MEASURED_MM,
    CROP_SIZE,
    GOOD_SIMILARITY,
    SIDES,
    coarser_than_measured,
    field_of_view,
    from_nifti,
    localize,
    to_nifti,
)
from bundle.networks.precision import fast_bfloat16
from bundle.options import as_bool, one_of
from bundle.spiking.activity import ActivityMonitor

__all__ = [
    "ACTIVITY_FIELDS",
    "LABELS",
    "LOCALIZE_MODES",
    "MAX_ASYMMETRY",
    "PLAUSIBLE_ML",
    "Segmentation",
    "VolumeSegmenter",
    "metatensor",
    "voxel_volume",
]

logger = logging.getLogger("bundle.inference")

LABELS = {1: "anterior", 2: "posterior"}
# the energy accounts of every model (see ActivityMonitor.totals): compute only (energy_uj, the FP32 ANN's on the same
# windows, their ratio), compute + memory traffic in SRAM and DRAM, and the INT8 ANN's on the same windows in all
# three (bundle.spiking.energy); SNNs add mean_timesteps, mean_firing_rate
ACTIVITY_FIELDS = (
    "windows",
    "window",
    "mean_timesteps",
    "mean_firing_rate",
    "energy_uj",
    "ann_energy_uj",
    "energy_vs_ann",
    "energy_sram_uj",
    "energy_dram_uj",
    "int8_energy_uj",
    "int8_energy_sram_uj",
    "int8_energy_dram_uj",
)


def voxel_volume(affine: np.ndarray | torch.Tensor) -> float:
    """mm^3 per voxel from a NIfTI affine."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return float(abs(np.linalg.det(a)))


# Plausible adult hippocampus (head + body) per side, mL: Task04's labels span 2.4-4.4 mL; adult
# whole-hippocampus volumes in the literature ~2.5-4.5 mL. Outside this range a mask is likely wrong.
PLAUSIBLE_ML = (1.5, 6.0)
# |left - right| / mean: right is usually 2-5 % larger (SD ~5-10 %); beyond 25 % is rare in adults.
MAX_ASYMMETRY = 0.25


@dataclass
class Segmentation:
    """What segmenting one image gives: the mask in the image's own grid, and what to report about it."""

    mask: MetaTensor  # [1, *shape] uint8, the input's affine
    activity: dict  # energy account, all windows of all crops: ACTIVITY_FIELDS (see ActivityMonitor.totals)
    localized: bool = False
    reason: str = ""  # why localised or not (the auto decision)
    similarity: float | None = None  # registration score (localised only)
    confidence: float | None = None  # the class map's (lowest side's) confidence, see bundle.inference.confidence
    confidence_floor: float | None = None  # the model's: below it the mask is flagged
    acquired_mm: tuple | None = None  # the input's voxel size as stored (NIfTI affine, or spacing), before resampling
    sides: dict = field(default_factory=dict)  # {"left"/"right": {"anterior_mm3", "posterior_mm3"}}
    seconds: dict = field(default_factory=dict)  # read, register, network, ...
    views: dict = field(default_factory=dict)  # for the QC picture: {name: (image, mask)} RAS arrays
    head: tuple | None = None  # for the QC picture: (head RAS array, {side: (low, high) voxel corners})

    def flags(self) -> list[str]:
        """Reasons to look at this mask before trusting its volumes (empty: nothing looks wrong)."""
        flags = []
        if self.similarity is not None and self.similarity < GOOD_SIMILARITY:
            flags.append(f"registration poor (similarity {self.similarity:.2f} < {GOOD_SIMILARITY:.2f})")
        if self.acquired_mm is not None and coarser_than_measured(self.acquired_mm):
            flags.append(f"voxels up to {max(self.acquired_mm):.1f} mm: coarser than the {COARSEST_MEASURED_MM:.0f} mm "
                         "the models are measured on")  # fmt: skip
        floor = self.confidence_floor
        if self.confidence is not None and floor is not None and self.confidence < floor:
            flags.append(
                f"network unsure (confidence {self.confidence:.3f} < {floor:.3f}): a contrast or resolution it may not read"
            )
        volumes = {s: (v["anterior_mm3"] + v["posterior_mm3"]) / 1000 for s, v in self.sides.items()}
        if not volumes:
            voxel = voxel_volume(self.mask.affine)
            volumes = {"hippocampus": float((self.mask > 0).sum()) * voxel / 1000}
        lo, hi = PLAUSIBLE_ML
        for side, ml in volumes.items():
            if not lo <= ml <= hi:
                flags.append(f"{side} volume {ml:.2f} mL outside {lo}-{hi} mL")
        if len(self.sides) == 2 and min(volumes.values()) > 0:
            left, right = volumes["left"], volumes["right"]
            asym = abs(left - right) / ((left + right) / 2)
            if asym > MAX_ASYMMETRY:
                flags.append(f"left/right asymmetry {asym:.0%} > {MAX_ASYMMETRY:.0%}")
        return flags


def metatensor(image: nib.Nifti1Image, name: str) -> MetaTensor:
    """A NIfTI image in memory as MONAI's reader would have loaded it (channel first, float32)."""
    arr = np.asanyarray(image.dataobj).astype(np.float32)
    affine = torch.as_tensor(np.asarray(image.affine, dtype=np.float64))
    meta = {"original_affine": affine.clone(), "spatial_shape": np.array(arr.shape), "filename_or_obj": name,
            "original_channel_dim": "no_channel", "space": "RAS"}  # fmt: skip
    return MetaTensor(torch.from_numpy(arr[None]), affine=affine, meta=meta)


def _nifti_field_of_view(image: nib.Nifti1Image):
    """The ``auto`` decision for a NIfTI image from nibabel's header (as MONAI reads it; ITK refuses some
    headers nibabel accepts, e.g. slightly non-orthonormal direction cosines)."""
    header = image.header
    extent = np.asarray(header.get_data_shape()[:3], dtype=np.float64) * np.asarray(header.get_zooms()[:3])
    probe = sitk.Image([2, 2, 2], sitk.sitkUInt8)  # only its size x spacing matters to field_of_view
    probe.SetSpacing((extent / 2).tolist())
    return field_of_view(probe)


class VolumeSegmenter:
    """One image (a file or a DICOM series folder) -> :class:`Segmentation`, mask in the file's geometry.

    ``localize``: ``auto`` (default: whole heads are localised, crops are not, decided per image from
    the field of view), ``on`` or ``off``. A localised image is registered to the MNI template, each
    hippocampus is cut out as a Task04-like crop (RAS, 1 mm), segmented, and pasted back.
    ``standardization``: the model's input contract (``info["standardization"]`` of
    :func:`bundle.inference.models.load_model`); ``confidence_floor``: below it a mask is flagged
    (``info["confidence_floor"]``; None: never for confidence); ``coarse_confidence_floor``: the same for a scan
    acquired at 2-3 mm (:func:`bundle.inference.confidence.floor_for`; None: ``confidence_floor``).
    """

    def __init__(
        self,
        network: nn.Module,
        inferer: Inferer,
        device: torch.device | str = "cpu",
        amp: bool = False,
        localize: str = "auto",
        qc: bool = False,
        standardization: str = DEFAULT_STANDARDIZATION,
        confidence_floor: float | None = None,
        coarse_confidence_floor: float | None = None,
    ):
        self.network, self.inferer, self.device = network.eval(), inferer, torch.device(device)
        # mixed precision: float16 on CUDA, bfloat16 on CPU; SNN membranes stay float32 (see neurons)
        self.amp = {"device_type": self.device.type, "dtype": torch.float16 if self.device.type == "cuda" else torch.bfloat16,
                    "enabled": as_bool(amp, "amp") and fast_bfloat16(self.device.type)}  # fmt: skip
        self.localize = one_of(localize, LOCALIZE_MODES, "localize")
        self.qc = as_bool(qc, "qc")
        self._lock = threading.Lock()  # the SNN's membranes and the activity hooks are per-call state
        # the pipeline's pre-processing without its LoadImaged: every image is read once, by load_image
        self.pre = mt.Compose(preprocessing(["image"], standardization=standardization)[1:])
        self.confidence_floor, self.coarse_confidence_floor = confidence_floor, coarse_confidence_floor
        self.post = mt.Compose(
            [
                mt.Activationsd(keys="pred", softmax=True),
                mt.AsDiscreted(keys="pred", argmax=True),
                mt.Invertd(keys="pred", transform=self.pre, orig_keys="image", nearest_interp=True, to_tensor=True),
            ]
        )

    def __call__(
        self, path: str | Path, image: nib.Nifti1Image | sitk.Image | None = None, read_s: float = 0.0
    ) -> Segmentation:
        """Segment the image at ``path``; ``image``: that image already read by :func:`load_image` (in
        ``read_s`` seconds), so that nothing reads the file twice."""
        if image is None:
            t = time.perf_counter()
            image = load_image(path)
            read_s = time.perf_counter() - t
        with self._lock:
            return self._segment(Path(path), image, read_s)

    def _segment(self, path: Path, image: nib.Nifti1Image | sitk.Image, read_s: float) -> Segmentation:
        t = time.perf_counter()
        nifti = isinstance(image, nib.Nifti1Image)
        fov = _nifti_field_of_view(image) if nifti else field_of_view(image)
        whole = fov.localize if self.localize == "auto" else self.localize == "on"
        reason = fov.reason if self.localize == "auto" else f"localize {self.localize} ({fov.reason.split(':')[0]})"
        logger.info(f"{path.name}: {reason}")
        monitor = ActivityMonitor(self.network)  # every model, counted the same way on the windows it runs
        with monitor:
            if whole:
                seg = self._localized(path, from_nifti(image) if nifti else image, reason, read_s)
            else:
                data = self.pre({"image": metatensor(image if nifti else to_nifti(image), str(path))})
                seconds = {"read": read_s + time.perf_counter() - t}  # reading and pre-processing
                t = time.perf_counter()
                mask, ras_label, sure = self._infer(data, self.post)
                seconds["network"] = time.perf_counter() - t
                seg = Segmentation(mask, {}, False, reason, seconds=seconds, confidence=sure)
                seg.views = {"image": (data["image"][0].numpy(), ras_label)} if self.qc else {}
        # as stored, before resampling; NIfTI's from its affine, as MONAI's reader and the localisation take it
        spacing = nib.affines.voxel_sizes(image.affine)[:3] if nifti else image.GetSpacing()[:3]
        seg.confidence_floor = floor_for(spacing, self.confidence_floor, self.coarse_confidence_floor)
        seg.acquired_mm = tuple(round(float(v), 3) for v in spacing)
        if monitor.windows:
            totals = monitor.totals()
            seg.activity = {k: totals[k] for k in ACTIVITY_FIELDS if k in totals}
        return seg

    def _infer(self, data: dict, post: mt.Compose) -> tuple[MetaTensor, np.ndarray, float]:
        """The network through the inferer on one pre-processed image: the label map in the input's grid,
        and in the pre-processed (RAS, 1 mm) grid, and the class map's confidence."""
        x = data["image"].unsqueeze(0).to(self.device)
        with torch.no_grad(), torch.autocast(**self.amp):
            pred = self.inferer(x, self.network)
        data["pred"] = pred[0].float().cpu()
        ras_label = data["pred"].argmax(0).numpy().astype(np.uint8)
        sure = confidence(data["pred"])
        mask = post(data)["pred"]
        mask = mask.to(torch.uint8) if isinstance(mask, MetaTensor) else MetaTensor(mask.to(torch.uint8))
        return mask, ras_label, sure

    def _localized(self, path: Path, image: sitk.Image, reason: str, read_s: float) -> Segmentation:
        loc = localize(image, name=str(path))
        seconds = {"read": read_s, **{k: v for k, v in loc.seconds.items() if k != "read"}}
        t = time.perf_counter()
        labels, sides, views, sure = {}, {}, {}, []
        for side in SIDES:
            crop = to_nifti(loc.crop(side))
            data = self.pre({"image": metatensor(crop, f"{path}:{side}")})
            label, _, side_sure = self._infer(data, self.post)
            sure.append(side_sure)
            arr = np.asarray(label[0]).astype(np.uint8)
            labels[side] = (arr, crop.affine)
            sides[side] = {
                f"{name}_mm3": float((arr == k).sum()) * voxel_volume(crop.affine) for k, name in LABELS.items()
            }
            views[side] = (np.asanyarray(crop.dataobj), arr)
        seconds["network"] = time.perf_counter() - t
        t = time.perf_counter()
        pasted = to_nifti(loc.paste(labels))
        mask = metatensor(pasted, str(path)).to(torch.uint8)
        seconds["paste"] = time.perf_counter() - t
        head = None
        if self.qc:
            canonical = nib.as_closest_canonical(to_nifti(image))
            inv = np.linalg.inv(canonical.affine)
            boxes = {}
            for side, (_, affine) in labels.items():
                corners = np.array(
                    [
                        affine @ [i, j, k, 1]
                        for i in (0, CROP_SIZE[0] - 1)
                        for j in (0, CROP_SIZE[1] - 1)
                        for k in (0, CROP_SIZE[2] - 1)
                    ]
                )
                vox = (inv @ corners.T)[:3].T
                boxes[side] = (vox.min(0), vox.max(0))
            head = (np.asanyarray(canonical.dataobj), boxes)
        return Segmentation(
            mask, {}, True, reason, similarity=loc.registration.similarity, confidence=min(sure), sides=sides,
            seconds=seconds, views=views, head=head,
        )  # fmt: skip
