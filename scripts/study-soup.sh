#!/usr/bin/env bash
# Weight interpolation between the base model and the default model (docs/model-card.md, "Count
# captions: interpolating with the base model"). The default model was fine-tuned from the base
# model (the relation stages); a model whose weights are ALPHA × default + (1 − ALPHA) × base
# may keep the base model's count captions with the default's relations. Both are recovered from
# their committed bundles (python3 -m uniter.recover, bit for bit): the base model is the default
# bundle of BASE_REV. Each ALPHA is exported into a copy of the default bundle (its detector and
# labels) and measured as the default model is, `uniter eval` on SPLIT (test-100: about a
# minute each on 2 cores; test-1k: about 15). Work and reports stay under $WORK (default
# .cache/study/soup), not in git.
#
#   bash scripts/study-soup.sh                      # ALPHAS="1 0.9 0.8 0.7 0.5 0" SPLIT=test-100
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/models${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-.cache/study/soup}
BASE_REV=${BASE_REV:-b84c42a}
ALPHAS=${ALPHAS:-1 0.9 0.8 0.7 0.5 0}
SPLIT=${SPLIT:-test-100}
mkdir -p "$WORK/base-bundle"
[ -x bin/uniter ] || make build

# The two models, recovered from their bundles.
for f in $(git ls-tree --name-only "$BASE_REV" bundles/shapes-uniter/); do
  git show "$BASE_REV:$f" > "$WORK/base-bundle/$(basename "$f")"
done
[ -f "$WORK/base/final.pt" ] || "$PY" -m uniter.recover --bundle "$WORK/base-bundle" --out "$WORK/base"
[ -f "$WORK/default/final.pt" ] || "$PY" -m uniter.recover --bundle bundles/shapes-uniter --out "$WORK/default"

for a in $ALPHAS; do
  name=a$a
  mkdir -p "$WORK/$name"
  "$PY" - "$WORK/default/final.pt" "$WORK/base/final.pt" "$a" "$WORK/$name/final.pt" <<'PYEOF'
import sys
import torch
default, base, alpha, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
d, b = torch.load(default, map_location="cpu"), torch.load(base, map_location="cpu")
if d.keys() != b.keys():
    sys.exit(f"the two checkpoints have different keys: {sorted(d.keys() ^ b.keys())}")
torch.save({k: (alpha * d[k] + (1 - alpha) * b[k]) if d[k].is_floating_point() else d[k] for k in d}, out)
PYEOF
  rm -rf "$WORK/$name-export" "$WORK/$name-bundle"
  "$PY" -m uniter.export --checkpoint "$WORK/$name/final.pt" --config "$WORK/default/config.json" \
    --vocab bundles/shapes-uniter/vocab.txt --labels bundles/shapes-uniter/region_labels.txt --lowercase \
    --name shapes-uniter --out "$WORK/$name-export" > "$WORK/$name-export.log" 2>&1
  cp -r bundles/shapes-uniter "$WORK/$name-bundle"
  "$PY" scripts/swap-graphs.py "$WORK/$name-bundle" "$WORK/$name-export"
  bin/uniter eval --split "$SPLIT" --bundle "$WORK/$name-bundle" -q --out "$WORK/$name-$SPLIT.json"
done

# One line per ALPHA: the figures the default model is judged by, and the count captions'.
"$PY" - "$WORK" "$SPLIT" $ALPHAS <<'PYEOF'
import json, sys
work, split, alphas = sys.argv[1], sys.argv[2], sys.argv[3:]
print("| α (default's share) | ITM | image R@1 | relation swaps rejected | colour swaps rejected | nouns grounded (plan) | R@1 \"two green triangles\" | R@1 \"there are N …\" |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for a in alphas:
    r = json.load(open(f"{work}/a{a}-{split}.json"))
    probe = r.get("edit_probe", {})
    by_t = r.get("ir_r1_by_template", {})
    def rej(kind):
        return probe.get(kind, {}).get("rejected", float("nan"))
    count = [by_t.get(k, float("nan")) for k in ("count", "there_are")]
    print(f"| {a} | {r['itm_accuracy']:.1%} | {r['ir_r1']:.1%} | {rej('relation_swap'):.1%} | {rej('color_swap'):.1%} "
          f"| {r['grounding_noun']:.1%} | {count[0]:.1%} | {count[1]:.1%} |")
PYEOF
