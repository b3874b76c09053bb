#!/usr/bin/env bash
# Device check of the CUDA execution provider (docs/gpu.md): the Go tests on the GPU, the
# evaluation through the serving pipeline on CUDA, and throughput next to the CPU of the same
# machine. What the device needs (`uniter`, the runtime, pipeline and tests test binaries, the
# ONNX Runtime libraries with the CUDA provider cut to sm_90) does not fit beside the working tree
# in one call (64 MiB in all; the tracked tree is about 48 MB), so it travels in parts
# (scripts/device/parts.sh), one call per part, on one warm machine:
#
#   here, once:   bash scripts/device/cuda-check.sh prep   (OLD=1 adds the encoder graphs of
#                 9fbe165, before the static-reshape export; it prints the device calls)
#   device calls: bash scripts/device/cuda-check.sh receive (carry .gpu/check/parts.sha256 and one
#                 part; once per part but the last, each within 30 s of the one before)
#                 bash scripts/device/cuda-check.sh stage   (carry parts.sha256 and the last part)
#                 bash scripts/device/cuda-check.sh cuda    at once after stage
#   optionally between them: bash scripts/device/cuda-check.sh bundles (carry .gpu/c: candidate
#   bundles' UNITER graphs, .gpu/c/NAME/{encoder,encoder_attention,mlm_head,mrc_head}.onnx +
#   manifest.json)
set -u
case ${1:-} in
  prep | receive | stage | bundles | cuda) ;;
  *) echo "usage: $0 prep|receive|stage|bundles|cuda" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../.."
