#!/usr/bin/env bash
# evalrun.sh NAME RUN_DIR: bundle + test-100 eval + location probe
set -euo pipefail
cd /work/main
W=.cache/shapes-train; n=$1; run=$2; out=.cache/rel
/usr/bin/python3 models/make_shapes_bundle.py --detector $W/detector/detector.pt --vocab $W/vocab.txt \
  --checkpoint $run/final.pt --config $run/config.json --name shapes-uniter-$n \
  --provenance '{"experiment":"relation stage '$n'"}' --out $out/bundle-$n > $out/bundle-$n.log 2>&1
UNITER_ORT_INTRA_OP_THREADS=1 UNITER_LIMITS_MAX_CONCURRENT=1 bin/uniter eval --bundle $out/bundle-$n \
  --ort-library .cache/onnxruntime/lib/libonnxruntime.so --split test-100 --split-dir $W/test-100 \
  --score-workers 1 --out $out/eval-$n-test-100.json > $out/eval-$n.log 2>&1
/usr/bin/python3 docs/location-2026-11-26/location-probe.py $run/final.pt > $out/probe-$n.log 2>&1
echo done $n
