"""Tables and plots of the stage-3 study written by studies/stage3_results.sh.

Reads ``<study>/*.log`` (per-epoch validation Dice and elapsed time of each training run) and
``<study>/eval/*/summary.json`` (per-class Dice, HD95, firing rate, energy on the validation split);
writes ``<docs>/stage3_study.json``, ``stage3_dice_vs_epoch.png``, ``stage3_dice_vs_T.png`` and prints
the markdown tables for docs/RESULTS.md.

Usage: python studies/plot_stage3.py runs/stage3 docs
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

METRICS = re.compile(r"Epoch\[(\d+)\] Metrics -- .*?val_mean_dice: ([0-9.]+)")
PROGRESS = re.compile(r"\] epoch (\d+)/(\d+) .*?elapsed (\d+):(\d\d):(\d\d)")


def training_curve(log: Path) -> list[dict]:
    """Per validated epoch: mean Dice and wall seconds since the run started."""
    text = log.read_text(errors="replace")
    dice = {int(e): float(d) for e, d in METRICS.findall(text)}
    elapsed = {int(m[0]): int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4]) for m in PROGRESS.findall(text)}
    return [{"epoch": e, "dice": dice[e], "seconds": elapsed.get(e)} for e in sorted(dice)]


def efficiency(curve: list[dict], start: float | None = None) -> dict:
    """Epochs and wall time to reach 95% of the best Dice of the run."""
    if not curve:
        return {}
    best = max(c["dice"] for c in curve)
    # a run that never segments anything (best Dice ~0) has no meaningful "95% of best"
    first = next(c for c in curve if c["dice"] >= 0.95 * best) if best > 0.05 else {"epoch": None, "seconds": None}
    return {
        "start_dice": start,
        "best_dice": best,
        "best_epoch": next(c["epoch"] for c in curve if c["dice"] == best),
        "epochs_to_95": first["epoch"],
        "seconds_to_95": first["seconds"],
        "epochs": curve[-1]["epoch"],
        "seconds": curve[-1]["seconds"],
    }


def main(study: str, docs: str) -> None:
    study_dir, docs_dir = Path(study), Path(docs)
    evals = {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(study_dir.glob("eval/*/summary.json"))}
    curves = {p.stem: training_curve(p) for p in sorted(study_dir.glob("*.log"))}
    curves = {k: v for k, v in curves.items() if v and k.startswith(("ft_", "direct_"))}  # training runs only
    starts = {f"ft_ternary_T{t}": evals.get(f"converted_ternary_T{t}", {}).get("mean_dice") for t in (2, 4, 8)}
    starts["ft_binary_T4"] = evals.get("converted_binary_T4", {}).get("mean_dice")
    starts["ft_ternary_T4_scales"] = starts["ft_ternary_T4"]
    if curves.get("ft_ternary_T4_scales"):  # the second round starts from the first round's best model
        starts["ft_ternary_T4_scales_more"] = max(c["dice"] for c in curves["ft_ternary_T4_scales"])
    result = {
        "evaluations": evals,
        "curves": curves,
        "efficiency": {k: efficiency(v, starts.get(k)) for k, v in curves.items()},
    }
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "stage3_study.json").write_text(json.dumps(result, indent=1) + "\n")

    print("| model | T | anterior | posterior | mean Dice | HD95 ant / post (mm) | firing rate | energy (uJ/volume) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def num(summary: dict, key: str, digits: int) -> str:
        value = summary[key].get("mean") if isinstance(summary.get(key), dict) else summary.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    for name, s in evals.items():
        hd = f"{num(s, 'hd95_anterior_mm', 2)} / {num(s, 'hd95_posterior_mm', 2)}"
        print(
            f"| {name} | {s.get('timesteps') or '-'} | {num(s, 'dice_anterior', 3)} | {num(s, 'dice_posterior', 3)} "
            f"| {num(s, 'mean_dice', 3)} | {hd} | {num(s, 'mean_firing_rate', 3)} | {num(s, 'energy_uj', 0)} |"
        )
    print()
    print(
        "| run | start Dice | best Dice (epoch) | epochs to 95% of best | wall time to 95% | epochs, total wall time |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, e in result["efficiency"].items():
        start = "-" if e.get("start_dice") is None else f"{e['start_dice']:.3f}"
        to95 = "-" if e["seconds_to_95"] is None else f"{e['seconds_to_95'] / 60:.1f} min"
        print(
            f"| {name} | {start} | {e['best_dice']:.3f} ({e['best_epoch']}) | {e['epochs_to_95'] or 'never'} "
            f"| {to95} | {e['epochs']}, {(e['seconds'] or 0) / 60:.1f} min |"
        )

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, curve in curves.items():
        style = "--" if name.startswith("direct") else "-"
        start = starts.get(name)
        xs = ([0] if start is not None else []) + [c["epoch"] for c in curve]
        ys = ([start] if start is not None else []) + [c["dice"] for c in curve]
        ax.plot(xs, ys, style, marker="o", label=name)
    if "ann" in evals:
        ax.axhline(evals["ann"]["mean_dice"], color="k", lw=0.8, label="ANN")
    ax.set(xlabel="training epoch (0: converted, before fine-tuning)", ylabel="validation mean Dice", ylim=(0, 1))
    ax.legend(fontsize=7)
    ax.set_title("Spiking fine-tuning vs direct training (Task04 validation)", fontsize=9)
    fig.tight_layout()
    fig.savefig(docs_dir / "stage3_dice_vs_epoch.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for prefix, label in [
        ("converted_ternary_T", "converted"),
        ("ft_ternary_T", "fine-tuned"),
        ("direct_ternary_T", "direct"),
    ]:
        pts = sorted(
            (int(k[len(prefix) :]), v["mean_dice"]) for k, v in evals.items() if re.fullmatch(prefix + r"\d+", k)
        )
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{label} (ternary)")
    for name, marker in [("converted_binary_T4", "s"), ("ft_binary_T4", "D"), ("ft_ternary_T4_scales_more", "*")]:
        if name in evals:
            label = "fine-tuned, learnable scales (shipped)" if name.endswith("more") else name.replace("_T4", "")
            ax.plot(
                [4],
                [evals[name]["mean_dice"]],
                marker,
                markersize=10 if marker == "*" else 6,
                label=label.replace("_", " "),
            )
    if "ann" in evals:
        ax.axhline(evals["ann"]["mean_dice"], color="k", lw=0.8, label="ANN")
    ax.set(xlabel="timesteps T", ylabel="validation mean Dice", xscale="log", ylim=(0, 1))
    ax.set_xticks([2, 4, 8], ["2", "4", "8"])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(docs_dir / "stage3_dice_vs_T.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(*sys.argv[1:3])
