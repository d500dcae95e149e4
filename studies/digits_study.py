"""Binary vs ternary spikes on image classification: scikit-learn's 8x8 digits with a small CNN.

Trains the ANN (fixed seed, 80/20 stratified split), converts it with each neuron type and reports test
accuracy vs T, with the same conversion settings as the segmentation study. Writes
``<out>/digits_study.json`` and ``<out>/digits_accuracy_vs_T.png``.

Usage: python studies/digits_study.py --out docs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bundle.networks.classifier import ConvertibleCNN
from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.segmenter import SpikingSegmenter

VARIANTS = {  # name: (neuron, v_init)
    "binary": ("binary", 0.0),
    "binary half-threshold": ("binary", 0.5),
    "ternary": ("ternary", 0.0),
    "ternary half-threshold": ("ternary", 0.5),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="99.9%")
    ap.add_argument("--steps", default="1,2,4,8,16,32,64")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    steps = [int(s) for s in args.steps.split(",")]

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=0.2, random_state=args.seed, stratify=y)
    xtr, ytr, xte, yte = x[idx_train], y[idx_train], x[idx_test], y[idx_test]

    ann = ConvertibleCNN()
    opt = torch.optim.Adam(ann.parameters(), 3e-3)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        ann.train()
        for b in torch.randperm(len(ytr)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ann(xtr[b]), ytr[b]).backward()
            opt.step()
    ann.eval()
    with torch.no_grad():
        ann_acc = float((ann(xte).argmax(1) == yte).float().mean())
    result = {
        "command": "python studies/digits_study.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "date": time.strftime("%Y-%m-%d"),
        "train_images": len(ytr),
        "test_images": len(yte),
        "ann_accuracy": ann_acc,
        "ann_train_seconds": time.perf_counter() - t0,
        "steps": steps,
        "variants": {},
    }
    print(f"ANN test accuracy {ann_acc:.4f}")
    for name, (neuron, v_init) in VARIANTS.items():
        snn = convert(ann, one_at_a_time([xtr[:256]]), mode=args.mode, neuron=neuron, v_init=v_init)
        with torch.no_grad():
            scores = SpikingSegmenter(snn, max(steps)).scores_at(xte, steps)
        acc = {t: float((scores[t].argmax(1) == yte).float().mean()) for t in steps}
        result["variants"][name] = acc
        print(name, {t: round(a, 4) for t, a in acc.items()})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "digits_study.json").write_text(json.dumps(result, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, acc) in enumerate(result["variants"].items()):
        ax.plot(steps, [acc[t] for t in steps], "o-" if "ternary" in name else "s--", color=f"C{i}", label=name)
    ax.axhline(ann_acc, color="k", ls="--", label=f"ANN ({ann_acc:.3f})")
    ax.set(
        xscale="log",
        xlabel="timesteps T",
        ylabel="test accuracy",
        ylim=(0, 1.02),
        title="Digits (8x8): converted CNN, binary vs ternary spikes",
    )
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "digits_accuracy_vs_T.png", dpi=120)
    print(f"wrote {out / 'digits_study.json'} and {out / 'digits_accuracy_vs_T.png'}")


if __name__ == "__main__":
    main()
