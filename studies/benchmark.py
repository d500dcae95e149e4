"""What the SNN costs against the ANN: inference time per volume for T = 1..16, memory, training steps.

    python studies/benchmark.py --dataset_dir ../shared/data/Task04_Hippocampus          # CPU
    python studies/benchmark.py --dataset_dir ... --device cuda --amp                   # GPU, mixed precision

Prints, and writes as JSON (``--out``) and a PNG beside it:
* inference per volume (the bundle's preprocessing done once and cached, then the sliding-window
  inferer as batch inference runs it; file reading/writing are left out, and the SNN's activity
  monitoring too unless ``--activity``): seconds, volumes/s, peak memory, and for the SNN the ratio to
  the ANN and that ratio divided by T (dense hardware's floor is 1.0: one ANN pass per timestep);
* training step time per stage: ANN step, conversion calibration per image, SNN fine-tuning step;
* on CUDA, SpikingJelly's IF neuron in each implementation (torch/cuda/triton) beside ours.
The shipped models in ``models/`` are timed (any of them can be replaced with ``--models_dir``).
Run it alone: anything else on the machine shows up in the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from monai import transforms as mt

from bundle.data.datalist import prepare_datalists
from bundle.data.transforms import PATCH_SIZE, preprocessing
from bundle.inference.inferers import make_inferer
from bundle.inference.models import load_model
from bundle.spiking.activity import ActivityMonitor

REPO = Path(__file__).resolve().parents[1]

ROI = (48, 64, 48)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory(contextlib.AbstractContextManager):
    """Peak extra memory inside the block: CUDA allocator peak, or resident set size sampled every 1 ms."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base, self._max, self._stop = self._rss(), 0, threading.Event()

        def sample():
            while not self._stop.wait(0.001):
                self._max = max(self._max, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(0, max(self._max, self._rss()) - self._base) / 2**20
        return False


def load_volumes(dataset_dir: str | None, cases: int, workdir: Path) -> list[torch.Tensor]:
    """The first ``cases`` validation images, preprocessed once as batch inference does (kept in memory)."""
    lists = prepare_datalists(dataset_dir, synthetic_dir=str(workdir / "synthetic"), synthetic_cases=12)
    pre = mt.Compose(preprocessing(["image"]))
    return [pre({"image": case["image"]})["image"].as_tensor()[None] for case in lists["val"][:cases]]


def time_models(models: dict, volumes, device, repeats: int, amp: bool, activity: bool = False) -> dict[str, float]:
    """Seconds per volume of each model: per volume the fastest of ``repeats`` runs (a shared machine only
    adds time), averaged over volumes. Models take turns on each volume, so drift hits them all alike."""
    inferer = make_inferer(3, ROI)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    volumes = [v.to(device) for v in volumes]

    def run(network, v) -> float:
        monitor = ActivityMonitor(network.snn) if activity and hasattr(network, "snn") else contextlib.nullcontext()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=amp), monitor:
            inferer(v, network)
        sync(device)
        return time.perf_counter() - t0

    for network in models.values():
        run(network, volumes[0])  # warm-up: kernels (compiled ones too), allocator
    best = {name: [] for name in models}
    for v in volumes:
        times = {name: [] for name in models}
        for _ in range(repeats):
            for name, network in models.items():
                times[name].append(run(network, v))
        for name in models:
            best[name].append(min(times[name]))
    return {name: statistics.fmean(b) for name, b in best.items()}


def cuda_peak_memory(network, volume, device, amp: bool) -> float:
    inferer = make_inferer(3, ROI)
    with PeakMemory(device) as mem, torch.inference_mode():
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            inferer(volume.to(device), network)
    return mem.peak_mb


