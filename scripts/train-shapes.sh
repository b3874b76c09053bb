#!/usr/bin/env bash
# Trains the default Shapes World model end to end, in one command (`make shapes-model`):
#
#   data → vocabulary → detector → features through the serving pipeline → UNITER pre-training
#   (the paper's recipe) → size stage (MLM on size words) → ITM fine-tuning (retrieval, as the
#   paper fine-tunes for it) → the same fine-tuning continued → MLM head re-fit → plan stage → MLM
#   head re-fit (the base model) → relation stages (ITM on relations, one word at a time, then on
#   every caption) → MLM head re-fit → bundle → evaluation on test-1k (and the base model with the
#   no-WRA ablation, unless ABLATION=0).
#
# Every step writes into $WORK (default .cache/shapes-train) and is skipped when its output
# exists, so an interrupted run resumes; delete a step's output to redo it. The bundle goes to
# $BUNDLE (default bundles/shapes-uniter). On 2 CPU cores the whole run takes about 6–7 hours
# (detector ~16 min, extraction ~8 min, pre-training ~45 min per model, size stage ~2 min,
# fine-tuning ~15 min, continued fine-tuning ~70 min, plan stage ~20 min and head re-fits
# ~2 min each per model; the relation stages' data ~25 min (30,000 images extracted), the stages
# ~7 min; each test-1k retrieval evaluation 15–40 min; the two models' runs side by side).
# Knobs (environment):
#
#   TRAIN_IMAGES  train images (default 8000 of the train split's 30000)
#   PRE_STEPS     pre-training steps (20000)      FT_STEPS  ITM fine-tuning steps (3000)
#   PRE_BATCH     pre-training pairs per batch (32) PRE_WARMUP  its warm-up steps (1000)
#   FT_NEGATIVES  hard-negative mining in fine-tuning: each ITM negative is the model's
#                 highest-scoring of FT_NEGATIVES images the caption is false on (default
#                 8; docs/model-card.md, "What was tried": 4 rejected fewer size and shape edits)
#   FT_NEAR       share of those candidates drawn among the caption's near misses (images it is
#                 false on that hold its objects in another number or arrangement, or one
#                 attribute off: shapes.NearMiss, truth.npz's near), the rest among all false
#                 images (default 0; docs/model-card.md, "What was tried")
#   PLAN_DISTILL  weight of the plan distillation in fine-tuning (uniter.pretrain --plan-distill):
#                 the cosine of final states, which the OT plan reads, pulled towards the
#                 model's own token-region attention (default 2; 0: none, as the paper; docs/model-card.md, "What was tried")
#   PLAN_ABSORB   1: [CLS] and [SEP] join the distillation, pulled towards the regions the words
#                 leave unclaimed, so that the plan sends objects the caption does not name to them
#                 rather than to its nouns (uniter.pretrain --plan-absorb; default 1; ignored with PLAN_DISTILL=0)
#   DEVICE        cpu (default) or cuda for pre-training and fine-tuning (docs/model-card.md, "What was tried":
#                 batch 128 with warm-up 500 started learning ITM in ~4x fewer steps than 32)
#   GROUNDED_STEPS  the grounding warm-up: the first 2000 pre-training steps (default) are MLM
#                 batches on the detector's colour words and shape words, in turn, before the
#                 paper's recipe (uniter.pretrain --grounded-mlm-steps); 0: the recipe from step 1.
#                 Without it the encoder never learned to read colours (docs/model-card.md)
#   SIZE_STEPS    the size stage between pre-training and fine-tuning: SIZE_STEPS MLM steps
#                 (default 1000, lr 1e-3) from the pre-trained model in which every caption has
#                 its size word (small, large) masked; 0: none (fine-tune the pre-trained model).
#                 The recipe's random 15% masking never taught the encoder to read sizes from
#                 the 7-d locations (docs/model-card.md)
#   CONT_STEPS    continued fine-tuning: the fine-tuning recipe run again from the fine-tuned
#                 model for CONT_STEPS steps (a warm restart: warm-up 200, linear decay; default
#                 21000; 0: none): image retrieval keeps improving with fine-tuning length
#                 (docs/model-card.md, "What was tried"); ~70 min per model here
#   PLAN_STEPS    the plan stage after the continued fine-tuning (and its MLM head re-fit):
#                 PLAN_STEPS more steps of the fine-tuning recipe (warm restart) at PLAN_LR with
#                 the distillation's targets made what the OT plan can follow: each word's target
#                 is its attention's argmax region (smoothed, uniter.pretrain --plan-argmax 0.3), every
#                 token that names no object absorbs (--plan-naming-words: the detector's labels
#                 and the size words), and the regions' side is distilled too (--plan-columns).
#                 Default 6000; 0: none. Without it the plan grounds nouns far less often than the
#                 attention does; fewer steps ground fewer, a higher lr costs image retrieval
#                 (docs/model-card.md, "What was tried")
#   PLAN_LR       the plan stage's peak learning rate (default 3e-5)
#   PLAN_ROWS     the plan stage's plan-rows loss weight (uniter.pretrain --plan-rows, default 0.5;
#                 0: none): each naming word's row of the OT plan itself, differentiated through
#                 the solver, pulled onto its attention's argmax region. Without it the plan gave
#                 a noun's object to the phrase's colour and size words (docs/model-card.md, "What was tried")
#   HEAD_STEPS    after fine-tuning, the MLM head alone (uniter.pretrain --train-only mlm-head: the
#                 encoder and the other heads frozen) re-learns colour, shape and size words in
#                 turn for HEAD_STEPS steps (default 1500): the size stage leaves it predicting
#                 only size words; 0: none (the bundle takes the fine-tuned model as it is). With
#                 a plan stage it runs twice: on the continued model (the plan stage starts from
#                 that) and on the plan stage's model (the one the bundle serves)
#   MIN_BOX_SIZE  the bundles' selection.min_box_size (original-image pixels): proposals
#                 smaller than it are dropped before selection, for extraction and serving
#                 alike (default 0: keep all, as the committed model was trained; about 16% of
#                 its selected regions are zero-width border slivers)
#   RELATION_STAGES  the relation curriculum after the base model, "WORDS:STEPS …" (default
#                 "above:800 above,below:800 left_of:600 above,below,left_of,right_of:1200"; ""
#                 skips the relation stages: the bundle serves the base model): ITM runs at lr
#                 3e-4 whose every negative is the caption's argument swap ("a circle above a
#                 star" for "a star above a circle": the same words, only the places differ),
#                 on the relation captions with those words, each from the one before. ITM with
#                 relation edits among its text negatives left swaps at chance: the answer is a product of
#                 the word's axis and sign, which object each phrase names and where it stands, as
#                 for QA, where every relation word at once never left chance either
#                 (docs/model-card.md, "The relation stages")
#   REL_STEPS     then the matching stage: REL_STEPS ITM steps (default 3000) at REL_LR (1e-4) on
#                 every caption of the pre-training's train images, 80% of the negatives text edits
#                 (the minimal edits, argument swaps, converse-word swaps and colour swaps of two
#                 present objects), the image negatives the hardest of FT_NEGATIVES checked false by
#                 the truth matrix, the plan stage's losses at a quarter (they pull against reading
#                 places); then the MLM head re-fit. On images without a truth matrix (any other
#                 image a negative) count captions retrieved far worse (docs/model-card.md)
#   REL_IMAGES    train images the relation curriculum draws from (default 30000: its own split,
#                 train-rel, and its features; the relation captions of 8,000 are few)
#   ABLATION      1: also train and evaluate the model without WRA (OT weight 0), compared with the
#                 base model (both without the relation stages)
#   PY            python with torch (default /usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python side is the package models/uniter, run as python3 -m uniter.NAME.
export PYTHONPATH="$PWD/models${PYTHONPATH:+:$PYTHONPATH}"

