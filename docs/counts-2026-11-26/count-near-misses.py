"""A training directory whose near misses are those of count captions only (a study).

    /usr/bin/python3 docs/counts-2026-11-26/count-near-misses.py FEAT_DIR OUT_DIR

OUT_DIR links FEAT_DIR's regions, captions, false captions and vocabulary, and gets a truth.npz
with FEAT_DIR's truth and its near misses kept only on the rows of count captions ("two
squares": images with another number of squares, more or fewer). With pretrain.py
--itm-near-negatives P, only count captions then draw hard-negative candidates among near
misses; every other caption draws among all its false images, as the default does.
"""
import json, os, sys
import numpy as np

feat, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in ("regions.npz", "captions.jsonl", "false_captions.jsonl", "vocab.txt"):
    dst = os.path.join(out, f)
    if not os.path.lexists(dst):
        os.symlink(os.path.abspath(os.path.join(feat, f)), dst)
z = np.load(os.path.join(feat, "truth.npz"))
ops = np.array([json.loads(l)["lf"]["op"] for l in open(os.path.join(feat, "captions.jsonl"))])
near = z["near"] & (ops == "count")[:, None]
np.savez(os.path.join(out, "truth.npz"), truth=z["truth"], near=near)
print(f"{int((ops == 'count').sum())} count captions keep {int(near.sum())} near misses")
