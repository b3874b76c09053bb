#!/usr/bin/env bash
# Encoder throughput of the Go pipeline (ONNX Runtime) next to PyTorch eager, detector
# throughput and the split of a cold /v1/match request, on this machine, in one run
# (`make bench`). Steps, one heavy job at a time:
#   1. export a UNITER-base-sized random bundle with a default-size detector into .cache/bench/
#      (cached; never committed)
#   2. in each of BENCH_RUNS rounds, time PyTorch eager on the same weights
#      (python3 -m uniter.bench torch), then the Go pipeline: BenchmarkEncoder (Bundle.Match)
#      and BenchmarkEncoderGraphOnly (the encoder run alone) in pipeline/bench_test.go; each at
#      batch 1, 8 and 32
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
#   5. print the tables (encoder: batch | Go pairs/s | PyTorch pairs/s | ratio; detector
#      images/s; cold /v1/match split by stage; task | ms per request | added over the encoder)
#      with the machine, and write them to .cache/bench/report.md (the task-head part also to
#      .cache/bench/heads.md)
# BENCH_ONLY=heads runs only step 1 and the task-head part (step 3 and its table, written to
# .cache/bench/heads.md; report.md is left alone): a few minutes instead of the full bench.
# Every figure is the best of BENCH_RUNS rounds (default 3) of PyTorch-then-Go: on a shared
# machine other jobs only ever slow a run down; the report also gives the spread. Before each
# timed step the script waits up to BENCH_QUIET_WAIT seconds (default 20) for the CPUs to be
# under 25% busy, and the report says how busy they were when it started. Detector rounds keep
# the best images/s and the cold-match split of the round with the lowest ms/request (one
# round's stages, not minima from different rounds). Other knobs: BENCH_PAIRS (pairs per Go
# run, default 32), BENCH_IMAGES (timed images per detector and cold-match run, default 5),
# BENCH_SECONDS (seconds per PyTorch run, at least one call; default 2), BENCH_HEAD_CALLS
# (timed calls per task and round, after one warm-up call; default 20), BENCH_TORCH_THREADS
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
only=${BENCH_ONLY:-}
case $only in
  "" | heads | batching) ;;
  *) echo "BENCH_ONLY=$only: want heads (the task-head part alone), batching (the dynamic-batching part alone), or leave it unset" >&2; exit 2 ;;
esac
batch_calls=${BENCH_BATCH_CALLS:-96}
head_calls=${BENCH_HEAD_CALLS:-20}
runs=${BENCH_RUNS:-3}
pairs=${BENCH_PAIRS:-32}
images=${BENCH_IMAGES:-5}
seconds=${BENCH_SECONDS:-2}
batches=(1 8 32)
export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
mkdir -p "$out"

