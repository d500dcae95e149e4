"""Stage 2 study: how a converted spiking U-Net compares with its ANN, timestep by timestep.

For each conversion variant (neuron, normalisation, layer/channel-wise, initial membrane potential) it
converts the ANN, runs every validation case once for max(T) steps and records, at each T:
Dice per class for both readouts (non-spiking membrane vs spiking rate output layer), the output
scaling against the ANN's logits (least-squares slope and correlation per class), firing rates per layer,
synaptic operations and the energy estimate. Writes ``<out>/conversion_study.json`` and PNG plots.

Usage (the numbers in docs/RESULTS.md):
    python studies/conversion_study.py --ann models/model_ann.pt --dataset_dir ../shared/data/Task04_Hippocampus
"""

from __future__ import annotations

import argparse
import sys
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai import transforms as mt
from monai.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for `studies`
from studies import dataset_dir  # noqa: E402
from bundle.data.datalist import prepare_datalists
from bundle.data.transforms import calibration_transforms, val_transforms
from bundle.networks import ConvertibleUNet, divisor
from bundle.networks.checkpoint import load_weights
from bundle.spiking.activity import ActivityMonitor, dense_macs
from bundle.spiking.conversion import convert, one_at_a_time, output_threshold
from bundle.spiking.segmenter import SpikingSegmenter

VARIANTS = {
    # name: (neuron, mode, channel_wise, v_init); v_init 0 is SpikingJelly's IF start, 0.5 the half-threshold fix
    "stock max (SpikingJelly default)": ("binary", "max", False, 0.0),
    "binary 99.9%": ("binary", "99.9%", False, 0.0),
    "binary 99.9% half-threshold": ("binary", "99.9%", False, 0.5),
    "binary 99.9% channel-wise half-threshold": ("binary", "99.9%", True, 0.5),
    "ternary 99.9%": ("ternary", "99.9%", False, 0.0),
    "ternary 99.9% half-threshold": ("ternary", "99.9%", False, 0.5),
    "ternary 99.9% channel-wise half-threshold": ("ternary", "99.9%", True, 0.5),
}


def dice(pred: torch.Tensor, label: torch.Tensor, cls: int) -> float:
    p, g = pred == cls, label == cls
    denom = int(p.sum() + g.sum())
    return float("nan") if denom == 0 else 2.0 * int((p & g).sum()) / denom


def scaling(snn: torch.Tensor, ann: torch.Tensor, n: int = 20000) -> list[tuple[float, float]]:
    """Per class: (slope of snn on ann, correlation) over a voxel sample."""
    out = []
    for c in range(ann.shape[1]):
        a, s = ann[:, c].flatten(), snn[:, c].flatten()
        idx = torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))[:n]
        a, s = a[idx].double(), s[idx].double()
        ac, sc = a - a.mean(), s - s.mean()
        slope = float((ac * sc).sum() / (ac * ac).sum())
        corr = float((ac * sc).sum() / (ac.norm() * sc.norm() + 1e-12))
        out.append((slope, corr))
    return out


