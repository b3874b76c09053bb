"""Where do count captions lose image retrieval? (a diagnosis, not the recipe)

    /usr/bin/python3 docs/counts-2026-11-26/count-failures.py CKPT [FEAT_DIR] [SPLIT_DIR]

Scores every count caption of a split (default test-100: FEAT_DIR from `uniter extract`,
SPLIT_DIR its annotations) against every image with the PyTorch checkpoint (ITM match
probability), as `uniter eval` ranks them, and for every count caption ("two green triangles", "there are three
stars") whose top-ranked image is false reports how many objects matching the caption's
description that image holds, against the number the caption says — and, for comparison, the
same for the images the caption is true on.
"""
import collections, json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, resolve_config

torch.set_num_threads(1)
ckpt = sys.argv[1]
feat = sys.argv[2] if len(sys.argv) > 2 else ".cache/shapes-train/feat-test-100"
split = sys.argv[3] if len(sys.argv) > 3 else ".cache/shapes-train/test-100"
ds = PretrainDataset(feat, max_text_len=128)
cfg = resolve_config(json.load(open(os.path.join(os.path.dirname(ckpt), "config.json"))), ds, ds.vocab)
model = build_model(cfg, 0); load_checkpoint(model, ckpt); model.eval()
recs = [json.loads(l) for l in open(os.path.join(split, "annotations.jsonl"))]
C, N = len(ds), ds.num_images
scores = np.zeros((C, N), dtype=np.float32)
with torch.no_grad():
    for c in range(C):
        if ds.captions[c]["lf"]["op"] != "count":
            continue
        x = collate([ds.pair(c, i) for i in range(N)])
        _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
        scores[c] = torch.softmax(model.itm_output(pooled), -1)[:, 1].numpy()


def matches(spec, o):
    return all(spec.get(k) in (None, "", o[k]) for k in ("shape", "color", "size"))


hits = collections.Counter()
wrong = collections.Counter()  # (said, top image's count)
n_count = 0
for c, cap in enumerate(ds.captions):
    lf = cap["lf"]
    if lf["op"] != "count":
        continue
    n_count += 1
    top = int(scores[c].argmax())
    if ds.truth[c, top]:
        hits["hit"] += 1
        continue
    have = sum(matches(lf["obj"], o) for o in recs[top]["objects"])
    wrong[(lf["n"], have)] += 1
print(f"{ckpt}: {n_count} count captions, R@1 {hits['hit'] / n_count:.3f}")
print("misses by (count said, matching objects in the top-ranked false image):")
for (said, have), k in sorted(wrong.items()):
    print(f"  said {said}, image has {have}: {k}")
# How well does the score separate the true count from the count +-1 on average?
diffs = collections.defaultdict(list)
for c, cap in enumerate(ds.captions):
    lf = cap["lf"]
    if lf["op"] != "count":
        continue
    for i in range(N):
        have = sum(matches(lf["obj"], o) for o in recs[i]["objects"])
        diffs[have - lf["n"]].append(scores[c, i])
print("mean match probability by (matching objects in the image − count said):")
for d in sorted(diffs):
    print(f"  {d:+d}: {np.mean(diffs[d]):.3f} over {len(diffs[d])} pairs")
