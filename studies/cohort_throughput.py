"""Cohort throughput: images per second with 1, 2, ... workers, the time for 10,000 whole heads, and where it goes.

    python studies/cohort_throughput.py --crops ../shared/data/Task04_Hippocampus --n 24 --heads 8 \\
        --workers 1 2 --repeats 5 --out docs/cohort/throughput_cpu.json
    python studies/cohort_throughput.py --render docs/cohort/throughput_cpu.json   # README's measured line
    python studies/cohort_throughput.py ... --device cuda --workers 1 2 4 --out docs/cohort/throughput_cuda.json

Runs ``hippo-snn segment``'s own code (:func:`bundle.inference.cohort.segment_cohort`) on two sets: ``--n`` Task04
crops (the first ``--n`` of ``imagesTr``) and ``--heads`` whole heads made from the shipped MNI template (moved,
resampled to 1 mm, bias field and noise: ``bundle.localization.synthetic``), each into a fresh folder once per
worker count. Per set and worker count it prints and writes:

- wall time, images per second over the whole run and in steady state (from the time every worker has
  returned an image to the last image: worker start-up, the model load and the first compilation excluded;
  give at least 3 images per worker), worker start-up (to the first image);
- seconds per image, in the workers, split into read, register (whole heads), network, write (mask, its hash)
  and the rest (pre-processing, paste back, reports);
- whether the masks are byte-identical to the 1-worker run's (their SHA-256);
- the projected time for 10,000 whole heads: start-up + 10,000 / the steady whole-head rate;
- the user's command, ``hippo-snn segment IN OUT --workers N``, timed from outside (``command``: the median
  of ``--repeats`` runs, worker counts alternating, before this process computes anything): what a user
  waits for, Python's start and the imports included, its masks checked against the first run's.

Measure on an otherwise idle machine: numbers taken beside another job are not throughput.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from studies import render_block  # noqa: E402

README = REPO / "README.md"
BEGIN, END = "<!-- cohort:begin -->", "<!-- cohort:end -->"  # the README's measured line, on one line

from bundle.inference.cohort import segment_cohort  # noqa: E402
from bundle.inference.settings import InferenceSettings  # noqa: E402
from bundle.inference.workers import cpu_count  # noqa: E402

PARTS = ("read", "register", "network", "write")
COHORT = 10_000


def whole_heads(folder: Path, n: int) -> Path:
    """``n`` whole-head T1s from the shipped template (1 mm, moved, bias field, noise), as NIfTI."""
    import SimpleITK as sitk

    from bundle.localization import load_template
    from bundle.localization.synthetic import make_case

    folder.mkdir(parents=True, exist_ok=True)
    template = load_template().image
    for i in range(n):
        case = make_case(template, np.random.default_rng(100 + i), orientation="LPS", spacing_range=(1.0, 1.0),
                         max_rotation_deg=10, max_translation_mm=15)  # fmt: skip
        sitk.WriteImage(
            sitk.Cast(sitk.RescaleIntensity(case.image, 0, 1000), sitk.sitkInt16), str(folder / f"head_{i:03d}.nii.gz")
        )
    return folder


def crops(dataset: Path, folder: Path, n: int) -> Path:
    """The first ``n`` Task04 training images, copied."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in sorted((dataset / "imagesTr").glob("hippocampus_*.nii.gz"))[:n]:
        shutil.copyfile(image, folder / image.name)
    return folder


def run(images: Path, out: Path, settings: InferenceSettings) -> dict:
    """One cohort run: wall time, rates, start-up, the split per image, mask hashes."""
    start = time.perf_counter()
    report = segment_cohort(images, out, settings, progress=False, log_summary=False)
    wall = time.perf_counter() - start
    with (out / "volumes.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    times = report.finished
    n = len(rows)
    parts = {p: float(np.mean([float(r.get(f"{p}_s") or 0) for r in rows])) if rows else 0.0 for p in PARTS}
    per_image = float(np.mean([float(r["seconds"]) for r in rows])) if rows else 0.0
    parts["other"] = max(0.0, per_image - sum(parts.values()))
    first = settings.workers - 1  # every worker has loaded its model once its first image is back
    steady = (len(times) - 1 - first) / (times[-1] - times[first]) if len(times) > first + 2 else n / wall
    return {
        "images": n,
        "failed": report.failed,
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 4),
        "steady_images_per_s": round(steady, 4),
        "startup_s": round(times[0] - start, 2) if times else None,
        "seconds_per_image": round(per_image, 3),
        "split_s": {k: round(v, 3) for k, v in parts.items()},
        "masks": {r["case"]: r["mask_sha256"] for r in rows},
    }


