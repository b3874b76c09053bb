#!/usr/bin/env bash
# The GPU half of the speed work (docs/gpu.md), in one device call that keeps to its own time
# budget. On a machine with an NVIDIA GPU it measures, in this order (what matters most first,
# so that a short call still brings the headline figures):
#
#   exports   (in parallel, on the CPU) the UNITER-base-sized random bundle (uniter.bench
#             export) as fp32, fp16 (uniter.fuse --fp16), each also with the transport in the
#             graph (uniter.ot_graph), and fp32 fused; the bottom-up-attention detector as one
#             graph and split (uniter.butd_bench export --split); the default model's fp16 and
#             fused exports; Shapes World's test-1k
#   1 parity  the pipeline's transport tests on CUDA with strict placement
#   2 encoder BenchmarkEncoderGraphOnly (graph only) and BenchmarkEncoder (Match) at BATCHES on
#             base-fp16-ot, base-fp16, base and base-ot; the transport's parity with heads.Align
#             at UNITER-base size is checked on each bundle that has it
#   3 PyTorch eager float32 (TF32 off) and under autocast float16, same weights
#             (uniter.bench torch --device cuda [--autocast])
#   4 detector the split detector on CUDA and on all the CPU's cores; the one graph on CUDA,
#             which strict placement must refuse at load
#   5 fp16    `uniter eval --reference` of the default model's fp16 export on test-1k on CUDA,
#             and ONNX Runtime's profile of the fp16 bundle with the transport (operators; no
#             Memcpy node, i.e. no host round trip inside the graph)
#   6 again   a second round of step 2; then the fused fp32 bundle and its test-1k agreement
#
# and writes the report (python3 -m uniter.gpu_report: every figure, and each goal met, missed
# or not measured). Every step's limit is cut to what is left of BUDGET_S; a step that would not
# get MIN_STEP_S seconds is skipped and listed in the report. Everything goes to $OUT in at most
# 4 files (the device returns 8): gpu-report.md, gpu-report.json, gpu-bench.log (all steps'
# output) and logs.tar.xz (each step's own log and reports).
#
# What the device needs (the test binary, `uniter`, the ONNX Runtime libraries with the CUDA
# provider cut to sm_90: about 53 MB compressed) does not fit beside the working tree in one
# call (64 MiB in all; the tracked tree is about 48 MB), so it travels in parts
# (scripts/device/parts.sh), one call per part, on the same warm machine:
#
#   here, once:   bash scripts/device/gpu-bench.sh prep
#                 (builds pipeline.test and uniter, compresses the ONNX Runtime libraries; the
#                 CUDA provider comes from `ORT_GPU=1 make ort`, cut to sm_90 by
#                 scripts/device/sm90.py: H100 and H200 only. It cuts them into .gpu/bench/part-NN
#                 and prints the device calls, which are:)
#   device calls: bash scripts/device/gpu-bench.sh receive   (carry .gpu/bench/parts.sha256 and
#                 one part; one call per part but the last, each within 30 s of the one before)
#                 bash scripts/device/gpu-bench.sh           (carry parts.sha256 and the last part;
#                 timeout_s 600)
#
# `bash scripts/device/gpu-bench.sh local` runs the same without the staging (it builds the
# binaries itself and uses .cache/onnxruntime/lib): on a GPU machine with this repository, or
# with PROVIDER=cpu here, a run of the script's plumbing whose figures mean nothing (with
# BATCHES=2 BENCHTIME=1x ROUNDS=1 AGREE_SPLIT=test-100 it takes a few minutes on 2 cores).
# Knobs: BUDGET_S (480; the device's per-call limit is 600 s), ROUNDS (2), BENCHTIME (2s),
# BATCHES (32,128), AGREE_SPLIT (test-1k), G (work folder, /tmp/gpu-bench), OUT (report folder,
# $G/out), PY (python3), PROVIDER (cuda).
set -u
cd "$(dirname "$0")/../.."
root=$PWD
export PYTHONPATH="$root/models${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
G=${G:-/tmp/gpu-bench}
OUT=${OUT:-$G/out}
ROUNDS=${ROUNDS:-2}
BENCHTIME=${BENCHTIME:-2s}
BATCHES=${BATCHES:-32,128}
BUDGET_S=${BUDGET_S:-480}
MIN_STEP_S=${MIN_STEP_S:-20}
AGREE_SPLIT=${AGREE_SPLIT:-test-1k}
PROVIDER=${PROVIDER:-cuda}
STAGE=.gpu/bench
mode=${1:-run}