# The Python side is the package models/uniter, run as python3 -m uniter.NAME.
export PYTHONPATH="$PWD/models${PYTHONPATH:+:$PYTHONPATH}"
G=${G:-/tmp/g}
PY=${PY:-python3}
OUT=${OUT:-$G/out}
mkdir -p "$G/lib" "$OUT"
LOG=$OUT/$1.log
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
run() { # run SECONDS NAME COMMAND...: one step, its output in the log, its exit status noted
  local limit=$1 name=$2
  shift 2
  log "== $name"
  timeout "$limit" bash -c '"$@"' _ "$@" >> "$LOG" 2>&1
  log "== $name: exit $?"
}
export UNITER_ORT_LIBRARY=$G/lib/libonnxruntime.so UNITER_E2E_BIN=$G/uniter
# The test binaries find the fixtures through the path they were built at.
[ "$PWD" = /work/main ] || [ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
export U=$G/uniter G OUT
eval_split() { # eval_split PROVIDER SPLIT [FLAGS]: uniter eval through the serving pipeline
  local p=$1 split=$2
  shift 2
  UNITER_ORT_PROVIDER=$p UNITER_ORT_INTRA_OP_THREADS=${THREADS:-1} UNITER_LIMITS_MAX_CONCURRENT=16 \
    "$U" eval --bundle "${BUNDLE:-bundles/shapes-uniter}" --split "$split" --split-dir "$G/$split" \
    --workers 16 --score-workers "${SCORE_WORKERS:-16}" --score-batch "${SCORE_BATCH:-256}" \
    --out "$OUT/eval-$p-$split${TAG:-}.json" -q "$@"
}
export -f eval_split

STAGE=.gpu/check
. scripts/device/parts.sh
case $1 in
prep)
  set -e
  lib=.cache/onnxruntime/lib
  ORT_GPU=1 make ort
  rm -rf "$STAGE" && mkdir -p "$STAGE/files"
  go build -ldflags='-s -w' -o "$STAGE/files/uniter" ./cmd/uniter
  for p in runtime pipeline tests; do go test -c -ldflags='-s -w' -o "$STAGE/files/$p.test" ./$p; done
  cp "$lib/libonnxruntime.so" "$lib/libonnxruntime_providers_shared.so" "$STAGE/files/"
  "$PY" scripts/device/sm90.py "$lib/libonnxruntime_providers_cuda.so" "$STAGE/files/libonnxruntime_providers_cuda.so"
  if [ "${OLD:-0}" = 1 ]; then
    mkdir -p "$STAGE/files/old"
    for f in encoder.onnx encoder_attention.onnx manifest.json; do
      git show "9fbe165:bundles/shapes-uniter/$f" > "$STAGE/files/old/$f"
    done
  fi
  (cd "$STAGE/files" && xz -T0 -9 uniter ./*.test libonnxruntime.so libonnxruntime_providers_cuda.so)
  parts_pack "$STAGE/files" "$STAGE"
  rm -rf "$STAGE/files"
  echo "device calls, one after the other on one warm machine: 'receive' with each part but the last, then"
  echo "'stage' with the last, then 'cuda'; each carries $STAGE/parts.sha256 and its part:"
  ls "$STAGE"/part-*
  ;;
receive)
  parts_receive "$STAGE" "$G"
  ;;
stage)
  { parts_receive "$STAGE" "$G" && parts_unpack "$G" "$G/stage"; } >> "$LOG" 2>&1 || { tail -3 "$LOG" >&2; exit 2; }
  for f in "$G"/stage/*.xz; do xz -dc "$f" > "$G/$(basename "$f" .xz)"; done
  mv "$G/libonnxruntime.so" "$G/libonnxruntime_providers_cuda.so" "$G/lib/"
  cp "$G/stage/libonnxruntime_providers_shared.so" "$G/lib/"
  chmod +x "$G/uniter" "$G"/*.test
  # The committed bundle as it was before the static-reshape export (same weights).
  [ -d "$G/stage/old" ] && rm -rf "$G/old-bundle" && cp -r bundles/shapes-uniter "$G/old-bundle" && cp "$G"/stage/old/* "$G/old-bundle/"
  { nproc; nvidia-smi -L; "$PY" -c "import torch; print(torch.__version__)"; } >> "$LOG" 2>&1
  run 120 synth-test-1k "$U" synth -q --split test-1k --out "$G/test-1k" --workers 16
  run 60 synth-test-100 "$U" synth -q --split test-100 --out "$G/test-100" --workers 16
  [ "${STAGE_CPU:-1}" = 1 ] && run 120 cpu-eval-test-100 eval_split cpu test-100
  [ "${EVAL_ONLY:-0}" = 1 ] && exit 0
  run 180 export-base "$PY" -m uniter.bench export --out "$G/bench" --threads 16
  [ "${STAGE_CPU:-1}" = 1 ] && UNITER_BENCH_BUNDLE=$G/bench UNITER_BENCH_BATCHES=1,8,32 UNITER_TEST_INTRA_OP_THREADS=16 \
    run 120 cpu-bench-base "$G/pipeline.test" -test.run '^$' -test.bench 'BenchmarkEncoder$' -test.benchtime 3x
  ;;
bundles)
  # Candidate models, in a call of their own between stage and cuda (carry .gpu/c):
  # .gpu/c/NAME holds a bundle's UNITER graphs and manifest (the detector is the default
  # bundle's); `cuda` evaluates each on test-1k after the default.
  for d in .gpu/c/*/; do
    n=$(basename "$d"); rm -rf "$G/bundles/$n"; mkdir -p "$G/bundles"
    cp -r bundles/shapes-uniter "$G/bundles/$n" && cp "$d"* "$G/bundles/$n/" && log "bundle $n"
  done
  ;;
cuda)
  site=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
  libs=$(find "$site/nvidia" /usr/local/cuda/lib64 -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    ldd "$G/lib/libonnxruntime_providers_cuda.so" | grep -E 'not found|cu|nv'; } >> "$LOG" 2>&1
  # EVAL_ONLY=1: only the candidate bundles' test-1k evaluations.
  if [ "${EVAL_ONLY:-0}" != 1 ]; then
  run 120 runtime-tests "$G/runtime.test" -test.run 'CUDA' -test.v
  run 120 e2e-TestCUDA bash -c "cd tests && '$G/tests.test' -test.run 'TestCUDA\$' -test.v"
  UNITER_TEST_PROVIDER=cuda UNITER_TEST_CUDA_STRICT=1 run 180 pipeline-tests-cuda-strict "$G/pipeline.test"
  run 120 cuda-eval-test-100 eval_split cuda test-100
  # QUICK=1: leave out what an earlier full run checked (the old graphs, the detector on CUDA,
  # PyTorch).
  if [ "${QUICK:-0}" != 1 ]; then
  # The graphs before the static-reshape export: strict placement refuses them; without it,
  # does an encoder with CPU-placed shape nodes run? And the detector on CUDA (ort.detector_on_cuda).
  BUNDLE=$G/old-bundle TAG=-old run 60 cuda-old-strict eval_split cuda test-100 --no-retrieval
  BUNDLE=$G/old-bundle TAG=-old-nonstrict UNITER_ORT_CUDA_STRICT_PLACEMENT=false \
    run 60 cuda-old-nonstrict eval_split cuda test-100 --no-retrieval
  TAG=-detector-on-cuda UNITER_ORT_DETECTOR_ON_CUDA=true run 60 cuda-detector-on-cuda eval_split cuda test-100 --no-retrieval
  fi
  UNITER_BENCH_BUNDLE=$G/bench UNITER_BENCH_BATCHES=1,8,32,128 UNITER_TEST_PROVIDER=cuda UNITER_TEST_CUDA_STRICT=1 \
    run 120 cuda-bench-base "$G/pipeline.test" -test.run '^$' -test.bench 'BenchmarkEncoder' -test.benchtime 2s
  # pipeline-serial.test (optional): the same benchmarks built from a commit before Match computed
  # its plans in parallel, side by side.
  [ -x "$G/pipeline-serial.test" ] && UNITER_BENCH_BUNDLE=$G/bench UNITER_BENCH_BATCHES=32,128 UNITER_TEST_PROVIDER=cuda \
    UNITER_TEST_CUDA_STRICT=1 run 120 cuda-bench-base-serial "$G/pipeline-serial.test" -test.run '^$' -test.bench 'BenchmarkEncoder$' -test.benchtime 2s
  [ "${QUICK:-0}" != 1 ] && run 120 torch-cuda-base "$PY" -m uniter.bench torch --bundle "$G/bench" --device cuda \
    --batches 1,8,32,128 --seconds 2 --repeats 1 --threads 4
  SCORE_WORKERS=${SCORE_WORKERS:-4} SCORE_BATCH=${SCORE_BATCH:-1024} run "${FULL_LIMIT:-200}" cuda-eval-test-1k eval_split cuda test-1k
  fi
  for b in "$G"/bundles/*/; do
    [ -d "$b" ] || continue
    BUNDLE=$b TAG=-$(basename "$b") SCORE_WORKERS=${SCORE_WORKERS:-4} SCORE_BATCH=${SCORE_BATCH:-1024} \
      run "${FULL_LIMIT:-200}" "cuda-eval-test-1k-$(basename "$b")" eval_split cuda test-1k
  done
  nvidia-smi --query-gpu=memory.used --format=csv >> "$LOG" 2>&1
  ;;
esac
ls -la "$OUT" >> "$LOG"
