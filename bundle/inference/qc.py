"""QC pictures: one PNG per segmented image, so a person can check a batch by eye in seconds.

One row per hippocampus (three planes through the centre of its mask, the mask filled by class with a
legend) and, for a localised whole head, a small view of the head with the crop boxes drawn in, so a
crop that missed the hippocampus is obvious. Arrays are in RAS voxel order (x = right, y = anterior,
z = superior), as the network sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

__all__ = ["save_qc"]

_COLOURS = ListedColormap([(0, 0, 0, 0), (0.95, 0.35, 0.1, 0.5), (0.1, 0.6, 0.95, 0.5)])
_LEGEND = [
    Patch(color=(0.95, 0.35, 0.1), label="1 head (anterior)"),
    Patch(color=(0.1, 0.6, 0.95), label="2 body (posterior)"),
]
_PLANES = (("sagittal", 0), ("coronal", 1), ("axial", 2))


def _centre(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    fg = np.argwhere(mask > 0)
    return fg.mean(0).round().astype(int) if len(fg) else np.array(image.shape) // 2


def save_qc(
    path: str | Path,
    title: str,
    sides: Mapping[str, tuple[np.ndarray, np.ndarray]],
    head: tuple[np.ndarray, Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
    note: str = "",
) -> Path:
    """Write the QC PNG.

    Args:
        path: the PNG to write (its folder is created).
        title: first line of the figure (the image's name, the model).
        sides: by name (``left``/``right``, or ``image`` for a crop): ``(image, mask)`` RAS arrays.
        head: optional ``(head image RAS array, {side: (low corner, high corner) in its voxels})``.
        note: second line (volumes, flags).
    """
    rows = len(sides)
    cols = 3 + (head is not None)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows + 0.6), squeeze=False)
    for r, (name, (image, mask)) in enumerate(sides.items()):
        centre = _centre(image, mask)
        lo, hi = np.percentile(image, [0.5, 99.5])
        for c, (plane, axis) in enumerate(_PLANES):
            ax = axes[r, c]
            ax.imshow(np.take(image, centre[axis], axis).T, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            ax.imshow(np.take(mask, centre[axis], axis).T, cmap=_COLOURS, vmin=0, vmax=2, origin="lower",
                      interpolation="nearest")  # fmt: skip
            ax.set_title(f"{name}: {plane}", fontsize=9)
            ax.axis("off")
    if head is not None:
        volume, boxes = head
        for r in range(rows):
            axes[r, 3].axis("off")
        ax = axes[0, 3]
        z = int(np.mean([(lo[2] + hi[2]) / 2 for lo, hi in boxes.values()])) if boxes else volume.shape[2] // 2
        z = int(np.clip(z, 0, volume.shape[2] - 1))
        lo_i, hi_i = np.percentile(volume, [0.5, 99.5])
        ax.imshow(volume[:, :, z].T, cmap="gray", vmin=lo_i, vmax=hi_i, origin="lower")
        for side, (lo, hi) in boxes.items():
            ax.add_patch(Rectangle((lo[0], lo[1]), hi[0] - lo[0], hi[1] - lo[1], fill=False, color="yellow", lw=1))
            ax.text(lo[0], hi[1] + 2, side, color="yellow", fontsize=7)
        ax.set_title(f"whole head, axial z={z}: crops", fontsize=9)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=_LEGEND, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
