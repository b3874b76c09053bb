#!/usr/bin/env bash
# Encoder throughput of the Go pipeline (ONNX Runtime) next to PyTorch eager, detector
# throughput and the split of a cold /v1/match request, on this machine, in one run
# (`make bench`). Steps, one heavy job at a time:
#   1. export a UNITER-base-sized random bundle with a default-size detector into .cache/bench/
#      (cached; never committed)
#   2. pick the PyTorch peer's OpenBLAS kernels (python3 -m uniter.bench blas-probe, into
#      .cache/bench/blas-probe.json): OpenBLAS's own choice and every core type the CPU's
#      /proc/cpuinfo flags allow, each in a fresh process, checked against a float64 reference
#      at the encoder's shapes and timed on one GEMM; the fastest correct one is used
#      (BENCH_OPENBLAS_CORETYPE=NAME|default|inherit overrides: see `uniter.bench torch -h`).
#      Then, in each of BENCH_RUNS rounds, time PyTorch eager on the same weights
#      (python3 -m uniter.bench torch, which checks its products again before timing), then
#      the Go pipeline: BenchmarkEncoder (Bundle.Match) and BenchmarkEncoderGraphOnly (the
#      encoder run alone) in pipeline/bench_test.go; each at batch 1, 8 and 32
#   3. dynamic batching (BenchmarkDynamicBatching: one-text requests from 1, 4, 16 callers,
#      batching off and on, and one 16-text request; .cache/bench/batching.md; BENCH_ONLY=batching
#      runs only this part), then the task heads: export a UNITER-base-sized random bundle per official fine-tuned class
#      into .cache/bench/tasks (python3 -m uniter.bench export-tasks; cached, never committed),
#      then in each of BENCH_RUNS rounds BenchmarkTaskHeads: at batch 1 on the encoder input
#      above, the pre-training bundle's encoder run of one pair (the baseline) and each task
#      call (VQA top 5, Entail, Refer top 5, Match on the retrieval bundle, NLVR2 on the paired,
#      triplet and paired-attention layouts), BENCH_HEAD_CALLS timed calls each
#   4. then, in each of BENCH_RUNS rounds, BenchmarkDetector (decode, preprocessing, detector,
#      selection of one 640×480 JPEG, no cache) and BenchmarkColdMatch (Bundle.Match on an
#      image the cache has not seen, 5 texts), BENCH_IMAGES timed iterations each
#   4b. the bottom-up-attention detector (the LXMERT demo port's Faster R-CNN through
#      convert-butd): random full-size weights (the port's 300 post-NMS proposals) converted into
#      a bundle under .cache/bench/butd with two JPEGs, 640×480 and 480×800 (read at 800×600 and
#      600×1000) (python3 -m uniter.butd_bench export; cached, never committed); then in each of
#      BENCH_RUNS rounds PyTorch eager (python3 -m uniter.butd_bench torch: BUTDDetector.forward
#      on each image's preprocessed tensor, the encoder peer's threads and OpenBLAS core type)
#      and Go (BenchmarkBUTDDetector in pipeline/butd_bench_test.go: decode, preprocessing,
#      detector graph, selection, no cache), BENCH_BUTD_IMAGES timed images each
#      (.cache/bench/butd.md; BENCH_ONLY=butd runs only this part)
#   5. print the tables (encoder: batch | Go pairs/s | PyTorch pairs/s | ratio; detector
#      images/s; cold /v1/match split by stage; task | ms per request | added over the encoder;
#      the BUTD detector: image | Go images/s | PyTorch images/s | ratio) with the machine, and
#      write them to .cache/bench/report.md (the task-head part also to .cache/bench/heads.md)
# BENCH_ONLY=heads runs only step 1 and the task-head part (step 3 and its table, written to
# .cache/bench/heads.md; report.md is left alone): a few minutes instead of the full bench.
# Every figure is the best of BENCH_RUNS rounds (default 3) of PyTorch-then-Go: on a shared
# machine other jobs only ever slow a run down; the report also gives the spread. Before each
# timed step the script waits up to BENCH_QUIET_WAIT seconds (default 20) for the CPUs to be
# under 25% busy, and measures the share of the CPUs other jobs took during the step (CPU time
# from /proc/stat less this script's own, from `times`). A round is busy when other jobs had
# more than 25% before or during it: a table's figure comes from the quiet rounds only; when a
# side of the encoder table has none after BENCH_RUNS rounds, up to BENCH_BUSY_RETRIES (default
# 2) more rounds are run, and a figure with only busy rounds behind it is printed marked (†,
# with a footnote), never as a clean result. Detector rounds keep
# the best images/s and the cold-match split of the round with the lowest ms/request (one
# round's stages, not minima from different rounds). Other knobs: BENCH_PAIRS (pairs per Go
# run, default 32), BENCH_IMAGES (timed images per detector and cold-match run, default 5),
# BENCH_SECONDS (seconds per PyTorch run, at least one call; default 2), BENCH_HEAD_CALLS
# (timed calls per task and round, after one warm-up call; default 20), BENCH_BUTD_IMAGES (timed
# images per BUTD detector run and image, Go and PyTorch, after one warm-up; default 2: about
# 10 s each at 300 proposals on 2 cores), BENCH_TORCH_THREADS
# and BENCH_OPENBLAS_THREADS (default: uniter.bench's, the fastest measured on 2 cores).
# ONNX Runtime uses the tests' settings (internal/testenv.CPUConfig: 2 intra-op threads).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The Python side is the package models/uniter, run as python3 -m uniter.NAME.
export PYTHONPATH="$root/models${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-/usr/bin/python3}
out=.cache/bench
bundle=$out/uniter-base-random
tasks=$out/tasks
butd=$out/butd
only=${BENCH_ONLY:-}
case $only in
  "" | heads | batching | butd) ;;
  *) echo "BENCH_ONLY=$only: want heads (the task-head part alone), batching (the dynamic-batching part alone), butd (the BUTD detector part alone), or leave it unset" >&2; exit 2 ;;
esac
butd_images=${BENCH_BUTD_IMAGES:-2}
batch_calls=${BENCH_BATCH_CALLS:-96}
head_calls=${BENCH_HEAD_CALLS:-20}
runs=${BENCH_RUNS:-3}
pairs=${BENCH_PAIRS:-32}
images=${BENCH_IMAGES:-5}
seconds=${BENCH_SECONDS:-2}
batches=(1 8 32)
export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
mkdir -p "$out"

