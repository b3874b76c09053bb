#!/usr/bin/env bash
# cont.sh NAME STEPS [FLAGS...]: the default's ITM fine-tuning recipe (scripts/train-shapes.sh:
# 8 hard-negative candidates, plan distillation 2 with absorbers, lr 3e-4, warm-up 200, linear
# decay) run again for STEPS steps from the committed default model, recovered from its bundle.
# Later FLAGS override (e.g. --plan-distill 4). Needs the train/val features of the committed
# detector: uniter extract --bundle bundles/shapes-uniter ... --truth-max 4e8 (train, val).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 steps=$2; shift 2
W=${WORK:-.cache/shapes-train}
R=${RUNS:-.cache/rel}
# FROM: the run under RUNS to start from (default default-ft); recovered from the committed bundle when missing.
F=$R/${FROM:-default-ft}
[ -f "$F/final.pt" ] || /usr/bin/python3 models/recover_checkpoint.py --bundle bundles/shapes-uniter --out "$F"
/usr/bin/python3 models/pretrain.py --data "$W/feat-train" --val "$W/feat-val" --out "$R/ft-$name" \
  --config "$F/config.json" --init "$F/final.pt" --mix itm:1 \
  --itm-hard-negatives 8 --itm-near-negatives 0 --plan-distill 2 --plan-absorb --steps "$steps" --lr 3e-4 --warmup 200 --ot-weight 0.1 \
  --ckpt-every 2000 --log-every 100 --threads 1 --blas-threads 1 --no-progress "$@"