timings=()
step() { # step NAME COMMAND...: runs the command and records its wall time
  local name=$1 t0=$SECONDS
  shift
  echo "== bench: $name" >&2
  "$@"
  timings+=("$name $((SECONDS - t0)) s")
  echo "== bench: $name took $((SECONDS - t0)) s" >&2
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
  while b=$(busy_pct); [ "$b" -gt 25 ] && [ "$SECONDS" -lt "$deadline" ]; do
    echo "== bench: CPUs ${b}% busy with other jobs; waiting before $1" >&2
    sleep 4
  done
  busy+=("$1 ${b}%")
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

step export "$PY" -m uniter.bench export --out "$bundle"

torch_args=(--bundle "$bundle" --seconds "$seconds" --repeats 1 --meta "$out/torch-meta.json")
[ -n "${BENCH_TORCH_THREADS:-}" ] && torch_args+=(--threads "$BENCH_TORCH_THREADS")
[ -n "${BENCH_OPENBLAS_THREADS:-}" ] && torch_args+=(--openblas-threads "$BENCH_OPENBLAS_THREADS")

go_round() { # one run of both Go benchmarks at each batch size
  local b n
  for b in "${batches[@]}"; do
    n=$(( (pairs + b - 1) / b )) # calls of $b pairs: about $pairs pairs per run
    UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
      -test.bench "^BenchmarkEncoder(GraphOnly)?\$/^batch=$b\$" -test.benchtime "${n}x" \
      | tee -a "$out/go.txt" >&2
  done
}

heads_round() { # one run of the task-head benchmark: the encoder baseline, then every task
  UNITER_BENCH_BUNDLE="$root/$bundle" UNITER_BENCH_TASKS="$root/$tasks" "$out/pipeline.test" \
    -test.run '^$' -test.bench '^BenchmarkTaskHeads$' -test.benchtime "${head_calls}x" \
    | tee -a "$out/heads.txt" >&2
  grep -q '^BenchmarkTaskHeads/task=' "$out/heads.txt" || {
    echo "== bench: BenchmarkTaskHeads timed nothing (skipped?)" >&2
    return 1
  }
}

batching_round() { # one run of the dynamic-batching benchmark: off, on, and one 16-text request
  UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
    -test.bench '^BenchmarkDynamicBatching$' -test.benchtime "${batch_calls}x" \
    | tee -a "$out/batching.txt" >&2
  grep -q '^BenchmarkDynamicBatching/' "$out/batching.txt" || {
    echo "== bench: BenchmarkDynamicBatching timed nothing" >&2
    return 1
  }
}

det_round() { # one run of the detector and cold-match benchmarks
  UNITER_BENCH_BUNDLE="$root/$bundle" "$out/pipeline.test" -test.run '^$' \
    -test.bench '^Benchmark(Detector|ColdMatch)$' -test.benchtime "${images}x" \
    | tee -a "$out/det.txt" >&2
}

step go-build go test -c -o "$out/pipeline.test" ./pipeline
: >"$out/heads.txt"
if [ -z "$only" ]; then
  : >"$out/go.txt"
  : >"$out/det.txt"
  rm -f "$out"/torch-*.json
  # Rounds rather than back-to-back repeats, so that a burst of other jobs spoils one run of
  # each side rather than every run of one side.
  for r in $(seq "$runs"); do
    wait_quiet "pytorch-$r"
    step "pytorch-$r" "$PY" -m uniter.bench torch "${torch_args[@]}" \
      --json "$out/torch-$r.json" >/dev/null
    wait_quiet "go-$r"
    step "go-$r" go_round
  done
fi
# Dynamic batching: one-text requests from 1, 4 and 16 concurrent callers, batching off and
# on, and one request carrying 16 texts, in one process per round.
: >"$out/batching.txt"
if [ -z "$only" ] || [ "$only" = batching ]; then
  for r in $(seq "$runs"); do
    wait_quiet "batching-$r"
    step "batching-$r" batching_round
  done
fi
# Step 3: the task heads. Each round times the baseline and every task side by side in one
# process, one bundle loaded at a time.
if [ "$only" != batching ]; then
  step export-tasks "$PY" -m uniter.bench export-tasks --out "$tasks"
  for r in $(seq "$runs"); do
    wait_quiet "heads-$r"
    step "heads-$r" heads_round
  done
fi
if [ -z "$only" ]; then
  for r in $(seq "$runs"); do
    wait_quiet "detector-$r"
    step "detector-$r" det_round
  done
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The dynamic-batching table, from batching.txt, into batching.md: the round with the highest
# total pairs/s (other jobs only ever slow a round down), every row from that round.
if [ -s "$out/batching.txt" ]; then
  BENCH_CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') BENCH_NPROC=$(nproc) \
  BENCH_BUSY="${busy[*]}" BENCH_CALLS=$batch_calls "$PY" - "$out/batching.txt" "$out/batching.md" <<'EOF'
import os, re, sys
txt, md = sys.argv[1:]
rounds, cur = [], None
for line in open(txt):
    m = re.match(r"BenchmarkDynamicBatching/(\S+?)(?:-\d+)?\s+\d+\s+\d+ ns/op\s+([\d.]+) pairs/s", line)
    if not m:
        continue
    name, rate = m.group(1), float(m.group(2))
    if cur is None or name in cur:
        cur = {}
        rounds.append(cur)
    cur[name] = rate
best = max(rounds, key=lambda r: sum(r.values()))
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
    "",
    f"Batching on: 16 callers **{on16 / on1:.2f}×** the pairs/s of one caller (target ≥ 2.5×), "
    f"**{100 * on16 / one16:.0f}%** of one request carrying 16 texts (target ≥ 80%); "
    f"{on16 / off16:.2f}× batching off at 16 callers.",
    "",
    f"Machine: {os.environ['BENCH_CPU']}, {os.environ['BENCH_NPROC']} cores; CPU use by other jobs before each round: "
    + ", ".join(re.findall(r"batching-\d+ \d+%", os.environ["BENCH_BUSY"]))
    + f"; the best of {len(rounds)} rounds by total pairs/s.",
])
open(md, "w").write(text + "\n")
print(text)
EOF
fi