clk_tck=$(getconf CLK_TCK)
busy_max=25 # % of the CPUs other jobs may use, before or during a timed step, for a quiet one
timings=()
during=() # CPU use by other jobs during each step
declare -A others_pct # step -> the larger of the two (before, during), in %
cpu_busy_s() { # CPU seconds all processes have used, from /proc/stat
  awk -v hz="$clk_tck" '/^cpu / {print ($2+$3+$4+$7+$8+$9) / hz}' /proc/stat
}
own_cpu_s() { # CPU seconds of this script's finished children, from a file `times` wrote
  awk 'NR == 2 {gsub(",", "."); s = 0
    for (i = 1; i <= 2; i++) {split($i, t, "m"); s += t[1] * 60 + t[2]}; print s}' "$1"
}
step() { # step NAME COMMAND...: runs the command, records its wall time and other jobs' CPU use
  local name=$1 t0=$SECONDS w0=${EPOCHREALTIME/,/.} c0 o0 c1 o1 w1 pct
  shift
  echo "== bench: $name" >&2
  times >"$out/.times" # in this shell: a subshell's `times` would not see our children
  o0=$(own_cpu_s "$out/.times") c0=$(cpu_busy_s)
  "$@"
  times >"$out/.times"
  o1=$(own_cpu_s "$out/.times") c1=$(cpu_busy_s) w1=${EPOCHREALTIME/,/.}
  pct=$(awk -v w0="$w0" -v w1="$w1" -v c0="$c0" -v c1="$c1" -v o0="$o0" -v o1="$o1" \
    -v n="$(nproc)" 'BEGIN {w = w1 - w0; p = w > 0 ? 100 * ((c1 - c0) - (o1 - o0)) / (w * n) : 0
      print (p < 0 ? 0 : int(p + 0.5))}')
  during+=("$name ${pct}%")
  if [ "$pct" -gt "${others_pct[$name]:-0}" ]; then others_pct[$name]=$pct; fi
  timings+=("$name $((SECONDS - t0)) s")
  echo "== bench: $name took $((SECONDS - t0)) s; other jobs used ${pct}% of the CPUs" >&2
}
quiet() { # quiet STEP: whether other jobs used at most $busy_max% of the CPUs before and during it
  [ -n "${others_pct[$1]+x}" ] && [ "${others_pct[$1]}" -le "$busy_max" ]
}

busy_pct() { # percentage of all cores' time spent busy over the next second
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " ");
    d = y[2] - x[2]; print (d > 0 ? int(100 * (y[1] - x[1]) / d) : 0)}'
}
busy=() # CPU use by other jobs measured just before each timed step
wait_quiet() { # wait_quiet STEP: waits (bounded) until other jobs leave the CPUs mostly idle
  local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-20})) b
  while b=$(busy_pct); [ "$b" -gt "$busy_max" ] && [ "$SECONDS" -lt "$deadline" ]; do
    echo "== bench: CPUs ${b}% busy with other jobs; waiting before $1" >&2
    sleep 4
  done
  busy+=("$1 ${b}%")
  others_pct[$1]=$b
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if [ "$only" != butd ]; then
  step export "$PY" -m uniter.bench export --out "$bundle"
fi

thread_args=()
[ -n "${BENCH_TORCH_THREADS:-}" ] && thread_args+=(--threads "$BENCH_TORCH_THREADS")
[ -n "${BENCH_OPENBLAS_THREADS:-}" ] && thread_args+=(--openblas-threads "$BENCH_OPENBLAS_THREADS")
# The PyTorch peer's OpenBLAS core type: auto picks the fastest correct one from the probe
# below (the rounds reuse it; each round still checks its products before timing).
torch_args=(--bundle "$bundle" --seconds "$seconds" --repeats 1 --meta "$out/torch-meta.json"
  --openblas-coretype "${BENCH_OPENBLAS_CORETYPE:-auto}" --blas-probe "$out/blas-probe.json"
  "${thread_args[@]}")

go_round() { # go_round STEP: one run of both Go benchmarks at each batch size
  local b n
  echo "bench-round: $1" >>"$out/go.txt"
  for b in "${batches[@]}"; do
    n=$(( (pairs + b - 1) / b )) # calls of $b pairs: about $pairs pairs per run
    UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
      -test.bench "^BenchmarkEncoder(GraphOnly)?\$/^batch=$b\$" -test.benchtime "${n}x" \
      | tee -a "$out/go.txt" >&2
  done
}

heads_round() { # heads_round STEP: the task-head benchmark: the encoder baseline, every task
  echo "bench-round: $1" >>"$out/heads.txt"
  UNITER_BENCH_BUNDLE="$root/$bundle" UNITER_BENCH_TASKS="$root/$tasks" "$out/pipeline.test" \
    -test.run '^$' -test.bench '^BenchmarkTaskHeads$' -test.benchtime "${head_calls}x" \
    | tee -a "$out/heads.txt" >&2
  grep -q '^BenchmarkTaskHeads/task=' "$out/heads.txt" || {
    echo "== bench: BenchmarkTaskHeads timed nothing (skipped?)" >&2
    return 1
  }
}

batching_round() { # batching_round STEP: dynamic batching off, on, and one 16-text request
  echo "bench-round: $1" >>"$out/batching.txt"
  UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
    -test.bench '^BenchmarkDynamicBatching$' -test.benchtime "${batch_calls}x" \
    | tee -a "$out/batching.txt" >&2
  grep -q '^BenchmarkDynamicBatching/' "$out/batching.txt" || {
    echo "== bench: BenchmarkDynamicBatching timed nothing" >&2
    return 1
  }
}

det_round() { # det_round STEP: one run of the detector and cold-match benchmarks
  echo "bench-round: $1" >>"$out/det.txt"
  UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
    -test.bench '^Benchmark(Detector|ColdMatch)$' -test.benchtime "${images}x" \
    | tee -a "$out/det.txt" >&2
}

butd_round() { # butd_round STEP: the converted BUTD detector on each image, Go
  echo "bench-round: $1" >>"$out/butd.txt"
  UNITER_BENCH_BUTD="$root/$butd" "$out/pipeline.test" -test.run '^$' \
    -test.bench '^BenchmarkBUTDDetector$' -test.benchtime "${butd_images}x" \
    | tee -a "$out/butd.txt" >&2
  grep -q '^BenchmarkBUTDDetector/' "$out/butd.txt" || {
    echo "== bench: BenchmarkBUTDDetector timed nothing" >&2
    return 1
  }
}

