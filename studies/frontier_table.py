"""Markdown table of `hippo-snn evaluate` runs (every ``*/summary.json`` under a folder): Dice, HD95, mean T,
firing rate and energy per volume, the ANN counted on the same windows; with ``--plot``, the same runs as
a Dice-vs-energy figure with its Pareto front.

    python studies/frontier_table.py runs/issue13 --plot docs/frontier_dice_vs_energy.png \
        --levers runs/levers_lowT --direct runs/direct/main.log

``--levers`` adds the fine-tuning runs of ``studies/lever_results.sh`` (their ``*.log``, named
``rate<w>_T<T>[_e<epochs>][_kd<weight>]``) and ``--direct`` a direct-training log, each at its best
validation epoch, the epoch its checkpoint keeps. Those epochs were validated on the same 42 cases, windows
and energy count as ``hippo-snn evaluate`` (for ``models/model_snn_t2.pt`` both give 0.8682 at 2596.8 uJ).
"""

import argparse
import json
import re
from pathlib import Path

METRICS = re.compile(r"Epoch\[(\d+)\] Metrics -- (.*)")
LEVER_NAME = re.compile(r"rate(?P<w>[0-9.]+)_T(?P<T>\d+)(?:_e\d+)?(?:_kd(?P<kd>[0-9.]+))?$")


def best_epoch(log: Path) -> dict | None:
    """The validation metrics of the log's best epoch by mean Dice (first of equals), with ``epoch``."""
    best = None
    for line in log.read_text(errors="replace").splitlines():
        if m := METRICS.search(line):
            values = dict(re.findall(r"(\w+): ([0-9.eE+-]+)", m.group(2)))
            values = {k: float(v) for k, v in values.items()} | {"epoch": int(m.group(1))}
            if best is None or values.get("val_mean_dice", -1) > best.get("val_mean_dice", -1):
                best = values
    return best


def lever_runs(folder: Path) -> list[dict]:
    """Each lever run of ``folder``: T, its lever in words, and its best epoch's metrics."""
    runs = []
    for log in sorted(folder.glob("*.log")):
        name = LEVER_NAME.match(log.stem)
        best = best_epoch(log) if name else None
        if best is None:
            continue
        w, kd = float(name["w"]), float(name["kd"] or 0)
        lever = ["control"] if not (w or kd) else [f"rate {w:g}"] * bool(w) + [f"distillation {kd:g}"] * bool(kd)
        runs.append({"name": log.stem, "T": int(name["T"]), "lever": " + ".join(lever), **best})
    return runs


