#!/usr/bin/env bash
# Gallery search on Shapes World test-1k: exact vs two-stage, measured in one run
# (`make bench` runs it after the encoder benchmarks; `make bench-gallery` alone); then the
# same search on bbolt and PostgreSQL at 1k, 10k and 100k images, and ingest with one and two
# indexers on one database.
#
#   BUNDLE      the trained Shapes bundle (default bundles/shapes-uniter, what
#               `make shapes-model` writes); without it the step is skipped with a message
#   CANDIDATES  first-stage candidates k of two-stage search (default 50: 20× fewer passes
#               than exact on 1,000 images)
#   QUERIES     captions searched, evenly spaced over test-1k's 5,000 (default 200)
#   SIZES       gallery sizes of the scale part (default "1000 10000 100000"; SIZES= skips it)
#
# Part 1: generate test-1k into .cache/bench/shapes-test-1k (once), index it into a gallery in
# .cache/bench/gallery-<bundle hash> with `uniter index` (once per bundle; resumable), then
# `uniter eval-gallery --mode both`: for every query, exact search then two-stage search on
# the same warm service, and the comparison: latency per text query, R@10 retained by
# two-stage (ratio of R@10s, a hit = any image the caption is true of), the share of exact's
# top 10 that two-stage keeps, and the cross-encoder passes it saves. Writes
# .cache/bench/gallery.json and .cache/bench/gallery.md.
#
# Part 2 (scale): starts a throw-away PostgreSQL server (Debian's, default settings, a socket in
# /tmp, stopped at the end). For each size and backend a fresh gallery is filled by
# uniter-fill-gallery with test-1k's 1,000 indexed images and synthetic copies of them (same
# features, labels rescaled per region: see cmd/uniter-fill-gallery; on PostgreSQL then
# VACUUM ANALYZE, the state autovacuum leaves a loaded table in), then searched two-stage
# with the same queries (at 1k also exact: the first stage's recall of exact's top 10). Ingest:
# `uniter index` of test-1k's image files into a fresh bbolt directory, into a fresh database by
# one process, then by two at once (sharing the work list). Writes
# .cache/bench/gallery-scale.json and .md (scripts/bench-gallery-report.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.cache/bench
bundle=${BUNDLE:-bundles/shapes-uniter}
candidates=${CANDIDATES:-50}
queries=${QUERIES:-200}
sizes=${SIZES-1000 10000 100000}
export UNITER_ORT_LIBRARY=${UNITER_ORT_LIBRARY:-$root/.cache/onnxruntime/lib/libonnxruntime.so}
mkdir -p "$out"

if [ ! -f "$bundle/manifest.json" ]; then
  msg="gallery search benchmark skipped: no trained Shapes bundle at $bundle (run \`make shapes-model\`, or set BUNDLE=DIR)"
  echo "== bench: $msg" >&2
  printf '## Gallery search (exact vs two-stage)\n\n%s.\n' "$msg" >"$out/gallery.md"
  exit 0
fi
if grep -Eq '"random_weights": *true' "$bundle/manifest.json"; then
  echo "== bench: warning: $bundle has random weights; its retrieval figures mean nothing" >&2
fi
[ -x bin/uniter ] || go build -o bin/uniter ./cmd/uniter

split=$out/shapes-test-1k
if [ ! -f "$split/annotations.jsonl" ]; then
  echo "== bench: generating Shapes World test-1k into $split" >&2
  bin/uniter synth --split test-1k --out "$split" >&2
fi
hash=$(sha256sum "$bundle/manifest.json" | cut -c1-12)
gallery=$out/gallery-$hash
echo "== bench: indexing test-1k into $gallery (skips what is stored)" >&2
bin/uniter index --bundle "$bundle" --data-dir "$gallery" "$split/images" >&2

echo "== bench: exact vs two-stage search, $queries queries, k = $candidates" >&2
bin/uniter eval-gallery -q --bundle "$bundle" --data-dir "$gallery" --split-dir "$split" \
  --mode both --candidates "$candidates" --queries "$queries" --out "$out/gallery.json" | tee "$out/gallery.txt"

