#!/usr/bin/env bash
# Issue 13's fair direct-training baseline (docs/RESULTS.md, "Direct training with the three stages' wall time"):
# the spiking U-Net trained from random weights (configs/train_snn_direct.json) with its own recipe, given the
# wall time the three stages (ANN + conversion + fine-tuning) took, then both routes in one plot.
#
#   1. sweep: SWEEP_EPOCHS epochs at each learning rate of LRS (Dice+CE, cosine, WARMUP warm-up epochs,
#      learnable thresholds as in stage 3);
#   2. main: the sweep's best rate, for as many epochs as fit in BUDGET_S seconds at the sweep's pace
#      (default: the default three-stage run's 61 min 28 s, runs/repro);
#   3. plot: validation Dice against training wall time, both routes (studies/plot_routes.py).
# Finished runs are skipped and an interrupted main run resumes (--resume true): rerun the script to continue.
# Usage: studies/direct_baseline.sh [TASK04_DIR]   (env: LRS, SWEEP_EPOCHS, WARMUP, T, BUDGET_S, ROUTE, OUT, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
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

for lr in $lrs; do
    name="sweep_lr$lr"
    if [[ -f $out/$name/models/model_snn_direct.pt ]]; then echo "skip $name"; continue; fi
    echo "$(date -u +%H:%M:%S) $name ($sweep_epochs epochs)"
    direct "$name" "$lr" "$sweep_epochs"
done

# The sweep's winner: best validation Dice; where Dice ties (from random weights every rate may still be at
# 0 after a short sweep), the lowest last-epoch training loss. Prints "LR PACE", PACE = mean s/epoch.
read -r best_lr pace < <("$python" - "$out" $lrs <<'PY'
import csv, sys
out, lrs = sys.argv[1], sys.argv[2:]
rows = {lr: list(csv.DictReader(open(f"{out}/sweep_lr{lr}/history/direct.csv"))) for lr in lrs}
for lr, r in rows.items():
    print(f"lr {lr}: best validation Dice {max(float(x['val_metric'] or 0) for x in r):.4f}, "
          f"last training loss {float(r[-1]['mean_loss']):.4f}", file=sys.stderr)
best = max(lrs, key=lambda lr: (max(float(x["val_metric"] or 0) for x in rows[lr]), -float(rows[lr][-1]["mean_loss"])))
print(best, sum(float(x["seconds"]) for x in rows[best]) / len(rows[best]))
PY
)
[[ -n $best_lr ]] || { echo "error: the sweep's histories in $out could not be read" >&2; exit 1; }
epochs=$("$python" -c "import sys; print(max(1, int(float(sys.argv[1]) // float(sys.argv[2]))))" "$budget" "$pace")
echo "main: lr $best_lr, $epochs epochs of about ${pace%.*} s in a budget of $budget s"
if [[ ! -f $out/main/models/model_snn_direct.pt ]]; then
    echo "$(date -u +%H:%M:%S) main"
    direct main "$best_lr" "$epochs" --resume true
fi
"$python" studies/plot_routes.py --route "$route" --direct "$out/main" --out docs/routes_dice_vs_wall_time.png