step go-build go test -c -o "$out/pipeline.test" ./pipeline
: >"$out/heads.txt"
if [ -z "$only" ]; then
  : >"$out/go.txt"
  : >"$out/det.txt"
  rm -f "$out"/torch-*.json "$out/blas-probe.json"
  if [ "${BENCH_OPENBLAS_CORETYPE:-auto}" = auto ]; then
    wait_quiet blas-probe
    step blas-probe "$PY" -m uniter.bench blas-probe "${thread_args[@]}" \
      --json "$out/blas-probe.json" >/dev/null
  fi
  # Rounds rather than back-to-back repeats, so that a burst of other jobs spoils one run of
  # each side rather than every run of one side. A side without a quiet round after $runs
  # rounds gets up to BENCH_BUSY_RETRIES more.
  r=0
  while :; do
    r=$((r + 1))
    wait_quiet "pytorch-$r"
    step "pytorch-$r" "$PY" -m uniter.bench torch "${torch_args[@]}" \
      --json "$out/torch-$r.json" >/dev/null
    wait_quiet "go-$r"
    step "go-$r" go_round "go-$r"
    [ "$r" -lt "$runs" ] && continue
    need=()
    for side in pytorch go; do
      ok=0
      for i in $(seq "$r"); do quiet "$side-$i" && ok=1; done
      [ "$ok" = 1 ] || need+=("$side")
    done
    [ ${#need[@]} -eq 0 ] && break
    if [ "$r" -ge $((runs + ${BENCH_BUSY_RETRIES:-2})) ]; then
      echo "== bench: no quiet round for ${need[*]} in $r rounds: its figures are marked busy" >&2
      break
    fi
    echo "== bench: no quiet round yet for ${need[*]}: one more round" >&2
  done
fi
# Dynamic batching: one-text requests from 1, 4 and 16 concurrent callers, batching off and
# on, and one request carrying 16 texts, in one process per round.
: >"$out/batching.txt"
if [ -z "$only" ] || [ "$only" = batching ]; then
  for r in $(seq "$runs"); do
    wait_quiet "batching-$r"
    step "batching-$r" batching_round "batching-$r"
  done
fi
# Step 3: the task heads. Each round times the baseline and every task side by side in one
# process, one bundle loaded at a time.
if [ -z "$only" ] || [ "$only" = heads ]; then
  step export-tasks "$PY" -m uniter.bench export-tasks --out "$tasks"
  for r in $(seq "$runs"); do
    wait_quiet "heads-$r"
    step "heads-$r" heads_round "heads-$r"
  done
fi
if [ -z "$only" ]; then
  for r in $(seq "$runs"); do
    wait_quiet "detector-$r"
    step "detector-$r" det_round "detector-$r"
  done
fi
# Step 4b: the BUTD detector, PyTorch then Go in each round. The PyTorch peer takes the
# encoder peer's OpenBLAS core type: the probe above, or (alone) one made here when none is saved
# (uniter.bench probes again when the saved one was made with other threads).
: >"$out/butd.txt"
if [ -z "$only" ] || [ "$only" = butd ]; then
  step export-butd "$PY" -m uniter.butd_bench export --out "$butd"
  if [ "${BENCH_OPENBLAS_CORETYPE:-auto}" = auto ] && [ ! -s "$out/blas-probe.json" ]; then
    wait_quiet blas-probe
    step blas-probe "$PY" -m uniter.bench blas-probe "${thread_args[@]}" \
      --json "$out/blas-probe.json" >/dev/null
  fi
  rm -f "$out"/butd-torch-[0-9]*.json
  for r in $(seq "$runs"); do
    wait_quiet "butd-pytorch-$r"
    step "butd-pytorch-$r" "$PY" -m uniter.butd_bench torch --dir "$butd" --min-iters "$butd_images" \
      --openblas-coretype "${BENCH_OPENBLAS_CORETYPE:-auto}" --blas-probe "$out/blas-probe.json" \
      "${thread_args[@]}" --meta "$out/butd-torch-meta.json" --json "$out/butd-torch-$r.json" >/dev/null
    wait_quiet "butd-go-$r"
    step "butd-go-$r" butd_round "butd-go-$r"
  done
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# The busy steps, "STEP N% ...": other jobs used more than $busy_max% of the CPUs before or during
# them. The tables take their figures from the other rounds, or mark them when there are none.
busy_steps=""
for k in "${!others_pct[@]}"; do
  if [ "${others_pct[$k]}" -gt "$busy_max" ]; then busy_steps+="$k ${others_pct[$k]}% "; fi
done
export BENCH_BUSY_STEPS=$busy_steps BENCH_BUSY_MAX=$busy_max BENCH_DURING="${during[*]}"

# The dynamic-batching table, from batching.txt, into batching.md: the round with the highest
# total pairs/s (other jobs only ever slow a round down), every row from that round.
if [ -s "$out/batching.txt" ]; then
  BENCH_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') BENCH_NPROC=$(nproc) \
  BENCH_BUSY="${busy[*]}" BENCH_CALLS=$batch_calls "$PY" - "$out/batching.txt" "$out/batching.md" <<'EOF'
import os, re, sys
txt, md = sys.argv[1:]
rounds, steps, cur, step = [], [], None, None
for line in open(txt):
    if line.startswith("bench-round: "):
        cur, step = None, line.split()[1]
    m = re.match(r"BenchmarkDynamicBatching/(\S+?)(?:-\d+)?\s+\d+\s+\d+ ns/op\s+([\d.]+) pairs/s", line)
    if not m:
        continue
    name, rate = m.group(1), float(m.group(2))
    if cur is None or name in cur:
        cur = {}
        rounds.append(cur)
        steps.append(step or f"batching-{len(rounds)}")
    cur[name] = rate
# Busy rounds (other jobs above BENCH_BUSY_MAX% of the CPUs before or during them) count only
# when every round was busy, and then the table says so.
busy = dict(re.findall(r"(\S+) (\d+)%", os.environ.get("BENCH_BUSY_STEPS", "")))
during = dict(re.findall(r"(\S+) (\d+)%", os.environ.get("BENCH_DURING", "")))
quiet = [r for r, st in zip(rounds, steps) if st not in busy]
best = max(quiet or rounds, key=lambda r: sum(r.values()))
def rate(name): return best.get(name, float("nan"))
rows = []
for mode in ("off", "on"):
    for callers in (1, 4, 16):
        rows.append(f"| {mode} | {callers} | {rate(f'batching={mode}/callers={callers}'):,.0f} |")
one16 = rate("one_request_of_16_texts")
on1, on16, off16 = rate("batching=on/callers=1"), rate("batching=on/callers=16"), rate("batching=off/callers=16")
text = "\n".join([
    "## Dynamic batching across requests",
    "",
    "`BenchmarkDynamicBatching`: `Bundle.Match` with one text and 36 regions per request from 1, 4 and 16 "
    "concurrent callers, batching across callers off and on (`limits.batch_pairs` 32, `batch_wait` 0), "
    f"{os.environ['BENCH_CALLS']} requests per row; the UNITER-base-sized random bundle; pairs/s.",
    "",
    "| batching | concurrent one-text callers | pairs/s |",
    "|---|---:|---:|",
    *rows,
    f"| (one request of 16 texts) | 1 | {one16:,.0f} |",
    *([] if quiet else [
        "", f"**Busy**: every round ran while other jobs used more than "
        f"{os.environ.get('BENCH_BUSY_MAX', '25')}% of the CPUs ({', '.join(f'{k} {v}%' for k, v in busy.items() if k.startswith('batching-'))}): "
        "these figures are lower bounds, not a clean result."]),
    "",
    f"Batching on: 16 callers **{on16 / on1:.2f}×** the pairs/s of one caller (target ≥ 2.5×), "
    f"**{100 * on16 / one16:.0f}%** of one request carrying 16 texts (target ≥ 80%); "
    f"{on16 / off16:.2f}× batching off at 16 callers.",
    "",
    f"Machine: {os.environ['BENCH_CPU']}, {os.environ['BENCH_NPROC']} cores; CPU use by other jobs before / during each round: "
    + ", ".join(f"{k} {v}% / {during.get(k, '?')}%"
                for k, v in re.findall(r"(batching-\d+) (\d+)%", os.environ["BENCH_BUSY"]))
    + (f"; the best by total pairs/s of the {len(quiet)} quiet rounds of {len(rounds)}." if quiet
       else f"; the best by total pairs/s of {len(rounds)} rounds, all busy."),
])
open(md, "w").write(text + "\n")
print(text)
EOF
fi

if [ -z "$only" ] || [ "$only" = heads ]; then
# The task-head table, from heads.txt (every round's BenchmarkTaskHeads lines), into heads.md.
BENCH_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
BENCH_NPROC=$(nproc) BENCH_MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) \
BENCH_GO=$(go env GOVERSION) BENCH_LOAD="$load_before before, $load_after after" \
BENCH_BUSY="${busy[*]}" BENCH_RUNS=$runs BENCH_HEAD_CALLS=$head_calls BENCH_TIMINGS="${timings[*]}" \
  "$PY" - "$out/heads.txt" "$out/heads.md" <<'EOF'
import os, re, sys

heads_txt, heads_md = sys.argv[1:]
e = os.environ
# Every round's lines, in order: a round starts with its baseline ("encoder") line.
ort, rounds, steps, step = "unknown", [], [], None  # [{task: (mean ms, fastest call ms)}]
for line in open(heads_txt):
    if line.startswith("onnxruntime:"):
        ort = line.split(":", 1)[1].strip()
    if line.startswith("bench-round: "):
        step = line.split()[1]
    m = re.match(r"BenchmarkTaskHeads/task=(\S+?)(?:-\d+)?\s+\d+\s+([\d.e+]+) ns/op", line)
    fast = re.search(r"\s([\d.e+]+) fastest-ms", line)
    if m and fast:
        if m[1] == "encoder" or not rounds:
            rounds.append({})
            steps.append(step or f"heads-{len(rounds)}")
        rounds[-1][m[1]] = (float(m[2]) / 1e6, float(fast[1]))
rows = [("encoder", "encoder run of one pair (baseline; pre-training bundle, `Bundle.Encode`)"),
        ("vqa", "VQA: `Bundle.VQA`, top 5 of 3,129 answers"),
        ("ve", "VE: `Bundle.Entail`"),
        ("re", "RE: `Bundle.Refer`, top 5 of 36 regions"),
        ("retrieval", "retrieval: `Bundle.Match` of one text (rank head, OT alignment)"),
        ("nlvr2-paired", "NLVR2 paired: `Bundle.NLVR2`"),
        ("nlvr2-triplet", "NLVR2 triplet: `Bundle.NLVR2`"),
        ("nlvr2-paired-attn", "NLVR2 paired-attn: `Bundle.NLVR2`")]
# The round with the lowest total: other jobs only ever slow a round down, and every figure of
# the table comes from that one round, the baseline and the tasks measured side by side
# (minima from different rounds would compare a quiet moment with a busy one).
# Busy rounds (other jobs above BENCH_BUSY_MAX% of the CPUs before or during them) count only
# when every round was busy, and then the table says so.
busy_steps = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_BUSY_STEPS", "")))
during = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_DURING", "")))
complete = [r for r in rounds if all(k in r for k, _ in rows)] or rounds
quiet = [r for r in complete if steps[rounds.index(r)] not in busy_steps]
pool = quiet or complete
best_i = min(range(len(pool)), key=lambda i: sum(v[0] for v in pool[i].values()))
best = pool[best_i]
base = best.get("encoder", (None,))[0]
lines = [
    "## Task heads: each fine-tuned task's cost over the encoder",
    "",
    "UNITER-base-sized bundles with random weights (12 layers, hidden 768, 2048-d region "
    "features), one per official fine-tuned class, exported from official-layout checkpoints "
    "by `python3 -m uniter.bench export-tasks`; batch 1, one text of 20 tokens and 36 regions "
    "per image (BenchmarkEncoder's input); the Go pipeline on ONNX Runtime "
    "(`BenchmarkTaskHeads` in pipeline/bench_test.go).",
    "",
    "| task | ms per request | added over the encoder (ms, %) | fastest call (ms) |",
    "|---|---:|---:|---:|",
]
for k, label in rows:
    if k not in best:
        lines.append(f"| {label} | n/a | n/a | n/a |")
        continue
    mean, fastest = best[k]
    if k == "encoder":
        add = "—"
    elif base:
        add = f"{mean - base:+.1f} ({100 * (mean - base) / base:+.0f}%)"
    else:
        add = "n/a"
    lines.append(f"| {label} | {mean:.1f} | {add} | {fastest:.1f} |")
if not quiet:
    lines += ["", f"**Busy**: every round ran while other jobs used more than "
              f"{e.get('BENCH_BUSY_MAX', '25')}% of the CPUs (" + ", ".join(
                  f"{k} {v}%" for k, v in busy_steps.items() if k.startswith("heads-"))
              + "): these figures are upper bounds, not a clean result."]
spread = "; ".join(f"{k} " + "–".join(f"{f(r[k][0] for r in rounds if k in r):.1f}"
                                      for f in (min, max))
                   for k, _ in rows if any(k in r for r in rounds))
busy = [f"{k} {v}% / {during.get(k, '?')}%"
        for k, v in re.findall(r"(heads-\d+) (\d+)%", e["BENCH_BUSY"])]
steps = re.findall(r"(?:export-tasks|heads-\d+) \d+ s", e["BENCH_TIMINGS"])
lines += [
    "",
    "NLVR2's baseline is the same one-pair encoder run: paired and paired-attn run the encoder "
    "twice (the text with each image's 36 regions), so they show about +100% over it, "
    "paired-attn with its cross-attention and attention pooling on top; triplet runs it once "
    "on a longer sequence (the text and both images' 72 regions). The other tasks run the "
    "encoder once and add their head and its post-processing (retrieval: the rank head and the "
    "OT alignment that `Match` always computes); those heads are small next to the encoder "
    "(VQA's, the largest, about 6 M multiply-adds against about 4.9 G for the encoder's 56 "
    "positions): a difference of a few percent from the baseline, either way, is run-to-run "
    "noise, not the head.",
    "",
    f"Machine: {e['BENCH_NPROC']} cores ({e['BENCH_CPU']}), {e['BENCH_MEM']} memory; load "
    f"average (1, 5, 15 min) {e['BENCH_LOAD']}; CPU use by other jobs just before / during each "
    f"round: {', '.join(busy) or 'n/a'}. ONNX Runtime {ort} (CPU, 2 intra-op threads) through "
    f"onnxruntime_go, {e['BENCH_GO']}.",
    f"Figures of round {rounds.index(best) + 1} of {len(rounds)}, the "
    f"{'quiet one' if quiet else 'one'} with the lowest total (other jobs only ever slow a round down; every row from the same round, so the "
    "tasks and the baseline are compared side by side). A round loads each bundle in turn, "
    f"the baseline first, and times {e['BENCH_HEAD_CALLS']} calls of each after one warm-up "
    "call: ms per request is their mean, fastest call the quickest of them. Spread of the "
    f"means over the rounds, ms: {spread}. Steps: {', '.join(steps)}.",
]
text = "\n".join(lines) + "\n"
print(text)
with open(heads_md, "w") as f:
    f.write(text)
print(f"(written to {heads_md})", file=sys.stderr)
EOF
fi

# The BUTD detector table, from butd.txt (every Go round) and butd-torch-R.json (every PyTorch
# round), into butd.md: per image, each side's best quiet round (other jobs only ever slow a
# round down); a side with busy rounds only is marked †.
if [ -s "$out/butd.txt" ]; then
BENCH_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
BENCH_NPROC=$(nproc) BENCH_MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) \
BENCH_GO=$(go env GOVERSION) BENCH_LOAD="$load_before before, $load_after after" \
BENCH_BUSY="${busy[*]}" BENCH_BUTD_IMAGES=$butd_images BENCH_TIMINGS="${timings[*]}" \
  "$PY" - "$out/butd.txt" "$out/butd-torch-meta.json" "$out/butd.md" "$out"/butd-torch-[0-9]*.json <<'EOF'