PY=${PY:-/usr/bin/python3}
WORK=${WORK:-.cache/shapes-train}
BUNDLE=${BUNDLE:-bundles/shapes-uniter}
TRAIN_IMAGES=${TRAIN_IMAGES:-8000}
PRE_STEPS=${PRE_STEPS:-20000}
FT_STEPS=${FT_STEPS:-3000}
FT_NEGATIVES=${FT_NEGATIVES:-8}
FT_NEAR=${FT_NEAR:-0}
PLAN_DISTILL=${PLAN_DISTILL:-2}
PLAN_ABSORB=${PLAN_ABSORB:-1}
PRE_BATCH=${PRE_BATCH:-32}
PRE_WARMUP=${PRE_WARMUP:-1000}
DEVICE=${DEVICE:-cpu}
ABLATION=${ABLATION:-1}
GROUNDED_STEPS=${GROUNDED_STEPS:-2000}
MIN_BOX_SIZE=${MIN_BOX_SIZE:-0}
SIZE_STEPS=${SIZE_STEPS:-1000}
HEAD_STEPS=${HEAD_STEPS:-1500}
CONT_STEPS=${CONT_STEPS:-21000}
PLAN_STEPS=${PLAN_STEPS:-6000}
PLAN_LR=${PLAN_LR:-3e-5}
PLAN_ROWS=${PLAN_ROWS:-0.5}
RELATION_STAGES=${RELATION_STAGES-above:800 above,below:800 left_of:600 above,below,left_of,right_of:1200}
REL_STEPS=${REL_STEPS:-3000}
REL_LR=${REL_LR:-1e-4}
REL_IMAGES=${REL_IMAGES:-30000}
UNITER=bin/uniter
ORT=.cache/onnxruntime/lib/libonnxruntime.so
# The small UNITER (why this size: docs/model-card.md).
CONFIG='{"hidden_size":128,"num_hidden_layers":4,"num_attention_heads":4,"intermediate_size":512}'

