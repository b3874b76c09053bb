"""When the OT plan misses a noun that the cosine grounds, what is the region it lands on?

    /usr/bin/python3 docs/plan-columns-2026-11-26/distractors.py RUN/final.pt [CAPTIONS]

For the first CAPTIONS (default 1000) validation captions, every shape-noun span that refers to
objects is grounded as `uniter eval` does, by the IPOT plan (beta 0.5, 50 iterations, uniform
marginals, [CLS] and [SEP] included) and by the cosine of final states. For the nouns the plan
misses it counts whether the landing region covers an object of the noun's own shape that the
span does not refer to (a same-shape distractor), and how the noun's plan mass splits between
the referred object's boxes and the landing region.
"""
import os, sys
from collections import Counter
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grounding-2026-11-26"))
import numpy as np, torch
from readouts_common import Study, iou
from uniter.ot import ipot

torch.set_num_threads(1)
ckpt = sys.argv[1]; NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
st = Study(ckpt)
count = Counter(); share_good, share_land = [], []
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    P = ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2)
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); n = int(il[k])
        rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        for sp in acap["spans"]:
            if sp["kind"] != "shape" or not sp["objects"]: continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            shape = ann["objects"][sp["objects"][0]]["shape"]
            good = [any(iou(rb[r], ann["objects"][o]["box"]) >= 0.5 for o in sp["objects"]) for r in range(n)]
            row = P[k][ts][:, :n].sum(0)
            best, best_cos = int(row.argmax()), int((1 - C[k])[ts][:, :n].sum(0).argmax())
            count["nouns"] += 1
            if good[best]: continue
            count["plan misses"] += 1
            count["... the cosine grounds it"] += good[best_cos]
            others = [o for o, ob in enumerate(ann["objects"]) if iou(rb[best], ob["box"]) >= 0.5 and o not in sp["objects"]]
            if not others: kind = "... lands on no object"
            elif any(ann["objects"][o]["shape"] == shape for o in others): kind = "... lands on an object of the noun's shape"
            else: kind = "... lands on an object of another shape"
            count[kind] += 1
            share_good.append(float(row[torch.tensor(good)].sum() / row.sum())); share_land.append(float(row[best] / row.sum()))
print(dict(count))
print("in misses, the noun's plan mass: on the referred boxes %.3f, on the landing region %.3f" %
      (np.mean(share_good), np.mean(share_land)))
