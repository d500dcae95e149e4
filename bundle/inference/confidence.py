"""How sure the network is of its hippocampus: a flag for scans it cannot handle that does not rely on volume.

On an image it was trained for, a segmentation network's class map is nearly binary: the voxels it calls
hippocampus with some probability are, but for a thin boundary, the voxels it is sure of. On an image it
cannot read (another contrast, another resolution) the softmax spreads out: many voxels get a middling
hippocampus probability and few a high one. :func:`confidence` is that ratio; on the robustness benchmark
(``studies/robustness.py``) it follows each case's Dice (correlation about 0.6 for the ANN and the SNN).

Its typical level is the model's own (an SNN's membrane read-out is sharper than the ANN's softmax), so
``volumes.csv`` flags a mask whose confidence falls below its model's floor: the 1st percentile of that model's
confidences on the unshifted validation cases (:data:`bundle.inference.catalog.CONFIDENCE_FLOORS`), about one
in a hundred in-distribution crops. A scan acquired at 2-3 mm reads less sharply even when its mask is as good as
that resolution allows (at the 1 mm floor 7-49 % of the validation crops put through a 2 mm or 3 mm acquisition
were flagged, at Dice 0.85), so such a scan is judged by the floor measured on those crops
(:data:`bundle.inference.catalog.COARSE_CONFIDENCE_FLOORS`, :func:`floor_for`).
"""

from __future__ import annotations

import torch

__all__ = ["COARSE_SCAN_MM", "confidence", "floor_for"]

# scans whose largest voxel side lies in this range (mm) take the coarse floor: it was measured on 2 mm isotropic and
# 3 mm slice acquisitions, and is not stretched further than a quarter of a millimetre either side
COARSE_SCAN_MM = (1.75, 3.25)


def confidence(scores: torch.Tensor, sure: float = 0.75, possible: float = 0.25) -> float:
    """Of the voxels whose hippocampus probability exceeds ``possible``, the fraction where it exceeds ``sure``.

    Args:
        scores: class scores ``[C, *spatial]`` (background first), before softmax.
    Returns a value in [0, 1]; 0 when no voxel is possibly hippocampus.
    """
    scores = torch.as_tensor(scores).float()
    foreground = 1.0 - torch.softmax(scores, dim=0)[0]
    possible_count = int((foreground > possible).sum())
    return float((foreground > sure).sum()) / possible_count if possible_count else 0.0


def floor_for(spacing_mm, floor: float | None, coarse_floor: float | None = None) -> float | None:
    """The confidence floor for a scan acquired at voxel size ``spacing_mm``: ``coarse_floor`` when its largest
    side lies in :data:`COARSE_SCAN_MM` and the model has one, else ``floor`` (None: never flagged for confidence)."""
    largest = max(float(s) for s in spacing_mm)
    coarse = COARSE_SCAN_MM[0] <= largest <= COARSE_SCAN_MM[1]
    return coarse_floor if coarse and coarse_floor is not None and floor is not None else floor
