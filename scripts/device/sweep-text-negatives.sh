#!/usr/bin/env bash
# Device run 2 (issue 4): text-side minimal-edit ITM negatives, fine-tuned from run 1's checkpoints.
#
# Run through the device tool from this checkout (README "Default model", GPU sweep):
#   go build -trimpath -ldflags='-s -w' -o .gpu/ship/uniter ./cmd/uniter
#   xz -c .cache/onnxruntime/lib/libonnxruntime.so > .gpu/ship/libonnxruntime.so.xz
#   device run: bash scripts/device/sweep-text-negatives.sh   (carry .gpu/ship; results come back from $OUT)
#   with .gpu/ship/init/NAME/{final.pt,config.json}: the pre-training checkpoints (pre/) of
#   sweep-recipes.sh runs A-b128-lr1e-3 and E-b128-lr1e-3-nowra
set -u
T0=$(date +%s)
cd "$(dirname "$0")/../.."
S=$(cd "${SHIP:-.gpu/ship}" && pwd)  # uniter (built here), libonnxruntime.so.xz, init/ checkpoints
DEVICE=${DEVICE:-cuda}; N_TRAIN=${N_TRAIN:-8000}; TRAIN_END=${TRAIN_END:-215}; WORKERS=${WORKERS:-16}
PY=${PY:-python3}; OUT=${OUT:-/tmp/sweep2-out}; W=${W:-/tmp/sweep2}; EXTRA=${EXTRA:-}
mkdir -p "$OUT" "$W/runs"; export PYTHONUNBUFFERED=1
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(el)s] $*" | tee -a "$W/runs/driver.log"; }
[ -f "$W/libonnxruntime.so" ] || xz -dc "$S/libonnxruntime.so.xz" > "$W/libonnxruntime.so"
U="$S/uniter"; export UNITER_LIMITS_MAX_CONCURRENT=$WORKERS UNITER_ORT_INTRA_OP_THREADS=1
( "$U" synth -q --split train --count "$N_TRAIN" --workers 12 --out "$W/train" ) &
( "$U" synth -q --split val --workers 4 --out "$W/val" ) &
wait; log "synth done"
"$U" extract -q --bundle bundles/shapes-uniter --ort-library "$W/libonnxruntime.so" --split-dir "$W/train" \
  --out "$W/feat-train" --workers "$WORKERS" --truth-max 4e8 || { log "extract failed"; exit 1; }
"$U" extract -q --bundle bundles/shapes-uniter --ort-library "$W/libonnxruntime.so" --split-dir "$W/val" \
  --out "$W/feat-val" --workers "$WORKERS" || { log "extract val failed"; exit 1; }
log "extract done: $(wc -l < "$W/feat-train/false_captions.jsonl") false captions"
I="$S/init"
RUNS=(
  "T1-A-ft-text|A-b128-lr1e-3|0.1|--mix itm:1 --itm-hard-negatives 4 --itm-text-negatives 0.5 --lr 3e-4 --warmup 100"
  "T2-E-ft-text|E-b128-lr1e-3-nowra|0|--mix itm:1 --itm-hard-negatives 4 --itm-text-negatives 0.5 --lr 3e-4 --warmup 100"
  "T3-A-pre-text|A-b128-lr1e-3|0.1|--mix itm:3,mlm:4,mrfr:2,mrc-kl:2 --itm-text-negatives 0.5 --lr 5e-4 --warmup 100"
  "T4-A-ft-text-nohard|A-b128-lr1e-3|0.1|--mix itm:1 --itm-text-negatives 0.5 --lr 3e-4 --warmup 100"
)
for r in "${RUNS[@]}"; do
  IFS='|' read -r name init ot flags <<<"$r"
  m=$(awk -v e="$(el)" -v p="$TRAIN_END" 'BEGIN{m=(p-e-20)/60; if(m<0.2)m=0.2; printf "%.2f", m}')
  # shellcheck disable=SC2086
  ( "$PY" models/pretrain.py --data "$W/feat-train" --val "$W/feat-val" --out "$W/runs/$name" \
      --config "$I/$init/config.json" --init "$I/$init/final.pt" --ot-weight "$ot" $flags \
      --batch-size 128 --steps 200000 --minutes "$m" --ckpt-every 0 --log-every 100 --val-batches 10 \
      --threads 2 --blas-threads 1 --device "$DEVICE" --no-progress $EXTRA > "$W/runs/$name.log" 2>&1 \
    || echo "failed" >> "$W/runs/$name.log" ) &
done
wait
log "training done"
for r in "${RUNS[@]}"; do
  name=${r%%|*}; d="$W/runs/$name"
  [ -f "$d/final.pt" ] && tar -C "$d" -czf "$OUT/$name.tgz" final.pt final.json config.json log.jsonl
done
tar -C "$W/runs" -czf "$OUT/logs2.tgz" --exclude='*.pt' . ; ls -la "$OUT"; log end
