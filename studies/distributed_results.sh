#!/usr/bin/env bash
# One process vs N processes (torchrun, gloo on CPU / NCCL on GPUs): the same three-stage training on the
# same data, then every model of each run evaluated on the same validation split.
# Usage: studies/distributed_results.sh [NPROC] [OUT_DIR] [extra monai.bundle overrides...]
# Default: 2 processes, the embedded synthetic dataset, the default budget (60 ANN + 10 fine-tuning epochs).
# Runs: single (one process), ddpN (batch_size 4 per process), ddpN_batchB (4/N per process: the same global batch).
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=${1:-2}
OUT=${2:-runs/distributed}
shift $(( $# > 2 ? 2 : $# ))
PY=${PYTHON:-python}
CONFIGS="['configs/train.json','configs/multi_gpu_train.json']"
run() {  # run <name> <config> <python launcher...>
  local name=$1 config=$2; shift 2
  [ -f "$OUT/$name/models/model_snn_finetuned.pt" ] && return
  local start=$SECONDS
  "$@" -m monai.bundle run training --config_file "$config" --logging_file configs/logging.conf \
    --output_dir "$OUT/$name" "${EXTRA[@]}" > "$OUT/$name.log" 2>&1
  echo "$name: $(( SECONDS - start )) s wall" | tee -a "$OUT/times.txt"
}
EXTRA=("$@")
mkdir -p "$OUT"
run single configs/train.json $PY
export OMP_NUM_THREADS=$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))
# MONAI's convention: batch_size per process (N x the global batch, 1/N of the steps per epoch) ...
run "ddp$NPROC" "$CONFIGS" $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC"
# ... and the one-process run's global batch (4 = train.json's batch_size), split over the processes
EXTRA=("$@" --batch_size $(( 4 / NPROC > 0 ? 4 / NPROC : 1 )))
run "ddp${NPROC}_batch$(( 4 / NPROC ))" "$CONFIGS" $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC"
unset OMP_NUM_THREADS

# the same validation cases for every model (seed 0, 20%), scored by the batch-inference evaluator
for name in single "ddp$NPROC" "ddp${NPROC}_batch$(( 4 / NPROC ))"; do
  for model in ann snn_converted snn; do
    file=$(case $model in ann) echo model_ann.pt;; snn_converted) echo model_snn_converted.pt;; snn) echo model_snn_finetuned.pt;; esac)
    dst="$OUT/eval/$name/$model"
    [ -f "$dst/summary.json" ] || $PY -m bundle.cli evaluate "$OUT/single/synthetic_data" "$dst" --split val --overlays 0 \
      --quiet --model $model --ckpt "$OUT/$name/models/$file" --device cpu
    printf "%-8s %-14s mean Dice %s\n" "$name" "$model" "$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['mean_dice'])" "$dst/summary.json")"
  done
done