/usr/bin/python3 - "$out/gallery.json" "$out/gallery.md" "$bundle" <<'EOF'
import json, sys
rep, md, bundle = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
modes = {m["mode"]: m for m in rep["modes"]}
e, t, c = modes["exact"], modes["two_stage"], rep["comparison"]
lines = [
    "## Gallery search on Shapes World test-1k: exact vs two-stage",
    "",
    f"Model `{rep['model']}` ({bundle}); gallery of {rep['gallery_size']} images indexed with "
    f"`uniter index`; {rep['queries']} text queries (test-1k captions, evenly spaced over "
    f"{rep['query_pool']}), each searched exact then two-stage (k = {t['candidates']}) on the same "
    "warm service (`uniter eval-gallery --mode both`). A hit is any image the caption is true of "
    "(its logical form), as in `uniter eval`.",
    "",
    "| mode | R@1 | R@5 | R@10 | ms/query (mean) | p90 ms | cross-encoder passes/query | pairs/s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]
for name, m in (("exact", e), (f"two-stage, k = {t['candidates']}", t)):
    lines.append(f"| {name} | {100*m['r1']:.1f}% | {100*m['r5']:.1f}% | {100*m['r10']:.1f}% | "
                 f"{m['mean_ms']:.1f} | {m['p90_ms']:.1f} | {m['pairs_per_query']:.1f} | {m['pairs_per_second']:.0f} |")
lines += [
    "",
    f"Two-stage vs exact, same run: **{c['speedup']:.1f}× lower latency per text query**, "
    f"**R@10 retained {100*c['r10_retained']:.1f}%** (target ≥ 99%), exact top-10 kept "
    f"{100*c['top10_kept']:.1f}%, **cross-encoder passes saved {c['passes_saved']:.1f}×** (target ≥ 10×).",
]
if t.get("fallbacks"):
    lines.append(f"{t['fallbacks']} two-stage queries named no detector label and scored the whole gallery.")
lines += ["", f"Machine: {rep['machine']}."]
text = "\n".join(lines) + "\n"
open(md, "w").write(text)
print(text)
EOF

[ -n "$sizes" ] || exit 0

# ---- Part 2: bbolt and PostgreSQL at scale, ingest with one and two indexers ----
go build -o bin/uniter-fill-gallery ./cmd/uniter-fill-gallery
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ]; then
  echo "== bench: PostgreSQL is not installed (make pgdeps): the scale part is skipped" >&2
  exit 0
fi
scale=$out/scale
rm -rf "$scale" && mkdir -p "$scale"
pgdir=$(mktemp -d /tmp/uniter-bench-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdir"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale --no-instructions >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o "-k $pgdir -c listen_addresses=''" start >/dev/null
stop_pg() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_pg EXIT
pgversion=$("$pgbin/postgres" --version)
dsn() { echo "host=$pgdir user=postgres dbname=$1"; }
psql_() { "${as_pg[@]}" "$pgbin/psql" -h "$pgdir" -U postgres "$@"; }
newdb() { psql_ -q -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null; }
seconds_since() { /usr/bin/python3 -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$1"; }

for size in $sizes; do
  for backend in bbolt postgres; do
    mode=two_stage
    [ "$size" -le 1000 ] && mode=both
    dir=$scale/bbolt-$size
    if [ $backend = postgres ]; then
      db=bench_$size; newdb "$db"
      target=(--dsn "$(dsn "$db")"); env=(UNITER_GALLERY_BACKEND=postgres "UNITER_GALLERY_DSN=$(dsn "$db")")
    else
      target=(--data-dir "$dir"); env=(UNITER_GALLERY_BACKEND=bbolt)
    fi
    echo "== bench: $backend, $size images: filling" >&2
    start=$(date +%s.%N)
    bin/uniter-fill-gallery --source "$gallery" --images "$size" "${target[@]}" >&2
    # As autovacuum leaves a loaded table: statistics, and the visibility map that lets the
    # postings be read by index-only scans (right after a bulk load they are not yet).
    [ $backend = postgres ] && psql_ -d "$db" -qc "VACUUM ANALYZE"
    printf '{"fill_seconds": %s}\n' "$(seconds_since "$start")" >"$scale/fill-$backend-$size.json"
    echo "== bench: $backend, $size images: $queries queries, $mode" >&2
    env "${env[@]}" bin/uniter eval-gallery -q --bundle "$bundle" --data-dir "$dir" --split-dir "$split" \
      --mode $mode --candidates "$candidates" --queries "$queries" --out "$scale/search-$backend-$size.json" >&2
    rm -rf "$dir"
  done
  psql_ -qc "DROP DATABASE bench_$size" >/dev/null
done

ingest() { # ingest NAME PROCESSES ENV...: index test-1k's files with N processes at once; prints seconds
  local name=$1 procs=$2 start i; shift 2
  start=$(date +%s.%N)
  for i in $(seq "$procs"); do
    env "$@" bin/uniter index -q --bundle "$bundle" --data-dir "$scale/ingest-$name" "$split/images" >"$scale/ingest-$name-$i.log" 2>&1 &
  done
  wait
  seconds_since "$start"
}
echo "== bench: ingest of test-1k into bbolt (one process), PostgreSQL (one, then two at once)" >&2
bolt_s=$(ingest bbolt 1 UNITER_GALLERY_BACKEND=bbolt)
newdb ingest1; pg1_s=$(ingest pg1 1 UNITER_GALLERY_BACKEND=postgres "UNITER_GALLERY_DSN=$(dsn ingest1)")
newdb ingest2; pg2_s=$(ingest pg2 2 UNITER_GALLERY_BACKEND=postgres "UNITER_GALLERY_DSN=$(dsn ingest2)")
stored() { psql_ -d "$1" -Atc "SELECT images FROM uniter_meta"; }
printf '{"bbolt_1": %s, "postgres_1": %s, "postgres_2": %s, "stored_postgres_1": %s, "stored_postgres_2": %s}\n' \
  "$bolt_s" "$pg1_s" "$pg2_s" "$(stored ingest1)" "$(stored ingest2)" >"$scale/ingest.json"
rm -rf "$scale/ingest-bbolt"

/usr/bin/python3 scripts/bench-gallery-report.py "$scale" "$out/gallery-scale.json" "$out/gallery-scale.md" "$pgversion" "$bundle"
