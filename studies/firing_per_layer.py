"""Firing rate per neuron layer of one or more SNN checkpoints, on the same validation cases, as a table
(JSON) and a grouped bar plot: where in the U-Net the spikes (and so the energy) are, and what a lever such
as the firing-rate penalty changed.

    PYTHONPATH=. python studies/firing_per_layer.py --dataset_dir ../shared/data/Task04_Hippocampus \\
        --ckpt shipped=models/model_snn_finetuned.pt --ckpt penalty0.2=runs/levers/rate0.2_T4/models/model_snn_finetuned.pt \\
        --out docs/firing_per_layer.png

Every model runs the bundle's sliding-window inferer (48x64x48 windows) on the validation split that
training used (same seed and fraction), counted by :class:`bundle.spiking.activity.ActivityMonitor`.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset

from bundle.data.datalist import find_pairs, split_datalist
from bundle.data.transforms import ROI_SIZE, val_transforms
from bundle.inference.inferers import make_inferer
from bundle.inference.models import load_model
from bundle.spiking.activity import ActivityMonitor


def layer_rates(ckpt: str, cases: list[dict], timesteps: int | None) -> tuple[dict[str, float], dict]:
    network, info = load_model("snn", ckpt=ckpt, timesteps=timesteps)
    inferer = make_inferer(3, ROI_SIZE[3])
    loader = DataLoader(Dataset(cases, transform=val_transforms()), batch_size=1, num_workers=0)
    with torch.no_grad(), ActivityMonitor(network) as monitor:
        for batch in loader:
            inferer(batch["image"], network)
    return monitor.firing_rates(), {**monitor.totals(), "timesteps": info["timesteps"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--ckpt", action="append", required=True, help="NAME=PATH of an SNN checkpoint (repeat)")
    p.add_argument("--cases", type=int, default=0, help="the first N validation cases (0: all)")
    p.add_argument("--timesteps", type=int, default=None, help="run every model at this T (default: its own)")
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/firing_per_layer.png", help="PNG; the numbers go beside it as .json")
    a = p.parse_args()
    _, val = split_datalist(find_pairs(a.dataset_dir), a.val_fraction, a.seed)
    cases = val[: a.cases] if a.cases else val
    results = {}
    for spec in a.ckpt:
        name, _, path = spec.partition("=")
        start = time.perf_counter()
        rates, totals = layer_rates(path, cases, a.timesteps)
        results[name] = {"checkpoint": path, "cases": len(cases), "per_layer": rates, **totals}
        print(
            f"{name}: T={totals['timesteps']}, mean firing rate {totals['mean_firing_rate']:.4f}, "
            f"energy {totals['energy_vs_ann']:.3f} of the ANN's on the same {totals['window']} windows "
            f"({time.perf_counter() - start:.0f} s)"
        )
        for layer, rate in rates.items():
            print(f"  {layer:40s} {rate:.4f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(next(iter(results.values()))["per_layer"])
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(min(16, max(8, 0.3 * len(layers) * len(results) + 2)), 4.5))
    for i, (name, r) in enumerate(results.items()):
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(layers))]
        label = f"{name} (T={r['timesteps']}, mean {r['mean_firing_rate']:.3f}, energy {r['energy_vs_ann']:.3f} x ANN)"
        ax.bar(xs, [r["per_layer"].get(k, 0.0) for k in layers], width, label=label)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([k.replace(".spiking_0.if_node", "") for k in layers], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("spikes per neuron per timestep")
    cases = next(iter(results.values()))["cases"]
    ax.set_title(f"Firing rate per layer, {cases} validation cases, 48x64x48 sliding windows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
