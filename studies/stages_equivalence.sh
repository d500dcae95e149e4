#!/usr/bin/env bash
# The stage modules (0.11.0) against the config-wired stages they replaced (0.10.0, commit b202584): both train
# the same tiny three-stage run on the synthetic default; the ANN checkpoints must be equal, tensor for tensor.
# (Conversion and fine-tuning start from the run's seed since 0.11.0, so their random draws differ by design.)
#   studies/stages_equivalence.sh [OLD_COMMIT] [OUT]
set -euo pipefail
old=${1:-b202584}
out=$(realpath -m "${2:-runs/stages_equivalence}")
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
mkdir -p "$out"
[ -d "$out/old_code" ] || git -C "$repo" worktree add --detach "$out/old_code" "$old"
args=(--epochs 1 --val_interval 1 --timesteps 2 --calibration_cases 2 --finetune_epochs 1 --finetune_timesteps 2
      --refine_epochs 1 --refine_timesteps 1 --channels "[4,8,16,32]" --num_workers 0 --synthetic_cases 4 --val_fraction 0.25)
for side in old new; do
    code=$repo; [ "$side" = old ] && code=$out/old_code
    (cd "$code" && PYTHONPATH=$code "$python" -m monai.bundle run training --config_file configs/train.json \
        --logging_file configs/logging.conf --output_dir "$out/$side" "${args[@]}" > "$out/$side.log" 2>&1)
done
"$python" - "$out" <<'PY'
import sys, torch
out = sys.argv[1]
a = torch.load(f"{out}/old/models/model_ann.pt", map_location="cpu")["model"]
b = torch.load(f"{out}/new/models/model_ann.pt", map_location="cpu")["model"]
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print(f"ANN checkpoints: same keys {set(a) == set(b)}, largest difference {diff}")
sys.exit(0 if set(a) == set(b) and diff == 0.0 else 1)
PY
