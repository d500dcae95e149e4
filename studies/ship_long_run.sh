#!/usr/bin/env bash
# The long retraining of issues 31/32, from resume to the figures: runs (or resumes) `training` with
# configs/shipped.json, the run list that made the shipped models (stage 1, conversion, stage 3 at T=4 and the
# refine round without randomisation, as in 0.9; then the T=3 and T=2 chains of refine rounds, each at its own
# randomisation), refines the stage-1 ANN as the shipped one was (studies/refine_ann.sh: 10 epochs at randomisation
# 0.5), then scores the new models on the validation split under every named shift and on the real public heads,
# writing JSONs beside the shipped models' ones. Copying the models into models/ is left to a person who has read
# those JSONs (the last lines print the commands).
#   studies/ship_long_run.sh [OUT] [CODE]      (CODE: the checkout that trains; default this one)
# About 4 h alone on the 2-core CPU; stop it at any time and run it again: finished stages and rounds are skipped,
# a half-done one continues from its last epoch.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/runs/long}")
code=${2:-$repo}
python=${PYTHON:-$repo/.venv/bin/python}
data=${TASK04_DIR:-$repo/../shared/data/Task04_Hippocampus}
run() {  # run ID CONFIG_FILES [overrides]
    local id=$1 configs=$2; shift 2
    (cd "$code" && PYTHONPATH=$code "$python" -m monai.bundle run "$id" --config_file "$configs" \
        --logging_file configs/logging.conf --dataset_dir "$data" --resume true "$@")
}

run training "['configs/train.json','configs/shipped.json']" --output_dir "$out"
m=$out/models
# the shipped ANN: stage 1's refined on randomised data (the arguments of studies/refine_ann.sh)
run train_ann configs/train.json --output_dir "$out/ann_refine" --ann_init_ckpt "$m/model_ann.pt" --epochs 10 \
    --learning_rate 3e-4 --ema_decay 0.99 --val_interval 1 --randomize 0.5
ann=$out/ann_refine/models/model_ann.pt
"$python" "$repo/studies/robustness.py" --shifts all --out "$repo/docs/robustness/retrained.json" \
    --models "ann=$ann,snn=$m/model_snn_finetuned.pt,snn_t2=$m/model_snn_t2.pt"
"$python" "$repo/studies/real_scans/check.py" --out "$repo/docs/real_scans_retrained.json" \
    --models "ann=$ann,snn=$m/model_snn_finetuned.pt"
cat <<MSG
Read docs/robustness/retrained.json and docs/real_scans_retrained.json; to ship:
  cp $ann $m/model_snn_converted.pt $m/model_snn_finetuned.pt $m/model_snn_t2.pt models/
  (new confidence floors: the JSON's confidence_p1_unshifted -> CONFIDENCE_FLOORS and confidence_p1_coarse ->
   COARSE_CONFIDENCE_FLOORS in bundle/inference/catalog.py)
  $python studies/model_card.py          # docs/results.json and every table made from it
MSG