. scripts/device/parts.sh
if [ "$mode" = prep ]; then
  set -e
  lib=.cache/onnxruntime/lib
  ORT_GPU=1 make ort
  rm -rf "$STAGE" && mkdir -p "$STAGE/files"
  # stripped (-s -w) and compressed: fewer parts to send
  go test -c -ldflags='-s -w' -o "$STAGE/files/pipeline.test" ./pipeline
  go build -ldflags='-s -w' -o "$STAGE/files/uniter" ./cmd/uniter
  cp "$lib/libonnxruntime.so" "$lib/libonnxruntime_providers_shared.so" "$STAGE/files/"
  "$PY" scripts/device/sm90.py "$lib/libonnxruntime_providers_cuda.so" "$STAGE/files/libonnxruntime_providers_cuda.so"
  xz -T0 -9 "$STAGE/files/pipeline.test" "$STAGE/files/uniter" "$STAGE/files/libonnxruntime.so" \
    "$STAGE/files/libonnxruntime_providers_cuda.so"
  du -sh "$STAGE"/files/*
  parts_pack "$STAGE/files" "$STAGE"
  rm -rf "$STAGE/files"
  parts=("$STAGE"/part-*)
  echo "device calls, one after the other on one warm machine:"
  for p in "${parts[@]}"; do
    if [ "$p" = "${parts[-1]}" ]; then
      echo "  bash scripts/device/gpu-bench.sh          carry [\"$STAGE/parts.sha256\", \"$p\"], timeout_s 600"
    else
      echo "  bash scripts/device/gpu-bench.sh receive  carry [\"$STAGE/parts.sha256\", \"$p\"]"
    fi
  done
  exit 0
fi
case $mode in
  receive) parts_receive "$STAGE" "$G"; exit ;;
  run | local) ;;
  *) echo "usage: $0 [prep|receive|run|local]" >&2; exit 2 ;;
esac

L=$G/logs # every step's output; $OUT gets the report and an archive of these
rm -rf "$L" && mkdir -p "$G/lib" "$L" "$OUT"
LOG=$L/gpu-bench.log
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET_S))
RESERVE=15 # seconds kept for the report and the archive
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
step() { # step SECONDS NAME COMMAND...: one step within the budget, its output in $L/NAME.txt
  local limit=$1 name=$2 rc left
  shift 2
  left=$((DEADLINE - RESERVE - $(date +%s)))
  if [ "$left" -lt "$MIN_STEP_S" ]; then
    log "== $name: skipped, ${left}s left of the budget"
    echo "$name" >> "$L/skipped.txt"
    return 99
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$L/$name.txt" 2>&1
  rc=$?
  log "== $name: exit $rc$([ $rc = 124 ] && echo ' (out of time)')"
  return $rc
}
finish() { # the report, then what travels back
  "$PY" -m uniter.gpu_report "$L" --md "$OUT/gpu-report.md" --json "$OUT/gpu-report.json" >> "$LOG" 2>&1 ||
    log "the report failed"
  cat "$L"/*.txt > "$OUT/gpu-bench.log" 2>/dev/null
  cat "$LOG" >> "$OUT/gpu-bench.log"
  tar -C "$G" -cJf "$OUT/logs.tar.xz" logs
  log "done: $(ls "$OUT" | tr '\n' ' ')"
}

if [ "$mode" = run ]; then
  { parts_receive "$STAGE" "$G" && parts_unpack "$G" "$G/stage"; } >> "$LOG" 2>&1 ||
    { tail -3 "$LOG" >&2; cp "$LOG" "$OUT/"; exit 2; }
  for f in pipeline.test uniter libonnxruntime.so libonnxruntime_providers_cuda.so; do
    xz -dc "$G/stage/$f.xz" > "$G/$f" || exit 1
  done
  mv "$G/libonnxruntime.so" "$G/libonnxruntime_providers_cuda.so" "$G/lib/"
  cp "$G/stage/libonnxruntime_providers_shared.so" "$G/lib/"
  chmod +x "$G/pipeline.test" "$G/uniter"
  # The test binary finds the fixtures through the path it was built at.
  [ "$root" = /work/main ] || [ -e /work/main ] || { mkdir -p /work && ln -s "$root" /work/main; }
  export UNITER_ORT_LIBRARY=$G/lib/libonnxruntime.so
else
  go test -c -o "$G/pipeline.test" ./pipeline || exit 1
  go build -o "$G/uniter" ./cmd/uniter || exit 1
  export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
fi
TEST=$G/pipeline.test
NPROC=$(nproc)
# CUDA 13 and cuDNN 9: the machine's PyTorch wheels carry them (as for cuda-check.sh).
site=$("$PY" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)
libs=$(find "$site/nvidia" /usr/local/cuda/lib64 -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{ echo "$NPROC CPU cores; $PROVIDER"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null; } > "$L/machine.txt"
cat "$L/machine.txt" >> "$LOG"

# Exports, in parallel: everything the GPU steps read. The bundles are benchmark artefacts with
# random weights; their scores mean nothing.
base_chain() {
  "$PY" -m uniter.bench export --out "$G/base" --threads 4 &&
    rm -rf "$G"/base-* &&
    "$PY" -m uniter.fuse "$G/base" "$G/base-fp16" --fp16 &&
    "$PY" -m uniter.ot_graph "$G/base-fp16" "$G/base-fp16-ot" &&
    "$PY" -m uniter.ot_graph "$G/base" "$G/base-ot" &&
    "$PY" -m uniter.fuse "$G/base" "$G/base-fused"
}
shapes_chain() {
  rm -rf "$G"/shapes-* &&
    "$PY" -m uniter.fuse bundles/shapes-uniter "$G/shapes-fp16" --fp16 &&
    "$PY" -m uniter.fuse bundles/shapes-uniter "$G/shapes-fused" &&
    "$G/uniter" synth -q --split "$AGREE_SPLIT" --out "$G/data/shapes/$AGREE_SPLIT" --workers "$NPROC"
}
export G PY AGREE_SPLIT NPROC
export -f base_chain shapes_chain
step 300 export-base bash -c base_chain &
step 300 export-butd "$PY" -m uniter.butd_bench export --split --out "$G/butd" &
step 300 export-shapes bash -c shapes_chain &
wait

UNITER_PYTHON=$(command -v "$PY")
export UNITER_TEST_PROVIDER=$PROVIDER UNITER_PYTHON
STRICT=0; [ "$PROVIDER" = cuda ] && STRICT=1
export UNITER_TEST_CUDA_STRICT=$STRICT

# 1. The in-graph transport with strict placement: the parity tests on the fixture (a padded
# batch, Match, Align with and without attention, the batcher's views).
step 180 ot-parity bash -c "cd '$root/pipeline' && '$TEST' -test.run 'TestOTInGraph|TestOTFromGraphManifest|TestTransportErrors' -test.v"

# 2 and 6. The encoder benchmarks of one bundle; a bundle that strict placement refuses is run
# again without it, named so in the report.
bench() { # bench BUNDLE ROUND
  local b=$1 r=$2 rc
  [ -d "$G/$b" ] || return
  UNITER_BENCH_BUNDLE=$G/$b UNITER_BENCH_BATCHES=$BATCHES \
    step 150 "bench-$b-$r" bash -c "cd '$root/pipeline' && '$TEST' -test.run '^\$' -test.bench 'BenchmarkEncoder(GraphOnly)?\$' -test.benchtime '$BENCHTIME'"
  rc=$?
  if [ $rc != 0 ] && [ $rc != 99 ] && [ "$STRICT" = 1 ] && grep -q "fallback" "$L/bench-$b-$r.txt"; then
    UNITER_TEST_CUDA_STRICT=0 UNITER_BENCH_BUNDLE=$G/$b UNITER_BENCH_BATCHES=$BATCHES \
      step 150 "bench-$b-$r-nonstrict" bash -c "cd '$root/pipeline' && '$TEST' -test.run '^\$' -test.bench 'BenchmarkEncoder(GraphOnly)?\$' -test.benchtime '$BENCHTIME'"
  fi
}
ENCODERS="base-fp16-ot base-fp16 base base-ot"
for b in $ENCODERS; do bench "$b" 1; done

# 3. PyTorch eager on the same weights.
device=cuda; [ "$PROVIDER" = cuda ] || device=cpu
for k in fp32 autocast; do
  flag=; [ $k = autocast ] && flag=--autocast
  step 120 "torch-$k-run" "$PY" -m uniter.bench torch --bundle "$G/base" --device "$device" \
    --batches "$BATCHES" --seconds 2 --repeats 2 --threads 4 $flag \
    --json "$L/torch-$k.json" --meta "$L/torch-$k-meta.json"
done

# 4. The bottom-up-attention detector (random full-size port weights, 300 proposals): split on
# the GPU and on all the CPU's cores (the goal: >= 10x at 600x1000), then the one graph on
# the GPU, which must be refused at load rather than crash (docs/gpu.md).
butd() { # butd NAME BUNDLE ON_CUDA BENCHTIME
  UNITER_BENCH_BUTD=$G/butd UNITER_BENCH_BUTD_BUNDLE=$2 UNITER_BENCH_DETECTOR_ON_CUDA=$3 \
    UNITER_TEST_INTRA_OP_THREADS=$NPROC \
    step 150 "butd-$1" bash -c "cd '$root/pipeline' && '$TEST' -test.run '^\$' -test.bench 'BenchmarkBUTDDetector' -test.benchtime '$4'"
}
if [ -d "$G/butd/bundle-split" ]; then
  [ "$PROVIDER" = cuda ] && butd split-cuda bundle-split 1 "$BENCHTIME"
  butd split-cpu bundle-split 0 3x
  [ "$PROVIDER" = cuda ] && butd one-cuda bundle 1 1x
fi

# 5. The default model's fp16 export against fp32 on every retrieval pair of the split (what
# strict placement refuses runs again without it: the agreement is about the numbers).
agree() { # agree PRECISION
  local p=$1 strict=$STRICT name=agree-$1
  [ -d "$G/shapes-$p" ] || return
  while :; do
    UNITER_ORT_CUDA_STRICT_PLACEMENT=$([ "$strict" = 1 ] && echo true || echo false) \
      step 200 "$name" "$G/uniter" eval --split "$AGREE_SPLIT" --split-dir "$G/data/shapes/$AGREE_SPLIT" \
      --bundle "$G/shapes-$p" --reference bundles/shapes-uniter --provider "$PROVIDER" \
      --score-batch 1024 --score-workers 4 -q --out "$L/agreement-$p-$AGREE_SPLIT.json" && return
    [ "$strict" = 1 ] && grep -q "fallback" "$L/$name.txt" || return
    strict=0 name=agree-$p-nonstrict
  done
}
agree fp16

# 5b. ONNX Runtime's own profile of the fastest bundle at the largest batch: the operators that
# bound it, and that no node copies between host and device inside the graph (Memcpy nodes; the
# inputs and outputs are copied once a run by ONNX Runtime itself).
profile() { # profile BUNDLE
  local b=$1 batch=${BATCHES##*,}
  [ -d "$G/$b" ] || return
  rm -rf "$G/profile-$b" && mkdir -p "$G/profile-$b"
  UNITER_ORT_PROFILE_DIR=$G/profile-$b UNITER_BENCH_BUNDLE=$G/$b UNITER_BENCH_BATCHES=$batch \
    step 120 "profile-$b-run" bash -c "cd '$root/pipeline' && '$TEST' -test.run '^\$' -test.bench 'BenchmarkEncoderGraphOnly\$' -test.benchtime 20x" &&
    "$G/uniter" profile-summary --json "$G/profile-$b"/encoder-*.json > "$L/profile-$b.json" 2>> "$LOG"
}
profile base-fp16-ot

# 6. What is left of the budget: more rounds, then the fused fp32 graph.
for r in $(seq 2 "$ROUNDS"); do
  for b in $ENCODERS; do bench "$b" "$r"; done
done
bench base-fused 1
agree fused
[ "$PROVIDER" = cuda ] && nvidia-smi --query-gpu=memory.used --format=csv >> "$LOG" 2>&1
finish
