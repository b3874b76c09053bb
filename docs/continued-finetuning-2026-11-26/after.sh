#!/usr/bin/env bash
# after.sh NAME: waits for ft-NAME/final.pt, re-fits the MLM head (as train-shapes.sh), bundles,
# evaluates test-100 then test-1k (FULL=1: with retrieval)
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.."
n=$1
export UNITER_ORT_LIBRARY=$PWD/.cache/onnxruntime/lib/libonnxruntime.so
W=.cache/shapes-train B=bundles/shapes-uniter
while [ ! -f .cache/rel/ft-$n/final.pt ]; do sleep 20; done
sleep 5
printf 'small\nlarge\n' > .cache/rel/size_words.txt
[ -f .cache/rel/head-$n/final.pt ] || /usr/bin/python3 models/pretrain.py --data $W/feat-train --val $W/feat-val --out .cache/rel/head-$n \
  --config .cache/rel/default-ft/config.json --init .cache/rel/ft-$n/final.pt --train-only mlm-head \
  --grounded-words $B/attribute_labels.txt,$B/region_labels.txt,.cache/rel/size_words.txt \
  --grounded-mlm-steps 1500 --steps 1500 --lr 1e-3 --warmup 50 --ot-weight 0.1 \
  --ckpt-every 0 --log-every 100 --threads 1 --blas-threads 1 --no-progress > .cache/rel/head-$n.log 2>&1
/usr/bin/python3 "$HERE/mkbundle.py" .cache/rel/head-$n/final.pt .cache/rel/bundle-$n 2>/dev/null
ev() { UNITER_ORT_INTRA_OP_THREADS=1 UNITER_LIMITS_MAX_CONCURRENT=2 bin/uniter eval --bundle .cache/rel/bundle-$n --ort-library $UNITER_ORT_LIBRARY --split $1 --split-dir .cache/shapes-train/$1 --score-workers 2 "${@:2}"; }
ev test-100 --out .cache/rel/eval-$n-test-100.json -q
if [ "${FULL:-0}" = 1 ]; then ev test-1k --out .cache/rel/eval-$n-test-1k.json -q
else ev test-1k --no-retrieval --out .cache/rel/eval-$n-test-1k-noret.json -q; fi
echo DONE
