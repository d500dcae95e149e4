"""Which validation cases move between a fine-tuning run's best and last epoch, and how (Dice, volume).

Stage 3's validation Dice swings by up to 0.04 from one epoch to the next while its training loss falls
smoothly (docs/RESULTS.md, "One command, every model"). This scores the run's best checkpoint
(``models/model_snn_finetuned.pt``) and its last epoch (``resume/<stage>/last.pt``) case by case with
``hippo-snn evaluate`` and prints, per class, the mean Dice, the predicted/true volume ratio and the cases
that moved most. Evaluations already in OUT are reused.

    PYTHONPATH=. python studies/compare_epochs.py runs/repro_ft_seed2 ../shared/data/Task04_Hippocampus \
        --timesteps 4 --out runs/compare_seed2 --ann runs/repro/models/model_ann.pt
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from bundle.cli import main as hippo_snn
from bundle.spiking import checkpoint

CLASSES = ("anterior", "posterior")


def last_epoch_checkpoint(run: Path, stage: str, best: Path, out: Path) -> Path:
    """The last epoch's weights (from the resume checkpoint) as a bundle SNN checkpoint with the best's settings."""
    state = torch.load(run / "resume" / stage / "last.pt", map_location="cpu", weights_only=False)
    weights = {k.removeprefix("snn."): v for k, v in state["model"].items()}  # the trainer holds the wrapped net
    settings = checkpoint.read(best)["settings"]
    if set(weights) != set(checkpoint.read(best)["state_dict"]):
        raise SystemExit(f"{run}: the resume checkpoint's weights do not match {best}")
    return checkpoint.write(weights, out / "last.pt", settings)


def scores(ckpt: Path, dataset: str, timesteps: int, out: Path, model: str = "snn") -> dict[str, dict]:
    if not (out / "metrics.csv").is_file():
        args = ["evaluate", dataset, str(out), "--split", "val", "--model", model, "--ckpt", str(ckpt), "--quiet"]
        if hippo_snn(args + (["--timesteps", str(timesteps)] if model == "snn" else [])) not in (0, None):
            raise SystemExit(f"{ckpt}: evaluation failed")
    return {r["case"]: r for r in csv.DictReader((out / "metrics.csv").open()) if r["status"] == "ok"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="a finetune_snn output_dir")
    p.add_argument("dataset_dir")
    p.add_argument("--timesteps", type=int, default=4)
    p.add_argument("--stage", default="finetune", help="the run's resume/<stage> folder (refine: 'refine')")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--top", type=int, default=8, help="how many of the largest movers to list")
    p.add_argument("--ann", type=Path, help="also score this ANN checkpoint, for reference (e.g. the run's parent)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    best_ckpt = a.run / "models" / "model_snn_finetuned.pt"
    last_ckpt = last_epoch_checkpoint(a.run, a.stage, best_ckpt, a.out)
    best = scores(best_ckpt, a.dataset_dir, a.timesteps, a.out / "best")
    last = scores(last_ckpt, a.dataset_dir, a.timesteps, a.out / "last")
    ann = scores(a.ann, a.dataset_dir, a.timesteps, a.out / "ann", model="ann") if a.ann else None
    cases = sorted(best.keys() & last.keys())
    summary: dict = {"run": str(a.run), "timesteps": a.timesteps, "cases": len(cases), "classes": {}}
    for c in CLASSES:
        def dice(rows, k):
            return float(rows[k][f"dice_{c}"])

        def ratio(rows, k):
            return float(rows[k][f"{c}_mm3_pred"]) / max(float(rows[k][f"{c}_mm3_true"]), 1e-6)

        moves = sorted(cases, key=lambda k: dice(last, k) - dice(best, k))
        mean = lambda f, rows: sum(f(rows, k) for k in cases) / len(cases)  # noqa: E731
        summary["classes"][c] = {
            "dice_best": round(mean(dice, best), 4), "dice_last": round(mean(dice, last), 4),
            "volume_ratio_best": round(mean(ratio, best), 3), "volume_ratio_last": round(mean(ratio, last), 3),
            "cases_down_0.05": sum(dice(last, k) - dice(best, k) < -0.05 for k in cases),
            "cases_up_0.05": sum(dice(last, k) - dice(best, k) > 0.05 for k in cases),
            "largest_drops": [
                {"case": k, "dice": [dice(best, k), dice(last, k)],
                 "volume_ratio": [round(ratio(best, k), 2), round(ratio(last, k), 2)]}
                for k in moves[: a.top]
            ],
        }  # fmt: skip
        s = summary["classes"][c]
        if ann:
            s.update(dice_ann=round(mean(dice, ann), 4), volume_ratio_ann=round(mean(ratio, ann), 3))
            print(f"{c}, the ANN {a.ann}: Dice {s['dice_ann']}, predicted/true volume {s['volume_ratio_ann']}")
        print(
            f"{c}: Dice {s['dice_best']} (best epoch) -> {s['dice_last']} (last); predicted/true volume "
            f"{s['volume_ratio_best']} -> {s['volume_ratio_last']}; {s['cases_down_0.05']} case(s) down > 0.05, "
            f"{s['cases_up_0.05']} up > 0.05"
        )
        for m in s["largest_drops"]:
            (d0, d1), (v0, v1) = m["dice"], m["volume_ratio"]
            print(f"  {m['case']}: Dice {d0:.3f} -> {d1:.3f}, volume ratio {v0} -> {v1}")
    (a.out / "compare.json").write_text(json.dumps(summary, indent=1))
    print(f"written {a.out / 'compare.json'}")


if __name__ == "__main__":
    main()
