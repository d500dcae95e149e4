"""Robustness benchmark: Dice of each model on the validation cases under each named acquisition shift.

Every case is read as the bundle reads it (RAS, 1 mm), shifted (:data:`bundle.data.shifts.SHIFTS`, seeded
by the case's index), standardised by the model's own input contract, segmented by the bundle's inferer
(one window fitted to the case) and scored against its label. Every model sees the same shifted images.
Also recorded per case: the class map's confidence (:func:`bundle.inference.confidence.confidence`), to set
the flag for scans the network cannot handle.

    .venv/bin/python studies/robustness.py --models ann,snn [--shifts all] [--out docs/robustness/robustness.json]

Models are names of the catalog (``ann``, ``snn``, ``snn_t2``, ``snn_converted``) or ``name=path`` for a
checkpoint of one of those kinds (e.g. ``ann=runs/x/models/model_ann.pt``). Writes the JSON (per shift and
model: mean Dice, anterior, posterior, confidence; per case) and a plot of Dice per shift.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from monai import transforms as mt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bundle.data.datalist import find_pairs, split_datalist
from bundle.data.shifts import COARSE_SHIFTS, SHIFTS, apply_shift
from bundle.data.standardization import standardize
from bundle.data.transforms import RAS_LABELS
from bundle.inference.confidence import confidence
from bundle.inference.inferers import make_inferer
from bundle.inference.models import load_model, mirrored
from studies import dataset_dir


def dice(pred: np.ndarray, label: np.ndarray, k: int) -> float:
    p, t = pred == k, label == k
    denominator = p.sum() + t.sum()
    return float(2 * (p & t).sum() / denominator) if denominator else 1.0


def parse_models(text: str) -> list[tuple[str, str, str | None]]:
    """``"ann,snn=path"`` -> [(label, catalog name, checkpoint or None)]."""
    out = []
    for item in text.split(","):
        label, _, path = item.partition("=")
        kind = label.split(":")[0]
        out.append((label, kind, path or None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ann,snn")
    parser.add_argument("--shifts", default="all", help="comma-separated names of bundle.data.shifts.SHIFTS, or all")
    parser.add_argument("--dataset_dir", default=str(dataset_dir()))
    parser.add_argument("--split", default="val", choices=["val", "train"])
    parser.add_argument("--limit", type=int, default=0, help="first N cases only (0: all)")
    parser.add_argument("--standardization", default=None, help="override every model's input contract")
    parser.add_argument("--out", default="docs/robustness/robustness.json")
    parser.add_argument("--plot", default=None, help="PNG (default: the JSON's name with .png)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mirror", action="store_true", help="mirroring at inference (the mirror setting)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    shifts = list(SHIFTS) if args.shifts == "all" else args.shifts.split(",")
    train, val = split_datalist(find_pairs(args.dataset_dir), 0.2, 0)
    cases = val if args.split == "val" else train
    if args.limit:
        cases = cases[: args.limit]
    load = mt.Compose(
        [
            mt.LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True),
            mt.EnsureTyped(keys="image", dtype=torch.float32),
            mt.Orientationd(keys=["image", "label"], axcodes="RAS", labels=RAS_LABELS),
            mt.Spacingd(keys=["image", "label"], pixdim=(1.0, 1.0, 1.0), mode=["bilinear", "nearest"]),
        ]
    )
    data = [load(c) for c in cases]
    models = []
    for label, kind, path in parse_models(args.models):
        network, info = load_model(kind, ckpt=path, kernel="eager")
        network, info = mirrored(network, info) if args.mirror else (network, info)
        standardization = args.standardization or info["standardization"]
        models.append((label, network, info, standardization))
    inferer = make_inferer(3, [48, 64, 48], window="fit", divisor=8)
    results: dict = {
        "date": date.today().isoformat(),
        "command": "studies/robustness.py " + " ".join(sys.argv[1:]),
        "split": args.split,
        "mirror": args.mirror,
        "cases": len(data),
        "shifts": {name: SHIFTS[name][0] for name in shifts},
        "models": {
            label: {"checkpoint": info["checkpoint"], "timesteps": info["timesteps"], "standardization": s}
            for label, _, info, s in models
        },
        "dice": {},
    }
    start = time.perf_counter()
    for name in shifts:
        results["dice"][name] = {}
        shifted = [apply_shift(name, d["image"], seed=args.seed * 1000 + i) for i, d in enumerate(data)]
        for label, network, info, standardization in models:
            rows = []
            for d, image in zip(data, shifted):
                x = standardize(torch.as_tensor(np.asarray(image)), standardization)[None].float()
                with torch.no_grad():
                    scores = inferer(x, network)[0]
                pred = scores.argmax(0).numpy()
                truth = np.asarray(d["label"])[0].round().astype(np.int64)
                rows.append(
                    {
                        "anterior": dice(pred, truth, 1),
                        "posterior": dice(pred, truth, 2),
                        "confidence": confidence(scores),
                    }
                )
            ant, post = (float(np.mean([r[k] for r in rows])) for k in ("anterior", "posterior"))
            results["dice"][name][label] = {
                "mean_dice": round((ant + post) / 2, 4),
                "anterior": round(ant, 4),
                "posterior": round(post, 4),
                "min_case_dice": round(min((r["anterior"] + r["posterior"]) / 2 for r in rows), 4),
                "confidence": round(float(np.mean([r["confidence"] for r in rows])), 4),
                "cases": [{k: round(v, 4) for k, v in r.items()} for r in rows],
            }
            print(
                f"{name:16s} {label:12s} Dice {(ant + post) / 2:.4f} (ant {ant:.3f}, post {post:.3f}) "
                f"confidence {results['dice'][name][label]['confidence']:.3f}  [{time.perf_counter() - start:.0f} s]",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {}
    models_by_label = {m[0]: m for m in models}
    for label, *_ in models:
        base = results["dice"].get("none", {}).get(label, {}).get("mean_dice")
        worst = min(shifts, key=lambda s: results["dice"][s][label]["mean_dice"])
        confidences = {s: [c["confidence"] for c in results["dice"][s][label]["cases"]] for s in shifts}
        floor = models_by_label[label][2].get("confidence_floor")
        # a 2-3 mm scan is judged by its own floor (bundle.inference.confidence.floor_for); the shifted crops keep
        # the 1 mm header, so the floor each shift would meet is picked here by the shift's acquisition
        coarse_floor = models_by_label[label][2].get("coarse_confidence_floor")  # None: not measured, the 1 mm one
        floors = {s: coarse_floor if s in COARSE_SHIFTS and coarse_floor is not None else floor for s in shifts}
        coarse = [c for s in COARSE_SHIFTS if s in shifts for c in confidences[s]]
        all_cases = [(c["confidence"], (c["anterior"] + c["posterior"]) / 2, s)
                     for s in shifts for c in results["dice"][s][label]["cases"]]  # fmt: skip
        poor = [c for c in all_cases if c[1] < 0.7]
        summary[label] = {
            "confidence_p1_unshifted": round(float(np.percentile(confidences["none"], 1)), 4)
            if "none" in shifts
            else None,
            "confidence_p1_coarse": round(float(np.percentile(coarse, 1)), 4) if coarse else None,
            "confidence_floor": floor,
            "coarse_confidence_floor": coarse_floor,
            "flagged_unshifted": None
            if floor is None or "none" not in shifts
            else sum(c < floor for c in confidences["none"]),
            "cases_below_0.7_dice": len(poor),
            "of_them_flagged_by_confidence": None if floor is None else sum(c[0] < floors[c[2]] for c in poor),
            "flagged_by_confidence_per_shift": None
            if floor is None
            else {s: sum(c < floors[s] for c in confidences[s]) for s in shifts},
            "dice_confidence_correlation": round(
                float(np.corrcoef([c[0] for c in all_cases], [c[1] for c in all_cases])[0, 1]), 3
            ),
            "unshifted": base,
            "worst_shift": worst,
            "worst": results["dice"][worst][label]["mean_dice"],
            "worst_drop": None if base is None else round(base - results["dice"][worst][label]["mean_dice"], 4),
        }
    results["summary"] = summary
    out.write_text(json.dumps(results, indent=1) + "\n")
    for label, s in summary.items():
        print(f"{label}: unshifted {s['unshifted']}, worst {s['worst_shift']} {s['worst']} (drop {s['worst_drop']})")
    plot(results, Path(args.plot) if args.plot else out.with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    """Grouped bars: mean Dice per shift, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = list(results["dice"])
    labels = list(results["models"])
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(shifts)), 4.5))
    for j, label in enumerate(labels):
        values = [results["dice"][s][label]["mean_dice"] for s in shifts]
        ax.bar(np.arange(len(shifts)) + j * width - 0.4 + width / 2, values, width, label=label)
    ax.set_xticks(np.arange(len(shifts)), shifts, rotation=35, ha="right")
    ax.set_ylabel("mean Dice (anterior, posterior)")
    lowest = min(results["dice"][s][m]["mean_dice"] for s in shifts for m in labels)
    ax.set_ylim(max(0.0, round(lowest - 0.1, 1)), 0.95)
    ax.axhline(results["dice"].get("none", {}).get(labels[0], {}).get("mean_dice", 0) - 0.03, color="grey",
               lw=0.8, ls="--", label=f"{labels[0]} unshifted - 0.03")  # fmt: skip
    ax.set_title(f"Task04 {results['split']} ({results['cases']} cases) under acquisition shifts, {results['date']}")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
