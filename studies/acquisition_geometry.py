"""Does a simulated low-resolution acquisition keep the anatomy where it was? The label itself put through it.

A network can only be asked to find the hippocampus where the image shows it. Each Task04 label (as a 0/1
volume) goes through a 2 mm isotropic acquisition simulated two ways: MONAI's ``RandSimulateLowResolution``
(nearest-neighbour sampling of the coarse grid, then trilinear back) and the bundle's
:func:`bundle.data.randomization.low_resolution` (each coarse voxel the mean of what it covers, trilinear back).
Printed and written: the Dice of the thresholded result with the label, and how far its centre of mass moved.

    .venv/bin/python studies/acquisition_geometry.py --cases 20 --out docs/robustness/acquisition_geometry.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai import transforms as mt  # noqa: E402

from bundle.data.randomization import low_resolution  # noqa: E402
from studies import dataset_dir  # noqa: E402


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def _centre(v: np.ndarray) -> np.ndarray:
    idx = np.indices(v.shape).reshape(3, -1)
    w = v.reshape(-1)
    return (idx * w).sum(1) / w.sum()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", default=None)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--voxel", type=float, default=2.0)
    parser.add_argument("--out", default=str(REPO / "docs" / "robustness" / "acquisition_geometry.json"))
    args = parser.parse_args()
    labels = sorted((Path(args.dataset_dir or dataset_dir()) / "labelsTr").glob("*.nii.gz"))[: args.cases]
    zoom = 1.0 / args.voxel
    rows = []
    for path in labels:
        label = np.asarray(nib.load(path).dataobj) > 0
        x = torch.as_tensor(label.astype(np.float32))[None]
        nearest = mt.RandSimulateLowResolution(prob=1.0, zoom_range=(zoom, zoom))
        nearest.set_random_state(0)
        out = {"nearest": np.asarray(nearest(x))[0], "area": np.asarray(low_resolution(x, [args.voxel] * 3))[0]}
        row = {"case": path.name}
        for name, v in out.items():
            row[f"{name}_dice"] = round(_dice(v > 0.5, label), 4)
            row[f"{name}_shift_vox"] = round(float(np.linalg.norm(_centre(v) - _centre(label.astype(float)))), 3)
        rows.append(row)
    summary = {
        k: round(float(np.mean([r[k] for r in rows])), 4)
        for k in ("nearest_dice", "area_dice", "nearest_shift_vox", "area_shift_vox")
    }
    summary.update(
        nearest_dice_range=[min(r["nearest_dice"] for r in rows), max(r["nearest_dice"] for r in rows)],
        area_dice_range=[min(r["area_dice"] for r in rows), max(r["area_dice"] for r in rows)],
    )
    result = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["studies/acquisition_geometry.py", *sys.argv[1:]]),
        "voxel_mm": args.voxel,
        "cases": len(rows),
        "summary": summary,
        "per_case": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
