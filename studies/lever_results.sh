#!/usr/bin/env bash
# Issue 13's fine-tuning levers (docs/RESULTS.md, "Levers"): the shipped fine-tuned SNN fine-tuned again
# for a few epochs at T=4 with a firing-rate penalty of several weights (0 = the control), so that the
# penalty's effect on Dice and energy is read against the same start and the same schedule.
# Runs that already have their checkpoint are skipped (an interrupted study can simply be rerun).
# DISTILL > 0 adds distillation from the shipped ANN (temperature TEMP) to every run; runs with other
# than 2 epochs or with distillation carry that in their name.
# Usage: studies/lever_results.sh [TASK04_DIR]   (env: EPOCHS, LR, T, PENALTIES, DISTILL, TEMP, START, ANN, OUT, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
epochs=${EPOCHS:-2}
lr=${LR:-5e-5}
T=${T:-4}
penalties=${PENALTIES:-"0 0.5 2"}
distill=${DISTILL:-0}
temp=${TEMP:-2}
start=${START:-models/model_snn_finetuned.pt}
ann=${ANN:-models/model_ann.pt}
out=${OUT:-runs/levers}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
suffix=""
[[ $epochs == 2 ]] || suffix+="_e$epochs"
[[ $distill == 0 ]] || suffix+="_kd$distill"
for w in $penalties; do
    name="rate${w}_T${T}${suffix}"
    ckpt="$out/$name/models/model_snn_finetuned.pt"
    if [[ -f $ckpt ]]; then echo "skip $name ($ckpt exists)"; continue; fi
    echo "$(date -u +%H:%M:%S) $name"
    "$python" -m monai.bundle run finetune_snn --config_file configs/train.json --logging_file configs/logging.conf \
        --dataset_dir "$data" --snn_converted_ckpt "$start" --output_dir "$out/$name" --ckpt_dir "$out/$name/models" \
        --finetune_timesteps "$T" --finetune_epochs "$epochs" --finetune_learning_rate "$lr" \
        --finetune_lr_schedule cosine --finetune_rate_penalty "$w" --refine_epochs 0 \
        --finetune_distill_weight "$distill" --finetune_distill_temperature "$temp" --ann_ckpt "$ann" > "$out/$name.log" 2>&1
done
# per epoch: validation mean Dice, firing rate and energy against the ANN on the same windows
for w in $penalties; do
    log="$out/rate${w}_T${T}${suffix}.log"
    [[ -f $log ]] || continue
    echo "rate penalty $w${suffix:+ ($suffix)}:"
    grep -o "val_energy_vs_ann: [0-9.]* val_firing_rate: [0-9.]* val_mean_dice: [0-9.]*" "$log" | sed 's/^/  /'
done