import json, os, re, sys

butd_txt, meta_json, butd_md, *torch_jsons = sys.argv[1:]
e = os.environ
busy = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_BUSY_STEPS", "")))
during = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_DURING", "")))
ort, step, desc, go, images = "unknown", None, "", {}, {}  # go: {image: {step: metrics}}
for line in open(butd_txt):
    if line.startswith("onnxruntime:"):
        ort = line.split(":", 1)[1].strip()
    if line.startswith("butd-bundle:"):
        desc = line.split(":", 1)[1].strip()
    if line.startswith("bench-round: "):
        step = line.split()[1]
    m = re.match(r"butd-image: (\S+) (\d+x\d+) JPEG, (\d+) bytes -> detector input (\d+x\d+), "
                 r"(\d+) proposals, (\d+) regions", line)
    if m:
        images.setdefault(m[1], {"size": m[2], "input": m[4], "proposals": int(m[5]),
                                 "regions": int(m[6])})
    m = re.match(r"BenchmarkBUTDDetector/image=(\S+?)-\d+\s+\d+\s+(.*)", line)
    if m:
        metrics = {unit: float(v) for v, unit in re.findall(r"([-\d.e+]+) (\S+)", m[2])}
        runs = go.setdefault(m[1], {})
        runs[step or f"butd-go-{len(runs) + 1}"] = metrics
