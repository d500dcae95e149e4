"""Plot a run's training loss and validation Dice (per class) from its TensorBoard logs to a PNG.

Usage: python studies/plot_training.py runs/task04/tensorboard/ann docs/ann_training.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def main(log_dir: str, out_png: str) -> None:
    scalars = read_scalars(log_dir)
    if not scalars:
        raise SystemExit(f"error: {log_dir}: no TensorBoard scalars found")
    loss_tags = [t for t in scalars if "loss" in t]
    fig, axes = plt.subplots(1, 2 if loss_tags else 1, figsize=(10 if loss_tags else 5.5, 4), squeeze=False)
    if loss_tags:
        for tag in loss_tags:
            axes[0, 0].plot(*zip(*sorted(scalars[tag])), label=tag)
        axes[0, 0].set(xlabel="iteration", ylabel="loss", title="training loss")
    ax_dice = axes[0, -1]
    for tag in [t for t in scalars if "dice" in t]:
        ax_dice.plot(*zip(*sorted(scalars[tag])), marker="o", ms=3, label=tag)
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
