#!/usr/bin/env bash
# Stage 3 numbers in docs/RESULTS.md: spiking fine-tuning vs direct training at T=2/4/8, binary vs ternary,
# learnable scales; then every model scored on the validation split (per-class Dice, HD95, firing rate,
# energy) and the comparison tables and plots (studies/plot_stage3.py).
# Runs that already have their checkpoint are skipped, so an interrupted study can simply be rerun.
# Usage: studies/stage3_results.sh [TASK04_DIR]   (env: EPOCHS, EPOCHS_T8, LR, LR_DIRECT, OUT, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-$(python3 -c 'import studies; print(studies.dataset_dir())')}
epochs=${EPOCHS:-2}
epochs_t8=${EPOCHS_T8:-1}  # T=8 costs twice as much per epoch
lr=${LR:-1e-4}
lr_direct=${LR_DIRECT:-1e-3}
out=${OUT:-runs/stage3}
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=.
mkdir -p "$out"

stage() {  # stage NAME CKPT RUN_ID CONFIGS [overrides...]: one training run, logged to $out/NAME.log
    local name=$1 ckpt=$2 run_id=$3 configs=$4; shift 4
    if [[ -f $ckpt ]]; then echo "skip $name ($ckpt exists)"; return; fi
    echo "$(date -u +%H:%M:%S) $name"
    "$python" -m monai.bundle run "$run_id" --config_file "$configs" --logging_file configs/logging.conf \
        --dataset_dir "$data" --output_dir "$out/$name" --ckpt_dir "$out/$name/models" "$@" > "$out/$name.log" 2>&1
}
finetune() {  # finetune NAME T CONVERTED LEARN_SCALES [overrides...]
    local name=$1 T=$2 converted=$3 scales=$4; shift 4
    local n=$epochs; [[ $T == 8 ]] && n=$epochs_t8
    stage "$name" "$out/$name/models/model_snn_finetuned.pt" finetune_snn configs/train.json \
        --snn_converted_ckpt "$converted" --finetune_timesteps "$T" --finetune_epochs "$n" \
        --finetune_learning_rate "$lr" --finetune_learn_scales "$scales" --refine_epochs 0 "$@"
}
direct() {  # direct NAME T [overrides...]
    local name=$1 T=$2; shift 2
    stage "$name" "$out/$name/models/model_snn_direct.pt" train_snn_direct \
        "['configs/train.json','configs/train_snn_direct.json']" --finetune_timesteps "$T" \
        --finetune_epochs "$epochs" --finetune_learning_rate "$lr_direct" "$@"
}

# the headline comparison at T=4 first: fine-tuning (without / with learnable scales, two rounds) vs direct
# (epochs as run for docs/RESULTS.md; ft_ternary_T4 predates the cosine schedule)
epochs=5 finetune ft_ternary_T4 4 models/model_snn_converted.pt false --finetune_lr_schedule constant
epochs=4 finetune ft_ternary_T4_scales 4 models/model_snn_converted.pt true --finetune_lr_schedule cosine
# a second round from the first one's best model: 5 more epochs at half the learning rate (cosine again)
epochs=5 lr=5e-5 finetune ft_ternary_T4_scales_more 4 "$out/ft_ternary_T4_scales/models/model_snn_finetuned.pt" true --finetune_lr_schedule cosine
epochs=5 direct direct_ternary_T4 4 --finetune_lr_schedule constant

evaluate() {  # evaluate NAME MODEL CKPT T: per-case Dice/HD95/volumes/energy on the validation split
    local name=$1 model=$2 ckpt=$3 T=$4
    [[ -f $ckpt ]] || { echo "no $ckpt: $name not evaluated"; return; }
    [[ -f $out/eval/$name/summary.json ]] && { echo "skip eval $name"; return; }
    echo "$(date -u +%H:%M:%S) evaluate $name"
    local steps=(); [[ $T != 0 ]] && steps=(--timesteps "$T")
    "$python" -m bundle.cli evaluate "$data" "$out/eval/$name" --split val --model "$model" --ckpt "$ckpt" \
        "${steps[@]}" --overlays 2 --quiet || echo "evaluation of $name: some cases failed (see above)"
}
evaluate ann ann models/model_ann.pt 0
evaluate converted_ternary_T4 snn_converted models/model_snn_converted.pt 4
evaluate ft_ternary_T4_scales_more snn "$out/ft_ternary_T4_scales_more/models/model_snn_finetuned.pt" 4
evaluate direct_ternary_T4 snn "$out/direct_ternary_T4/models/model_snn_direct.pt" 4

# then T=2 and T=8, and binary neurons
epochs=3 finetune ft_ternary_T2 2 models/model_snn_converted.pt true
direct direct_ternary_T2 2
stage convert_binary "$out/convert_binary/models/model_snn_converted.pt" convert configs/train.json \
    --ann_ckpt models/model_ann.pt --neuron binary --timesteps 4
finetune ft_binary_T4 4 "$out/convert_binary/models/model_snn_converted.pt" true
finetune ft_ternary_T8 8 models/model_snn_converted.pt true

for T in 2 8; do evaluate converted_ternary_T$T snn_converted models/model_snn_converted.pt $T; done
for T in 2 8; do evaluate ft_ternary_T$T snn "$out/ft_ternary_T$T/models/model_snn_finetuned.pt" $T; done
evaluate converted_binary_T4 snn_converted "$out/convert_binary/models/model_snn_converted.pt" 4
evaluate ft_binary_T4 snn "$out/ft_binary_T4/models/model_snn_finetuned.pt" 4
evaluate direct_ternary_T2 snn "$out/direct_ternary_T2/models/model_snn_direct.pt" 2
evaluate ft_ternary_T4 snn "$out/ft_ternary_T4/models/model_snn_finetuned.pt" 4
evaluate ft_ternary_T4_scales snn "$out/ft_ternary_T4_scales/models/model_snn_finetuned.pt" 4

"$python" studies/plot_stage3.py "$out" docs
