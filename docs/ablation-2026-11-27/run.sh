#!/usr/bin/env bash
# The no-WRA ablation at the default's length, exactly as scripts/train-shapes.sh's `train nowra 0`
# runs it (same commands, flags and seeds), from the features already extracted in $WORK with
# the committed detector. The detector's training run is not in git, so the bundle is made with
# the committed detector graph (mkbundle.py) instead of `bundle nowra`.
# PLAN_STEPS (default 0: none, as train-shapes.sh) is its plan stage after the continuation.
# Usage: docs/ablation-2026-11-27/run.sh   (log per stage in $WORK/<stage>.log)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-.cache/shapes-train}
B=bundles/shapes-uniter
CONFIG='{"hidden_size":128,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":512}'
ORT=.cache/onnxruntime/lib/libonnxruntime.so
printf 'small\nlarge\n' > "$WORK/size_words.txt"
common=(--data "$WORK/feat-train" --val "$WORK/feat-val" --threads 1 --blas-threads 1 --device cpu --no-progress)
PLAN_STEPS=${PLAN_STEPS:-0}
# a stage another driver still runs is waited for, not started twice
run() { local out=$1; shift; while pgrep -f -- "--out $out " >/dev/null; do sleep 15; done; [ -f "$out/final.pt" ] && return; echo "== $out $(date -u +%T)"; "$PY" models/pretrain.py "${common[@]}" --out "$out" "$@" > "$out.log" 2>&1; }

run "$WORK/pre-nowra" --config "$CONFIG" --steps 20000 --batch-size 32 --lr 1e-3 --warmup 1000 \
  --grounded-words "$B/attribute_labels.txt,$B/region_labels.txt" --grounded-mlm-steps 2000 \
  --ot-weight 0 --ckpt-every 2000 --log-every 200
run "$WORK/size-nowra" --config "$WORK/pre-nowra/config.json" --init "$WORK/pre-nowra/final.pt" \
  --grounded-words "$WORK/size_words.txt" --grounded-mlm-steps 1000 --steps 1000 --lr 1e-3 --warmup 50 \
  --ot-weight 0 --ckpt-every 1000 --log-every 100
run "$WORK/ft-nowra" --config "$WORK/pre-nowra/config.json" --init "$WORK/size-nowra/final.pt" --mix itm:1 \
  --itm-hard-negatives 8 --itm-near-negatives 0 --plan-distill 2 --plan-absorb --steps 3000 --lr 3e-4 --warmup 200 \
  --ot-weight 0 --ckpt-every 1000 --log-every 100
run "$WORK/cont-nowra" --config "$WORK/pre-nowra/config.json" --init "$WORK/ft-nowra/final.pt" --mix itm:1 \
  --itm-hard-negatives 8 --itm-near-negatives 0 --plan-distill 2 --plan-absorb --steps 21000 --lr 3e-4 --warmup 200 \
  --ot-weight 0 --ckpt-every 2000 --log-every 100
tuned=$WORK/cont-nowra
if [ "$PLAN_STEPS" != 0 ]; then
  tuned=$WORK/plan-nowra
  run "$tuned" --config "$WORK/pre-nowra/config.json" --init "$WORK/cont-nowra/final.pt" --mix itm:1 \
    --itm-hard-negatives 8 --itm-near-negatives 0 --plan-distill 2 --plan-absorb --plan-argmax 0.3 \
    --plan-naming-words "$B/attribute_labels.txt,$B/region_labels.txt,$WORK/size_words.txt" --plan-columns \
    --steps "$PLAN_STEPS" --lr 3e-4 --warmup 200 --ot-weight 0 --ckpt-every 1000 --log-every 100
fi
run "$WORK/head-nowra" --config "$WORK/pre-nowra/config.json" --init "$tuned/final.pt" --train-only mlm-head \
  --grounded-words "$B/attribute_labels.txt,$B/region_labels.txt,$WORK/size_words.txt" \
  --grounded-mlm-steps 1500 --steps 1500 --lr 1e-3 --warmup 50 --ot-weight 0 --ckpt-every 0 --log-every 100
echo "== done $(date -u +%T)"
