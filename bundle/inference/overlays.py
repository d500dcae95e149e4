"""PNG overlays that show a segmentation: three planes through the hippocampus, mask over image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

__all__ = ["save_overlay"]

_COLOURS = ListedColormap([(0, 0, 0, 0), (0.95, 0.35, 0.1, 0.45), (0.1, 0.6, 0.95, 0.45)])  # bg, anterior, posterior


def save_overlay(
    image: np.ndarray, pred: np.ndarray, path: str | Path, label: np.ndarray | None = None, title: str = ""
) -> Path:
    """Save the three orthogonal planes through the centre of ``pred`` (or of ``label``) as one PNG.

    ``image``, ``pred`` and ``label`` are 3D arrays in the same voxel grid. Prediction: filled colour
    (orange anterior, blue posterior); reference label: white contours.
    """
    fg = np.argwhere((label if label is not None and label.any() else pred) > 0)
    centre = fg.mean(0).round().astype(int) if len(fg) else np.array(image.shape) // 2
    lo, hi = np.percentile(image, [0.5, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
    for axis, ax in enumerate(axes):

        def take(a, axis=axis):
            return np.take(a, centre[axis], axis=axis).T

        ax.imshow(take(image), cmap="gray", vmin=lo, vmax=hi, origin="lower")
        ax.imshow(take(pred), cmap=_COLOURS, vmin=0, vmax=2, origin="lower", interpolation="nearest")
        if label is not None:
            ax.contour(take(label), levels=[0.5, 1.5], colors="white", linewidths=0.8)
        ax.set_title(f"{'xyz'[axis]} = {centre[axis]}", fontsize=9)
        ax.axis("off")
    fig.suptitle(title + ("  (fill: prediction, white: reference)" if label is not None else ""), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
