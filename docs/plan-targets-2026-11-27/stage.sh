#!/usr/bin/env bash
# stage.sh NAME STEPS [FLAGS...]: the default's ITM fine-tuning recipe (train-shapes.sh: 8 hard-negative
# candidates, plan distillation 2 with absorbers, lr 3e-4, warm-up 200, linear decay) run for STEPS more
# steps from the default's model (.cache/rel/head-C21: the continued fine-tuning with its MLM head re-fit;
# models/recover_checkpoint.py --bundle bundles/shapes-uniter gives it back), FLAGS added (--plan-argmax D).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 steps=$2; shift 2
W=${WORK:-.cache/shapes-train}
R=${RUNS:-.cache/rel}
[ -f "$R/head-C21/final.pt" ] || /usr/bin/python3 models/recover_checkpoint.py --bundle bundles/shapes-uniter --out "$R/head-C21"
/usr/bin/python3 models/pretrain.py --data "$W/feat-train" --val "$W/feat-val" --out "$R/ft-$name" \
  --config "$R/head-C21/config.json" --init "$R/head-C21/final.pt" --mix itm:1 \
  --itm-hard-negatives 8 --itm-near-negatives 0 --plan-distill 2 --plan-absorb --steps "$steps" --lr 3e-4 --warmup 200 --ot-weight 0.1 \
  --ckpt-every 500 --log-every 100 --threads 1 --blas-threads 1 --no-progress "$@"
