"""``hippo-snn``: the bundle's inference as a console command (the same code as configs/inference.json).

    hippo-snn segment IN OUT [--model snn|snn_t2|snn_converted|ann|ann_int8] [--timesteps T] [--overwrite] [--device cpu]
    hippo-snn segment IN OUT --workers N [--engine ray [--ray-address ADDR]]   (a cohort: N workers, one volumes.csv)
    hippo-snn evaluate DATASET OUT [--split all|val|train] [--overlays N] ...
    ... --adaptive stable [--patience N] [--tolerance F]   (SNN: stop each window once its class map is stable)

Exit status: 0 when every image was handled, 1 when any failed (each failure is one ``error:`` line).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from bundle.errors import InputError
from bundle.inference.catalog import ENGINES, MODEL_FILES, WINDOWS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hippo-snn", description="Hippocampus segmentation with a spiking U-Net.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--model", default=None, choices=list(MODEL_FILES),
            help="snn: the fine-tuned SNN at T=3 (default); snn_t2: fine-tuned for T=2 (about 0.7x its energy, "
            "a little less Dice); snn_converted: converted, not fine-tuned (T=16); ann: the U-Net it came from; "
            "ann_int8: that U-Net in INT8 (CPU only), the fair energy baseline",
        )  # fmt: skip
        q.add_argument("--ckpt", default=None, help="checkpoint file instead of the shipped one in models/")
        q.add_argument("--timesteps", type=int, default=None, help="SNN timesteps (default: the model's own)")
        q.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        q.add_argument("--roi-size", type=int, nargs=3, default=None, help="sliding-window size (default 48 64 48)")
        q.add_argument(
            "--window", choices=WINDOWS, default=None,
            help="fit (default): windows no larger than the image, rounded up to the network's divisor; fixed: always "
            "--roi-size, zero-padding smaller images",
        )  # fmt: skip
        q.add_argument(
            "--kernel", default=None, choices=["compiled", "eager"],
            help="SNN neuron step: one compiled kernel (default; eager where compiling fails) or op by op",
        )  # fmt: skip
        q.add_argument(
            "--adaptive", default=None, choices=["off", "stable"],
            help="SNN timesteps per window: off (default: always T) or stable (stop a window once its class map "
            "has not changed for --patience steps; --timesteps is then the maximum)",
        )  # fmt: skip
        q.add_argument("--patience", type=int, default=None, help="--adaptive stable: stable steps needed (default 1)")
        q.add_argument(
            "--tolerance", type=float, default=None,
            help="--adaptive stable: fraction of a window's voxels that may change class and still count as "
            "stable (default 0.001: about 150 voxels of a 48x64x48 window)",
        )  # fmt: skip
        q.add_argument(
            "--amp", action="store_const", const=True, default=None,
            help="mixed precision (float16 on CUDA; bfloat16 on CPUs with AMX or AVX-512 BF16, else float32)",
        )  # fmt: skip
        q.add_argument(
            "--mirror", action="store_const", const=True, default=None,
            help="also segment each window mirrored left-right and average the two (twice the time and energy; "
            "a few thousandths of Dice on validation: docs/RESULTS.md)",
        )  # fmt: skip
        q.add_argument("--overwrite", action="store_true", help="replace existing outputs")
        q.add_argument(
            "--localize", default=None, choices=["auto", "on", "off"],
            help="find both hippocampi in a whole head first: auto (default: decided per image from its field "
            "of view), on, off",
        )  # fmt: skip
        q.add_argument("--quiet", action="store_true", help="no progress bar, warnings and errors only")

    seg = sub.add_parser("segment", help="segment every image of a folder")
    seg.add_argument(
        "input_dir",
        help="folder of images (NIfTI, NRRD, MHA/MHD, DICOM series sub-folders) or a Decathlon task folder",
    )
    seg.add_argument("output_dir", help="where masks and volumes.csv go (created if missing)")
    seg.add_argument(
        "--qc", action="store_const", const=True, default=None, help="also write a QC picture per image in OUT/qc/"
    )
    seg.add_argument(
        "--workers", type=int, default=None,
        help="processes sharing the folder, each with its share of the cores (default 1; same masks, one volumes.csv)",
    )  # fmt: skip
    seg.add_argument(
        "--engine", default=None, choices=list(ENGINES),
        help="local (default): processes of this machine; ray: --workers tasks at a time on a Ray cluster",
    )  # fmt: skip
    seg.add_argument("--ray-address", default=None, help="--engine ray: the cluster (default: start a local one)")
    common(seg)

    ev = sub.add_parser("evaluate", help="segment labelled images and score them against their labels")
    ev.add_argument("dataset_dir", help="Decathlon folder, images/ + labels/, or image + image_label files")
    ev.add_argument("output_dir", help="where metrics.csv, summary.json, masks/ and overlays/ go")
    ev.add_argument(
        "--split", default="all", choices=["all", "val", "train"], help="'val': the training run's validation cases"
    )
    ev.add_argument("--val-fraction", type=float, default=0.2)
    ev.add_argument(
        "--seed", type=int, default=0, help="the training run's split_seed (which cases --split val means; default 0)"
    )
    ev.add_argument("--overlays", type=int, default=3, help="PNG overlays for the first N cases")
    common(ev)
    return p


def _energy(summary: dict) -> str:
    """``", energy ... uJ/volume (compute only; ANN ...); with memory traffic SRAM ... / DRAM ... (INT8 ANN ...); N
    window(s) of ..."`` from an evaluation summary: both energy accounts (:mod:`bundle.spiking.energy`)."""

    def mean(key: str):
        value = summary.get(key)
        return value.get("mean") if isinstance(value, dict) else None

    energy, ann, windows = mean("energy_uj"), mean("ann_energy_uj"), mean("windows")
    if energy is None or not ann:
        return ""
    steps = f", mean T {mean('mean_timesteps'):.2f}" if mean("mean_timesteps") is not None else ""
    shapes = ", ".join(summary.get("window") or []) or "?"
    memory = ""
    sram, dram, int8_sram, int8_dram = (
        mean(k) for k in ("energy_sram_uj", "energy_dram_uj", "int8_energy_sram_uj", "int8_energy_dram_uj")
    )
    if None not in (sram, dram) and int8_sram and int8_dram:
        memory = (
            f"; with memory traffic SRAM {sram:.0f} / DRAM {dram:.0f} uJ/volume (INT8 ANN {int8_sram:.0f} / "
            f"{int8_dram:.0f} uJ, ratio {sram / int8_sram:.2f} / {dram / int8_dram:.2f})"
        )
    return (
        f", energy {energy:.0f} uJ/volume{steps} (compute only; ANN on the same input {ann:.0f} uJ, ratio "
        f"{energy / ann:.3f}){memory}; {windows:g} window(s) of {shapes} per volume"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, and ``args.settings``: configs/inference.json's settings with every option given on it
    (:class:`bundle.inference.settings.InferenceSettings`, validated; read after parsing so that
    ``hippo-snn --help`` answers at once)."""
    args = _parser().parse_args(argv)
    if (getattr(args, "workers", None) or 1) > 1 and getattr(args, "engine", None) in (None, "local"):
        from bundle.inference.processes import start_fork_server

        start_fork_server()  # the workers' imports overlap this process's own (MONAI's, from here on)
    from bundle.inference.settings import InferenceSettings

    args.settings = InferenceSettings.from_config(
        model=args.model, ckpt=args.ckpt, timesteps=args.timesteps, device=args.device, roi_size=args.roi_size,
        window=args.window, neuron_kernel=args.kernel, adaptive=args.adaptive, patience=args.patience,
        tolerance=args.tolerance, amp=args.amp, localize=args.localize, qc=getattr(args, "qc", None),
        mirror=args.mirror, workers=getattr(args, "workers", None), engine=getattr(args, "engine", None),
        ray_address=getattr(args, "ray_address", None),
    )  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)  # MONAI deprecation notes are not for end users
    try:
        args = parse_args(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr, force=True
    )
    s = args.settings
    # imported here so that `hippo-snn --help` answers at once
    from bundle.inference.cohort import segment_cohort
    from bundle.inference.evaluate import evaluate_folder
    from bundle.runtime import tune_allocator

    tune_allocator()
    try:
        device = s.resolved_device()
        if args.command == "segment":  # the model is loaded there: in workers, or here for one process
            report = segment_cohort(args.input_dir, args.output_dir, s, args.overwrite, not args.quiet, False)
            print(report.line())
            return 1 if report.failed else 0
        network, info = s.load(device)
        inferer = s.inferer()
        summary = evaluate_folder(
            args.dataset_dir, args.output_dir, network, inferer, info, args.split, args.val_fraction, args.seed,
            args.overlays, args.overwrite, device, progress=not args.quiet, amp=s.amp, localize=s.localize,
        )  # fmt: skip
        dice = "-" if summary["mean_dice"] is None else f"{summary['mean_dice']:.4f}"
        print(
            f"mean Dice {dice} over {summary['cases_ok']} case(s){_energy(summary)}; {Path(args.output_dir) / 'summary.json'}"
        )
        return 1 if summary["cases_failed"] else 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def entry() -> None:
    """The ``hippo-snn`` command: :func:`main`, then a quick exit (:func:`bundle.runtime.exit_now`)."""
    code = main()
    from bundle.runtime import exit_now

    exit_now(code)


if __name__ == "__main__":
    entry()