if [ "$only" != batching ]; then
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
ort, rounds = "unknown", []  # [{task: (mean ms per request, fastest call ms)}]
for line in open(heads_txt):
    if line.startswith("onnxruntime:"):
        ort = line.split(":", 1)[1].strip()
    m = re.match(r"BenchmarkTaskHeads/task=(\S+?)(?:-\d+)?\s+\d+\s+([\d.e+]+) ns/op", line)
    fast = re.search(r"\s([\d.e+]+) fastest-ms", line)
    if m and fast:
        if m[1] == "encoder" or not rounds:
            rounds.append({})
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
complete = [r for r in rounds if all(k in r for k, _ in rows)] or rounds
best_i = min(range(len(complete)), key=lambda i: sum(v[0] for v in complete[i].values()))
best = complete[best_i]
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
spread = "; ".join(f"{k} " + "–".join(f"{f(r[k][0] for r in rounds if k in r):.1f}"
                                      for f in (min, max))
                   for k, _ in rows if any(k in r for r in rounds))
busy = re.findall(r"heads-\d+ \d+%", e["BENCH_BUSY"])
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
    f"average (1, 5, 15 min) {e['BENCH_LOAD']}; CPU use by other jobs just before each round: "
    f"{', '.join(busy) or 'n/a'}. ONNX Runtime {ort} (CPU, 2 intra-op threads) through "
    f"onnxruntime_go, {e['BENCH_GO']}.",
    f"Figures of round {rounds.index(best) + 1} of {len(rounds)}, the one with the lowest "
    "total (other jobs only ever slow a round down; every row from the same round, so the "
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
go, graph, ort = {}, {}, "unknown"  # {batch: [pairs/s of each run]}
for line in open(go_txt):
    if line.startswith("onnxruntime:"):
        ort = line.split(":", 1)[1].strip()
    m = re.match(r"Benchmark(Encoder|EncoderGraphOnly)/batch=(\d+)-\d+\s", line)
    rate = re.search(r"\s([\d.e+]+) pairs/s", line)
    if m and rate:
        (go if m[1] == "Encoder" else graph).setdefault(int(m[2]), []).append(float(rate[1]))
meta = json.load(open(meta_json))
torch_runs = {}
for path in torch_jsons:
    for b, v in json.load(open(path)).items():
        torch_runs.setdefault(int(b), []).append(v)
spread = {name: {b: f"{min(v):.2f}–{max(v):.2f}" for b, v in runs.items()}
          for name, runs in (("Go", go), ("Go graph-only", graph), ("PyTorch", torch_runs))}
go, graph = {b: max(v) for b, v in go.items()}, {b: max(v) for b, v in graph.items()}
torch = {b: max(v) for b, v in torch_runs.items()}
e = os.environ
lines = [
    "## Encoder throughput: Go pipeline (ONNX Runtime) vs PyTorch eager",
    "",
    "UNITER-base-sized encoder with random weights (12 layers, hidden 768, 12 heads, "
    "intermediate 3072, 2048-d region features), every pair 20 tokens + 36 regions. "
    "Go: `Bundle.Match` (tokenizer, batching, ONNX Runtime, ITM and OT heads), one image "
    "and `batch` texts per call. PyTorch: eager forward + ITM head under `torch.no_grad()`.",
    "",
    "| batch | Go pairs/s | PyTorch pairs/s | ratio Go/PyTorch |",
    "|---:|---:|---:|---:|",
]
for b in sorted(set(go) | set(torch)):
    g, t = go.get(b), torch.get(b)
    ratio = f"{g / t:.2f}" if g and t else "n/a"
    lines.append(f"| {b} | {g or float('nan'):.2f} | {t or float('nan'):.2f} | {ratio} |")
