"""One plot of SNN/ANN time per volume divided by T, for every benchmark JSON given (before/after...).

    python studies/plot_benchmark.py docs/benchmark/cpu_before.json docs/benchmark/cpu_eager.json \
        docs/benchmark/cpu.json --out docs/benchmark/ratio_per_T.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def label(info: dict, path: Path) -> str:
    parts = [path.stem, f"kernel {info.get('kernel', 'eager')}"]
    parts += ["amp"] * bool(info.get("amp")) + ["activity"] * bool(info.get("activity"))
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for path in args.results:
        result = json.loads(path.read_text(encoding="utf-8"))
        rows = [r for r in result["inference"] if r["model"] == "snn"]
        ax.plot([r["T"] for r in rows], [r["ratio_per_T"] for r in rows], "o-", label=label(result["info"], path))
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="dense floor: one ANN pass per timestep")
    ax.axhline(1.3, color="tab:red", ls=":", lw=1, label="target at T=4: 1.3")
    ax.set(xscale="log", xlabel="timesteps T", ylabel="(SNN time / ANN time) / T", ylim=(0.9, 2.0))
    ax.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
    ax.set_title("SNN cost per timestep relative to the ANN, per volume")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