step() { printf '\n== %s\n' "$*" >&2; }
mkdir -p "$WORK"

step "binary and ONNX Runtime"
make -s build ort

for s in train val test-1k test-100; do
  if [ ! -f "$WORK/$s/annotations.jsonl" ]; then
    step "data: $s"
    count=()
    [ "$s" = train ] && count=(--count "$TRAIN_IMAGES")
    "$UNITER" synth --split "$s" "${count[@]}" --out "$WORK/$s"
  fi
done

if [ ! -f "$WORK/vocab.txt" ]; then
  step "vocabulary"
  "$PY" -m uniter.make_vocab --split "$WORK/train" --out "$WORK/vocab.txt"
fi

if [ ! -f "$WORK/detector/detector.pt" ]; then
  step "detector (shape classes + colour attributes)"
  "$PY" -m uniter.train_detector --data "$WORK/train" --val "$WORK/val" --out "$WORK/detector" --no-progress
fi

if [ ! -f "$WORK/bundle-init/manifest.json" ]; then
  step "extraction bundle (trained detector, random encoder)"
  "$PY" -m uniter.shapes_bundle --detector "$WORK/detector/detector.pt" --vocab "$WORK/vocab.txt" \
    --config <(echo "$CONFIG") --min-box-size "$MIN_BOX_SIZE" --out "$WORK/bundle-init"
fi

# Features must come from the selection the bundles will serve with: a bundle-init left by a
# run with another MIN_BOX_SIZE would silently train the model on other regions.
"$PY" - "$WORK/bundle-init/manifest.json" "$MIN_BOX_SIZE" <<'EOF'
import json, sys
have = json.load(open(sys.argv[1]))["detector"]["selection"].get("min_box_size", 0)
if float(have) != float(sys.argv[2]):
    sys.exit(f"{sys.argv[1]} has min_box_size {have}, MIN_BOX_SIZE is {sys.argv[2]}: remove "
             "bundle-init, feat-*, pre-*, ft-* and the bundles under WORK to redo them with it")
EOF

# Near misses joined truth.npz after the committed model's features were extracted: train
# features without them are extracted again when fine-tuning needs them (extraction is
# deterministic: regions and captions come out byte for byte the same).
if [ "$FT_NEAR" != 0 ] && [ -f "$WORK/feat-train/truth.npz" ] && ! "$PY" -c \
    'import sys, zipfile; sys.exit("near.npy" not in zipfile.ZipFile(sys.argv[1]).namelist())' "$WORK/feat-train/truth.npz"; then
  rm -f "$WORK/feat-train/extract.json"
