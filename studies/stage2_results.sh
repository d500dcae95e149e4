#!/usr/bin/env bash
# Stage 2 numbers in docs/RESULTS.md: the conversion study (Dice, output scaling, firing rates, energy vs T),
# the digits comparison, and the bundle's own `convert` evaluation of the default settings at T=8 and T=16.
# Usage: studies/stage2_results.sh [TASK04_DIR] [STUDY_CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
cases=${2:-12}
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=.

"$python" studies/conversion_study.py --ann models/model_ann.pt --dataset_dir "$data" --cases "$cases" --out docs
"$python" studies/plot_conversion_study.py docs/conversion_study.json docs
"$python" studies/digits_study.py --out docs
for T in 8 16; do
    out=runs/convert_T$T
    "$python" -m monai.bundle run convert --config_file configs/train.json --logging_file configs/logging.conf \
        --dataset_dir "$data" --ann_ckpt models/model_ann.pt --timesteps $T --output_dir $out --ckpt_dir $out/models \
        2>&1 | tee $out.log | grep -E "Metrics|error"
done
echo "converted SNN (T=16): runs/convert_T16/models/model_snn_converted.pt"
