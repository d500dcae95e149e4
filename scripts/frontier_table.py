"""Markdown table of `hippo-snn evaluate` runs (every ``*/summary.json`` under a folder): Dice, HD95, mean T,
firing rate and energy per volume, the ANN counted on the same windows; with ``--plot``, the same runs as
a Dice-vs-energy figure with its Pareto front.

    python scripts/frontier_table.py runs/issue13 --plot docs/frontier_dice_vs_energy.png
"""

import argparse
import json
from pathlib import Path


def row(s: dict, name: str) -> str:
    def m(key, fmt="{:.3f}"):
        value = s.get(key)
        return "-" if not isinstance(value, dict) or value["mean"] is None else fmt.format(value["mean"])

    rule = f"stable, patience {s['patience']}, tolerance {s['tolerance']:g}" if s.get("adaptive") else "fixed"
    return (
        f"| {name} | {s['model']} | {s['timesteps'] or '-'} | {rule if s['model'] != 'ann' else '-'} "
        f"| {m('mean_timesteps', '{:.2f}')} | {m('dice_anterior')} | {m('dice_posterior')} | **{s['mean_dice']:.4f}** "
        f"| {m('hd95_anterior_mm', '{:.2f}')} / {m('hd95_posterior_mm', '{:.2f}')} | {m('mean_firing_rate')} "
        f"| {m('energy_uj', '{:.0f}')} | {m('energy_vs_ann')} |"
    )


def load(root: Path) -> list[tuple[dict, str]]:
    return [(json.loads((p / "summary.json").read_text()), p.name) for p in root.iterdir() if (p / "summary.json").is_file()]


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both energy (lower) and Dice (higher), by rising energy."""
    front, best = [], -1.0
    for energy, dice in sorted(points, key=lambda p: (p[0], -p[1])):
        if dice > best:
            front.append((energy, dice))
            best = dice
    return front


def plot(runs: list[tuple[dict, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ann = [s for s, _ in runs if s["model"] == "ann"]
    snn = [(s, n) for s, n in runs if s["model"] != "ann" and s.get("energy_uj", {}).get("mean")]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    style = {
        "snn": ("tab:blue", "snn: default, fine-tuned for T=3"),
        "snn_t2": ("tab:green", "snn_t2: fine-tuned for T=2"),
        "snn_converted": ("tab:orange", "converted SNN"),
    }
    for model, (color, label) in style.items():
        for adaptive, marker in ((False, "o"), (True, "^")):
            pts = [(s["energy_uj"]["mean"], s["mean_dice"], s) for s, _ in snn
                   if s["model"] == model and bool(s.get("adaptive")) == adaptive]  # fmt: skip
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color, marker=marker,
                       label=f"{label}, {'adaptive T' if adaptive else 'fixed T'}")  # fmt: skip
            for e, d, s in pts:
                t = s["mean_timesteps"]["mean"] if adaptive else s["timesteps"]
                ax.annotate(f"T={t:.1f}" if adaptive else f"T={t}", (e, d), textcoords="offset points", xytext=(4, -10), fontsize=8)
    front = pareto([(s["energy_uj"]["mean"], s["mean_dice"]) for s, _ in snn])
    ax.plot([p[0] for p in front], [p[1] for p in front], color="grey", lw=1, ls=":", label="Pareto front (SNNs)")
    if ann:
        a = ann[0]
        ax.axhline(a["mean_dice"], color="black", lw=1, label=f"ANN {a['mean_dice']:.4f} ({a['energy_uj']['mean']:.0f} uJ)")
        ax.axhline(a["mean_dice"] - 0.005, color="black", lw=1, ls="--", label="ANN - 0.005 (issue 13 bar)")
        ax.axvline(0.1 * a["energy_uj"]["mean"], color="tab:red", lw=1, ls="--", label="10% of the ANN's energy")
    windows = sorted({w for s, _ in runs for w in s.get("window", [])})
    ax.set_xlabel(f"energy per volume (uJ, 45 nm estimate; {', '.join(windows)} windows)")
    ax.set_ylabel("validation mean Dice (42 cases)")
    ax.set_title("Dice vs energy per volume, ANN and SNNs on the same windows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nPlot: {path}")


def main(root: Path, plot_path: Path | None = None) -> None:
    print("| run | model | max T | rule | mean T | anterior | posterior | mean Dice | HD95 ant / post (mm) "
          "| firing rate | energy (uJ/volume) | SNN/ANN |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = load(root)
    for s, name in sorted(runs, key=lambda r: (r[0]["model"] != "ann", r[0].get("energy_uj", {}).get("mean") or 0)):
        print(row(s, name))
    windows = sorted({w for s, _ in runs for w in s.get("window", [])})
    print(f"\nInput: the {', '.join(windows)} sliding windows batch inference runs; energy by the 45 nm estimate.")
    if plot_path is not None:
        plot(runs, plot_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("runs/issue13"))
    parser.add_argument("--plot", type=Path, default=None, help="also write a Dice-vs-energy PNG here")
    args = parser.parse_args()
    main(args.root, args.plot)
