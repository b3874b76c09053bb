#!/usr/bin/env bash
# Closed-loop load on `uniter serve` (cmd/uniter-load): POST /v1/match at concurrency 4…256 with
# fresh images (the detector runs) and cached ones (its cache hits); per level accepted req/s,
# p50/p99, the share shed with 503 busy, errors and the server's RSS; then the overload
# criterion (accepted req/s and p99 at 2× capacity against capacity, capacity =
# limits.max_concurrent + limits.max_queue). Writes $OUT (JSON) and its table next to it (.md).
#
#   BASE         a git revision to measure side by side with the working tree (built from a
#                temporary worktree into .cache/bench/uniter-base; alternated per level)
#   CAPACITY     capacity for the headline (default: the servers' UNITER_LIMITS_* env, else 1 + 64;
#                e.g. `UNITER_LIMITS_MAX_QUEUE=16 make bench-load` sets both)
#   CONCURRENCY  levels (default 4,8,16,32,64,128,256; capacity and 2× capacity are added
#                when no level is within 5% of them)
#   DURATION     measured window per level (default 15s)
#   OUT          the JSON report (default .cache/bench/load.json)
#   LOAD_FLAGS   more uniter-load flags, e.g. "--modes fresh --no-backoff --api-key K"
#   MODE         batching: instead of the sweep, the dynamic-batching measurement of
#                docs/benchmarks.md (cached images, one short text per request from 1, 4 and 16
#                clients, then one request of 16 texts); OUT is then a prefix: OUT-one-text.json
#                and OUT-16-texts.json (default .cache/bench/batching). With BASE, as committed:
#                BASE=4cc8776 MODE=batching OUT=docs/reports/bench-spinning bash scripts/bench-load.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bench=.cache/bench
out=${OUT:-$bench/load.json}
[ "${MODE:-}" = batching ] && out=${OUT:-$bench/batching}.json # only its folder is used
export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
[ -f "$UNITER_ORT_LIBRARY" ] || { echo "bench-load: no ONNX Runtime at $UNITER_ORT_LIBRARY: run 'make ort'" >&2; exit 1; }
mkdir -p "$bench" "$(dirname "$out")"

go build -o "$bench/uniter" ./cmd/uniter
go build -o "$bench/uniter-load" ./cmd/uniter-load
servers=(--binary "$bench/uniter")
if [ -n "${BASE:-}" ]; then
  rev=$(git rev-parse --short "$BASE^{commit}")
  wt=$(mktemp -d)
  trap 'git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"' EXIT
  git worktree add --detach --quiet "$wt" "$rev"
  (cd "$wt" && go build -o "$root/$bench/uniter-base" ./cmd/uniter)
  git worktree remove --force "$wt"
  servers=(--binary "$bench/uniter-base" --label "base-$rev"
           --binary "$bench/uniter" --label "tree-$(git describe --always --dirty)")
fi

if [ "${MODE:-}" = batching ]; then
  prefix=${OUT:-$bench/batching}
  text="a red circle"
  sixteen=()
  for _ in $(seq 16); do sixteen+=(--text "$text"); done
  "$bench/uniter-load" "${servers[@]}" --modes cached --concurrency "${CONCURRENCY:-1,4,16}" --duration "${DURATION:-12s}" \
    --text "$text" --out "$prefix-one-text.json" | tee "$prefix-one-text.md"
  "$bench/uniter-load" "${servers[@]}" --modes cached --concurrency 1 --duration "${DURATION:-12s}" \
    "${sixteen[@]}" --out "$prefix-16-texts.json" | tee "$prefix-16-texts.md"
  exit 0
fi
flags=(--concurrency "${CONCURRENCY:-4,8,16,32,64,128,256}" --duration "${DURATION:-15s}" --capacity-levels --out "$out")
[ -z "${CAPACITY:-}" ] || flags+=(--capacity "$CAPACITY")
# shellcheck disable=SC2086 # LOAD_FLAGS is a list of words
"$bench/uniter-load" "${servers[@]}" "${flags[@]}" ${LOAD_FLAGS:-} | tee "${out%.json}.md"
