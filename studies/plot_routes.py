"""Validation Dice against training wall time for the two routes to a spiking U-Net, on one figure: the
paper's three stages (ANN, conversion, spiking fine-tuning) and direct spiking training from random weights.

    python studies/plot_routes.py --route runs/repro --direct runs/direct/main --out docs/routes_dice_vs_wall_time.png

Times are the per-epoch ``seconds`` of each run's ``history/*.csv`` (training and validation, as the
2-core CPU spent them), summed; conversion, which writes no history, counts the time between the ANN's and
the conversion's ``resume/<stage>/done.json`` records (``--conversion_s`` where they are missing). The
ANN's points are the ANN's own Dice (dashed): the route has no SNN before the conversion. The points of
both curves go to a JSON file beside the PNG, so the figure outlives the runs' folders.
"""

import argparse
import json
from datetime import datetime
from pathlib import Path

from bundle.training.progress import read_history


def curve(history: Path, start_s: float = 0.0, every: int = 1) -> list[tuple[float, float]]:
    """(minutes since the route's start, validation Dice) at each validated epoch."""
    points, t = [], start_s
    for row in read_history(history):
        t += row["seconds"]
        if row["epoch"] % every == 0 and row["val_metric"] is not None:
            points.append((t / 60.0, row["val_metric"]))
    return points


def conversion_seconds(route: Path, default: float) -> float:
    """Seconds between the end of stage 1 and the end of the conversion, from the stages' records."""
    try:
        ends = [json.loads((route / "resume" / s / "done.json").read_text(encoding="utf-8"))["finished"] for s in ("ann", "convert")]
    except (OSError, KeyError, ValueError):
        return default
    ann_end, convert_end = (datetime.strptime(e, "%Y-%m-%d %H:%M:%S") for e in ends)
    return (convert_end - ann_end).total_seconds()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--route", required=True, help="output_dir of a three-stage `training` run")
    p.add_argument("--direct", required=True, help="output_dir of a `train_snn_direct` run")
    p.add_argument("--conversion_s", type=float, default=155.0, help="used where the stage records are missing")
    p.add_argument("--conversion_dice", type=float, default=None, help="the converted SNN's Dice, if known")
    p.add_argument("--ann_val_interval", type=int, default=5)
    p.add_argument("--out", default="docs/routes_dice_vs_wall_time.png")
    a = p.parse_args()
    route = Path(a.route) / "history"
    conversion_s = conversion_seconds(Path(a.route), a.conversion_s)
    ann = curve(route / "ann.csv", every=a.ann_val_interval)
    ann_end = sum(r["seconds"] for r in read_history(route / "ann.csv"))
    finetune = curve(route / "finetune.csv", start_s=ann_end + conversion_s)
    direct = curve(Path(a.direct) / "history" / "direct.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(*zip(*ann), "o--", color="tab:gray", ms=3, label="stage 1: ANN (its own Dice)")
    if a.conversion_dice is not None:
        ax.plot([(ann_end + conversion_s) / 60.0], [a.conversion_dice], "s", color="tab:purple", label="stage 2: converted SNN, T=16")
    ax.plot(*zip(*finetune), "o-", color="tab:blue", ms=4, label="stage 3: fine-tuned SNN, T=4")
    ax.plot(*zip(*direct), "o-", color="tab:red", ms=4, label="direct SNN training, T=4")
    for name, pts in (("three stages", finetune), ("direct", direct)):
        best = max(pts, key=lambda q: q[1])
        ax.annotate(f"{name}: best {best[1]:.3f}", best, textcoords="offset points", xytext=(-60, 8), fontsize=8)
    ax.set(xlabel="training wall time on the 2-core CPU (min)", ylabel="validation mean Dice (42 cases)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Two routes to a spiking U-Net, same data, same CPU")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    record = {"route": a.route, "direct": a.direct, "ann_s": ann_end, "conversion_s": conversion_s,
              "conversion_dice": a.conversion_dice, "minutes_dice": {"ann": ann, "finetune": finetune, "direct": direct}}
    Path(a.out).with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"three stages: best {max(d for _, d in finetune):.4f} after {finetune[-1][0]:.1f} min; "
          f"direct: best {max(d for _, d in direct):.4f} after {direct[-1][0]:.1f} min; wrote {a.out}")


if __name__ == "__main__":
    main()