torch = {}  # {image: {step: result}}
for path in torch_jsons:
    st = "butd-pytorch-" + re.search(r"butd-torch-(\d+)\.json$", path)[1]
    for name, r in json.load(open(path)).items():
        torch.setdefault(name, {})[st] = r
meta = json.load(open(meta_json)) if os.path.exists(meta_json) else {}


def best(runs, key):
    """The best of the quiet rounds and False; when every round was busy, the best of them and
    True (the figure is then marked, not given as a clean result)."""
    quiet = {st: r for st, r in runs.items() if st not in busy}
    pool = quiet or runs
    return pool[max(pool, key=lambda k: pool[k][key])], not quiet


def fmt(v, marked, spec=".3f"):
    return f"{v:{spec}}†" if marked else f"{v:{spec}}"


lines = [
    "## The bottom-up-attention detector: Go (ONNX Runtime) vs PyTorch eager",
    "",
    f"{desc or 'bottom-up-attention Faster R-CNN'}, with random weights in the port's full-size "
    "layout (ResNet-101 C4, 1,601 classes, 401 attributes, 2,048-d features) and its test "
    "settings (RPN 6,000 / 300 top-n), converted by `convert-butd` (`python3 -m "
    "uniter.butd_bench export`). Go: `BenchmarkBUTDDetector`, the whole path of one image "
    "(decode, preprocessing, the detector graph in ONNX Runtime, selection; no cache). PyTorch: "
    "`BUTDDetector.forward` on the image's preprocessed tensor under `no_grad` (the graph's "
    "work only). Synthetic photo-like JPEGs, quality 90.",
    "",
    "| image | detector input | proposals | regions | Go images/s | Go graph ms "
    "| PyTorch images/s | PyTorch forward ms | Go / PyTorch |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
]
marked_any = False
for name in sorted(set(go) | set(torch)):
    info = images.get(name, {})
    g, gm = best(go[name], "images/s") if name in go else ({}, False)
    t, tm = best(torch[name], "images_per_s") if name in torch else ({}, False)
    marked_any = marked_any or gm or tm
    gr, tr = g.get("images/s"), t.get("images_per_s")
    inp = info.get("input") or ("x".join(map(str, t["input"])) if t else "?")
    lines.append(
        f"| {info.get('size', name)} JPEG | {inp} | {info.get('proposals', t.get('proposals', '?'))} "
        f"| {info.get('regions', '?')} | {fmt(gr, gm) if gr else 'n/a'} "
        f"| {fmt(g['detector-ms'], gm, '.0f') if g else 'n/a'} | {fmt(tr, tm) if tr else 'n/a'} "
        f"| {fmt(t['ms'], tm, '.0f') if t else 'n/a'} "
        f"| {fmt(gr / tr, gm or tm, '.2f') if gr and tr else 'n/a'} |")