def _totals(monitor: ActivityMonitor) -> tuple[float, float]:
    return sum(monitor.synops.values()), sum(monitor.macs.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ann", default="models/model_ann.pt")
    ap.add_argument("--dataset_dir", default=str(dataset_dir()))
    ap.add_argument("--val_fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", default="16,32,64,128")
    ap.add_argument("--roi", default="48,64,48")
    ap.add_argument("--calibration_cases", type=int, default=32)
    ap.add_argument("--cases", type=int, default=0, help="validation cases to use (0: all)")
    ap.add_argument("--steps", default="1,2,4,8,16,32,64")
    ap.add_argument("--variants", default="all", help="comma-separated names from VARIANTS, or 'all'")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_grad_enabled(False)

    steps = [int(s) for s in args.steps.split(",")]
    channels = [int(c) for c in args.channels.split(",")]
    lists = prepare_datalists(args.dataset_dir, args.val_fraction, args.seed)
    val = lists["val"][: args.cases or None]
    calib = DataLoader(
        Dataset(lists["train"][: args.calibration_cases], calibration_transforms([int(v) for v in args.roi.split(",")]))
    )
    pad = mt.DivisiblePadd(keys=["image", "label"], k=divisor(channels))
    cases = [pad(val_transforms()(d)) for d in val]
    ann = load_weights(ConvertibleUNet(3, channels=channels), args.ann, "train_ann")
    ann_logits = [ann(c["image"][None]) for c in cases]
    ann_pred = [lg.argmax(1)[0] for lg in ann_logits]
    labels = [c["label"][0] for c in cases]
    ann_dice = [[dice(p, y, k) for k in (1, 2)] for p, y in zip(ann_pred, labels)]
    ann_macs = float(np.mean([dense_macs(ann, c["image"][None]) for c in cases]))
    threshold = output_threshold(ann, one_at_a_time(calib))
    names = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    result = {
        "command": "python studies/conversion_study.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "date": time.strftime("%Y-%m-%d"),
        "cases": [Path(d["image"]).name for d in val],
        "steps": steps,
        "ann": {"dice": np.nanmean(ann_dice, 0).tolist(), "macs": ann_macs, "energy_uj": ann_macs * 4.6e-6},
        "out_threshold": threshold,
        "variants": {},
    }
    for name in names:
        neuron, mode, channel_wise, v_init = VARIANTS[name]
        t0 = time.perf_counter()
        snn = convert(ann, one_at_a_time(calib), mode=mode, channel_wise=channel_wise, neuron=neuron, v_init=v_init)
        seg = SpikingSegmenter(snn, max(steps), out_threshold=threshold)
        dices = {r: {t: [] for t in steps} for r in ("membrane", "rate")}
        scale = {t: [] for t in steps}
        energy = {t: [] for t in steps}
        firing: dict[str, list[float]] = {}
        horizon = max(steps)
        with ActivityMonitor(snn) as monitor:
            for i, case in enumerate(cases):
                before, spikes_before, snaps = _totals(monitor), dict(monitor.spikes), {}
                outs = seg.readouts_at(
                    case["image"][None], steps, on_step=lambda t, snaps=snaps: snaps.update({t: _totals(monitor)})
                )
                for t in steps:
                    for r in dices:
                        pred = outs[r][t].argmax(1)[0]
                        dices[r][t].append([dice(pred, labels[i], k) for k in (1, 2)])
                    scale[t].append(scaling(outs["membrane"][t], ann_logits[i]))
                    energy[t].append((snaps[t][0] - before[0], snaps[t][1] - before[1]))
                for layer, count in monitor.spikes.items():
                    firing.setdefault(layer, []).append(
                        (count - spikes_before.get(layer, 0.0)) / (monitor.neurons[layer] * horizon)
                    )
                logging.info(
                    f"[{name}] case {i + 1}/{len(cases)}: Dice T={steps[len(steps) // 2]} "
                    f"{np.mean(dices['membrane'][steps[len(steps) // 2]][-1]):.3f}, "
                    f"T={horizon} {np.mean(dices['membrane'][horizon][-1]):.3f} (ANN {np.mean(ann_dice[i]):.3f})"
                )
        result["variants"][name] = {
            "neuron": neuron,
            "mode": mode,
            "channel_wise": channel_wise,
            "v_init": v_init,
            "dice": {r: {t: np.nanmean(dices[r][t], 0).tolist() for t in steps} for r in dices},
            "scale_slope": {t: np.mean([[c[0] for c in s] for s in scale[t]], 0).tolist() for t in steps},
            "scale_corr": {t: np.mean([[c[1] for c in s] for s in scale[t]], 0).tolist() for t in steps},
            "firing_rates_T_max": {k: float(np.mean(v)) for k, v in firing.items()},
            "synops": {t: float(np.mean([e[0] for e in energy[t]])) for t in steps},
            "macs": {t: float(np.mean([e[1] for e in energy[t]])) for t in steps},
            "energy_uj": {t: float(np.mean([e[0] * 0.9e-6 + e[1] * 4.6e-6 for e in energy[t]])) for t in steps},
            "seconds": time.perf_counter() - t0,
        }
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "conversion_study.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {Path(args.out) / 'conversion_study.json'}")


if __name__ == "__main__":
    main()
