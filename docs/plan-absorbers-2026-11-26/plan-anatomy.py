"""Where does the OT plan send a noun it does not ground, and who takes the referred object's boxes?

    /usr/bin/python3 docs/plan-absorbers-2026-11-26/plan-anatomy.py RUN/final.pt [CAPTIONS]

For the first CAPTIONS (default 1000) validation captions (.cache/shapes-train/feat-val and
val), every shape-noun span that refers to objects is grounded to the region with most of its
weight, as `uniter eval` does (IoU >= 0.5 with a referred object is a hit), under:

  ot            the IPOT plan on the cosine cost of final hidden states (beta 0.5, 50 iterations,
                uniform marginals, [CLS] and [SEP] included: /v1/align)
  ot_nospecial  the same plan without [CLS] and [SEP]
  cos           the cosine itself, no transport

For the nouns the plan misses it says where the argmax lands (an object the caption names, an
object it does not name, no object) and which tokens take the plan mass of the referred
object's boxes, by the kind of caption span they sit in (special = [CLS]/[SEP]; function = in
no span).
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
land = Counter(); taker = Counter(); variants = {}
ntok, nreg = [], []
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    P = ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2)
    # variant: specials removed from the plan
    tp2 = tpad.clone(); tp2[:, 0] = True
    for k in range(len(cs)): tp2[k, int(tl[k]) - 1] = True
    jp2 = tp2.unsqueeze(-1) | ipad.unsqueeze(-2)
    P2 = ipot(C.masked_fill(jp2, 0), (~tp2).sum(1).float(), tp2, il, ipad, jp2).transpose(1, 2)
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); n = int(il[k]); M = int(tl[k])
        ntok.append(M); nreg.append(n)
        rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        mentioned = set(o for sp in acap["spans"] for o in sp["objects"])
        kind_of = {}
        for sp in acap["spans"]:
            for i, (s, e) in enumerate(tok):
                if s >= sp["start"] and e <= sp["end"]: kind_of[i + 1] = sp["kind"]
        kind_of[0] = "special"; kind_of[M - 1] = "special"
        for sp in acap["spans"]:
            if sp["kind"] != "shape" or not sp["objects"]: continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            refd = [ann["objects"][o]["box"] for o in sp["objects"]]
            good = [any(iou(rb[r], ob) >= 0.5 for ob in refd) for r in range(n)]
            for name, m in (("ot", P), ("ot_nospecial", P2), ("cos", 1 - C)):
                best = int(m[k][ts][:, :n].sum(0).argmax())
                v = variants.setdefault(name, [0, 0]); v[0] += good[best]; v[1] += 1
            best = int(P[k][ts][:, :n].sum(0).argmax())
            if not good[best]:
                objs = [o for o, ob in enumerate(ann["objects"]) if iou(rb[best], ob["box"]) >= 0.5]
                land["mentioned other" if any(o in mentioned for o in objs) else "unmentioned object" if objs else "no object"] += 1
                # who takes the good boxes' mass
                gm = P[k][:M, :n][:, torch.tensor(good)].sum(1)
                for t in range(M):
                    taker[kind_of.get(t, "function")] += float(gm[t])
print("noun grounding:", {k: round(v[0] / v[1], 3) for k, v in variants.items()})
print("failed noun argmax lands on:", dict(land))
tot = sum(taker.values()); print("in failures, the referred boxes' mass goes to:", {k: round(v / tot, 3) for k, v in taker.most_common()})
print("mean tokens", np.mean(ntok), "mean regions", np.mean(nreg))
