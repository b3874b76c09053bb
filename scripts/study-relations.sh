#!/usr/bin/env bash
# Reproduces the relation study of docs/model-card.md ("Relations: what was tried"): Shapes-QA
# fine-tunes from the default model aimed at the relation questions, one per line of the table,
# each with its curve in $WORK/NAME/log.jsonl (val accuracy per question type every 250 steps).
# Needs the task data of scripts/train-tasks.sh (WORK_TASKS, default .cache/tasks: the 30,000
# train images and their features, the init checkpoint). Runs RUNS (default all) one at a time;
# hours on 2 cores. Logs and checkpoints stay under $WORK (default .cache/study), not in git.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/models${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-.cache/study}
TASKS=${WORK_TASKS:-.cache/tasks}
DATA=$TASKS/data
INIT=$TASKS/init/final.pt
RUNS=${RUNS:-relyn relyn-lr1e3 relyn2obj relyn-pos30 qa30k-pos10 qa30k-scale8 relyn2obj-scale8 relstage}
mkdir -p "$WORK"

qa() { # qa NAME STEPS LR [flags]: one uniter.finetune run on every train image
  local name=$1 steps=$2 lr=$3
  shift 3
  "$PY" -m uniter.finetune --task qa --split-dir "$DATA/train" --val-dir "$DATA/val" --init "$INIT" \
    --out "$WORK/$name" --steps "$steps" --batch 64 --lr "$lr" --threads 1 --patience 0 --no-export \
    --no-progress "$@" 2> >(tee "$WORK/$name.log" >&2)
}

for run in $RUNS; do
  case $run in
    relyn)        qa relyn 2000 3e-4 --types relation_yesno --max-images 6000 ;;
    relyn-lr1e3)  qa relyn-lr1e3 3000 1e-3 --head-lr-mul 1 --types relation_yesno --max-images 6000 ;;
    relyn2obj)    qa relyn2obj 2000 3e-4 --types relation_yesno --max-objects 2 ;;
    relyn-pos30)  qa relyn-pos30 1500 2e-4 --pos-lr-mul 30 --types relation_yesno ;;
    qa30k-pos10)  qa qa30k-pos10 3000 2e-4 --pos-lr-mul 10 ;;
    qa30k-scale8) qa qa30k-scale8 3000 2e-4 --pos-scale 8 ;;
    relyn2obj-scale8) qa relyn2obj-scale8 1500 3e-4 --pos-scale 8 --pos-lr-mul 10 --types relation_yesno --max-objects 2 ;;
    relstage)     # the relation MLM stage: left/right/above/below masked, two-object scenes first
      "$PY" - "$DATA/train/annotations.jsonl" "$WORK/twoobj.txt" <<'PYEOF'
import json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1]) if len(json.loads(l)["objects"]) == 2]
open(sys.argv[2], "w").write("\n".join(map(str, ids)) + "\n")
PYEOF
      printf 'left\nright\nabove\nbelow\n' > "$WORK/relation_words.txt"
      "$PY" -m uniter.pretrain --data "$DATA/feat-train" --val "$DATA/feat-val" --out "$WORK/relstage" \
        --config "$TASKS/init/config.json" --init "$INIT" --grounded-words "$WORK/relation_words.txt" \
        --grounded-mlm-steps 3000 --steps 3000 --grounded-images "$WORK/twoobj.txt" --grounded-images-steps 1500 \
        --lr 1e-3 --warmup 50 --ckpt-every 1000 --log-every 100 --threads 1 --blas-threads 1 --no-progress \
        2> >(tee "$WORK/relstage.log" >&2) ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done
