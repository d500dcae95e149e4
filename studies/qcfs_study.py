"""Conversion-aware stage 1: fine-tune the shipped ANN with QCFS activations, convert, compare with ReLU.

For each number of levels L (``--levels``):

1. the QCFS ANN starts from the ReLU checkpoint (:func:`bundle.networks.qcfs.init_from_relu`: same weights,
   each layer's lambda = its ReLU's 99.9th activation percentile on the calibration images), is validated
   (epoch 0), then fine-tuned ``--epochs`` epochs on the training split (random training patches, PATCH_SIZE[3], batch 4,
   Dice+CE, AdamW with cosine decay, bfloat16 autocast), validated after every epoch; the best epoch is kept;
2. the best QCFS ANN is converted (no calibration: thresholds = trained lambdas) and its SNN, with NO
   spiking fine-tuning, is validated at T = L/2, L, 2L (guarded ternary neurons, half-threshold start,
   membrane readout, sliding window 48x64x48 as the bundle's inferer).

The ordinary ReLU ANN is converted as the bundle does (99.9% layer-wise thresholds on 32 training images,
same neurons and readout) and validated at every T of the QCFS runs. All SNN Dice values at several T come
from one run of max(T) steps per case. Mean Dice = mean over the 42 validation cases of the mean of
anterior and posterior Dice (as MONAI's MeanDice without background).

Resumable: every finished piece (each epoch's checkpoint and Dice, each SNN evaluation) is kept under
``--work``; rerunning skips it. Writes ``<out>/qcfs_study.json`` and ``<out>/qcfs_dice_vs_T.png``.

Usage (the numbers in docs/qcfs_study.json, then docs/qcfs_study_lambda_lr.json: thresholds at 10x the
learning rate; the second run reuses the first's ReLU results from --work). One thread (``--threads 1``,
the default) is several times faster than two on a CPU shared with other jobs:
    PYTHONPATH=. python studies/qcfs_study.py --ann models/model_ann.pt \\
        --dataset_dir ../shared/data/Task04_Hippocampus --levels 4,8 --epochs 3
    PYTHONPATH=. python studies/qcfs_study.py --ann models/model_ann.pt \\
        --dataset_dir ../shared/data/Task04_Hippocampus --levels 4,8 --epochs 3 --lambda_lr 0.01 --name qcfs_study_lambda_lr
"""

from __future__ import annotations

import argparse
import sys
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.losses import DiceCELoss
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for `studies`
from studies import dataset_dir  # noqa: E402
from bundle.data.datalist import prepare_datalists
from bundle.data.transforms import PATCH_SIZE, calibration_transforms, train_transforms, val_transforms
from bundle.inference.inferers import make_inferer
from bundle.networks import ConvertibleUNet
from bundle.networks.checkpoint import load_weights
from bundle.networks.precision import MixedPrecision
from bundle.networks.qcfs import init_from_relu, thresholds
from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.segmenter import SpikingSegmenter

log = logging.getLogger("qcfs_study")


def dice(pred: torch.Tensor, label: torch.Tensor, cls: int) -> float:
    p, g = pred == cls, label == cls
    denom = int(p.sum() + g.sum())
    return float("nan") if denom == 0 else 2.0 * int((p & g).sum()) / denom


class _AllSteps(nn.Module):
    """A spiking segmenter's scores after each of ``steps``, concatenated on the channel axis (one run)."""

    def __init__(self, segmenter: SpikingSegmenter, steps: list[int]):
        super().__init__()
        self.segmenter, self.steps = segmenter, steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.segmenter.scores_at(x, self.steps)
        return torch.cat([scores[t] for t in self.steps], dim=1)


@torch.no_grad()
def evaluate(network: nn.Module, cases: list[dict], inferer, groups: int = 1) -> list[list[list[float]]]:
    """Per group of ``num_classes`` output channels: per case [anterior, posterior] Dice."""
    network.eval()
    out = [[] for _ in range(groups)]
    for case in cases:
        image = case["image"][None]
        image = image.as_tensor() if hasattr(image, "as_tensor") else image
        label = case["label"][0]
        scores = inferer(image, network)
        for g, part in enumerate(scores.chunk(groups, dim=1)):
            pred = part.argmax(1)[0]
            out[g].append([dice(pred, label, k) for k in (1, 2)])
    return out


