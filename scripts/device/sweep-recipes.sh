#!/usr/bin/env bash
# Device sweep for issue 4: Shapes World data + features through the Go pipeline on the device's
# CPUs, then several pre-training recipes side by side on the GPU, each followed by the ITM
# hard-negative fine-tuning. Everything is time-boxed to finish inside one 600 s call.
#
# Run through the device tool from this checkout (README "Default model", GPU sweep):
#   go build -trimpath -ldflags='-s -w' -o .gpu/ship/uniter ./cmd/uniter
#   xz -c .cache/onnxruntime/lib/libonnxruntime.so > .gpu/ship/libonnxruntime.so.xz
#   device run: bash scripts/device/sweep-recipes.sh   (carry .gpu/ship; results come back from $OUT)
set -u
T0=$(date +%s)
cd "$(dirname "$0")/../.."
S=$(cd "${SHIP:-.gpu/ship}" && pwd)  # uniter (built here), libonnxruntime.so.xz, init/ checkpoints
DEVICE=${DEVICE:-cuda}; N_TRAIN=${N_TRAIN:-8000}; END=${END:-575}; PRE_END=${PRE_END:-430}
FT_MIN=${FT_MIN:-1.1}; WORKERS=${WORKERS:-16}; PY=${PY:-python3}
OUT=${OUT:-/tmp/sweep-out}; W=${W:-/tmp/sweep}
mkdir -p "$OUT" "$W/runs"
export PYTHONUNBUFFERED=1
el() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(el)s] $*" | tee -a "$W/runs/driver.log"; }
{ nproc; nvidia-smi -L 2>&1; "$PY" -c 'import torch,numpy;print(torch.__version__,numpy.__version__,torch.cuda.is_available())'; } 2>&1 | tee "$W/runs/machine.txt"
( cd models && timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_pretrain.py -k cuda 2>&1 | tail -3 ) > "$W/runs/cuda-test.txt" &
[ -f "$W/libonnxruntime.so" ] || xz -dc "$S/libonnxruntime.so.xz" > "$W/libonnxruntime.so"
U="$S/uniter"
export UNITER_LIMITS_MAX_CONCURRENT=$WORKERS UNITER_ORT_INTRA_OP_THREADS=1
( "$U" synth -q --split train --count "$N_TRAIN" --workers 12 --out "$W/train" ) &
( "$U" synth -q --split val --workers 4 --out "$W/val" ) &
wait; log "synth done"
"$U" extract -q --bundle bundles/shapes-uniter --ort-library "$W/libonnxruntime.so" --split-dir "$W/train" \
  --out "$W/feat-train" --workers "$WORKERS" --truth-max 4e8 || { log "extract train failed"; exit 1; }
log "extract train done"
"$U" extract -q --bundle bundles/shapes-uniter --ort-library "$W/libonnxruntime.so" --split-dir "$W/val" \
  --out "$W/feat-val" --workers "$WORKERS" || { log "extract val failed"; exit 1; }
log "extract val done"
sha256sum "$W"/feat-train/regions.npz "$W"/feat-train/captions.jsonl | tee -a "$W/runs/driver.log"

H128='{"hidden_size":128,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":512}'
H256='{"hidden_size":256,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":1024}'
# name | config | pre-training flags
RUNS=(
  "A-b128-lr1e-3|$H128|--batch-size 128 --lr 1e-3 --warmup 500 --ot-weight 0.1"
  "B-b128-lr3e-4|$H128|--batch-size 128 --lr 3e-4 --warmup 500 --ot-weight 0.1"
  "C-b32-lr1e-3|$H128|--batch-size 32 --lr 1e-3 --warmup 1000 --ot-weight 0.1"
  "D-h256-b128-lr5e-4|$H256|--batch-size 128 --lr 5e-4 --warmup 500 --ot-weight 0.1"
  "E-b128-lr1e-3-nowra|$H128|--batch-size 128 --lr 1e-3 --warmup 500 --ot-weight 0"
  "F-b256-lr1e-3|$H128|--batch-size 256 --lr 1e-3 --warmup 500 --ot-weight 0.1"
)
[ -n "${ONLY:-}" ] && RUNS=("${RUNS[@]:0:$ONLY}")
one() {
  local name=$1 cfg=$2 flags=$3 d="$W/runs/$1"
  local pre_min; pre_min=$(awk -v e="$(el)" -v p="$PRE_END" 'BEGIN{m=(p-e-25)/60; if(m<0.3)m=0.3; printf "%.2f", m}')
  mkdir -p "$d"
  local ot; ot=$(sed -E 's/.*--ot-weight ([0-9.]+).*/\1/' <<<"$flags")
  # shellcheck disable=SC2086
  "$PY" models/pretrain.py --data "$W/feat-train" --val "$W/feat-val" --out "$d/pre" --config "$cfg" \
    $flags --steps 200000 --minutes "$pre_min" --ckpt-every 2000 --log-every 200 --val-batches 10 \
    --threads 2 --blas-threads 1 --device "$DEVICE" --no-progress > "$d/pre.log" 2>&1 || { echo "pre failed" >> "$d/pre.log"; return; }
  local bs; bs=$(sed -E 's/.*--batch-size ([0-9]+).*/\1/' <<<"$flags")
  "$PY" models/pretrain.py --data "$W/feat-train" --val "$W/feat-val" --out "$d/ft" \
    --config "$d/pre/config.json" --init "$d/pre/final.pt" --mix itm:1 --itm-hard-negatives 4 \
    --batch-size "$bs" --steps 200000 --minutes "$FT_MIN" --lr 3e-4 --warmup 100 --ot-weight "$ot" \
    --ckpt-every 0 --log-every 100 --val-batches 10 --threads 2 --blas-threads 1 --device "$DEVICE" \
    --no-progress > "$d/ft.log" 2>&1 || echo "ft failed" >> "$d/ft.log"
}
for r in "${RUNS[@]}"; do IFS='|' read -r name cfg flags <<<"$r"; one "$name" "$cfg" "$flags" & done
( while sleep 60; do log "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"; for f in "$W"/runs/*/pre.log; do echo "  $f: $(grep -E '^step|budget' "$f" | tail -1 | cut -c1-200)"; done | tee -a "$W/runs/driver.log"; done ) &
MON=$!
wait $(jobs -p | grep -v "^$MON$") 2>/dev/null
kill $MON 2>/dev/null
log "training done"
for r in "${RUNS[@]}"; do
  name=${r%%|*}; d="$W/runs/$name"
  files=()
  for f in pre/config.json pre/final.json ft/final.json ft/final.pt ft/config.json; do [ -f "$d/$f" ] && files+=("$f"); done
  [[ $name == D-* ]] || { [ -f "$d/pre/final.pt" ] && files+=(pre/final.pt); }
  tar -C "$d" -czf "$OUT/$name.tgz" "${files[@]}" 2>/dev/null
done
tar -C "$W/runs" -czf "$OUT/logs.tgz" --exclude='*.pt' . 2>/dev/null
ls -la "$OUT"; log "end"
