#!/usr/bin/env bash
# ftx.sh NAME DATA EXTRA...: the script's ITM fine-tuning (K=8) from the default's size stage on DATA with extra flags → eval
set -euo pipefail
cd /work/main
W=.cache/shapes-train; R=.cache/rel; n=$1; data=$2; shift 2
/usr/bin/python3 models/pretrain.py --data $data --val $W/feat-val --out $R/ft-$n --config $W/pre-wra/config.json \
  --init ${INIT:-$W/size-wra/final.pt} --mix itm:1 --itm-hard-negatives 8 --steps 3000 --lr 3e-4 --warmup 200 \
  --ckpt-every 1000 --log-every 100 --threads 1 --blas-threads 1 --no-progress --ot-weight 0.1 "$@" > $R/ft-$n.log 2>&1
bash $R/evalrun.sh $n $R/ft-$n
