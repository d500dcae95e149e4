"""Markdown table of `hippo-snn evaluate` runs (every ``*/summary.json`` under a folder): Dice, HD95, mean T,
firing rate and energy per volume, the ANN counted on the same windows.

    python scripts/frontier_table.py runs/issue13
"""

import json
import sys
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


def main(root: Path) -> None:
    print("| run | model | max T | rule | mean T | anterior | posterior | mean Dice | HD95 ant / post (mm) "
          "| firing rate | energy (uJ/volume) | SNN/ANN |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [(json.loads((p / "summary.json").read_text()), p.name) for p in root.iterdir() if (p / "summary.json").is_file()]
    for s, name in sorted(runs, key=lambda r: (r[0]["model"] != "ann", r[0].get("energy_uj", {}).get("mean") or 0)):
        print(row(s, name))
    windows = sorted({w for s, _ in runs for w in s.get("window", [])})
    print(f"\nInput: the {', '.join(windows)} sliding windows batch inference runs; energy by the 45 nm estimate.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/issue13"))
