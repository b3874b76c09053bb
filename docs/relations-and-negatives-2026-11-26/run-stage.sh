#!/usr/bin/env bash
# run.sh NAME INIT_CKPT CURRIC_STEPS STEPS [SIZE_AFTER=0|1]: relation stage (+ optional size stage) → ft → eval
set -euo pipefail
cd /work/main
W=.cache/shapes-train; R=.cache/rel; n=$1; init=$2; cur=$3; steps=$4; size_after=${5:-0}
PY=/usr/bin/python3
common="--threads 1 --blas-threads 1 --no-progress --ot-weight 0.1"
$PY models/pretrain.py --data $W/feat-train --val $W/feat-val --out $R/rel-$n --config $W/pre-wra/config.json \
  --init $init --grounded-words $R/relation_words.txt --grounded-mlm-steps $steps --steps $steps \
  --grounded-images $R/two_object_images.txt --grounded-images-steps $cur --batch-size 64 \
  --lr 1e-3 --warmup 50 --ckpt-every 0 --log-every 100 $common > $R/rel-$n.log 2>&1
$PY docs/location-2026-11-26/location-study.py relation 0 $R/rel-$n/final.pt > $R/probe-rel-$n.log 2>&1
$PY docs/location-2026-11-26/location-study.py size 0 $R/rel-$n/final.pt >> $R/probe-rel-$n.log 2>&1
ftinit=$R/rel-$n/final.pt
if [ "$size_after" = 1 ]; then
  $PY models/pretrain.py --data $W/feat-train --val $W/feat-val --out $R/size-$n --config $W/pre-wra/config.json \
    --init $ftinit --grounded-words $W/size_words.txt --grounded-mlm-steps 1000 --steps 1000 --lr 1e-3 --warmup 50 \
    --ckpt-every 1000 --log-every 100 $common > $R/size-$n.log 2>&1
  $PY docs/location-2026-11-26/location-study.py relation 0 $R/size-$n/final.pt >> $R/probe-rel-$n.log 2>&1
  $PY docs/location-2026-11-26/location-study.py size 0 $R/size-$n/final.pt >> $R/probe-rel-$n.log 2>&1
  ftinit=$R/size-$n/final.pt
fi
$PY models/pretrain.py --data $W/feat-train --val $W/feat-val --out $R/ft-$n --config $W/pre-wra/config.json \
  --init $ftinit --mix itm:1 --itm-hard-negatives 4 --steps 3000 --lr 3e-4 --warmup 200 \
  --ckpt-every 1000 --log-every 100 $common > $R/ft-$n.log 2>&1
bash $R/evalrun.sh $n $R/ft-$n