blas = meta.get("blas") or {}
n_rounds = len({st for v in go.values() for st in v})
spread = "; ".join(
    f"{name} Go {min(r['images/s'] for r in go[name].values()):.3f}–"
    f"{max(r['images/s'] for r in go[name].values()):.3f}"
    + (f", PyTorch {min(r['images_per_s'] for r in torch[name].values()):.3f}–"
       f"{max(r['images_per_s'] for r in torch[name].values()):.3f}" if name in torch else "")
    for name in sorted(go))
rounds = ", ".join(f"{k} {v}% / {during.get(k, '?')}%" for k, v in
                   re.findall(r"(butd-(?:go|pytorch)-\d+) (\d+)%", e.get("BENCH_BUSY", "")))
lines += [
    "",
    *([f"† Every round behind this figure was busy: other jobs used more than "
       f"{e.get('BENCH_BUSY_MAX', '25')}% of the CPUs just before or during it ("
       + ", ".join(f"{k} {v}%" for k, v in busy.items() if k.startswith("butd-"))
       + "): images/s is a lower bound and ms an upper bound, not a clean result.", ""]
      if marked_any else []),
    "Go images/s includes decoding, preprocessing and selection, PyTorch's the forward pass "
    "alone: Go graph ms against PyTorch forward ms compares the same work.",
    "",
    f"Machine: {e['BENCH_NPROC']} cores ({e['BENCH_CPU']}), {e['BENCH_MEM']} memory; load average "
    f"(1, 5, 15 min) {e['BENCH_LOAD']}; CPU use by other jobs just before / during each round: "
    f"{rounds or 'n/a'}. ONNX Runtime {ort} (CPU, 2 intra-op threads) through onnxruntime_go, "
    f"{e['BENCH_GO']}. PyTorch {meta.get('torch_version', '?')}: "
    f"{meta.get('torch_threads', '?')} torch thread(s), OpenBLAS core type "
    f"{blas.get('core', '?')} with {blas.get('openblas_threads', '?')} thread(s), the encoder "
    "peer's settings"
    + (f" (its float32 products checked within {blas['max_err']:.1e} of float64)"
       if "max_err" in blas else "") + ".",
    f"Each figure is the best quiet round of {n_rounds} (a round is busy when other jobs used more "
    f"than {e.get('BENCH_BUSY_MAX', '25')}% of the CPUs just before or during it); each round "
    f"times PyTorch then Go, {e['BENCH_BUTD_IMAGES']} timed images per image and side after one "
    f"warm-up. Spread over the rounds, images/s: {spread}.",
    "Steps: " + ", ".join(re.findall(r"(?:export-butd|blas-probe|butd-(?:go|pytorch)-\d+) \d+ s",
                                     e["BENCH_TIMINGS"])) + ".",
]
text = "\n".join(lines) + "\n"
print(text)
with open(butd_md, "w") as f:
    f.write(text)
print(f"(written to {butd_md})", file=sys.stderr)
EOF
fi
if [ -n "$only" ]; then
  exit 0
fi

torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
torch_pkg=$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo unknown)

# Step 5: the report, from go.txt and the torch-R.json files (one per round).
BENCH_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
BENCH_NPROC=$(nproc) BENCH_MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) \
BENCH_TORCH="$torch_version (Debian python3-torch $torch_pkg)" BENCH_GO=$(go env GOVERSION) \
BENCH_LOAD="$load_before before, $load_after after" BENCH_BUSY="${busy[*]}" \
BENCH_RUNS=$runs BENCH_PAIRS=$pairs BENCH_IMAGES=$images BENCH_TIMINGS="${timings[*]}" \
  "$PY" - "$out/go.txt" "$out/det.txt" "$out/torch-meta.json" "$out/report.md" \
  "$out"/torch-[0-9]*.json <<'EOF'
import json, os, re, sys

go_txt, det_txt, meta_json, report, *torch_jsons = sys.argv[1:]
e = os.environ
# Steps during or just before which other jobs used more than BENCH_BUSY_MAX% of the CPUs.
busy = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_BUSY_STEPS", "")))


def best(runs, pick=max):
    """runs: {step: value}. The best of the quiet rounds, and False; when every round was busy,
    the best of them and True: the figure is then marked, not given as a clean result."""
    quiet = {st: v for st, v in runs.items() if st not in busy}
    pool = quiet or runs
    return pool[pick(pool, key=pool.get)], not quiet


def fmt(v, marked, spec=".2f"):
    return f"{v:{spec}}†" if marked else f"{v:{spec}}"


