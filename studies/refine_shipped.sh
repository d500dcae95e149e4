#!/usr/bin/env bash
# The 0.11.1 default SNN (and T=2 model): the shipped 0.9 SNN refined for 8 epochs with the 0.11 training data
# (domain randomisation 0.5, histogram standardisation) and an exponential moving average of its weights (0.99),
# at its own T. About 15 min per model on the 2-core CPU. Issues 31/32: docs/RESULTS.md, "The shipped SNNs refined
# with randomisation".
#   studies/refine_shipped.sh START_CKPT T OUT [KEY VALUE...]      e.g. studies/refine_shipped.sh runs/snn_0.9_default.pt 3 runs/refine_ema
# START_CKPT: the SNN to refine (the 0.9 default: git show 8a79b07:models/model_snn_finetuned.pt > runs/snn_0.9_default.pt;
# the 0.9 T=2 model: git show 8a79b07:models/model_snn_t2.pt). The result: OUT/models/model_snn_finetuned.pt.
# Further config overrides follow (e.g. --randomize 1.0 --refine_learning_rate 5e-5 for a second round).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
start=$(realpath "$1"); steps=$2; out=$(realpath -m "$3"); shift 3
python=${PYTHON:-$repo/.venv/bin/python}
data=${TASK04_DIR:-$repo/../shared/data/Task04_Hippocampus}
mkdir -p "$out/models"
cp "$start" "$out/models/model_snn_finetuned_round1.pt"  # the refine round starts from round 1's file
cp "$repo/models/model_ann.pt" "$repo/models/model_snn_converted.pt" "$out/models/"  # the run's other stages' files
cd "$repo"
"$python" -m monai.bundle run finetune_snn --config_file configs/train.json --logging_file configs/logging.conf \
    --dataset_dir "$data" --output_dir "$out" --resume true --refine_epochs 8 --refine_timesteps "$steps" \
    --finetune_ema_decay 0.99 --finetune_snn "['\$@refine.run()']" "$@"    # the refine round only
