#!/usr/bin/env bash
# Gallery search on Shapes World test-1k: exact vs two-stage, measured in one run
# (`make bench` runs it after the encoder benchmarks; `make bench-gallery` alone).
#
#   BUNDLE      the trained Shapes bundle (default bundles/shapes-uniter, what
#               `make shapes-model` writes); without it the step is skipped with a message
#   CANDIDATES  first-stage candidates k of two-stage search (default 50: 20× fewer passes
#               than exact on 1,000 images)
#   QUERIES     captions searched, evenly spaced over test-1k's 5,000 (default 200)
#
# Steps: generate test-1k into .cache/bench/shapes-test-1k (once), index it into a gallery in
# .cache/bench/gallery-<bundle hash> with `uniter index` (once per bundle; resumable), then
# `uniter eval-gallery --mode both`: for every query, exact search then two-stage search on
# the same warm service, and the comparison: latency per text query, R@10 retained by
# two-stage (ratio of R@10s, a hit = any image the caption is true of), the share of exact's
# top 10 that two-stage keeps, and the cross-encoder passes saved. Writes
# .cache/bench/gallery.json and .cache/bench/gallery.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.cache/bench
bundle=${BUNDLE:-bundles/shapes-uniter}
candidates=${CANDIDATES:-50}
queries=${QUERIES:-200}
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