def command_run(images: Path, out: Path, settings: InferenceSettings) -> dict:
    """The user's command, ``hippo-snn segment IN OUT --workers N``, timed from outside: Python's start, the
    imports, the model loads and the workers' start-up included."""
    command = [sys.executable, "-m", "bundle.cli", "segment", str(images), str(out), "--workers",
               str(settings.workers), "--engine", settings.engine, "--model", settings.model, "--kernel",
               settings.neuron_kernel, "--device", settings.device or "cpu", "--quiet"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    with (out / "volumes.csv").open(newline="", encoding="utf-8") as f:
        masks = {r["case"]: r["mask_sha256"] for r in csv.DictReader(f) if r["status"] == "ok"}
    return {"wall_s": round(wall, 2), "images_per_s": round(len(masks) / wall, 4), "masks": masks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--crops", type=Path, default=None, help="a Task04 folder (imagesTr/); left out: no crop set")
    p.add_argument("--n", type=int, default=24, help="Task04 crops to segment (default 24)")
    p.add_argument("--heads", type=int, default=8, help="synthetic whole heads to segment (default 8; 0: none)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (default 1 2)")
    p.add_argument("--model", default="snn", help="the model (default snn, the shipped default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--engine", default="local", choices=["local", "ray"])
    p.add_argument("--kernel", default="compiled", choices=["compiled", "eager"], help="SNN neuron step")
    p.add_argument("--repeats", type=int, default=3, help="runs of each command, alternating (median; default 3)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here (e.g. docs/cohort/...)")
    p.add_argument("--render", type=Path, default=None, help="only render README's line from this JSON")
    args = p.parse_args(argv)
    if args.render is not None:
        README.write_text(render_readme(json.loads(args.render.read_text(encoding="utf-8"))), encoding="utf-8")
        print(f"rendered {README}")
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="cohort_throughput_"))
    sets = {}
    if args.crops is not None:
        sets["task04_crops"] = crops(args.crops, work / "in" / "crops", args.n)
    if args.heads:
        sets["whole_heads"] = whole_heads(work / "in" / "heads", args.heads)
    if not sets:
        p.error("nothing to run: give --crops and/or --heads N")
    base = InferenceSettings.from_config(
        model=args.model, device=args.device, engine=args.engine, neuron_kernel=args.kernel
    )
    result = {
        "date": date.today().isoformat(),
        "command": "python studies/cohort_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {cpu_count()} cores available, {platform.python_version()}",
        "device": args.device,
        "model": args.model,
        "engine": args.engine,
        "kernel": args.kernel,
        "sets": {},
    }
    try:
        # the commands first, alternating worker counts, while this process has not computed anything yet
        commands = {name: {} for name in sets}
        for name, images in sets.items():
            for repeat in range(args.repeats):
                for workers in args.workers:
                    out = work / "out" / f"{name}_{workers}_command{repeat}"
                    c = command_run(images, out, base.replace(workers=workers))
                    shutil.rmtree(out, ignore_errors=True)
                    kept = commands[name].setdefault(workers, {**c, "runs_s": []})
                    kept["runs_s"].append(c["wall_s"])
            for c in commands[name].values():
                c["wall_s"] = float(np.median(c["runs_s"]))
                c["images_per_s"] = round(len(c["masks"]) / c["wall_s"], 4)
        for name, images in sets.items():
            runs = {}
            for workers in args.workers:
                r = run(images, work / "out" / f"{name}_{workers}", base.replace(workers=workers))
                reference = next(iter(runs.values()), r)["masks"]
                r["identical_to_first"] = r["masks"] == reference
                c = commands[name][workers]
                r["command"] = {"wall_s": c["wall_s"], "images_per_s": c["images_per_s"], "runs_s": c["runs_s"],
                                "identical_to_first": c["masks"] == reference}  # fmt: skip
                runs[workers] = r
                split = ", ".join(f"{k} {v:.2f}" for k, v in r["split_s"].items())
                print(
                    f"{name}: {workers} worker(s): {r['images']} images in {r['wall_s']:.1f} s = {r['images_per_s']:.3f}/s "
                    f"(steady {r['steady_images_per_s']:.3f}/s, start-up {r['startup_s']} s); per image in a worker "
                    f"{r['seconds_per_image']:.2f} s ({split}); masks identical to the first run: {r['identical_to_first']}"
                )
                print(
                    f"  the command (hippo-snn segment --workers {workers}): {r['command']['wall_s']:.1f} s (median of "
                    f"{r['command']['runs_s']}), "
                    f"{r['command']['images_per_s']:.3f}/s; masks identical: {r['command']['identical_to_first']}"
                )
            for r in runs.values():
                r.pop("masks")
            if name == "whole_heads":
                for workers, r in runs.items():
                    hours = ((r["startup_s"] or 0) + COHORT / r["steady_images_per_s"]) / 3600
                    r["projected_10000_heads_h"] = round(hours, 2)
                    print(f"  {workers} worker(s): {COHORT} whole heads in about {hours:.1f} h")
            result["sets"][name] = {"images": str(images), "runs": {str(k): v for k, v in runs.items()}}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def summary(result: dict) -> str:
    """The README's line: each set's command (median) per worker count, and the 10,000-head projection."""
    sets = result["sets"]
    workers = list(next(iter(sets.values()))["runs"])
    names = {"task04_crops": "Task04 crops", "whole_heads": "whole heads"}
    parts = [
        f"{s['runs'][workers[0]]['images']} {names[name]} "
        + " / ".join(f"{s['runs'][w]['command']['wall_s']:.1f}" for w in workers)
        + " s"
        for name, s in sets.items()
    ]
    if "whole_heads" in sets:
        hours = " / ".join(f"{sets['whole_heads']['runs'][w]['projected_10000_heads_h']:.1f}" for w in workers)
        parts.append(f"10,000 whole heads about {hours} h")
    return (
        f"Measured ({result['date']}, {result['machine'].split(',')[1].strip()}, {result['model']}, "
        f"`--workers {' / '.join(workers)}`): " + "; ".join(parts) + '; `docs/RESULTS.md`, "Cohorts".'
    )


def render_readme(result: dict, readme: Path = README) -> str:
    """``readme``'s text with the line between the cohort markers replaced by :func:`summary`."""
    return render_block(readme, BEGIN, END, summary(result))


if __name__ == "__main__":
    sys.exit(main())
