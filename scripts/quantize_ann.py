"""Make the INT8 ANN (``models/model_ann_int8.pt``) from the FP32 ANN by post-training quantisation.

Calibration windows are the training split's (``split_seed`` 0, validation fraction 0.2: the validation cases the
Dice is reported on are never seen), pre-processed with the ANN's own input contract and tiled exactly as
inference tiles them (:class:`bundle.inference.inferers.FittedWindowInferer`). Re-run it whenever
``models/model_ann.pt`` changes (the INT8 file records the SHA-256 of the ANN it was made from).

    .venv/bin/python scripts/quantize_ann.py [--dataset_dir ../shared/data/Task04_Hippocampus] [--cases 24]
    .venv/bin/python scripts/quantize_ann.py --weight-bits 4     # 4-bit weights: runs/model_ann_int8_w4.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bundle.data.datalist import find_pairs, split_datalist
from bundle.inference.records import file_sha256
from bundle.inference.settings import InferenceSettings
from bundle.inference.volume import metatensor
from bundle.networks.quantized import quantize, save_int8


def calibration_windows(dataset_dir: Path, cases: int, settings: InferenceSettings, info: dict) -> list[torch.Tensor]:
    """The inference windows of the first ``cases`` training-split cases, pre-processed as the ANN's input."""
    import nibabel as nib

    train, _ = split_datalist(find_pairs(dataset_dir), 0.2, 0)
    network = torch.nn.Identity()
    segmenter = settings.segmenter(network, info, "cpu")  # the inference pre-processing, for this model
    inferer = settings.inferer()
    windows: list[torch.Tensor] = []

    def collect(x: torch.Tensor) -> torch.Tensor:
        windows.extend(w[None].clone() for w in x)
        return torch.zeros(x.shape[0], 3, *x.shape[2:])

    for pair in train[:cases]:
        data = segmenter.pre({"image": metatensor(nib.load(pair["image"]), pair["image"])})
        inferer(data["image"].unsqueeze(0).as_tensor(), collect)
    return windows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", type=Path, default=ROOT.parent / "shared" / "data" / "Task04_Hippocampus")
    p.add_argument("--ann", type=Path, default=ROOT / "models" / "model_ann.pt")
    p.add_argument("--out", type=Path, default=None, help="default models/model_ann_int8.pt (8-bit weights)")
    p.add_argument("--weight-bits", type=int, default=8, help="8 (default) or fewer: weights only, activations 8 bits")
    p.add_argument("--cases", type=int, default=24, help="training cases whose windows calibrate (default 24)")
    args = p.parse_args()
    if args.out is None:
        suffix = "" if args.weight_bits == 8 else f"_w{args.weight_bits}"
        args.out = ROOT / ("models" if not suffix else "runs") / f"model_ann_int8{suffix}.pt"

    settings = InferenceSettings.from_config(model="ann", ckpt=str(args.ann), device="cpu")
    ann, info = settings.load()
    windows = calibration_windows(args.dataset_dir, args.cases, settings, info)
    start = time.perf_counter()
    model = quantize(ann, windows, weight_bits=args.weight_bits)
    record = {"standardization": info["standardization"]}
    save_int8(model, args.out, ann, record, source=args.ann.name, source_sha256=file_sha256(args.ann),
              calibration=f"{len(windows)} windows of {args.cases} training cases (split_seed 0), "
              f"{args.dataset_dir.name}")  # fmt: skip
    print(f"{args.out}: INT8 ANN ({args.weight_bits}-bit weights) from {args.ann.name}, calibrated on {len(windows)} windows in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
