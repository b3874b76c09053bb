#!/usr/bin/env bash
# int8 vs fp32 (python3 -m uniter.quantize): accuracy of the default model and encoder throughput
# at UNITER-base size, on this machine, reproducibly. Everything it writes goes to $OUT
# (default .cache/quant; never committed).
#
#   scripts/quantize-eval.sh [accuracy|speed|all]     (default: accuracy then speed)
#
# accuracy  makes the int8 copy of bundles/shapes-uniter ($OUT/shapes-uniter-int8) and runs
#           `uniter eval --split $SPLIT --json` on the fp32 bundle and on it (the split is
#           generated from its seed when missing; each eval of test-1k scores 5M pairs and takes
#           about 30-45 minutes on 2 cores). REUSE=1 keeps eval reports already in $OUT.
#           Prints ITM accuracy, image and text R@1, grounding (OT and attention), the MLM colour
#           probe and the difference in points.
# speed     makes (if missing: python3 -m uniter.bench export) the UNITER-base-sized random bundle
#           .cache/bench/uniter-base-random and its int8 copy, then runs BenchmarkEncoderGraphOnly
#           (the encoder run alone, 20 tokens and 36 regions a pair) at batch 1, 8 and 32 on each,
#           alternating fp32 and int8 for $ROUNDS rounds (default 3), $BENCHTIME (default 20x)
#           each, and prints the best pairs/s of each with the ratio, the CPU and its VNNI flags.
#
# The machine may be shared: before each timed run the script waits up to QUIET_WAIT seconds
# (default 180) for the CPUs to be under 25% busy, and records how busy they were.
#
# Environment: SPLIT (test-1k), ROUNDS (3), BENCHTIME (20x), PYTHON (/usr/bin/python3),
# UNITER_ORT_LIBRARY (.cache/onnxruntime/lib/libonnxruntime.so), OUT (.cache/quant),
# QUANT_ARGS (extra uniter.quantize options, e.g. --per-tensor; the int8 copies are remade).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

what=${1:-all}
SPLIT=${SPLIT:-test-1k}
ROUNDS=${ROUNDS:-3}
BENCHTIME=${BENCHTIME:-20x}
PY=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-.cache/quant}
QUANT_ARGS=${QUANT_ARGS:-}
export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
export PYTHONPATH="$root/models${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

log() { printf '== %s\n' "$*" >&2; }

cpu_busy() { # percent of the CPUs' time busy during the next second
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); d = y[2] - x[2];
    print (d > 0 ? int(100 * (y[1] - x[1]) / d) : 0)}'
}
quiet() { # waits up to $QUIET_WAIT seconds (default 180) for other jobs to leave the CPUs
  local deadline=$((SECONDS + ${QUIET_WAIT:-180})) b
  while b=$(cpu_busy); [ "$b" -gt 25 ] && [ "$SECONDS" -lt "$deadline" ]; do
    log "CPUs ${b}% busy with other jobs; waiting before $1"
    sleep 5
  done
  log "$1: CPUs ${b}% busy before it"
  echo "$1 ${b}%" >>"$OUT/bench-busy.txt"
}

quantize() { # fp32 bundle → int8 copy
  log "quantize $1 → $2"
  # shellcheck disable=SC2086
  "$PY" -m uniter.quantize "$1" "$2" --force $QUANT_ARGS
}

machine() {
  local cpu flags vnni
  cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
  flags=$(grep -m1 "^flags" /proc/cpuinfo)
  vnni=""
  for f in avx512_vnni avx_vnni avx512bw avx2 amx_int8; do
    if grep -qw "$f" <<<"$flags"; then vnni="$vnni $f"; fi
  done
  echo "machine: $cpu, $(getconf _NPROCESSORS_ONLN) CPUs; flags:${vnni:- none of avx2/avx512bw/avx512_vnni/avx_vnni/amx_int8}"
}

