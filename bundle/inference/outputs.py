"""What a batch run writes beside ``volumes.csv``: masks (atomically, as uint8 NIfTI in the image's geometry)
and QC pictures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from monai.data import MetaTensor, NibabelWriter

from bundle.errors import InputError
from bundle.inference.qc import save_qc
from bundle.inference.volume import Segmentation, voxel_volume

__all__ = ["remove_partial", "write_mask", "write_qc"]


def write_mask(mask: MetaTensor, target: str | Path) -> Path:
    """Write a ``[1, *shape]`` mask as uint8 NIfTI with its own affine, via a temporary name (an
    interrupted run never leaves a half-written mask)."""
    target = Path(target)
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(mask, channel_dim=0)
    writer.set_metadata(mask.meta, resample=False)
    partial = target.with_name(f".{target.name}.partial.nii.gz")
    try:
        writer.write(str(partial), verbose=False)
        os.replace(partial, target)
    except OSError as e:
        remove_partial(partial)
        raise InputError(f"{target}: cannot write the mask ({e.strerror or e}).") from None
    return target


def remove_partial(partial: Path) -> None:
    """Free the space a failed write took; leave alone anything that is not a plain file we made."""
    if partial.is_file() and not partial.is_symlink():
        partial.unlink(missing_ok=True)


def write_qc(seg: Segmentation, path: Path, title: str) -> Path:
    """The QC picture of one segmentation (see :mod:`bundle.inference.qc`)."""
    parts = [f"{s}: {sum(v.values()) / 1000:.2f} mL" for s, v in seg.sides.items()] or [
        f"{float((seg.mask > 0).sum()) * voxel_volume(seg.mask.affine) / 1000:.2f} mL"
    ]
    flags = seg.flags()
    note = ", ".join(parts) + (f"  FLAG: {'; '.join(flags)}" if flags else "")
    return save_qc(path, title, seg.views, seg.head, note)
