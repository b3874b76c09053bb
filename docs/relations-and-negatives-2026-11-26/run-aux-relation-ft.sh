#!/usr/bin/env bash
set -euo pipefail
cd /work/main
n=$1; init=$2; tn=$3
/usr/bin/python3 docs/relations-and-negatives-2026-11-26/aux-relation-ft.py $init .cache/rel/ft-$n $tn > .cache/rel/ft-$n.log 2>&1
bash .cache/rel/evalrun.sh $n .cache/rel/ft-$n