accuracy() {
  local bin="$OUT/uniter" fp32=bundles/shapes-uniter int8="$OUT/shapes-uniter-int8"
  log "go build -o $bin ./cmd/uniter"
  go build -o "$bin" ./cmd/uniter
  quantize "$fp32" "$int8"
  for p in fp32 int8; do
    local dir=$fp32 rep="$OUT/eval-$p-$SPLIT.json"
    [ "$p" = int8 ] && dir=$int8
    if [ "${REUSE:-0}" = 1 ] && [ -s "$rep" ]; then
      log "reusing $rep"
      continue
    fi
    log "eval $p ($dir) on $SPLIT → $rep"
    "$bin" eval --split "$SPLIT" --bundle "$dir" --json -q --out "$rep" >/dev/null
  done
  "$PY" - "$OUT/eval-fp32-$SPLIT.json" "$OUT/eval-int8-$SPLIT.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
rows = [("ITM accuracy", "itm_accuracy"), ("image R@1 (ir_r1)", "ir_r1"), ("image R@5", "ir_r5"),
        ("text R@1 (tr_r1)", "tr_r1"), ("grounding noun (OT)", "grounding_noun"),
        ("grounding colour (OT)", "grounding_color"), ("grounding noun (attention)", "grounding_noun_attention"),
        ("grounding colour (attention)", "grounding_color_attention"),
        ("minimal-edit rejection", "minimal_edit_rejection"), ("MLM colour with image", "mlm_color_with_image")]
print(f"\naccuracy on {a.get('split')} ({a.get('images')} images, {a.get('captions')} captions)")
print(f"| metric | fp32 | int8 | int8 − fp32 (points) |\n|---|---|---|---|")
for label, k in rows:
    if k in a and k in b:
        print(f"| {label} | {100*a[k]:.2f} | {100*b[k]:.2f} | {100*(b[k]-a[k]):+.2f} |")
print(f"| eval pairs/s (retrieval scoring of {a.get('model')}; wall clock, not a benchmark) | "
      f"{a.get('pairs_per_second', 0):.0f} | {b.get('pairs_per_second', 0):.0f} | |")
EOF
}

speed() {
  local fp32=.cache/bench/uniter-base-random int8="$OUT/uniter-base-random-int8"
  log "base-size bundle $fp32 (exported when missing or out of date)"
  "$PY" -m uniter.bench export --out "$fp32"
  quantize "$fp32" "$int8"
  log "go test -c ./pipeline"
  go test -c -o "$OUT/pipeline.test" ./pipeline
  machine | tee "$OUT/bench-machine.txt"
  : >"$OUT/bench-busy.txt"
  for r in $(seq 1 "$ROUNDS"); do
    for p in fp32 int8; do
      local dir=$fp32
      [ "$p" = int8 ] && dir=$int8
      quiet "round $r $p"
      (cd pipeline && UNITER_BENCH_BUNDLE="$root/$dir" "$root/$OUT/pipeline.test" -test.run XXX \
        -test.bench 'BenchmarkEncoderGraphOnly' -test.benchtime "$BENCHTIME") | tee "$OUT/bench-$p-$r.txt"
    done
  done
  "$PY" - "$OUT" "$ROUNDS" <<'EOF'
import re, sys
out, rounds = sys.argv[1], int(sys.argv[2])
best, runs = {}, {}
for p in ("fp32", "int8"):
    for r in range(1, rounds + 1):
        for line in open(f"{out}/bench-{p}-{r}.txt"):
            m = re.match(r"BenchmarkEncoderGraphOnly/batch=(\d+)\S*\s.*?([\d.]+) pairs/s", line)
            if m:
                b, v = int(m.group(1)), float(m.group(2))
                runs.setdefault((p, b), []).append(v)
                best[(p, b)] = max(best.get((p, b), 0), v)
print(open(f"{out}/bench-machine.txt").read().strip())
print("".join(l for l in open(f"{out}/bench-fp32-1.txt") if l.startswith(("onnxruntime:", "bundle:"))).strip())
print("CPU busy with other jobs before each run: " + "; ".join(open(f"{out}/bench-busy.txt").read().split("\n")).strip("; "))
print(f"\nBenchmarkEncoderGraphOnly, UNITER-base size, best of {rounds} alternating rounds (all runs)")
print("| batch | fp32 pairs/s | int8 pairs/s | int8 / fp32 |\n|---|---|---|---|")
for b in sorted({b for _, b in best}):
    f, i = best.get(("fp32", b)), best.get(("int8", b))
    if f and i:
        fr = ", ".join(f"{v:.1f}" for v in runs[("fp32", b)])
        ir = ", ".join(f"{v:.1f}" for v in runs[("int8", b)])
        print(f"| {b} | {f:.1f} ({fr}) | {i:.1f} ({ir}) | {i / f:.2f}× |")
EOF
}

case $what in
  accuracy) accuracy ;;
  speed) speed ;;
  all) accuracy; speed ;;
  *) echo "usage: $0 [accuracy|speed|all]" >&2; exit 2 ;;
esac