lines += ["", "Go encoder run alone (`BenchmarkEncoderGraphOnly`: batching + ONNX Runtime, text "
          "tokenized and regions prepared beforehand):", "",
          "| batch | graph-only pairs/s | full pipeline pairs/s | pipeline overhead |",
          "|---:|---:|---:|---:|"]
for b in sorted(graph):
    g = go.get(b)
    over = f"{100 * (graph[b] / g - 1):.1f}%" if g else "n/a"
    lines.append(f"| {b} | {graph[b]:.2f} | {g or float('nan'):.2f} | {over} |")

# Detector and cold-match runs: "BenchmarkX-N  iters  v unit  v unit ..." and config lines.
det_runs, cold_runs, cfg = [], [], {}
for line in open(det_txt):
    m = re.match(r"(detector-\w+): (.*)", line)
    if m:
        cfg.setdefault(m[1], m[2].strip())
    m = re.match(r"Benchmark(Detector|ColdMatch)-\d+\s+\d+\s+(.*)", line)
    if m:
        metrics = {unit: float(v) for v, unit in re.findall(r"([-\d.e+]+) (\S+)", m[2])}
        (det_runs if m[1] == "Detector" else cold_runs).append(metrics)
inp = cfg.get("detector-input", "?").split(" (")[0]
out_desc = cfg.get("detector-output", "?")
if det_runs:
    d = max(det_runs, key=lambda r: r["images/s"])
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
        f"| {d['regions']:.0f} | {d['images/s']:.2f} | {d['ns/op'] / 1e6:.0f} "
        f"| {d['decode-ms']:.1f} | {d['preprocess-ms']:.1f} | {d['detector-ms']:.1f} "
        f"| {d['selection-ms']:.1f} |",
        "",
        f"Best of {len(det_runs)} runs ({e['BENCH_IMAGES']} images each after one warm-up); "
        f"images/s over the runs: {min(rates):.2f}–{max(rates):.2f}. Allocations: "
        f"{d['B/op'] / 2**20:.1f} MiB and {d['allocs/op']:.0f} allocations per image.",
    ]
if cold_runs:
    c = min(cold_runs, key=lambda r: r["ms/request"])
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
        f"| **total** | **{total:.1f}** | 100% |",
        "",
        f"The round with the lowest total of {len(cold_runs)} ({e['BENCH_IMAGES']} requests "
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
lines += [
    "",
    f"Machine: {e['BENCH_NPROC']} cores ({e['BENCH_CPU']}), {e['BENCH_MEM']} memory; "
    f"load average (1, 5, 15 min) {e['BENCH_LOAD']}; CPU use by other jobs just before each "
    f"timed step: {e['BENCH_BUSY']}.",
    f"ONNX Runtime {ort} (CPU, 2 intra-op threads) through onnxruntime_go, {e['BENCH_GO']}; "
    f"PyTorch {e['BENCH_TORCH']}, {meta['torch_threads']} torch threads, "
    f"OPENBLAS_NUM_THREADS={meta['openblas_threads']}.",
    f"Each encoder figure is the best of {e['BENCH_RUNS']} rounds, each round timing PyTorch then Go at "
    f"every batch size (Go: {e['BENCH_PAIRS']} pairs per run; PyTorch: at least "
    f"{meta['seconds_per_run']} s per run; both after one warm-up call). Spread over the "
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

cat "$out/batching.md" "$out/heads.md" >>"$out/report.md"

# Step 6: gallery search, exact vs two-stage on Shapes test-1k (scripts/bench-gallery.sh; it
# needs the trained Shapes bundle and says so when it is missing), appended to the report.
step gallery bash scripts/bench-gallery.sh
cat "$out/gallery.md" >>"$out/report.md"