def lever_table(runs: list[dict]) -> None:
    print("\n| run | T | lever | best epoch | anterior | posterior | mean Dice | firing rate | energy (uJ/volume) | SNN/ANN |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(runs, key=lambda r: (r["T"], r["lever"])):
        print(f"| {r['name']} | {r['T']} | {r['lever']} | {r['epoch']} | {r['val_dice_anterior']:.3f} "
              f"| {r['val_dice_posterior']:.3f} | **{r['val_mean_dice']:.4f}** | {r['val_firing_rate']:.3f} "
              f"| {r['val_energy_uj']:.0f} | {r['val_energy_vs_ann']:.3f} |")  # fmt: skip


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
    return [(json.loads((p / "summary.json").read_text(encoding="utf-8")), p.name) for p in root.iterdir() if (p / "summary.json").is_file()]


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both energy (lower) and Dice (higher), by rising energy."""
    front, best = [], -1.0
    for energy, dice in sorted(points, key=lambda p: (p[0], -p[1])):
        if dice > best:
            front.append((energy, dice))
            best = dice
    return front


def plot(runs: list[tuple[dict, str]], path: Path, levers: list[dict] = (), direct: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ann = [s for s, _ in runs if s["model"] == "ann"]
    snn = [(s, n) for s, n in runs if s["model"] != "ann" and s.get("energy_uj", {}).get("mean")]
    fig, ax = plt.subplots(figsize=(11, 5.5))
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
    lever_style = {"control": ("s", "tab:gray"), "rate": ("D", "tab:purple"), "distillation": ("P", "tab:brown")}
    for kind in ("control", "rate", "distillation", "both"):
        pts = [r for r in levers if (r["lever"].split(" ")[0] if "+" not in r["lever"] else "both") == kind]
        if not pts:
            continue
        marker, color = lever_style.get(kind, ("X", "tab:red"))
        label = {"control": "fine-tuned, no lever (control)", "both": "rate penalty + distillation"}.get(kind, pts[0]["lever"])
        ax.scatter([r["val_energy_uj"] for r in pts], [r["val_mean_dice"] for r in pts], marker=marker,
                   facecolors="none", edgecolors=color, label=f"lever run: {label}")  # fmt: skip
        for r in pts:
            ax.annotate(f"T={r['T']}", (r["val_energy_uj"], r["val_mean_dice"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=color)  # fmt: skip
    front = pareto([(s["energy_uj"]["mean"], s["mean_dice"]) for s, _ in snn]
                   + [(r["val_energy_uj"], r["val_mean_dice"]) for r in levers])  # fmt: skip
    ax.plot([p[0] for p in front], [p[1] for p in front], color="grey", lw=1, ls=":", label="Pareto front (SNNs)")
    if ann:
        a = ann[0]
        ax.axhline(a["mean_dice"], color="black", lw=1, label=f"ANN {a['mean_dice']:.4f} ({a['energy_uj']['mean']:.0f} uJ)")
        ax.axhline(a["mean_dice"] - 0.005, color="black", lw=1, ls="--", label="ANN - 0.005 (issue 13 bar)")
        ax.axvline(0.1 * a["energy_uj"]["mean"], color="tab:red", lw=1, ls="--", label="10% of the ANN's energy")
    if direct is not None:  # Dice 0: drawn on the bottom edge, not at 0, so the rest stays readable
        low, high = ax.get_ylim()
        ax.scatter([direct["val_energy_uj"]], [low], marker="v", color="black", clip_on=False, zorder=5,
                   label=f"direct training, T=4: Dice {direct['val_mean_dice']:.3f} (off the scale)")  # fmt: skip
        ax.annotate("direct: Dice 0, below", (direct["val_energy_uj"], low), textcoords="offset points",
                    xytext=(6, 4), fontsize=7)  # fmt: skip
        ax.set_ylim(low, high)
    windows = sorted({w for s, _ in runs for w in s.get("window", [])})
    ax.set_xlabel(f"energy per volume (uJ, 45 nm estimate; {', '.join(windows)} windows)")
    ax.set_ylabel("validation mean Dice (42 cases)")
    ax.set_title("Dice vs energy per volume, ANN and SNNs on the same windows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nPlot: {path}")


def main(root: Path, plot_path: Path | None = None, levers: list[Path] = (), direct: Path | None = None) -> None:
    print("| run | model | max T | rule | mean T | anterior | posterior | mean Dice | HD95 ant / post (mm) "
          "| firing rate | energy (uJ/volume) | SNN/ANN |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = load(root)
    for s, name in sorted(runs, key=lambda r: (r[0]["model"] != "ann", r[0].get("energy_uj", {}).get("mean") or 0)):
        print(row(s, name))
    windows = sorted({w for s, _ in runs for w in s.get("window", [])})
    print(f"\nInput: the {', '.join(windows)} sliding windows batch inference runs; energy by the 45 nm estimate.")
    lever = [r for folder in levers for r in lever_runs(folder)]
    if lever:
        lever_table(lever)
    best_direct = best_epoch(direct) if direct else None
    if best_direct:
        print(f"\nDirect training ({direct}): best epoch {best_direct['epoch']}, mean Dice "
              f"{best_direct['val_mean_dice']:.4f}, {best_direct['val_energy_uj']:.0f} uJ/volume")  # fmt: skip
    if plot_path is not None:
        plot(runs, plot_path, lever, best_direct)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path("runs/issue13"))
    parser.add_argument("--plot", type=Path, default=None, help="also write a Dice-vs-energy PNG here")
    parser.add_argument("--levers", type=Path, nargs="*", default=[], help="folders of lever_results.sh runs")
    parser.add_argument("--direct", type=Path, default=None, help="a direct-training log (train_snn_direct)")
    args = parser.parse_args()
    main(args.root, args.plot, args.levers, args.direct)
