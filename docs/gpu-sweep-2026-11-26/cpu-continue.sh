#!/usr/bin/env bash
# CPU continuation of GPU run A: more steps (V1) vs MLM-heavy mix + minimal-edit negatives (V2).
cd /work/main; W=.cache/sweep; I=$W/A-b128-lr1e-3/pre; PY=/usr/bin/python3
run() { # name data minutes flags...
  local name=$1 data=$2 min=$3; shift 3
  $PY models/pretrain.py --data $data --val .cache/sweep/feat-val2 --out $W/$name-pre --config $I/config.json \
    --init $I/final.pt --batch-size 128 --lr 5e-4 --warmup 200 --steps 100000 --minutes $min --ckpt-every 0 \
    --log-every 200 --val-batches 10 --threads 1 --blas-threads 1 --no-progress "$@" > $W/$name-pre.log 2>&1
  $PY models/pretrain.py --data $data --val .cache/sweep/feat-val2 --out $W/$name-ft --config $I/config.json \
    --init $W/$name-pre/final.pt --mix itm:1 --itm-hard-negatives 4 --batch-size 64 --lr 3e-4 --warmup 100 \
    --steps 100000 --minutes 6 --ckpt-every 0 --log-every 100 --val-batches 10 --threads 1 --blas-threads 1 --no-progress > $W/$name-ft.log 2>&1
  .cache/sweep/evalall.sh $name-ft > $W/$name-eval.log 2>&1
}
run V1-more-steps .cache/shapes-train/feat-train 38 &
UNITER_LIMITS_MAX_CONCURRENT=1 bin/uniter extract -q --bundle bundles/shapes-uniter --ort-library .cache/onnxruntime/lib/libonnxruntime.so \
  --split-dir .cache/shapes-train/train --out $W/feat-train2 --workers 1 --truth-max 4e8 > $W/extract2.log 2>&1
run V2-mlm-textneg $W/feat-train2 32 --mix itm:3,mlm:8,mrfr:1,mrc-kl:2 --itm-text-negatives 0.5 &
wait
