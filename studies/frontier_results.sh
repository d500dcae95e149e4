#!/usr/bin/env bash
# Dice vs energy of the shipped models at fixed and adaptive T (docs/RESULTS.md, "The frontier: fixed and
# adaptive T"): each run is `hippo-snn evaluate` on the 42 validation cases; runs with a summary are kept.
# Usage: studies/frontier_results.sh [DATASET_DIR] [OUT_DIR]; then python studies/frontier_table.py OUT_DIR
#   [--levers runs/levers_lowT --direct runs/direct/main.log] [--plot docs/frontier_dice_vs_energy.png]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
OUT=${2:-runs/issue13}
PY=${PYTHON:-python}
run() {
  name=$1; shift
  [ -f "$OUT/$name/summary.json" ] || \
    $PY -m bundle.cli evaluate "$DATA" "$OUT/$name" --split val --overlays 0 --quiet --overwrite "$@"
}
run ann --model ann
for T in 2 3 4 5 6 8; do run "snn_T$T" --model snn --timesteps "$T"; done
for T in 1 2 3 4; do run "snn_t2_T$T" --model snn_t2 --timesteps "$T"; done
for T in 8 9 10 16; do run "conv_T$T" --model snn_converted --timesteps "$T"; done
run snn_T4_stable_p1_tol1e-2 --model snn --timesteps 4 --adaptive stable --patience 1 --tolerance 1e-2
run snn_T8_stable_p1_tol1e-3 --model snn --timesteps 8 --adaptive stable --patience 1 --tolerance 1e-3
run snn_T8_stable_p2_tol1e-3 --model snn --timesteps 8 --adaptive stable --patience 2 --tolerance 1e-3
run conv_T16_stable_p1_tol1e-3 --model snn_converted --timesteps 16 --adaptive stable --patience 1 --tolerance 1e-3
