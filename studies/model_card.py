"""Numbers written once: every shipped model scored by ``hippo-snn evaluate`` into ``docs/results.json``, and the
README's and the model card's tables (between ``<!-- results:begin -->`` and ``<!-- results:end -->``) and
``configs/metadata.json``'s ``eval_metrics`` rendered from that file, so no figure is typed by hand and none can
drift (``tests/test_docs.py`` checks it).

    .venv/bin/python studies/model_card.py            # evaluate (Task04 validation split), write JSON, render
    .venv/bin/python studies/model_card.py --render   # only re-render the tables from docs/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studies import ROOT, dataset_dir, render_block

RESULTS = ROOT / "docs" / "results.json"
PAGES = (ROOT / "README.md", ROOT / "docs" / "README.md", ROOT / "docs" / "RESULTS.md")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
METADATA = ROOT / "configs" / "metadata.json"  # its eval_metrics come from the same results
# (row label, model, timesteps or None for the model's own)
ROWS = (
    ("ann", "ann", None),
    ("snn_converted", "snn_converted", None),
    ("snn_converted", "snn_converted", 4),
    ("snn", "snn", None),
    ("snn_t2", "snn_t2", None),
)


def evaluate(out_root: Path) -> dict:
    """Score every row's model on the validation split with the bundle's own evaluation."""
    from bundle.inference.evaluate import evaluate_folder
    from bundle.inference.settings import InferenceSettings

    models = []
    for _, model, timesteps in ROWS:
        settings = InferenceSettings.from_config(model=model, timesteps=timesteps, device="cpu")
        network, info = settings.load()
        out = out_root / f"{model}_T{info['timesteps']}"
        summary = evaluate_folder(
            dataset_dir(), out, network, settings.inferer(), info, "val", overlays=0, overwrite=True, progress=False,
            device="cpu", amp=settings.amp, localize=settings.localize,
        )  # fmt: skip

        def mean(key: str, summary: dict = summary):
            value = summary.get(key)
            return round(value["mean"], 4) if isinstance(value, dict) and value.get("mean") is not None else None

        models.append(
            {
                "model": model,
                "timesteps": info["timesteps"],
                "standardization": info["standardization"],
                "cases": summary["cases_ok"],
                "mean_dice": round(summary["mean_dice"], 4),
                **{k: mean(k) for k in ("dice_anterior", "dice_posterior", "hd95_anterior_mm", "hd95_posterior_mm")},
                "energy_uj": mean("energy_uj"),
                "ann_energy_uj": mean("ann_energy_uj"),
                "energy_vs_ann": mean("energy_vs_ann"),
            }
        )
        print(json.dumps(models[-1]), flush=True)
    return {
        "date": date.today().isoformat(),
        "command": "studies/model_card.py",
        "data": "Task04 validation split (42 cases, split_seed 0), one window fitted to each case",
        "models": models,
    }


def table(results: dict) -> str:
    """The Markdown table of ``results`` (docs/results.json)."""
    lines = [
        "| model | T | anterior | posterior | mean Dice | HD95 ant / post (mm) | energy per volume (vs the ANN) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in results["models"]:
        energy = "" if m["energy_uj"] is None else f"{m['energy_uj'] / 1000:.1f} mJ"
        if m["model"] != "ann" and m["energy_vs_ann"] is not None:
            energy += f" ({m['energy_vs_ann']:.3f})"
        hd = f"{m['hd95_anterior_mm']:.2f} / {m['hd95_posterior_mm']:.2f}"
        lines.append(
            f"| `{m['model']}`{' (default)' if m['model'] == 'snn' else ''} | {m['timesteps'] or '-'} | {m['dice_anterior']:.3f} | {m['dice_posterior']:.3f} | "
            f"{m['mean_dice']:.4f} | {hd} | {energy} |"
        )
    lines.append("")
    lines.append(
        f"{results['data']}; `{results['command']}`, {results['date']} (`docs/results.json`). Energy: the 45 nm "
        "compute-only estimate (MAC 4.6 pJ, accumulate 0.9 pJ), memory traffic not counted."
    )
    return "\n".join(lines)


def render(results: dict, page: Path) -> str:
    """``page``'s text with the table between the markers replaced."""
    return render_block(page, BEGIN, END, f"\n{table(results)}\n")


def eval_metrics(results: dict) -> dict:
    """``configs/metadata.json``'s ``eval_metrics``, from the same results: the default model's as MONAI's usual
    ``val_mean_dice``..., then every row's under ``<model>[_T<T>]_val_...``."""
    out = {}
    default = next(m for m in results["models"] if m["model"] == "snn")
    for m in [default, *results["models"]]:
        prefix = "" if m is default else f"{m['model']}_" + (f"T{m['timesteps']}_" if m["timesteps"] else "")
        out |= {
            f"{prefix}val_mean_dice": m["mean_dice"], f"{prefix}val_dice_anterior": m["dice_anterior"],
            f"{prefix}val_dice_posterior": m["dice_posterior"], f"{prefix}val_hd95_mm_anterior": m["hd95_anterior_mm"],
            f"{prefix}val_hd95_mm_posterior": m["hd95_posterior_mm"],
            f"{prefix}energy_uj_per_volume": round(m["energy_uj"]), f"{prefix}energy_vs_ann": m["energy_vs_ann"],
        }  # fmt: skip
    return out


def with_eval_metrics(results: dict, metadata: Path = METADATA) -> str:
    """``metadata``'s text with ``eval_metrics`` replaced by :func:`eval_metrics` (MONAI's 4-space layout)."""
    meta = json.loads(metadata.read_text(encoding="utf-8"))
    meta["eval_metrics"] = eval_metrics(results)
    return json.dumps(meta, indent=4) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="only re-render the pages from docs/results.json")
    parser.add_argument("--work", default=str(ROOT / "runs" / "model_card"))
    args = parser.parse_args()
    if not args.render:
        RESULTS.write_text(json.dumps(evaluate(Path(args.work)), indent=1) + "\n")
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    for page in PAGES:
        page.write_text(render(results, page), encoding="utf-8")
        print(f"rendered {page}")
    METADATA.write_text(with_eval_metrics(results), encoding="utf-8")
    print(f"rendered {METADATA}'s eval_metrics")


if __name__ == "__main__":
    main()
