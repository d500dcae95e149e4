#!/usr/bin/env bash
# The ANN refined like the SNNs (studies/refine_shipped.sh): a trained ANN continued for a few epochs on the 0.11
# training data (domain randomisation, histogram standardisation) at a tenth of the stage-1 learning rate, with an
# exponential moving average of its weights (0.99). About 6 min for 10 epochs on the 2-core CPU. Issue 31:
# docs/RESULTS.md, "The ANN refined with randomisation".
#   studies/refine_ann.sh START_CKPT OUT [RANDOMIZE]    e.g. studies/refine_ann.sh runs/ann_0.11.1.pt runs/ann_refine
# START_CKPT: the ANN to refine (the 0.11.1 ANN: git show 3377b9e:models/model_ann.pt > runs/ann_0.11.1.pt).
# The result: OUT/models/model_ann.pt (the best validation epoch).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
start=$(realpath "$1"); out=$(realpath -m "$2"); randomize=${3:-0.5}
python=${PYTHON:-$repo/.venv/bin/python}
data=${TASK04_DIR:-$repo/../shared/data/Task04_Hippocampus}
cd "$repo"
"$python" -m monai.bundle run train_ann --config_file configs/train.json --logging_file configs/logging.conf \
    --dataset_dir "$data" --output_dir "$out" --ann_init_ckpt "$start" --epochs 10 --learning_rate 3e-4 \
    --ema_decay 0.99 --val_interval 1 --randomize "$randomize"
