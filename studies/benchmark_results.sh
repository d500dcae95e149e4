#!/usr/bin/env bash
# The speed figures of docs/RESULTS.md ("Speed"): benchmark runs and the Dice check of the fast paths.
# Usage: studies/benchmark_results.sh [DATASET_DIR] [OUT_DIR]     (run it alone on the machine)
# BEFORE=<path of a checkout of an older commit> adds the same benchmark on that code ("before").
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
OUT=${2:-docs/benchmark}
mkdir -p "$OUT"
PY=${PYTHON:-python}
device=${DEVICE:-cpu}

# 1. Dice on the 42 validation cases (runs/benchmark_eval/*/summary.json): compiled vs eager neuron
#    kernels, float32 vs mixed precision
for run in "snn --kernel compiled" "snn --kernel eager" "snn --amp" "ann" "ann --amp"; do
  name=$(echo "$run" | tr -d '-' | tr ' ' '_')
  [ -f "runs/benchmark_eval/$name/summary.json" ] || \
    $PY -m bundle.cli evaluate "$DATA" "runs/benchmark_eval/$name" --split val --overlays 0 --quiet --device "$device" \
      --model $run
done

# 2. time per volume, memory, training steps (8 validation volumes)
bench() { $PY studies/benchmark.py --dataset_dir "$DATA" --device "$device" --cases 8 --repeats 3 "$@"; }
bench --out "$OUT/$device.json" | tee "$OUT/$device.txt"
bench --kernel eager --out "$OUT/${device}_eager.json" | tee "$OUT/${device}_eager.txt"
bench --activity --skip_training --out "$OUT/${device}_activity.json" | tee "$OUT/${device}_activity.txt"
bench --amp --out "$OUT/${device}_amp.json" | tee "$OUT/${device}_amp.txt"
if [ -n "${BEFORE:-}" ]; then
  PYTHONPATH="$BEFORE" bench --kernel eager --default_allocator --out "$OUT/${device}_before.json" | tee "$OUT/${device}_before.txt"
fi
runs=("$OUT/${device}_eager.json" "$OUT/$device.json" "$OUT/${device}_activity.json" "$OUT/${device}_amp.json")
[ -f "$OUT/${device}_before.json" ] && runs=("$OUT/${device}_before.json" "${runs[@]}")
$PY studies/plot_benchmark.py "${runs[@]}" --out "$OUT/ratio_per_T.png"
