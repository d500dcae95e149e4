"""Training step time, float32 vs bfloat16 autocast, for the ANN and the spiking fine-tuning step
(the latter with the neurons' eager step and their compiled one, ``neuron_kernel``).

Same network, batch and loss as ``configs/train.json`` (ConvertibleUNet 16-32-64-128, batch 4 of
training patches (``PATCH_SIZE[3]``), Dice+CE for the ANN, Dice for fine-tuning with learnable scales), random inputs,
so it needs no data:

    python studies/train_step_benchmark.py [--steps 6] [--timesteps 4] [--device cpu] [--out docs/benchmark/train_step.json]

Prints the median step time (forward, backward, optimizer) of each and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import monai
import torch

from bundle.data.transforms import PATCH_SIZE
from bundle.networks import ConvertibleUNet
from bundle.networks.precision import MixedPrecision
from bundle.spiking.conversion import convert
from bundle.spiking.neurons import set_kernel, set_surrogate
from bundle.spiking.segmenter import SpikingSegmenter
from bundle.training.finetune import learnable_scales, param_groups


def step_times(network, loss_fn, optimizer, x, y, steps: int) -> list[float]:
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(x), y)
        loss.backward()
        optimizer.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--kernels", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(4, 1, *PATCH_SIZE[3], device=device)
    y = torch.randint(0, 3, (4, 1, *PATCH_SIZE[3]), device=device)
    ann = ConvertibleUNet(3, 1, 3, [16, 32, 64, 128]).to(device)
    dice_ce = monai.losses.DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    dice = monai.losses.DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    rows = {}
    for precision in ("float32", "bfloat16"):
        net = MixedPrecision(ann, enabled=precision == "bfloat16")
        opt = torch.optim.AdamW(ann.parameters(), 1e-4)
        rows[f"ann {precision}"] = step_times(net, dice_ce, opt, x, y, args.steps)
    ann.eval()
    snn = convert(ann, [x[i : i + 1] for i in range(4)], neuron="ternary", device=device)
    segmenter = SpikingSegmenter(set_surrogate(learnable_scales(snn), "atan", 2.0), timesteps=args.timesteps).to(device)
    segmenter.train()
    start = {k: v.clone() for k, v in segmenter.state_dict().items()}
    for kernel in args.kernels:
        set_kernel(segmenter, kernel)
        for precision in ("float32", "bfloat16"):
            segmenter.load_state_dict(start)  # every variant steps from the same weights
            net = MixedPrecision(segmenter, enabled=precision == "bfloat16")
            opt = torch.optim.Adam(param_groups(segmenter, 1e-4, 1e-3), 1e-4)
            name = f"snn T={args.timesteps} {precision}" + ("" if kernel == "eager" else f" {kernel}")
            rows[name] = step_times(net, dice, opt, x, y, args.steps)
    report = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "input": f"batch 4 x 1 x {'x'.join(map(str, PATCH_SIZE[3]))}",
        "median_step_s": {k: statistics.median(v) for k, v in rows.items()},
    }
    for name, med in report["median_step_s"].items():
        print(f"{name:22s} median step {med:.3f} s")
    med = report["median_step_s"]
    for stage in ("ann", f"snn T={args.timesteps}"):
        if f"{stage} float32" in med:
            print(f"{stage}: bfloat16 is {med[f'{stage} float32'] / med[f'{stage} bfloat16']:.2f}x float32")
    for precision in ("float32", "bfloat16"):
        eager, fused = (med.get(f"snn T={args.timesteps} {precision}{k}") for k in ("", " compiled"))
        if eager and fused:
            print(f"snn T={args.timesteps} {precision}: the compiled neuron step is {eager / fused:.2f}x the eager one")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