def cpu_peak_memory(args, model: str, timesteps: int) -> float:
    """Peak extra resident memory of one volume's inference, in a fresh process (freed heap would hide it),
    after the compiled kernels are built."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory_child", f"{model}:{timesteps}", "--cases", "1"]
    cmd += [*(["--dataset_dir", args.dataset_dir] if args.dataset_dir else [])]
    cmd += [*(["--models_dir", args.models_dir] if args.models_dir else []), *(["--amp"] if args.amp else [])]
    cmd += [*(["--multi_step"] if args.multi_step else []), *(["--threads", str(args.threads)] if args.threads else [])]
    cmd += ["--kernel", args.kernel, *(["--default_allocator"] if args.default_allocator else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {model} T={timesteps} failed: {proc.stderr.strip()[-500:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def memory_child(args, volumes, device) -> None:
    model, t = args.memory_child.split(":")
    network = _load(args, model, int(t) or None, device)
    inferer = make_inferer(3, ROI)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
        network(torch.rand(1, 1, 16, 16, 16))  # compiles the kernels (any shape) on a small input first
        with PeakMemory(device) as mem:
            inferer(volumes[0], network)
    print(f"{mem.peak_mb:.1f}")


def _load(args, model: str, timesteps: int | None, device):
    kwargs = {"models_dir": args.models_dir, "device": device}
    if model != "ann":
        kwargs.update(timesteps=timesteps, multi_step=args.multi_step)
        if "kernel" in inspect.signature(load_model).parameters:  # absent before the fused kernels
            kwargs["kernel"] = args.kernel
    return load_model(model, **kwargs)[0]


def inference_table(args, volumes, device) -> list[dict]:
    models = {("ann", 0): _load(args, "ann", None, device)}
    models.update({("snn", t): _load(args, "snn", t, device) for t in args.timesteps})
    seconds = time_models(models, volumes, device, args.repeats, args.amp, args.activity)
    ann_s = seconds[("ann", 0)]
    rows = []
    for (model, t), s in seconds.items():
        row = {"model": model, "T": t, "s_per_volume": s, "volumes_per_s": 1 / s}
        if model == "snn":
            row.update(ratio=s / ann_s, ratio_per_T=s / ann_s / t)
        if device.type == "cuda":
            row["peak_mb"] = cuda_peak_memory(models[(model, t)], volumes[0], device, args.amp)
        else:
            row["peak_mb"] = cpu_peak_memory(args, model, t)
        rows.append(row)
        name = "ann" if model == "ann" else f"snn T={t}"
        ratios = f"  SNN/ANN {row['ratio']:6.2f}  /T {row['ratio_per_T']:.2f}" if model == "snn" else ""
        print(f"{name:<10s} {s:7.3f} s/volume  {1 / s:6.2f} volumes/s  {row['peak_mb']:6.0f} MB{ratios}", flush=True)
    return rows


def _median_step(step, device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def training_table(args, volumes, device) -> dict:
    """Seconds per optimiser step (batch ``--batch_size`` of training patches, PATCH_SIZE[3]) and per calibration image."""
    from monai.losses import DiceCELoss, DiceLoss
    from bundle.spiking.conversion import convert, one_at_a_time
    from bundle.training.finetune import learnable_scales, param_groups
    from bundle.spiking.segmenter import SpikingSegmenter

    torch.manual_seed(0)
    to_patch = mt.ResizeWithPadOrCrop(PATCH_SIZE[3])  # the training patch size
    x = torch.stack([to_patch(volumes[i % len(volumes)][0]) for i in range(args.batch_size)]).as_tensor().to(device)
    y = (x > x.mean()).long() + (x > x.mean() + x.std()).long()
    ann = _load(args, "ann", None, device).train()
    opt = torch.optim.AdamW(ann.parameters(), 1e-4)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    scaler_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    def optimiser_step(network, loss_fn, optimiser):
        def step():
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=scaler_dtype, enabled=args.amp):
                value = loss_fn(network(x), y)
            value.backward()
            optimiser.step()

        return step

    out = {"ann_step_s": _median_step(optimiser_step(ann, loss, opt), device, 1, args.train_steps)}
    print(f"train ANN step (batch {args.batch_size})         {out['ann_step_s']:.3f} s", flush=True)

    ann.eval()
    to_roi = mt.ResizeWithPadOrCrop(ROI)  # calibration images are roi-sized, as in configs/train.json
    calibration = [to_roi(v[0]).as_tensor()[None].to(device) for v in volumes[: args.calibration_images]]
    t0 = time.perf_counter()
    snn = convert(ann, one_at_a_time(calibration), mode="99.9%", neuron="ternary", v_init=0.5, device=device)
    sync(device)
    out["calibration_s_per_image"] = (time.perf_counter() - t0) / len(calibration)
    print(f"conversion calibration               {out['calibration_s_per_image']:.3f} s/image", flush=True)

    segmenter = SpikingSegmenter(learnable_scales(snn), timesteps=args.finetune_timesteps).to(device).train()
    dice = DiceLoss(to_onehot_y=True, softmax=True, batch=True)
    snn_opt = torch.optim.Adam(param_groups(segmenter, 1e-4, 1e-3))
    # the segmenter resets its neurons at every forward: steps are independent, as in training
    out["snn_step_s"] = _median_step(optimiser_step(segmenter, dice, snn_opt), device, 1, args.train_steps)
    out["snn_step_ratio_per_T"] = out["snn_step_s"] / out["ann_step_s"] / args.finetune_timesteps
    print(
        f"fine-tune SNN step (T={args.finetune_timesteps}, batch {args.batch_size})  {out['snn_step_s']:.3f} s  "
        f"SNN/ANN/T {out['snn_step_ratio_per_T']:.2f}",
        flush=True,
    )
    return out


NEURON_CHILD = """
import os, statistics, sys, time, torch
from spikingjelly.activation_based import neuron
sys.path.insert(0, {repo!r})
from bundle.spiking.neurons import make_neuron
T, shape = {T}, (1, 16, 48, 64, 48)
x = torch.rand(T, *shape, device="cuda", requires_grad=True)
for name, n in (("sj_IFNode", neuron.IFNode(v_reset=None, step_mode="m")), ("ours_binary", make_neuron("binary", step_mode="m")),
                ("ours_ternary", make_neuron("ternary", step_mode="m"))):
    if name != "sj_IFNode" and os.environ["SJ_IF_CUDA_IMPLEMENTATION"] != "torch":
        continue  # ours do not dispatch: time them once
    ts = []
    for i in range(6):
        n.reset(); torch.cuda.synchronize(); t0 = time.perf_counter()
        n(x).sum().backward(); torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    print(name, statistics.median(ts[1:]))