fi
for s in train val; do
  if [ ! -f "$WORK/feat-$s/extract.json" ]; then
    step "features through the serving pipeline: $s"
    # --truth-max 4e8: the default train split's truth matrix (40,000 captions × 8,000 images,
    # 320 M cells, 640 MB with the near misses) is above extract's default limit; without it ITM negatives would be any other
    # image, unchecked against the logical forms, unlike the committed model's training.
    "$UNITER" extract --bundle "$WORK/bundle-init" --ort-library "$ORT" --split-dir "$WORK/$s" --out "$WORK/feat-$s" \
      --truth-max 4e8
  fi
done

# The grammar's size words (shapes/vocab.go), for the size stage and the MLM head re-fit.
printf 'small\nlarge\n' > "$WORK/size_words.txt"

# The plan stage's flags refine the distillation with absorbers: without them it has nothing to refine.
if [ "$PLAN_STEPS" != 0 ] && { [ "$PLAN_DISTILL" = 0 ] || [ "$PLAN_ABSORB" != 1 ]; }; then
  echo "PLAN_STEPS=$PLAN_STEPS needs the plan distillation with absorbers (PLAN_DISTILL > 0, PLAN_ABSORB=1)" >&2
  exit 1
fi

# continued NAME: the fine-tuning run after the first (continued, else the first);
# plan_init NAME: what the plan stage starts from (the continued model with its MLM head re-fit);
# tuned NAME: the last ITM fine-tuning run (the plan stage, else continued);
# base NAME: the model before the relation stages (the MLM head re-fit, else tuned);
# with_relations NAME: whether NAME gets the relation stages (the served model only: the WRA
# ablation compares the base models); served NAME: the run whose final.pt the bundle serves.
continued() { if [ "$CONT_STEPS" != 0 ]; then echo "$WORK/cont-$1"; else echo "$WORK/ft-$1"; fi; }
plan_init() { if [ "$HEAD_STEPS" != 0 ]; then echo "$WORK/head-cont-$1"; else continued "$1"; fi; }
tuned() { if [ "$PLAN_STEPS" != 0 ]; then echo "$WORK/plan-$1"; else continued "$1"; fi; }
base() { if [ "$HEAD_STEPS" != 0 ]; then echo "$WORK/head-$1"; else tuned "$1"; fi; }
with_relations() { [ -n "$RELATION_STAGES" ] && [ "$1" = wra ]; }
matched() { echo "$WORK/rel-$1"; }
served() {
  if ! with_relations "$1"; then base "$1"
  elif [ "$HEAD_STEPS" != 0 ]; then echo "$WORK/head-rel-$1"
  else matched "$1"; fi
}

