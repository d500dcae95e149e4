#!/usr/bin/env bash
# Stage 1 on real data: trains the ANN on Task04 and copies the best checkpoint to models/.
# Usage: studies/train_ann_task04.sh [TASK04_DIR] [OUTPUT_DIR] [extra monai.bundle overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
out=${2:-runs/task04}
shift $(( $# < 2 ? $# : 2 ))
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
start=$(date +%s)
"$python" -m monai.bundle run train_ann --config_file configs/train.json --logging_file configs/logging.conf \
    --dataset_dir "$data" --output_dir "$out" "$@" 2>&1 | tee "$out/train_ann.log"
echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$out/train_ann.log"
"$python" studies/plot_training.py "$out/tensorboard/ann" docs/ann_training.png
echo "best checkpoint: $out/models/model_ann.pt (copy it to models/ to ship it)"