"""


def neuron_table(timesteps: int) -> dict:
    """SpikingJelly's IF neuron per CUDA implementation (read at import: one child process each)."""
    out = {}
    for impl in ("torch", "cuda", "triton"):
        env = {**os.environ, "SJ_IF_CUDA_IMPLEMENTATION": impl}
        code = NEURON_CHILD.format(repo=str(REPO), T=timesteps)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            out[impl] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
            print(f"neuron impl {impl}: unavailable ({out[impl]['error']})", flush=True)
            continue
        out[impl] = {line.split()[0]: float(line.split()[1]) for line in proc.stdout.strip().splitlines()}
        for name, s in out[impl].items():
            print(f"neuron {name:<13s} impl {impl:<6s} T={timesteps} fwd+bwd 16x48x64x48: {s * 1e3:.2f} ms", flush=True)
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snn = [r for r in rows if r["model"] == "snn"]
    ts = [r["T"] for r in snn]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(ts, [r["ratio"] for r in snn], "o-", label="SNN / ANN time per volume")
    ax.plot(ts, ts, "--", color="grey", label="T (one dense ANN pass per step)")
    ax.set(xscale="log", yscale="log", xlabel="timesteps T", ylabel="time relative to the ANN", title=title)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset_dir", default=None, help="Task04 folder (default: the embedded synthetic data)")
    p.add_argument("--models_dir", default=None, help="folder with model_ann.pt and model_snn_finetuned.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", type=int, default=8, help="validation volumes timed")
    p.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="autocast: bfloat16 on CPU, float16 on CUDA")
    p.add_argument("--multi_step", action="store_true", help="SNN in multi-step mode ([T*B] per layer)")
    p.add_argument("--activity", action="store_true", help="count spikes and SynOps as batch inference does")
    p.add_argument("--kernel", default="compiled", choices=["compiled", "eager"], help="SNN neuron step")
    p.add_argument("--default_allocator", action="store_true", help="leave glibc's malloc as it is")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--train_steps", type=int, default=3)
    p.add_argument("--calibration_images", type=int, default=4)
    p.add_argument("--finetune_timesteps", type=int, default=4)
    p.add_argument("--skip_training", action="store_true")
    p.add_argument("--out", default=None, help="JSON file for the figures (a PNG is written beside it)")
    p.add_argument("--memory_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    tuned = False
    if not args.default_allocator:
        try:
            from bundle.runtime import tune_allocator
        except ImportError:  # a bundle from before the allocator setting
            tune_allocator = None
        tuned = bool(tune_allocator and tune_allocator())
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "amp": args.amp,
        "multi_step": args.multi_step,
        "kernel": args.kernel,
        "activity": args.activity,
        "allocator_tuned": tuned,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    if not args.memory_child:
        print(f"{info['device']}, {info['cpu_threads']} CPU threads, torch {info['torch']}, amp {args.amp}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        volumes = load_volumes(args.dataset_dir, args.cases, Path(tmp))
        if args.dataset_dir is None:  # memory children read the synthetic cases written here
            args.dataset_dir = str(Path(tmp) / "synthetic")
        if args.memory_child:
            return memory_child(args, volumes, device)
        return run_all(args, info, volumes, device)


def run_all(args, info: dict, volumes: list, device: torch.device) -> dict:
    print(f"{len(volumes)} volumes, shapes {sorted({tuple(v.shape[2:]) for v in volumes})}", flush=True)
    print("inference per volume (preprocessed, sliding window; peak = extra memory of one volume)", flush=True)
    result = {"info": info, "inference": inference_table(args, volumes, device)}
    if not args.skip_training:
        result["training"] = training_table(args, volumes, device)
    if device.type == "cuda":
        result["neurons"] = neuron_table(args.finetune_timesteps)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        plot(result["inference"], out.with_suffix(".png"), f"{info['device']} ({info['cpu_threads']} threads)")
        print(f"written {out} and {out.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