go_runs, graph_runs, ort, step = {}, {}, "unknown", None  # {batch: {round's step: pairs/s}}
for line in open(go_txt):
    if line.startswith("onnxruntime:"):
        ort = line.split(":", 1)[1].strip()
    if line.startswith("bench-round: "):
        step = line.split()[1]
    m = re.match(r"Benchmark(Encoder|EncoderGraphOnly)/batch=(\d+)-\d+\s", line)
    rate = re.search(r"\s([\d.e+]+) pairs/s", line)
    if m and rate:
        runs = (go_runs if m[1] == "Encoder" else graph_runs).setdefault(int(m[2]), {})
        runs[step or f"go-{len(runs) + 1}"] = float(rate[1])
meta = json.load(open(meta_json))
torch_runs = {}
for path in torch_jsons:
    step = "pytorch-" + re.search(r"torch-(\d+)\.json$", path)[1]
    for b, v in json.load(open(path)).items():
        torch_runs.setdefault(int(b), {})[step] = v
spread = {name: {b: f"{min(v.values()):.2f}–{max(v.values()):.2f}" for b, v in runs.items()}
          for name, runs in (("Go", go_runs), ("Go graph-only", graph_runs),
                             ("PyTorch", torch_runs))}
go = {b: best(v) for b, v in go_runs.items()}  # {batch: (pairs/s, marked)}
graph = {b: best(v) for b, v in graph_runs.items()}
torch = {b: best(v) for b, v in torch_runs.items()}
marked = any(m for d in (go, graph, torch) for _, m in d.values())
blas = meta.get("blas") or {}
blas_cell = (f" (OpenBLAS {blas['core']}; threads: {blas['openblas_threads']} OpenBLAS, "
             f"{blas['torch_threads']} torch)" if blas.get("core") else "")
lines = [
    "## Encoder throughput: Go pipeline (ONNX Runtime) vs PyTorch eager",
    "",
    "UNITER-base-sized encoder with random weights (12 layers, hidden 768, 12 heads, "
    "intermediate 3072, 2048-d region features), every pair 20 tokens + 36 regions. "
    "Go: `Bundle.Match` (tokenizer, batching, ONNX Runtime, ITM and OT heads), one image "
    "and `batch` texts per call. PyTorch: eager forward + ITM head under `torch.no_grad()`.",
    "",
    f"| batch | Go pairs/s | PyTorch pairs/s{blas_cell} | ratio Go/PyTorch |",
    "|---:|---:|---:|---:|",
]
nan = (float("nan"), False)
for b in sorted(set(go) | set(torch)):
    (g, gm), (t, tm) = go.get(b, nan), torch.get(b, nan)
    ratio = fmt(g / t, gm or tm) if g and t else "n/a"
    lines.append(f"| {b} | {fmt(g, gm)} | {fmt(t, tm)} | {ratio} |")
lines += ["", "Go encoder run alone (`BenchmarkEncoderGraphOnly`: batching + ONNX Runtime, text "
          "tokenized and regions prepared beforehand):", "",
          "| batch | graph-only pairs/s | full pipeline pairs/s | pipeline overhead |",
          "|---:|---:|---:|---:|"]
for b in sorted(graph):
    (gr, grm), (g, gm) = graph[b], go.get(b, nan)
    over = fmt(100 * (gr / g - 1), grm or gm, ".1f") + "%" if g else "n/a"
    lines.append(f"| {b} | {fmt(gr, grm)} | {fmt(g, gm)} | {over} |")

# Detector and cold-match runs: "BenchmarkX-N  iters  v unit  v unit ..." and config lines.
det_runs, cold_runs, cfg, step = [], [], {}, None
for line in open(det_txt):
    if line.startswith("bench-round: "):
        step = line.split()[1]
    m = re.match(r"(detector-\w+): (.*)", line)
    if m:
        cfg.setdefault(m[1], m[2].strip())
    m = re.match(r"Benchmark(Detector|ColdMatch)-\d+\s+\d+\s+(.*)", line)
    if m:
        metrics = {unit: float(v) for v, unit in re.findall(r"([-\d.e+]+) (\S+)", m[2])}
        runs = det_runs if m[1] == "Detector" else cold_runs
        metrics["step"] = step or f"detector-{len(runs) + 1}"
        runs.append(metrics)
inp = cfg.get("detector-input", "?").split(" (")[0]
out_desc = cfg.get("detector-output", "?")
if det_runs:
    quiet = [r for r in det_runs if r["step"] not in busy]
    d = max(quiet or det_runs, key=lambda r: r["images/s"])
    marked = marked or not quiet
    rates = [r["images/s"] for r in det_runs]
    lines += [
        "",
        "## Detector throughput (Go: decode, preprocessing, ONNX Runtime, selection; no cache)",
        "",
        "The project's Faster R-CNN (models/uniter/detector.py) at its default DetectorConfig "
        "size with random weights: C = 1601 classes, A = 401 attributes, D = 2048 features; "
        "bottom-up-attention preprocessing (BGR, shorter side 600, longer side at most 1000, "
        f"bilinear) and selection (NMS IoU 0.3, confidence 0.2, 10-100 boxes). Input: "
        f"{cfg.get('detector-image', '?')} (synthetic, photo-like); detector output: {out_desc}.",
        "",
        "| image | detector input | proposals | regions | images/s | ms/image | decode ms "
        "| preprocess ms | detector ms | selection ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {cfg.get('detector-image', '?').split(' ')[0]} JPEG | {inp} | {d['proposals']:.0f} "
        f"| {d['regions']:.0f} | {fmt(d['images/s'], not quiet)} | {d['ns/op'] / 1e6:.0f} "
        f"| {d['decode-ms']:.1f} | {d['preprocess-ms']:.1f} | {d['detector-ms']:.1f} "
        f"| {d['selection-ms']:.1f} |",
        "",
        f"Best of {len(quiet or det_runs)} {'quiet ' if quiet else ''}runs of {len(det_runs)} "
        f"({e['BENCH_IMAGES']} images each after one warm-up); "
        f"images/s over the runs: {min(rates):.2f}–{max(rates):.2f}. Allocations: "
        f"{d['B/op'] / 2**20:.1f} MiB and {d['allocs/op']:.0f} allocations per image.",
    ]
