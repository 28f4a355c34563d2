#!/usr/bin/env bash
# Evaluate a campaign checkpoint on the fixed subset (issue 24): 5 piper-joe valid files + 5 asterisk-en files.
#   bash training/configs/campaign/evaluate.sh runs/c0 [OUT]      (OUT default: eval/<run>-<step>)
# Exports RUN/checkpoint.pt to OUT/model.safetensors (dense before the run's pruning starts, block-sparse after, as
# `training export` would write the bundled model), then runs training.evaluate on each half of the subset into
# OUT/piper-joe and OUT/asterisk-en (report.json, report.md, spectrograms.png). SEED (default 0) seeds sampling.
set -euo pipefail
run=${1:?usage: evaluate.sh RUNDIR [OUT]}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
data=${PYWAVERNN_DATA:-$repo/../shared/data}
read -r step dense < <(python -c "
import sys, torch
ckpt = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
print(ckpt['step'], '--dense' if ckpt['step'] <= ckpt['config'].get('pruning', {}).get('t0', 0) else '')" "$run/checkpoint.pt")
seed=${SEED:-0}
out=${2:-eval/$(basename "$run")-$step$([ "$seed" = 0 ] || echo "-seed$seed")}
mkdir -p "$out"
python -m training export "$run/checkpoint.pt" -o "$out/model.safetensors" $dense \
  --note "licence=research and demonstration use only (trained on piper-joe, a synthetic Piper voice; see ../shared/data/README.md)"
for set in piper-joe asterisk-en; do
  python -m training.evaluate "$out/model.safetensors" --data "$data/$set" \
    --list "$repo/training/eval_lists/campaign_$set.txt" --out "$out/$set" --figures 2 --seed "$seed"
done
echo "evaluated $run at step $step: $out"