# train NAME OT_WEIGHT: pre-training with the paper's recipe, the size stage, ITM fine-tuning
# with hard negatives (the paper fine-tunes for retrieval with hard-negative mining), then the
# MLM head re-fit.
train() {
  local name=$1 ot=$2
  if [ ! -f "$WORK/pre-$name/final.pt" ]; then
    step "pre-training $name (OT weight $ot, $PRE_STEPS steps)"
    "$PY" -m uniter.pretrain --data "$WORK/feat-train" --val "$WORK/feat-val" --out "$WORK/pre-$name" \
      --config "$CONFIG" --steps "$PRE_STEPS" --batch-size "$PRE_BATCH" --lr 1e-3 --warmup "$PRE_WARMUP" \
      --grounded-words "$WORK/bundle-init/attribute_labels.txt,$WORK/bundle-init/region_labels.txt" \
      --grounded-mlm-steps "$GROUNDED_STEPS" --ot-weight "$ot" --ckpt-every 2000 --log-every 200 --threads 1 --blas-threads 1 --device "$DEVICE" --no-progress
  fi
  local init=$WORK/pre-$name
  if [ "$SIZE_STEPS" != 0 ]; then
    init=$WORK/size-$name
    if [ ! -f "$init/final.pt" ]; then
      step "size stage $name ($SIZE_STEPS MLM steps on the size words)"
      # Size words alone: in turn with colour and shape words they were read less well and
      # fine-tuning did not carry them into ITM (docs/model-card.md).
      "$PY" -m uniter.pretrain --data "$WORK/feat-train" --val "$WORK/feat-val" --out "$init" \
        --config "$WORK/pre-$name/config.json" --init "$WORK/pre-$name/final.pt" \
        --grounded-words "$WORK/size_words.txt" \
        --grounded-mlm-steps "$SIZE_STEPS" --steps "$SIZE_STEPS" --lr 1e-3 --warmup 50 --ot-weight "$ot" \
        --ckpt-every 1000 --log-every 100 --threads 1 --blas-threads 1 --device "$DEVICE" --no-progress
    fi
  fi
  local absorb=""
  # absorbers are part of the distillation: none without it
  if [ "$PLAN_ABSORB" = 1 ] && [ "$PLAN_DISTILL" != 0 ]; then absorb=--plan-absorb; fi
  # finetune OUT INIT STEPS CKPT_EVERY [FLAGS...]: the ITM fine-tuning recipe (lr 3e-4, warm-up 200,
  # linear decay) from INIT's final.pt; the fine-tuning, its continuation and the plan stage.
  finetune() {
    local to=$1 from=$2 steps=$3 every=$4
    shift 4
    "$PY" -m uniter.pretrain --data "$WORK/feat-train" --val "$WORK/feat-val" --out "$to" \
      --config "$WORK/pre-$name/config.json" --init "$from/final.pt" --mix itm:1 \
      --itm-hard-negatives "$FT_NEGATIVES" --itm-near-negatives "$FT_NEAR" --plan-distill "$PLAN_DISTILL" $absorb \
      --steps "$steps" --lr 3e-4 --warmup 200 --ot-weight "$ot" \
      --ckpt-every "$every" --log-every 100 --threads 1 --blas-threads 1 --device "$DEVICE" --no-progress "$@"
  }
  if [ ! -f "$WORK/ft-$name/final.pt" ]; then
    step "ITM fine-tuning $name (OT weight $ot, $FT_STEPS steps)"
    finetune "$WORK/ft-$name" "$init" "$FT_STEPS" 1000
  fi
  local cont
  cont=$(continued "$name")
  if [ "$cont" != "$WORK/ft-$name" ] && [ ! -f "$cont/final.pt" ]; then
    step "continued fine-tuning $name (the same recipe again, $CONT_STEPS steps)"
    finetune "$cont" "$WORK/ft-$name" "$CONT_STEPS" 2000
  fi
  # refit OUT INIT [FEATURES]: the MLM head re-fit of INIT's model (the rest frozen) on FEATURES's
  # captions (default feat-train).
  refit() {
    local to=$1 from=$2 data=${3:-feat-train}
    # A head re-fit left by a run with other CONT_STEPS or PLAN_STEPS would carry the wrong encoder.
    if [ -f "$to/final.json" ]; then
      "$PY" - "$to/final.json" "$from/final.pt" <<'EOF'
import json, sys
init = json.load(open(sys.argv[1])).get("init")
if init != sys.argv[2]:
    sys.exit(f"{sys.argv[1]} re-fitted the head of {init}, not of {sys.argv[2]}: remove its folder to redo it")
EOF
    fi
    if [ ! -f "$to/final.pt" ]; then
      step "MLM head re-fit $name of $from ($HEAD_STEPS steps on colour, shape and size words; the rest frozen)"
      "$PY" -m uniter.pretrain --data "$WORK/$data" --val "$WORK/feat-val" --out "$to" \
        --config "$WORK/pre-$name/config.json" --init "$from/final.pt" --train-only mlm-head \
        --grounded-words "$WORK/bundle-init/attribute_labels.txt,$WORK/bundle-init/region_labels.txt,$WORK/size_words.txt" \
        --grounded-mlm-steps "$HEAD_STEPS" --steps "$HEAD_STEPS" --lr 1e-3 --warmup 50 --ot-weight "$ot" \
        --ckpt-every 0 --log-every 100 --threads 1 --blas-threads 1 --device "$DEVICE" --no-progress
    fi
  }
  local tuned start
  tuned=$(tuned "$name")
  if [ "$tuned" != "$cont" ]; then
    start=$(plan_init "$name")
    [ "$start" = "$cont" ] || refit "$start" "$cont"
    # A plan stage left by a run with other plan knobs is not this one (nor is the head re-fit
    # after it, which would otherwise pass its own check by path).
    if [ -f "$tuned/final.json" ]; then
      "$PY" - "$tuned/final.json" "$PLAN_STEPS" "$PLAN_LR" "$PLAN_ROWS" "$(base "$name")" <<'EOF'
import json, os, sys
t = json.load(open(sys.argv[1]))["train"]
have = (t["steps"], t["lr"], t.get("plan_rows", 0.0))
want = (int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
if have != want:
    sys.exit(f"{sys.argv[1]} ran steps, lr, plan rows {have}, not PLAN_STEPS, PLAN_LR, PLAN_ROWS {want}: "
             f"remove {os.path.dirname(sys.argv[1])} and {sys.argv[5]} to redo them")
EOF
    fi
    if [ ! -f "$tuned/final.pt" ]; then
      step "plan stage $name ($PLAN_STEPS steps at lr $PLAN_LR: argmax targets, every non-naming token absorbs, columns, plan rows $PLAN_ROWS)"
      finetune "$tuned" "$start" "$PLAN_STEPS" 1000 --lr "$PLAN_LR" --plan-argmax 0.3 --plan-columns --plan-rows "$PLAN_ROWS" \
        --plan-naming-words "$WORK/bundle-init/attribute_labels.txt,$WORK/bundle-init/region_labels.txt,$WORK/size_words.txt"
    fi
  fi
  local out
  out=$(base "$name")
  [ "$out" = "$tuned" ] || refit "$out" "$tuned"
  with_relations "$name" || return 0

  # The relation stages, from the base model.
  if [ ! -f "$WORK/train-rel/annotations.jsonl" ]; then
    step "data: train-rel (the relation stages' $REL_IMAGES train images)"
    "$UNITER" synth --split train --count "$REL_IMAGES" --out "$WORK/train-rel"
  fi
  if [ ! -f "$WORK/feat-train-rel/extract.json" ]; then
    step "features through the serving pipeline: train-rel"
    "$UNITER" extract --bundle "$WORK/bundle-init" --ort-library "$ORT" --split-dir "$WORK/train-rel" --out "$WORK/feat-train-rel"
  fi
  # relation_data LABEL WORDS TRAIN FLAGS...: the relation captions with WORDS (or, with --all, every
  # caption and its truth matrix) of the split TRAIN and of val with their argument swaps as ITM
  # data, in ritm-LABEL and ritm-val-LABEL.
  relation_data() {
    local label=$1 words=$2 train=$3 split dir
    shift 3
    for split in "$train" val; do
      dir=$WORK/ritm-$label
      [ "$split" = val ] && dir=$WORK/ritm-val-$label
      [ -f "$dir/captions.jsonl" ] && continue
      "$PY" -m uniter.diagnostics.relation_itm --features "$WORK/feat-$split" --split "$WORK/$split" \
        --relations "$words" --out "$dir" "$@"
    done
  }
  # relation_itm OUT INIT DATA STEPS LR FLAGS...: ITM from INIT's final.pt on ritm-DATA.
  relation_itm() {
    local to=$1 from=$2 data=$3 steps=$4 lr=$5
    shift 5
    "$PY" -m uniter.pretrain --data "$WORK/ritm-$data" --val "$WORK/ritm-val-$data" --out "$to" \
      --config "$WORK/pre-$name/config.json" --init "$from/final.pt" --mix itm:1 --steps "$steps" --lr "$lr" \
      --warmup $((steps / 10)) --ot-weight "$ot" --ckpt-every 0 --log-every 50 --threads 1 --blas-threads 1 \
      --device "$DEVICE" --no-progress "$@"
  }
  local spec words steps from=$out k=0
  for spec in $RELATION_STAGES; do
    k=$((k + 1)); words=${spec%%:*}; steps=${spec##*:}
    if [ ! -f "$WORK/rel$k-$words-$name/final.pt" ]; then
      relation_data "$words" "$words" train-rel
      step "relation stage $k $name: $steps ITM steps on the relation captions with $words against their argument swaps"
      relation_itm "$WORK/rel$k-$words-$name" "$from" "$words" "$steps" 3e-4 --itm-text-negatives 1.0
    fi
    from=$WORK/rel$k-$words-$name
  done
  if [ ! -f "$(matched "$name")/final.pt" ]; then
    relation_data allcw above,below,left_of,right_of train --all --color-swaps --word-swaps
    step "matching stage $name: $REL_STEPS ITM steps on every caption, text edits with the swaps among them"
    relation_itm "$(matched "$name")" "$from" allcw "$REL_STEPS" "$REL_LR" --itm-text-negatives 0.8 \
      --itm-hard-negatives "$FT_NEGATIVES" \
      --plan-distill 0.5 --plan-absorb --plan-argmax 0.3 --plan-rows 0.1 \
      --plan-naming-words "$WORK/bundle-init/attribute_labels.txt,$WORK/bundle-init/region_labels.txt,$WORK/size_words.txt"
  fi
  out=$(served "$name")
  [ "$out" = "$(matched "$name")" ] || refit "$out" "$(matched "$name")" feat-train-rel
}

# bundle NAME OUT [RUN]: RUN's model (default: the served one) with the detector, with provenance.
bundle() {
  local name=$1 out=$2 run=${3:-$(served "$1")}
  local prov
  prov=$("$PY" - "$WORK" "$name" "$TRAIN_IMAGES" "$(base "$name")" "$(tuned "$name")" "$(continued "$name")" "$(plan_init "$name")" \
    "$run" "$RELATION_STAGES" "$REL_IMAGES" <<'EOF'
import json, sys
from uniter.provenance import stage_record as keep
work, name, n, base, tuned, cont, start, run, rel_stages, rel_n = sys.argv[1:]
load = lambda d: json.load(open(f"{d}/final.json"))
pre = load(f"{work}/pre-{name}")
ft = load(f"{work}/ft-{name}")
det = json.load(open(f"{work}/detector/eval_val.json"))
relations = None
if run != base:  # the relation stages: rel1-WORDS-NAME …, rel-NAME, then head-rel-NAME
    stages = [(f"{work}/rel{k}-{spec.split(':')[0]}-{name}", spec.split(':')[0]) for k, spec in enumerate(rel_stages.split(), 1)]
    matched = f"{work}/rel-{name}"
    relations = {"data": {"curriculum": {"split": "train", "seed": 1, "images": int(rel_n)},
                          "matching": {"split": "train", "seed": 1, "images": int(n), "truth": True},
                          "val": {"split": "val", "seed": 2}, "built_by": "python3 -m uniter.diagnostics.relation_itm"},
                 "curriculum": [dict(keep(load(d)), relations=words) for d, words in stages],
                 "matching": keep(load(matched)),
                 "mlm_head_refit": keep(load(run)) if run != matched else None}
print(json.dumps({"data": {"generator": "uniter synth (shapes)", "train": {"split": "train", "seed": 1, "images": int(n)},
                           "val": {"split": "val", "seed": 2}},
                  "detector_val": {k: det[k] for k in ("images", "map50", "color_accuracy", "region_recall", "selected_mean")},
                  "pretraining": keep(pre), "finetuning": keep(ft),
                  "size_stage": keep(load(f"{work}/size-{name}")) if ft.get("init", "").startswith(f"{work}/size-") else None,
                  "continued_finetuning": keep(load(cont)) if cont != f"{work}/ft-{name}" else None,
                  "mlm_head_refit_before_plan": keep(load(start)) if tuned != cont and start != cont else None,
                  "plan_stage": keep(load(tuned)) if tuned != cont else None,
                  "mlm_head_refit": keep(load(base)) if base != tuned else None,
                  "relation_stages": relations,
                  "recipe": "scripts/train-shapes.sh"}))
EOF
)
  step "bundle $name → $out"
  "$PY" -m uniter.shapes_bundle --detector "$WORK/detector/detector.pt" --vocab "$WORK/vocab.txt" \
    --checkpoint "$run/final.pt" --config "$run/config.json" \
    --name "shapes-uniter${name#wra}" --provenance "$prov" --min-box-size "$MIN_BOX_SIZE" --out "$out"
}

# evaluate BUNDLE SPLIT OUT.json [flags]
evaluate() {
  local b=$1 split=$2 out=$3
  shift 3
  step "evaluate $b on $split"
  # Two encoder runs of one thread each score ~1.4× more pairs/s than one run of two threads here.
  UNITER_ORT_INTRA_OP_THREADS=1 UNITER_LIMITS_MAX_CONCURRENT=2 \
    "$UNITER" eval --bundle "$b" --ort-library "$ORT" --split "$split" --split-dir "$WORK/$split" \
    --score-workers 2 --out "$out" "$@"
}

train wra 0.1
[ -f "$BUNDLE/manifest.json" ] || bundle wra "$BUNDLE"
[ -f "$WORK/eval-wra-test-1k.json" ] || evaluate "$BUNDLE" test-1k "$WORK/eval-wra-test-1k.json"
[ -f "$WORK/eval-wra-test-100.json" ] || evaluate "$BUNDLE" test-100 "$WORK/eval-wra-test-100.json"
# The measured quality goes into the bundle: the reports beside the graphs, the headline
# numbers into the manifest's provenance (the manifest itself is not checksummed).
cp "$WORK/eval-wra-test-1k.json" "$WORK/eval-wra-test-100.json" "$BUNDLE/"
"$PY" - "$BUNDLE" <<'EOF'
import json, sys
from uniter.provenance import evaluation_summary
b = sys.argv[1]
m = json.load(open(f"{b}/manifest.json"))
reports = {s: json.load(open(f"{b}/eval-wra-{s}.json")) for s in ("test-1k", "test-100")}
m["provenance"]["evaluation"] = evaluation_summary(reports)
with open(f"{b}/manifest.json", "w") as f:
    json.dump(m, f, indent=2)
    f.write("\n")
EOF

if [ "$ABLATION" = 1 ]; then
  # WRA's effect, between the base models (neither with the relation stages).
  if with_relations wra; then
    [ -f "$WORK/bundle-base/manifest.json" ] || bundle wra "$WORK/bundle-base" "$(base wra)"
    [ -f "$WORK/eval-base-test-1k.json" ] || evaluate "$WORK/bundle-base" test-1k "$WORK/eval-base-test-1k.json"
    [ -f "$WORK/eval-base-test-100.json" ] || evaluate "$WORK/bundle-base" test-100 "$WORK/eval-base-test-100.json"
    cp "$WORK/eval-base-test-1k.json" "$WORK/eval-base-test-100.json" "$BUNDLE/"
  fi
  train nowra 0
  [ -f "$WORK/bundle-nowra/manifest.json" ] || bundle nowra "$WORK/bundle-nowra"
  # The ablation's retrieval is measured on test-100 only (test-1k retrieval is ~40 min per model
  # on 2 cores); its ITM, grounding and MLM numbers are on test-1k.
  [ -f "$WORK/eval-nowra-test-1k.json" ] || evaluate "$WORK/bundle-nowra" test-1k "$WORK/eval-nowra-test-1k.json" --no-retrieval
  [ -f "$WORK/eval-nowra-test-100.json" ] || evaluate "$WORK/bundle-nowra" test-100 "$WORK/eval-nowra-test-100.json"
  cp "$WORK/eval-nowra-test-1k.json" "$WORK/eval-nowra-test-100.json" "$BUNDLE/"
fi
step "done: $BUNDLE"
