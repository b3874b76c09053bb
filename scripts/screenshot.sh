#!/usr/bin/env bash
# The README's screenshot of the alignment page on a Shapes World sample (make screenshot):
# serves BUNDLE (default: the configured default bundle) on a free local port, loads the page in
# headless Chromium, picks sample SAMPLE (0-3, web/samples/samples.json) with its captions,
# selects word WORD of the first caption and writes OUT (default docs/page.png) and, beside it,
# OUT with -attention (one attention map opened large).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/page.png}
mkdir -p .cache "$(dirname "$out")"
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
args=(serve --addr "127.0.0.1:$port")
if [ -n "${BUNDLE:-}" ]; then args+=(--bundle "$BUNDLE"); fi
UNITER_DATA_DIR=.cache/screenshot-gallery ./bin/uniter "${args[@]}" >.cache/screenshot-serve.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
node tests/browser/page.mjs screenshot --url "http://127.0.0.1:$port" --out "$out" \
  --sample "${SAMPLE:-0}" --word "${WORD:-2}" || { echo "server log:"; cat .cache/screenshot-serve.log; exit 1; }
