"""NeuroBench's metrics for the FP32 ANN, the INT8 ANN and every shipped SNN, on the same windows, beside our own
counts and both energy accounts (needs ``pip install -e ".[neuromorphic]"``).

The windows are those ``hippo-snn evaluate`` runs on the first ``--cases`` validation cases (split_seed 0): each
case pre-processed with the model's own input contract and tiled by the inference's fitted-window inferer. Each
model runs on every window once under NeuroBench's ``Benchmark`` (footprint, connection sparsity, activation
sparsity, synaptic operations: dense, effective MACs, effective ACs; through
``bundle/spiking/neurobench_adapter.py``) and once under our :class:`~bundle.spiking.activity.ActivityMonitor`.
All figures are per window.

    .venv/bin/python studies/neurobench_metrics.py [--cases 4]

Writes ``docs/energy/neurobench.json``, prints the table (Markdown) and renders it into ``docs/RESULTS.md`` between
its NeuroBench markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studies import ROOT, dataset_dir, render_block

OUT = ROOT / "docs" / "energy" / "neurobench.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
BEGIN, END = "<!-- neurobench:begin -->\n", "<!-- neurobench:end -->"  # the table in RESULTS, rendered from OUT
ROWS = (
    ("ann", None),
    ("ann_int8", None),
    ("snn_converted", None),
    ("snn_converted", 4),
    ("snn", None),
    ("snn_t2", None),
)


def windows_of(cases: list[dict], settings, network, info) -> list:
    """The inference windows ``[1, 1, *w]`` of ``cases``, pre-processed as ``info``'s model expects."""
    import nibabel as nib
    import torch

    from bundle.inference.volume import metatensor

    segmenter = settings.segmenter(network, info, "cpu")
    inferer = settings.inferer()
    windows = []

    def collect(x):
        windows.extend(w[None].clone() for w in x)
        return torch.zeros(x.shape[0], 3, *x.shape[2:])

    for case in cases:
        image = segmenter.pre({"image": metatensor(nib.load(case["image"]), case["image"])})["image"]
        inferer(image.unsqueeze(0).as_tensor(), collect)
    return windows


def ours(network, windows) -> dict:
    import torch

    from bundle.spiking.activity import ActivityMonitor

    with ActivityMonitor(network) as monitor, torch.no_grad():
        for w in windows:
            network(w)
    totals = monitor.totals()
    n = totals["windows"]
    keep = ("mean_firing_rate", "spikes_per_neuron", "mean_timesteps")
    return {
        "macs": totals["macs"] / n, "synops": totals["synops"] / n, "ann_macs": totals["ann_macs"] / n,
        **{k: totals[k] for k in keep if k in totals},
        **{k: v / n for k, v in totals.items() if k.endswith("_uj")},
    }  # fmt: skip


def table(results: dict) -> str:
    lines = [
        (
            "| model | T | footprint (MB) | connection sparsity | activation sparsity | dense SynOps (G) "
            "| effective MACs (G) | effective ACs (G) | ours: MACs / ACs (G) | energy (mJ): compute / +SRAM / +DRAM |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in results["models"]:
        nb, o = m["neurobench"], m["ours"]
        lines.append(
            f"| `{m['model']}` | {m['timesteps'] or '-'} | {nb['footprint_bytes'] / 1e6:.2f} | {nb['connection_sparsity']:.3f} "
            f"| {nb['activation_sparsity']:.3f} | {nb['synops_dense'] / 1e9:.2f} | {nb['synops_effective_macs'] / 1e9:.3f} "
            f"| {nb['synops_effective_acs'] / 1e9:.3f} | {o['macs'] / 1e9:.3f} / {o['synops'] / 1e9:.3f} "
            f"| {o['energy_uj'] / 1e3:.2f} / {o['energy_sram_uj'] / 1e3:.2f} / {o['energy_dram_uj'] / 1e3:.2f} |"
        )
    return "\n".join(lines)


def render(results: dict, page: Path = RESULTS_MD) -> str:
    """``page``'s text with the block between the NeuroBench markers replaced by :func:`table` and its provenance."""
    note = f"({results['data']}; `{results['command']}`, {results['date']}, neurobench {results['neurobench_version']})"
    return render_block(page, BEGIN, END, f"{table(results)}\n\n{note}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=4, help="first N validation cases (default 4)")
    args = p.parse_args()
    try:
        import neurobench  # noqa: F401
    except ImportError:
        raise SystemExit('error: neurobench is not installed: .venv/bin/pip install -e ".[neuromorphic]"') from None
    from bundle.data.datalist import find_pairs, split_datalist
    from bundle.inference.records import file_sha256
    from bundle.inference.settings import InferenceSettings
    from bundle.spiking.neurobench_adapter import neurobench_metrics

    _, val = split_datalist(find_pairs(dataset_dir()), 0.2, 0)
    cases = val[: args.cases]
    cache: dict[str, list] = {}
    models = []
    for model, timesteps in ROWS:
        settings = InferenceSettings.from_config(model=model, timesteps=timesteps, device="cpu")
        network, info = settings.load()
        key = info["standardization"]
        windows = cache.setdefault(key, windows_of(cases, settings, network, info))
        row = {"model": model, "timesteps": info["timesteps"], "checkpoint": Path(info["checkpoint"]).name,
               "checkpoint_sha256": file_sha256(info["checkpoint"]),
               "neurobench": neurobench_metrics(network, windows), "ours": ours(network, windows)}  # fmt: skip
        models.append(row)
        print(json.dumps(row), flush=True)
    shapes = sorted({"x".join(map(str, w.shape[2:])) for ws in cache.values() for w in ws})
    results = {
        "date": date.today().isoformat(),
        "command": f"studies/neurobench_metrics.py --cases {args.cases}",
        "data": f"Task04 validation split (split_seed 0), first {len(cases)} cases: {sum(map(len, cache.values()))} "
        f"window(s) of {', '.join(shapes)}; every figure per window",
        "neurobench_version": __import__("neurobench").__version__,
        "models": models,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    RESULTS_MD.write_text(render(results), encoding="utf-8")
    print(table(results))
    print(f"\n{results['data']}; {results['command']}, {results['date']} (neurobench {results['neurobench_version']})")


if __name__ == "__main__":
    main()