def summary(per_case: list[list[float]]) -> dict:
    arr = np.array(per_case, dtype=float)
    return {
        "mean_dice": float(np.nanmean(arr)),
        "anterior": float(np.nanmean(arr[:, 0])),
        "posterior": float(np.nanmean(arr[:, 1])),
    }


class State:
    """Finished pieces of the study, kept in a JSON file so that a rerun skips them."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.data = {} if fresh or not path.is_file() else json.loads(path.read_text(encoding="utf-8"))

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))


def snn_dice(snn: nn.Module, steps: list[int], cases, inferer, kernel: str = "compiled") -> dict:
    """Dice of a converted SNN (membrane readout, no fine-tuning) after each of ``steps``, from one run."""
    t0 = time.perf_counter()
    seg = SpikingSegmenter(snn, max(steps), readout="membrane", kernel=kernel)
    per_t = evaluate(_AllSteps(seg, steps), cases, inferer, groups=len(steps))
    return {
        "dice": {str(t): summary(d) for t, d in zip(steps, per_t)},
        "per_case_mean": {str(t): [float(np.nanmean(c)) for c in d] for t, d in zip(steps, per_t)},
        "seconds": time.perf_counter() - t0,
    }


def _tag(args) -> str:
    """State keys of a fine-tuning variant (the default one has none, so earlier results stay valid)."""
    return f"_lamlr{args.lambda_lr:g}" if args.lambda_lr else ""


def finetune(
    levels: int, args, ann_path: str, calib, train_loader, cases, inferer, state: State, work: Path
) -> tuple[nn.Module, dict]:
    """Fine-tune the QCFS ANN with ``levels`` levels (resumable per epoch); return the best and its record."""
    key = f"qcfs_L{levels}{_tag(args)}"
    record = state.get(key) or {"epochs": {}}
    channels = [int(c) for c in args.channels.split(",")]
    net = ConvertibleUNet(3, channels=channels, activation="qcfs", levels=levels)
    ckpt = work / f"{key}_last.pt"
    if ckpt.is_file() and record["epochs"]:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["model"])
        start = saved["epoch"]
    else:
        init_from_relu(net, ann_path, one_at_a_time(calib), q=99.9)
        record["init_thresholds"] = thresholds(net)
        d = summary(evaluate(net, cases, inferer)[0])
        record["epochs"] = {"0": d}
        log.info(f"[L={levels}] QCFS ANN before fine-tuning: mean Dice {d['mean_dice']:.4f}")
        torch.save({"model": net.state_dict(), "epoch": 0}, work / f"{key}_best.pt")
        saved, start = None, 0
        state.put(key, record)
    lam = [p for n, p in net.named_parameters() if n.endswith(".threshold")]
    others = [p for n, p in net.named_parameters() if not n.endswith(".threshold")]
    optimizer = torch.optim.AdamW(
        [
            {"params": others, "weight_decay": 1e-5},
            {"params": lam, "weight_decay": 0.0, "lr": args.lambda_lr or args.lr},
        ],
        lr=args.lr,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=False, batch=True)
    model = MixedPrecision(net, enabled=args.amp)
    for epoch in range(start + 1, args.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        losses = []
        for batch in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch["image"].as_tensor()), batch["label"].as_tensor())
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        schedule.step()
        train_s = time.perf_counter() - t0
        d = summary(evaluate(net, cases, inferer)[0])
        d.update(loss=float(np.mean(losses)), train_seconds=train_s, seconds=time.perf_counter() - t0)
        record["epochs"][str(epoch)] = d
        log.info(
            f"[L={levels}] epoch {epoch}/{args.epochs}: loss {d['loss']:.4f}, QCFS ANN mean Dice "
            f"{d['mean_dice']:.4f} ({train_s:.0f} s training, {d['seconds']:.0f} s in all)"
        )
        best = max(record["epochs"].values(), key=lambda r: r["mean_dice"])
        if d is best:
            torch.save({"model": net.state_dict(), "epoch": epoch}, work / f"{key}_best.pt")
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "epoch": epoch,
            },
            ckpt,
        )
        state.put(key, record)
    best_epoch, best = max(record["epochs"].items(), key=lambda kv: kv[1]["mean_dice"])
    net.load_state_dict(torch.load(work / f"{key}_best.pt", map_location="cpu", weights_only=True)["model"])
    record["best_epoch"] = int(best_epoch)
    record["ann"] = best
    record["thresholds"] = thresholds(net)
    state.put(key, record)
    return net.eval(), record


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    relu = result["relu"]["snn"]["dice"]
    ts = sorted(int(t) for t in relu)
    ax.plot(ts, [relu[str(t)]["mean_dice"] for t in ts], "o-", color="k", label="ReLU ANN converted (99.9%)")
    ax.axhline(result["relu"]["ann"]["mean_dice"], color="k", ls=":", lw=1, label="ReLU ANN")
    for i, (levels, rec) in enumerate(sorted(result["qcfs"].items(), key=lambda kv: int(kv[0]))):
        color = f"C{i}"
        d = rec["snn"]["dice"]
        ts = sorted(int(t) for t in d)
        ax.plot(ts, [d[str(t)]["mean_dice"] for t in ts], "s-", color=color, label=f"QCFS L={levels} converted")
        ax.axhline(rec["ann"]["mean_dice"], color=color, ls=":", lw=1, label=f"QCFS L={levels} ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("validation mean Dice (42 cases)")
    ax.set_title("Converted SNN, no spiking fine-tuning (ternary, membrane readout)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ann", default="models/model_ann.pt")
    ap.add_argument("--dataset_dir", default=str(dataset_dir()))
    ap.add_argument("--val_fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", default="16,32,64,128")
    ap.add_argument("--patch", default=",".join(map(str, PATCH_SIZE[3])))
    ap.add_argument("--roi", default="48,64,48")
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--levels", default="4,8", help="comma-separated L values, run in this order")
    ap.add_argument("--epochs", type=int, default=4, help="QCFS fine-tuning epochs per L")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lambda_lr", type=float, default=0.0, help="learning rate of the thresholds (0: --lr)")
    ap.add_argument("--name", default="qcfs_study", help="output files <out>/<name>.json and <name>_dice_vs_T.png")
    ap.add_argument("--amp", type=int, default=1, help="bfloat16 autocast for the QCFS fine-tuning (1/0)")
    ap.add_argument("--neuron", default="ternary")
    ap.add_argument("--kernel", default="compiled", help="neuron inference step: compiled or eager (same spikes)")
    ap.add_argument("--max_T", type=int, default=0, help="skip timesteps above this (0: none), to save time")
    ap.add_argument("--calibration_cases", type=int, default=32)
    ap.add_argument("--cases", type=int, default=0, help="validation cases to use (0: all)")
    ap.add_argument("--train_cases", type=int, default=0, help="training cases to use (0: all; for a smoke test)")
    ap.add_argument("--work", default="runs/qcfs_study", help="resumable state and checkpoints")
    ap.add_argument("--fresh", action="store_true", help="ignore what --work holds")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is far faster on a shared CPU)")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    state = State(work / "state.json", args.fresh)
    if args.fresh:
        for f in work.glob("qcfs_L*.pt"):
            f.unlink()
    levels = [int(v) for v in args.levels.split(",")]
    steps_for = {L: [t for t in sorted({max(1, L // 2), L, 2 * L}) if t <= (args.max_T or t)] for L in levels}
    channels = [int(c) for c in args.channels.split(",")]
    roi = [int(v) for v in args.roi.split(",")]

    lists = prepare_datalists(args.dataset_dir, args.val_fraction, args.seed)
    val = lists["val"][: args.cases or None]
    cases = [val_transforms()(d) for d in val]
    inferer = make_inferer(3, roi)
    calib = DataLoader(Dataset(lists["train"][: args.calibration_cases], calibration_transforms(roi)))
    ann = load_weights(ConvertibleUNet(3, channels=channels), args.ann, "train_ann")

    if state.get("relu_ann") is None:
        state.put("relu_ann", summary(evaluate(ann, cases, inferer)[0]))
    log.info(f"ReLU ANN: mean Dice {state.get('relu_ann')['mean_dice']:.4f}")
    train_loader = None
    result = {
        "command": "PYTHONPATH=. python studies/qcfs_study.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k not in ("fresh", "threads")),
        "date": time.strftime("%Y-%m-%d"),
        "cases": [Path(d["image"]).name for d in val],
        "settings": {
            "neuron": args.neuron,
            "v_init": 0.5,
            "readout": "membrane",
            "inferer": f"sliding window {roi}, overlap 0.25, gaussian",
            "relu_thresholds": f"99.9% layer-wise on {args.calibration_cases} training images",
            "qcfs_init": f"lambda = mean 99.9th percentile of each ReLU on {args.calibration_cases} training images",
            "finetune": f"{args.epochs} epochs, AdamW lr {args.lr} (thresholds {args.lambda_lr or args.lr}) cosine, batch {args.batch_size} of {args.patch} "
            f"patches, DiceCE, bfloat16 autocast {bool(args.amp)}; best epoch by validation Dice (epoch 0 included)",
        },
        "relu": {"ann": state.get("relu_ann")},
        "qcfs": {},
    }
    relu_key, relu_snn = f"relu_snn_{args.neuron}", None
    for L in levels:
        # the ReLU ANN converted as the bundle does, at the timesteps not measured yet (one run for them)
        relu = state.get(relu_key) or {"dice": {}, "per_case_mean": {}, "seconds": {}}
        missing = [t for t in steps_for[L] if str(t) not in relu["dice"]]
        if missing:
            if relu_snn is None:
                relu_snn = convert(ann, one_at_a_time(calib), mode="99.9%", neuron=args.neuron, v_init=0.5)
            new = snn_dice(relu_snn, missing, cases, inferer, args.kernel)
            relu["dice"].update(new["dice"])
            relu["per_case_mean"].update(new["per_case_mean"])
            relu["seconds"][f"T={','.join(map(str, missing))}"] = new["seconds"]
            state.put(relu_key, relu)
        log.info(f"ReLU ANN converted: {json.dumps({t: round(v['mean_dice'], 4) for t, v in relu['dice'].items()})}")
        result["relu"]["snn"] = relu
        snn_key = f"qcfs_L{L}{_tag(args)}_snn_{args.neuron}_e{args.epochs}_T{','.join(map(str, steps_for[L]))}"
        record = state.get(f"qcfs_L{L}{_tag(args)}")
        done = record is not None and str(args.epochs) in record.get("epochs", {}) and "ann" in record
        if not done or state.get(snn_key) is None:
            if train_loader is None:
                t0 = time.perf_counter()
                patch = [int(v) for v in args.patch.split(",")]
                train_ds = CacheDataset(
                    lists["train"][: args.train_cases or None],
                    train_transforms(3, patch),
                    cache_rate=1.0,
                    num_workers=0,
                )
                train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, num_workers=0)
                log.info(f"training cases cached in {time.perf_counter() - t0:.0f} s")
            net, record = finetune(L, args, args.ann, calib, train_loader, cases, inferer, state, work)
            if state.get(snn_key) is None:
                state.put(
                    snn_key, snn_dice(convert(net, [], neuron=args.neuron), steps_for[L], cases, inferer, args.kernel)
                )
        snn = state.get(snn_key)
        log.info(
            f"QCFS L={L}: ANN mean Dice {record['ann']['mean_dice']:.4f} (epoch {record['best_epoch']}); converted: "
            + json.dumps({t: round(v["mean_dice"], 4) for t, v in snn["dice"].items()})
        )
        result["qcfs"][str(L)] = {
            "levels": L,
            "ann": record["ann"],
            "best_epoch": record["best_epoch"],
            "epochs": record["epochs"],
            "init_thresholds": record.get("init_thresholds"),
            "thresholds": record["thresholds"],
            "snn": snn,
            "relu_snn_same_T": {t: relu["dice"][t] for t in snn["dice"]},
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
        plot(result, out / _png(args.name))
    print(f"wrote {Path(args.out) / (args.name + '.json')} and {Path(args.out) / _png(args.name)}")


def _png(name: str) -> str:
    return "qcfs_dice_vs_T.png" if name == "qcfs_study" else f"{name}_dice_vs_T.png"


if __name__ == "__main__":
    main()
