#!/usr/bin/env bash
# ftk.sh NAME INIT_CKPT K: the script's ITM fine-tuning with K hard-negative candidates → eval
set -euo pipefail
cd /work/main
W=.cache/shapes-train; R=.cache/rel; n=$1; init=$2; k=$3
/usr/bin/python3 models/pretrain.py --data $W/feat-train --val $W/feat-val --out $R/ft-$n --config $W/pre-wra/config.json \
  --init $init --mix itm:1 --itm-hard-negatives $k --steps 3000 --lr 3e-4 --warmup 200 \
  --ckpt-every 1000 --log-every 100 --threads 1 --blas-threads 1 --no-progress --ot-weight 0.1 > $R/ft-$n.log 2>&1
bash $R/evalrun.sh $n $R/ft-$n