if cold_runs:
    quiet = [r for r in cold_runs if r["step"] not in busy]
    c = min(quiet or cold_runs, key=lambda r: r["ms/request"])
    marked = marked or not quiet
    total = c["ms/request"]
    stages = [("decode", "decode-ms"), ("preprocessing", "preprocess-ms"),
              ("detector", "detector-ms"), ("selection", "selection-ms"),
              ("encoder (5 pairs)", "encoder-ms"), ("OT (5 pairs)", "ot-ms"),
              ("other (tokenizer, SHA-256, cache, region preparation)", "other-ms")]
    lines += [
        "",
        "## Cold /v1/match request, split by stage",
        "",
        "`Bundle.Match` with the image's bytes and 5 texts of 20 tokens, serving defaults "
        "(at most 100 regions, 256 MiB detector cache); every request's bytes are new (a "
        "counter in a JPEG comment), so each one misses the cache like a first-seen image. "
        f"Image {cfg.get('detector-image', '?').split(',')[0]} → detector input {inp}, "
        f"{c['regions']:.0f} regions selected.",
        "",
        "| stage | ms | share of the request |",
        "|---|---:|---:|",
    ]
    for name, k in stages:
        lines.append(f"| {name} | {c[k]:.1f} | {100 * c[k] / total:.1f}% |")
    tot = [r["ms/request"] for r in cold_runs]
    lines += [
        f"| **total** | **{fmt(total, not quiet, '.1f')}** | 100% |",
        "",
        f"The {'quiet ' if quiet else ''}round with the lowest total of {len(cold_runs)} "
        f"({e['BENCH_IMAGES']} requests "
        f"each after one warm-up); totals over the runs: {min(tot):.0f}–{max(tot):.0f} ms. "
        f"Allocations: {c['B/op'] / 2**20:.1f} MiB and {c['allocs/op']:.0f} allocations per "
        "request.",
    ]
    if c["regions"] <= 10:
        lines += [
            "",
            "With random weights every class probability is far below the 0.2 threshold, so "
            "selection keeps only min_boxes = 10 regions. A trained detector keeps 10-100 "
            "(UNITER's features: typically around 36), and the encoder and OT stages grow with "
            "the region count: the encoder table above is at 36 regions.",
        ]


def blas_text():
    """PyTorch's BLAS: the core type, how it was chosen, threads, the probe's candidates."""
    if not blas.get("core"):
        return (f"{meta['torch_threads']} torch threads, "
                f"OPENBLAS_NUM_THREADS={meta['openblas_threads']}.")
    cfg = (blas.get("openblas_config") or "").split()
    probe = blas.get("probe")
    how = ("the fastest correct one of the probe below" if probe
           else f"`--openblas-coretype {blas.get('coretype_option')}`")
    text = (f"matrix products in OpenBLAS {cfg[1] if len(cfg) > 1 else ''} (torch "
            f"BLAS_INFO={blas.get('torch_blas')}), core type **{blas['core']}** ({how}); threads: "
            f"{blas.get('openblas_threads')} OpenBLAS, {blas.get('torch_threads')} torch; "
            "checked before timing: its float32 products at the encoder's shapes within "
            f"{blas['max_err']:.1e} (limit {blas['gemm_tol']:g}) of the float64 reference.")
    if probe:
        cands = [(f"OpenBLAS's own choice ({r.get('core')})" if r["name"] == "default"
                  else r["name"]) + (f" {r['gflops']:.0f}" if r["verdict"] == "ok"
                                     else f" {r['verdict']} ({r['reason']})")
                 for r in probe["candidates"]]
        text += (f" Probe of the core types ({probe['timed_gemm']}; each in a fresh process, "
                 "checked against float64 first), GFLOP/s: " + ", ".join(cands))
        if probe.get("skipped"):
            text += ("; not tried, the CPU lacks their instructions: "
                     + ", ".join(x["name"] for x in probe["skipped"]))
        if probe.get("inherited_coretype"):
            text += f"; the environment had OPENBLAS_CORETYPE={probe['inherited_coretype']}"
        text += "."
        if "blas-probe" in busy:
            text += (f" Other jobs used {busy['blas-probe']}% of the CPUs around the probe: its "
                     "GFLOP/s are lower bounds.")
    return text


during = dict(re.findall(r"(\S+) (\d+)%", e.get("BENCH_DURING", "")))
before_during = ", ".join(f"{k} {v}% / {during.get(k, '?')}%"
                          for k, v in re.findall(r"(\S+) (\d+)%", e["BENCH_BUSY"]))
n_rounds = len({st for v in torch_runs.values() for st in v})
lines += [
    "",
    *([f"† Every round behind this figure was busy: other jobs used more than "
       f"{e.get('BENCH_BUSY_MAX', '25')}% of the CPUs just before or during it ("
       + ", ".join(f"{k} {v}%" for k, v in busy.items() if re.match(r"(pytorch|go|detector)-", k))
       + "). It is the best of those rounds, "
       "not a clean result: rates are lower bounds, times upper bounds.", ""] if marked else []),
    f"Machine: {e['BENCH_NPROC']} cores ({e['BENCH_CPU']}), {e['BENCH_MEM']} memory; "
    f"load average (1, 5, 15 min) {e['BENCH_LOAD']}; CPU use by other jobs just before / "
    f"during each timed step: {before_during}.",
    f"ONNX Runtime {ort} (CPU, 2 intra-op threads) through onnxruntime_go, {e['BENCH_GO']}. "
    f"PyTorch {e['BENCH_TORCH']}: " + blas_text(),
    f"Each encoder figure is the best of the quiet rounds among {n_rounds} (a round is busy when "
    f"other jobs used more than {e.get('BENCH_BUSY_MAX', '25')}% of the CPUs just before or "
    "during it), each round timing PyTorch then Go at "
    f"every batch size (Go: {e['BENCH_PAIRS']} pairs per run; PyTorch: at least "
    f"{meta['seconds_per_run']} s per run; both after one warm-up call). Spread over all the "
    "rounds, pairs/s: "
    + "; ".join(f"{name} " + ", ".join(f"b{b} {r}" for b, r in sorted(s.items()))
                for name, s in spread.items()) + ".",
    f"Steps: {e['BENCH_TIMINGS']}.",
]
text = "\n".join(lines) + "\n"
print(text)
with open(report, "w") as f:
    f.write(text)
print(f"(written to {report})", file=sys.stderr)
EOF

cat "$out/batching.md" "$out/heads.md" "$out/butd.md" >>"$out/report.md"

# Step 6: gallery search, exact vs two-stage on Shapes test-1k (scripts/bench-gallery.sh; it
# needs the trained Shapes bundle and says so when it is missing), appended to the report.
step gallery bash scripts/bench-gallery.sh
cat "$out/gallery.md" >>"$out/report.md"
