"""Dice against energy in both accounts for every shipped model (FP32 ANN, INT8 ANN, every SNN) on the same
validation cases and windows, in one run, and where the SNN breaks even with the INT8 ANN.

For each model: ``hippo-snn evaluate``'s own code (:func:`bundle.inference.evaluate.evaluate_folder`) on the first
``--cases`` validation cases (split_seed 0), which gives Dice, HD95 and the per-volume energy in both accounts
(compute only; compute + memory traffic with SRAM or DRAM, ``bundle/spiking/energy.py``); an outer
:class:`~bundle.spiking.activity.ActivityMonitor` on the same calls keeps the per-layer counts; and the network's
CPU time on the windows of the first ``--time-cases`` cases (best of 3, one thread, after a warm-up).

The break-even analysis: an SNN's energy in each account is ``A + sum_l c_l r_l`` (``r_l`` a layer's firing rate;
``A`` weights, membranes, the analog image, and the first layer's MACs; ``c_l`` accumulates and spike events per
unit rate). Solving ``A + r * sum_l c_l = E(INT8 ANN)`` gives the one firing rate, the same in every layer, at
which the SNN at its T costs what the INT8 ANN costs on the same windows (negative: no rate does).

    .venv/bin/python studies/energy_frontier.py                       # all models, 42 cases (long on a CPU)
    .venv/bin/python studies/energy_frontier.py --cases 12 --models ann ann_int8 snn snn_t2
    .venv/bin/python studies/energy_frontier.py --plot                # only re-draw docs/energy/*.png from the JSON

Writes ``docs/energy/frontier.json`` (models are merged into it by name and T, each with its date and cases),
``docs/energy/frontier_dice_vs_energy.png`` and ``docs/energy/firing_vs_break_even.png``, and renders the tables
and the verdict into ``docs/RESULTS.md`` and the verdict into the model card (``docs/README.md``), between their
energy markers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studies import ROOT, dataset_dir, render_block

OUT = ROOT / "docs" / "energy"
JSON = OUT / "frontier.json"
# (row name, model, timesteps or None for its own, checkpoint or None for the shipped one); the 4-bit-weight ANN is
# made by `scripts/quantize_ann.py --weight-bits 4` (not shipped) and skipped where absent
W4 = ROOT / "runs" / "model_ann_int8_w4.pt"
ROWS = (
    ("ann", "ann", None, None),
    ("ann_int8", "ann_int8", None, None),
    ("ann_int8_w4", "ann_int8", None, W4),
    ("snn_converted", "snn_converted", None, None),
    ("snn_converted", "snn_converted", 4, None),
    ("snn", "snn", None, None),
    ("snn_t2", "snn_t2", None, None),
)
ORDER = ["ann", "ann_int8", "ann_int8_w4", "snn_converted", "snn", "snn_t2"]
ACCOUNTS = {"compute": "compute only", "sram": "+ memory traffic, SRAM", "dram": "+ memory traffic, DRAM"}
# docs/RESULTS.md's energy tables and the model card's verdict sit between these markers, rendered from the JSON
# (numbers written once)
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
MODEL_CARD = ROOT / "docs" / "README.md"
BEGIN, END = "<!-- energy:begin -->\n", "<!-- energy:end -->"
ENERGY_KEYS = ("energy_uj", "energy_sram_uj", "energy_dram_uj")


def val_cases(n: int | None) -> list[dict]:
    from bundle.data.datalist import find_pairs, split_datalist

    _, val = split_datalist(find_pairs(dataset_dir()), 0.2, 0)
    return val[:n] if n else val


def case_folder(cases: list[dict], root: Path) -> Path:
    """``images/`` + ``labels/`` of links to ``cases``: evaluate_folder's input for exactly these cases."""
    for sub, key in (("images", "image"), ("labels", "label")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for case in cases:
            link = root / sub / Path(case["image"]).name
            if not link.exists():
                os.symlink(Path(case[key]).resolve(), link)
    return root


def break_even(layers: list, windows: int, target_pj: dict[str, float], steps: float, volumes: int) -> dict:
    """The uniform firing rate at which the SNN's energy equals ``target_pj`` (per account, all ``volumes``), from its
    layer counts; ``fixed_uj`` and ``rated_uj`` (the part that scales with firing, now) per volume."""
    from bundle.spiking.energy import E_AC_FP32, MEMORIES, event_bits, layer_accounts

    per_layer = layer_accounts(layers, windows, snn=True)
    out = {}
    for account in ("compute", "sram", "dram"):
        e_bit = MEMORIES.get(account, 0.0)
        total = sum(p["compute"] + (p["fixed_bits"] + p["rated_bits"]) * e_bit for p in per_layer)
        rated, slope = 0.0, 0.0  # the rate-dependent energy now, and its derivative in a uniform rate
        for layer in layers:
            if layer.spiking and layer.inputs:
                per_rate = layer.dense * E_AC_FP32 + layer.inputs * event_bits(layer.input_size) * e_bit
                rated += layer.synops * E_AC_FP32 + layer.events * event_bits(layer.input_size) * e_bit
                slope += per_rate
            if layer.events_out and layer.outputs:
                per_rate = layer.outputs * event_bits(layer.output_size) * e_bit
                rated += layer.events_out * event_bits(layer.output_size) * e_bit
                slope += per_rate
        fixed = total - rated
        rate = (target_pj[account] - fixed) / slope if slope else float("nan")
        out[account] = {"fixed_uj": fixed * 1e-6 / volumes, "rated_uj": rated * 1e-6 / volumes, "break_even_rate": rate,
                        "break_even_spikes_per_neuron": rate * steps}  # fmt: skip
    return out


def measure(
    name: str, model: str, timesteps: int | None, ckpt: Path | None, cases: list[dict], time_cases: int, work: Path
) -> dict:
    import torch

    from bundle.inference.evaluate import evaluate_folder
    from bundle.inference.records import file_sha256
    from bundle.inference.settings import InferenceSettings
    from bundle.spiking.activity import ActivityMonitor

    settings = InferenceSettings.from_config(model=model, timesteps=timesteps, device="cpu", ckpt=ckpt and str(ckpt))
    network, info = settings.load()
    out_dir = work / f"{model}_T{info['timesteps']}"
    with ActivityMonitor(network) as monitor:
        summary = evaluate_folder(
            case_folder(cases, work / "data"), out_dir, network, settings.inferer(), info, "all", overlays=0,
            overwrite=True, progress=False, device="cpu", amp=settings.amp, localize=settings.localize,
        )  # fmt: skip
    totals = monitor.totals()
    n = summary["cases_ok"]

    def mean(key: str):
        value = summary.get(key)
        return value.get("mean") if isinstance(value, dict) else None

    row = {
        "name": name, "model": model, "timesteps": info["timesteps"], "date": date.today().isoformat(), "cases": n,
        "checkpoint": Path(info["checkpoint"]).name, "checkpoint_sha256": file_sha256(info["checkpoint"]),
        "windows": summary.get("window"), "mean_dice": summary["mean_dice"],
        **{k: mean(k) for k in ("dice_anterior", "dice_posterior", "hd95_anterior_mm", "hd95_posterior_mm")},
        # per volume, both accounts, and the FP32 / INT8 ANN's on the same windows
        **{k: v / n for k, v in totals.items() if k.endswith("_uj") or k == "traffic_mbit"},
        "mean_firing_rate": totals.get("mean_firing_rate"), "spikes_per_neuron": totals.get("spikes_per_neuron"),
    }  # fmt: skip
    if monitor.spiking:
        row["firing_rates"] = monitor.firing_rates()
        target = {a: row[f"int8_energy_{a}_uj" if a != "compute" else "int8_energy_uj"] * 1e6 * n for a in ACCOUNTS}
        row["break_even_vs_int8"] = break_even(monitor.layer_counts(), monitor.windows, target, info["timesteps"], n)
        target = {a: row[f"ann_energy_{a}_uj" if a != "compute" else "ann_energy_uj"] * 1e6 * n for a in ACCOUNTS}
        row["break_even_vs_ann"] = break_even(monitor.layer_counts(), monitor.windows, target, info["timesteps"], n)
    row["cpu_s_per_volume"] = cpu_time(network, settings, cases[:time_cases], info)
    row["cpu_timing"] = (
        f"network only, best of 3, torch threads {torch.get_num_threads()}, {min(time_cases, len(cases))} cases"
    )
    print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
    return row


def cpu_time(network, settings, cases: list[dict], info: dict) -> float:
    """Seconds of the network alone (the inferer's windows of each case), best of 3 after a warm-up, per volume."""
    import nibabel as nib
    import torch

    from bundle.inference.volume import metatensor

    segmenter = settings.segmenter(network, info, "cpu")
    inferer = settings.inferer()
    images = [segmenter.pre({"image": metatensor(nib.load(c["image"]), c["image"])})["image"] for c in cases]
    best = []
    with torch.no_grad():
        inferer(images[0].unsqueeze(0).as_tensor(), network)  # warm-up (compiled kernels, allocator)
        for image in images:
            x = image.unsqueeze(0).as_tensor()
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                inferer(x, network)
                runs.append(time.perf_counter() - t)
            best.append(min(runs))
    return sum(best) / len(best)


def by_timesteps(m: dict, top: int = 16) -> dict:
    """Break-even rate against the INT8 ANN for T = 1..``top`` from ``m``'s per-step costs. Those depend on the
    architecture and the windows only (weights, membranes, the image's MACs per step; the cost per unit rate), so
    every shipped SNN gives the same curve; what T does to the rate a network fires at is not in it."""
    out = {}
    for account in ACCOUNTS:
        target = m["int8_energy_uj" if account == "compute" else f"int8_energy_{account}_uj"]
        b = m["break_even_vs_int8"][account]
        slope = (target - b["fixed_uj"]) / b["break_even_rate"]  # energy per unit of uniform rate, at m's T
        f, s = b["fixed_uj"] / m["timesteps"], slope / m["timesteps"]
        out[account] = {str(t): (target - t * f) / (t * s) for t in range(1, top + 1)}
    return out


def tables(results: dict) -> str:
    """The Markdown tables of ``results``: the frontier, and the break-even firing rate against T."""
    int8 = next(m for m in results["models"] if m.get("name", m["model"]) == "ann_int8")
    lines = [
        (
            "| model | T | mean Dice | firing rate | energy per volume, mJ: compute only / + SRAM / + DRAM "
            "| vs the INT8 ANN: compute / SRAM / DRAM | CPU s per volume |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in results["models"]:
        e = [m["energy_uj"], m["energy_sram_uj"], m["energy_dram_uj"]]
        ref = [int8["energy_uj"], int8["energy_sram_uj"], int8["energy_dram_uj"]]
        rate = "-" if m.get("mean_firing_rate") is None else f"{m['mean_firing_rate']:.3f}"
        lines.append(
            f"| `{m.get('name', m['model'])}` | {m['timesteps'] or '-'} | {m['mean_dice']:.4f} | {rate} "
            f"| {' / '.join(f'{v / 1000:.2f}' for v in e)} | {' / '.join(f'{v / r:.2f}' for v, r in zip(e, ref))} "
            f"| {m['cpu_s_per_volume']:.2f} |"
        )
    by_t = results.get("break_even_by_T")
    if by_t:
        steps = [t for t in sorted(int(t) for t in by_t["compute"]) if t <= 8 or t == 16]
        lines += ["", "| account | " + " | ".join(f"T={t}" for t in steps) + " |", "| --- |" + " --- |" * len(steps)]
        for account, title in ACCOUNTS.items():
            cells = [by_t[account][str(t)] for t in steps]
            lines.append(f"| {title} | " + " | ".join(f"{c:.3f}" if c > 0 else "none" for c in cells) + " |")
    return "\n".join(lines)


def verdict(results: dict) -> str:
    """The energy verdict in words: the shipped SNNs against the INT8 ANN (the fair baseline) and the FP32 ANN in
    each account, and the break-even firing rate at the default's T against its own."""
    named = {m.get("name", m["model"]): m for m in results["models"] if m.get("name", m["model"]) == m["model"]}
    int8, ann, default = named["ann_int8"], named["ann"], named["snn"]
    snns = [named[n] for n in ("snn", "snn_t2") if n in named]

    def times(m: dict, ref: dict) -> str:
        return " / ".join(f"{m[k] / ref[k]:.2f}x" for k in ENERGY_KEYS)

    cheaper = [f"`{m['model']}`" for m in snns if any(m[k] < int8[k] for k in ENERGY_KEYS)]
    lead = "**no shipped SNN uses less energy**" if not cheaper else f"{', '.join(cheaper)} uses less in some account"
    costs = "; ".join(f"`{m['model']}` (T={m['timesteps']}) {times(m, int8)}" for m in snns)
    t = str(default["timesteps"])
    rate = {a: results["break_even_by_T"][a][t] for a in ACCOUNTS}
    short = {"compute": "compute only", "sram": "with SRAM traffic", "dram": "with DRAM traffic"}
    below = [f"{rate[a]:.3f} ({short[a]})" for a in ACCOUNTS if rate[a] > 0]
    never = [short[a] for a in ACCOUNTS if rate[a] <= 0]
    return (
        f"Against the fair baseline, the ANN quantised to INT8 (`ann_int8`: Dice {int8['mean_dice']:.4f}, "
        f"{int8['energy_uj'] / 1000:.2f} mJ per volume compute only), {lead} (compute only / + SRAM / + DRAM "
        f"traffic): {costs}. At T={t} an SNN of this U-Net breaks even with it below "
        + (f"{' or '.join(below)} spikes per neuron per step" if below else "no rate")
        + (f", and at no rate {' or '.join(never)}" if never and below else "")
        + f"; the default fires {default['mean_firing_rate']:.3f}. Against the FP32 ANN the default costs "
        f"{times(default, ann)}."
    )


def render(results: dict, page: Path) -> str:
    """``page``'s text with the block between the energy markers rendered from ``results``: the tables and the
    verdict in RESULTS, the verdict alone on the model card."""
    if page == MODEL_CARD:
        return render_block(page, BEGIN, END, f"{verdict(results)}\n")
    dates = sorted({m["date"] for m in results["models"]})
    note = f"(`{results['command']}`, rows measured {' to '.join(dict.fromkeys([dates[0], dates[-1]]))})"
    return render_block(page, BEGIN, END, f"{tables(results)}\n\n{note}\n\n**The verdict.** {verdict(results)}\n")


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True)
    for ax, (account, title) in zip(axes, ACCOUNTS.items()):
        key = "energy_uj" if account == "compute" else f"energy_{account}_uj"
        for m in models:
            label = f"{m.get('name', m['model'])}" + (f" T={m['timesteps']}" if m["timesteps"] else "")
            marker = "s" if m["model"].startswith("ann") else "o"
            ax.scatter(m[key] / 1000, m["mean_dice"], marker=marker, s=50)
            below = m.get("name") == "ann_int8_w4"  # beside ann_int8: its label goes below
            ax.annotate(label, (m[key] / 1000, m["mean_dice"]), textcoords="offset points",
                        xytext=(5, -10 if below else 4), fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("energy per volume (mJ, log)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("mean Dice (validation)")
    cases = sorted({m["cases"] for m in models})
    fig.suptitle(f"Dice vs energy per volume, same windows; {'/'.join(map(str, cases))} validation cases "
                 f"({results['date']}; bundle/spiking/energy.py)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(OUT / "frontier_dice_vs_energy.png", dpi=110)
    plt.close(fig)

    snns = [m for m in models if "firing_rates" in m]
    if not snns:
        return
    fig, axes = plt.subplots(len(snns) + 1, 1, figsize=(13, 2.9 * (len(snns) + 1)), squeeze=False)
    for ax, m in zip(axes[:-1, 0], snns):
        names = list(m["firing_rates"])
        rates = [m["firing_rates"][k] for k in names]
        ax.bar(range(len(names)), rates, color="tab:blue", label="firing rate (spikes / neuron / step)")
        for (account, title), color in zip(ACCOUNTS.items(), ("tab:green", "tab:orange", "tab:red")):
            r = m["break_even_vs_int8"][account]["break_even_rate"]
            if r > 0:
                ax.axhline(r, color=color, ls="--", label=f"break-even vs INT8 ANN, {title}: {r:.3f}")
            else:
                ax.plot([], [], color=color, ls="--", label=f"{title}: no rate breaks even ({r:.2f})")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 1)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace(".spiking_0.if_node", "") for n in names], rotation=60, fontsize=7)
        ax.set_title(f"{m['model']} T={m['timesteps']}: per-layer firing rates against the break-even rate", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = axes[-1, 0]
    for m in snns:  # the measured mean rate of each SNN at its T
        ax.scatter(m["timesteps"], m["mean_firing_rate"], color="tab:blue", zorder=3)
        ax.annotate(m.get("name", m["model"]), (m["timesteps"], m["mean_firing_rate"]), textcoords="offset points",
                    xytext=(5, 3), fontsize=7)  # fmt: skip
    for (account, title), color in zip(ACCOUNTS.items(), ("tab:green", "tab:orange", "tab:red")):
        steps = sorted(int(t) for t in results["break_even_by_T"][account])
        rates = [results["break_even_by_T"][account][str(t)] for t in steps]
        ax.plot(steps, [r if r > 0 else float("nan") for r in rates], color=color, ls="--", marker=".",
                label=f"break-even vs INT8 ANN, {title}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 1)
    ax.set_xlabel("T (timesteps)")
    ax.set_ylabel("mean firing rate")
    ax.set_title("break-even firing rate against T (this U-Net on these windows; DRAM: none at any T), and each "
                 "SNN's measured mean rate", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(OUT / "firing_vs_break_even.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=None, help="first N validation cases (default: all 42)")
    p.add_argument("--time-cases", type=int, default=3, help="cases whose windows are timed (default 3)")
    p.add_argument("--models", nargs="*", default=None, help="row names of ROWS to run (default: all)")
    p.add_argument("--plot", action="store_true", help="only re-draw the plots from docs/energy/frontier.json")
    p.add_argument("--work", type=Path, default=None, help="evaluation outputs (default: a temporary folder)")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = json.loads(JSON.read_text(encoding="utf-8")) if JSON.is_file() else {"models": []}
    if not args.plot:
        cases = val_cases(args.cases)
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            for name, model, timesteps, ckpt in ROWS:
                if args.models and name not in args.models:
                    continue
                if ckpt is not None and not ckpt.is_file():
                    print(f"skipped {name}: {ckpt} not found (scripts/quantize_ann.py --weight-bits 4 makes it)")
                    continue
                row = measure(name, model, timesteps, ckpt, cases, args.time_cases, work)
                key = (name, row["timesteps"])
                results["models"] = [m for m in results["models"] if (m.get("name", m["model"]), m["timesteps"]) != key]
                results["models"].append(row)
                results["models"].sort(key=lambda m: ORDER.index(m.get("name", m["model"])) * 100 - m["timesteps"])
                results.update(date=date.today().isoformat(), command="studies/energy_frontier.py",
                               data=f"Task04 validation split (split_seed 0), first {len(cases)} cases, one window "
                               "fitted to each case (models[].cases says per model)")  # fmt: skip
                JSON.write_text(json.dumps(results, indent=1) + "\n")
    default = next((m for m in results["models"] if m["model"] == "snn"), None)
    if default is not None:
        results["break_even_by_T"] = by_timesteps(default)
    JSON.write_text(json.dumps(results, indent=1) + "\n")
    plot(results)
    for page in (RESULTS_MD, MODEL_CARD):
        page.write_text(render(results, page), encoding="utf-8")
    print(tables(results))
    print(f"\n{results['data']}; {results['command']}, {results['date']}")
    print(f"wrote {JSON}, the plots in {OUT} and the energy blocks of {RESULTS_MD} and {MODEL_CARD}")


if __name__ == "__main__":
    main()
