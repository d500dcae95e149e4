"""Mirroring at inference (issue 32's lever list; the ``mirror`` setting, :mod:`bundle.networks.mirroring`): each
window also segmented flipped left-right, the two softmaxes averaged, as nnU-Net does. Scores every model on the
validation split with and without it, by the bundle's own evaluation. A mirrored run costs twice the network's
compute (its energy account counts both passes), so each SNN is also scored unmirrored at twice its T: the same
compute spent on time steps instead.

    .venv/bin/python studies/mirroring.py --models ann,snn,snn_t2 --out docs/mirroring.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studies import dataset_dir  # noqa: E402


def score(model: str, mirrored: bool, work: Path, twice_t: bool = False) -> dict:
    """Validation Dice and energy of ``model`` (mirrored, or at twice its own T: the same compute, unmirrored)."""
    from bundle.inference.evaluate import evaluate_folder
    from bundle.inference.settings import InferenceSettings

    settings = InferenceSettings.from_config(model=model, device="cpu", mirror=mirrored)
    network, info = settings.load()
    if twice_t:
        settings = settings.replace(timesteps=2 * int(info["timesteps"]))
        network, info = settings.load()
    out = work / f"{model}_{'mirrored' if mirrored else 'plain'}{'_2T' if twice_t else ''}"
    summary = evaluate_folder(dataset_dir(), out, network, settings.inferer(), info, split="val", overlays=0,
                              progress=False, localize="off")  # fmt: skip
    keep = ("mean_dice", "cases_ok", "energy_uj", "energy_sram_uj", "energy_dram_uj")
    found = {k: summary.get(k) for k in keep} | {k: v for k, v in summary.items() if k.startswith("dice_")}
    return found | {"timesteps": info.get("timesteps")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="ann,snn,snn_t2")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    command = "python studies/mirroring.py " + " ".join(argv or sys.argv[1:])
    result = {"date": date.today().isoformat(), "command": command, "split": "val", "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows = {name: score(model, name == "mirrored", Path(tmp)) for name in ("plain", "mirrored")}
            if rows["plain"]["timesteps"]:  # an SNN: what the mirror's second pass buys if spent on time steps
                rows["plain_twice_T"] = score(model, False, Path(tmp), twice_t=True)
            result["models"][model] = rows
            figures = (f"{k} Dice {v['mean_dice']:.4f}, {v['energy_uj']['mean']:.0f} uJ" for k, v in rows.items())
            print(f"{model}: " + "; ".join(figures))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
