#!/usr/bin/env bash
# Issue 13's fair direct-training baseline (docs/RESULTS.md, "Direct training with the three stages' wall time"):
# the spiking U-Net trained from random weights (configs/train_snn_direct.json) with its own recipe, given the
# wall time the three stages (ANN + conversion + fine-tuning) took, then both routes in one plot.
#
#   1. sweep: SWEEP_EPOCHS epochs at each learning rate of LRS (Dice+CE, cosine, WARMUP warm-up epochs,
#      learnable thresholds as in stage 3);
#   2. main: the sweep's best rate, for as many epochs as fit in BUDGET_S seconds at the sweep's pace
#      (default: the default three-stage run's 61 min 28 s, runs/repro);
#   3. plot: validation Dice against training wall time, both routes (scripts/plot_routes.py).
# Finished runs are skipped and an interrupted main run resumes (--resume true): rerun the script to continue.
# Usage: scripts/direct_baseline.sh [TASK04_DIR]   (env: LRS, SWEEP_EPOCHS, WARMUP, T, BUDGET_S, ROUTE, OUT, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/Task04_Hippocampus}
lrs=${LRS:-"3e-4 1e-3 3e-3"}
sweep_epochs=${SWEEP_EPOCHS:-2}
warmup=${WARMUP:-1}
T=${T:-4}
budget=${BUDGET_S:-3688}
route=${ROUTE:-runs/repro}
out=${OUT:-runs/direct}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"

direct() {  # direct NAME LR EPOCHS [extra args]
    local name=$1 lr=$2 epochs=$3
    shift 3
    "$python" -m monai.bundle run train_snn_direct --config_file "['configs/train.json','configs/train_snn_direct.json']" \
        --logging_file configs/logging.conf --dataset_dir "$data" --output_dir "$out/$name" \
        --finetune_timesteps "$T" --finetune_epochs "$epochs" --finetune_learning_rate "$lr" \
        --finetune_loss dice_ce --finetune_lr_schedule cosine --finetune_warmup_epochs "$warmup" "$@" \
        >> "$out/$name.log" 2>&1
}

best_of() {  # best validation Dice in a history CSV
    "$python" -c "import csv,sys; print(max(float(r['val_metric'] or 0) for r in csv.DictReader(open(sys.argv[1]))))" "$1"
}

for lr in $lrs; do
    name="sweep_lr$lr"
    if [[ -f $out/$name/models/model_snn_direct.pt ]]; then echo "skip $name"; continue; fi
    echo "$(date -u +%H:%M:%S) $name ($sweep_epochs epochs)"
    direct "$name" "$lr" "$sweep_epochs"
done

best_lr="" best=-1 pace=0
for lr in $lrs; do
    h="$out/sweep_lr$lr/history/direct.csv"
    dice=$(best_of "$h")
    echo "lr $lr: best validation Dice $dice after $sweep_epochs epochs"
    if "$python" -c "import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))" "$dice" "$best"; then
        best_lr=$lr best=$dice
        pace=$("$python" -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(sum(float(x['seconds']) for x in r)/len(r))" "$h")
    fi
done
epochs=$("$python" -c "import sys; print(max(1, int(float(sys.argv[1]) // float(sys.argv[2]))))" "$budget" "$pace")
echo "main: lr $best_lr, $epochs epochs of about ${pace%.*} s in a budget of $budget s"
if [[ ! -f $out/main/models/model_snn_direct.pt ]]; then
    echo "$(date -u +%H:%M:%S) main"
    direct main "$best_lr" "$epochs" --resume true
fi
"$python" scripts/plot_routes.py --route "$route" --direct "$out/main" --out docs/routes_dice_vs_wall_time.png
