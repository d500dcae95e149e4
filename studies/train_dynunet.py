"""MONAI's DynUNet (nnU-Net's 3D design: instance norm, leaky ReLU) trained exactly as the bundle's ANN.

Stage 1's reference point (issue: "a stronger convertible ANN"): the same split, patches, augmentation,
loss, optimiser, schedule, epochs, validation and checkpointing as ``configs/train.json``'s ``train_ann``
run -- the bundle's own config with only ``network_def`` swapped -- so the two Dice figures compare the
networks, not the recipes. DynUNet is not convertible (instance norm, leaky ReLU): it is a yardstick.

    python studies/train_dynunet.py --dataset_dir ../shared/data/Task04_Hippocampus --output_dir runs/dynunet \
        [--epochs 60] [--filters 32 64 128 256] [--amp true] [--resume true]

Resumable like the bundle (``--resume true`` continues from ``<output_dir>/resume/ann/last.pt``); the best
checkpoint is ``<output_dir>/models/model_dynunet.pt``, the per-epoch history ``<output_dir>/history/ann.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dynunet(filters: list[int]) -> dict:
    depth = len(filters)
    return {
        "_target_": "DynUNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": "@num_classes",
        "kernel_size": [[3, 3, 3]] * depth,
        "strides": [[1, 1, 1]] + [[2, 2, 2]] * (depth - 1),
        "upsample_kernel_size": [[2, 2, 2]] * (depth - 1),
        "filters": filters,
        "norm_name": "instance",
        "deep_supervision": False,
        "res_block": True,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default=str(REPO / "runs" / "dynunet"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--filters", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--amp", default="true")
    parser.add_argument("--resume", default="false")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from monai.bundle import ConfigWorkflow

    out = Path(args.output_dir)
    workflow = ConfigWorkflow(
        config_file=str(REPO / "configs" / "train.json"),
        logging_file=str(REPO / "configs" / "logging.conf"),
        workflow_type="train",
        run_id="train_ann",
        bundle_root=str(REPO),
        dataset_dir=args.dataset_dir,
        output_dir=str(out),
        ckpt_dir=str(out / "models"),
        ann_ckpt=str(out / "models" / "model_dynunet.pt"),
        epochs=args.epochs,
        amp=args.amp.lower() == "true",
        resume=args.resume.lower() == "true",
    )
    workflow.parser["network_def"] = dynunet(args.filters)
    workflow.parser["context#network_factory"] = {**dynunet(args.filters), "_mode_": "callable"}
    # validation windows fitted to DynUNet's own divisor (train.json derives it from `channels`, ours)
    workflow.parser["context#divisor"] = 2 ** (len(args.filters) - 1)
    start = time.perf_counter()
    workflow.initialize()
    workflow.run()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    result = {
        "network": f"DynUNet filters {args.filters}, instance norm, residual blocks",
        "epochs": args.epochs,
        "amp": args.amp,
        "best_val_mean_dice": evaluator.state.best_metric,
        "best_epoch": evaluator.state.best_metric_epoch,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    (out / "dynunet_result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    workflow.finalize()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
