"""Plots for the conversion study: Dice vs T, output scaling vs T, firing rates per layer, energy vs T.

Usage: python studies/plot_conversion_study.py docs/conversion_study.json docs/
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

CLASSES = ("background", "anterior", "posterior")


def _series(d: dict, steps: list[int], f=lambda v: float(np.mean(v))) -> list[float]:
    return [f(d[str(t)]) for t in steps]


def main(study_json: str, out_dir: str) -> None:
    study = json.loads(Path(study_json).read_text(encoding="utf-8"))
    steps, variants, out = study["steps"], study["variants"], Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ann = float(np.mean(study["ann"]["dice"]))

    readouts = {
        "membrane": "non-spiking output layer (membrane)",
        "rate": "spiking output layer (rate)",
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, (readout, title) in zip(axes, readouts.items()):
        for i, (name, v) in enumerate(variants.items()):
            if readout in v["dice"]:
                ax.plot(steps, _series(v["dice"][readout], steps), "o-", color=f"C{i}", label=name)
        ax.axhline(ann, color="k", ls="--", label=f"ANN ({ann:.3f})")
        ax.set(xscale="log", xlabel="timesteps T", title=title, ylim=(0, 1))
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean Dice (anterior, posterior)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Converted SNN vs timesteps, per conversion variant and readout")
    fig.tight_layout()
    fig.savefig(out / "conversion_dice_vs_T.png", dpi=120)

    fig, (ax_s, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, v) in enumerate(variants.items()):
        for c, ls in zip((1, 2), ("-", "--")):
            ax_s.plot(
                steps,
                _series(v["scale_slope"], steps, lambda x, c=c: x[c]),
                ls,
                color=f"C{i}",
                label=name if c == 1 else None,
            )
            ax_c.plot(steps, _series(v["scale_corr"], steps, lambda x, c=c: x[c]), ls, color=f"C{i}")
    for ax, title in ((ax_s, "scale: slope of SNN score on ANN logit"), (ax_c, "correlation with ANN logit")):
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel="timesteps T", title=title)
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.grid(alpha=0.3)
    ax_s.legend(fontsize=7)
    fig.suptitle("Output scaling, membrane readout (solid: anterior, dashed: posterior)")
    fig.tight_layout()
    fig.savefig(out / "conversion_output_scaling.png", dpi=120)

    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(variants)
    for i, (name, v) in enumerate(variants.items()):
        layers = list(v["firing_rates_T_max"])
        ax.bar(np.arange(len(layers)) + i * width, list(v["firing_rates_T_max"].values()), width, label=name)
    names = [re.sub(r"\.(channel_)?spiking_\d+\.if_node$", "", n) for n in layers]
    ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, names, rotation=60, ha="right", fontsize=8)
    ax.set(
        ylabel=f"spikes / neuron / step (T={max(steps)})", title="Firing rate per layer (network depth: left to right)"
    )
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    fig.tight_layout()
    fig.savefig(out / "conversion_firing_rates.png", dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, v) in enumerate(variants.items()):
        ax.plot(steps, _series(v["energy_uj"], steps, float), "o-", color=f"C{i}", label=name)
    ax.axhline(study["ann"]["energy_uj"], color="k", ls="--", label="ANN (MACs x 4.6 pJ)")
    ax.set(xscale="log", yscale="log", xlabel="timesteps T", ylabel="estimated energy per volume (uJ)")
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set_title("Compute energy estimate (memory traffic ignored)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "conversion_energy.png", dpi=120)
    print(f"wrote plots to {out}")
    print_tables(study)


def print_tables(study: dict) -> None:
    """Markdown tables of the study (as pasted into docs/RESULTS.md)."""
    steps, variants = study["steps"], study["variants"]
    head = "| variant | readout | " + " | ".join(f"T={t}" for t in steps) + " |"
    print("\nMean Dice (anterior, posterior averaged); ANN:", f"{np.mean(study['ann']['dice']):.3f}\n")
    print(head + "\n" + "|---" * (len(steps) + 2) + "|")
    for name, v in variants.items():
        for readout in ("membrane", "rate"):
            cells = " | ".join(f"{np.mean(v['dice'][readout][str(t)]):.3f}" for t in steps)
            print(f"| {name} | {readout} | {cells} |")
    print("\nOutput scaling, membrane readout: slope / correlation vs ANN logits (anterior; posterior)\n")
    print("| variant | " + " | ".join(f"T={t}" for t in steps) + " |\n" + "|---" * (len(steps) + 1) + "|")
    for name, v in variants.items():
        cells = " | ".join(
            f"{v['scale_slope'][str(t)][1]:.2f}/{v['scale_corr'][str(t)][1]:.2f}; "
            f"{v['scale_slope'][str(t)][2]:.2f}/{v['scale_corr'][str(t)][2]:.2f}"
            for t in steps
        )
        print(f"| {name} | {cells} |")
    print(
        f"\nEnergy per volume (uJ; ANN {study['ann']['energy_uj']:.0f} uJ = {study['ann']['macs'] / 1e9:.2f} GMAC x 4.6 pJ)\n"
    )
    print("| variant | mean firing rate (T max) | " + " | ".join(f"T={t}" for t in steps) + " |")
    print("|---" * (len(steps) + 2) + "|")
    for name, v in variants.items():
        rate = np.mean(list(v["firing_rates_T_max"].values()))
        cells = " | ".join(f"{v['energy_uj'][str(t)]:.0f}" for t in steps)
        print(f"| {name} | {rate:.3f} | {cells} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
