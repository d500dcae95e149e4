"""Validation mean Dice per epoch of several runs' stage, side by side, from their ``history/<stage>.csv``.

    python studies/plot_val_curves.py runs/onecmd_fit:live runs/onecmd_ema:"weight average" \
        --stage ann --val_interval 5 --out docs/ann_weight_average.png

Each argument is ``RUN_DIR[:LABEL]``. The history files carry the last validation forward between
validations, so only epochs that are multiples of ``--val_interval`` are plotted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bundle.training.progress import read_history


def read_curve(run: Path, stage: str, val_interval: int) -> list[tuple[int, float]]:
    try:
        rows = read_history(run / "history" / f"{stage}.csv")
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    validated = [r for r in rows if r["val_metric"] is not None and r["epoch"] % val_interval == 0]
    return [(r["epoch"], r["val_metric"]) for r in validated]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="RUN_DIR[:LABEL]")
    parser.add_argument("--stage", default="ann", help="history file name: ann, finetune, refine")
    parser.add_argument("--val_interval", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for spec in args.runs:
        run, _, label = spec.partition(":")
        curve = read_curve(Path(run), args.stage, args.val_interval)
        if not curve:
            raise SystemExit(f"error: {run}: no validations in history/{args.stage}.csv")
        best_epoch, best = max(curve, key=lambda p: p[1])
        ax.plot(*zip(*curve), marker="o", ms=3, label=f"{label or run} (best {best:.4f}, epoch {best_epoch})")
        print(f"{label or run}: best {best:.4f} at epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="validation mean Dice", title=f"{args.stage}: validation mean Dice")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
