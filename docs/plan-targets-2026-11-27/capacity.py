"""Is there room for the objects a caption does not name? For the first 1000 validation captions,
per shape noun: the share of the plan's token mass held by tokens that name no object ([CLS], [SEP],
articles, counts, relation words: the absorbers of --plan-naming-words) against the share of
region mass on regions that cover no object the caption names. With uniform marginals, when the
second is larger ("capacity short") the plan must send unnamed regions to naming words.

    /usr/bin/python3 docs/plan-targets-2026-11-27/capacity.py RUN/final.pt
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grounding-2026-11-26"))
import numpy as np, torch
from readouts_common import Study, iou, naming_words
from uniter.ot import ipot
torch.set_num_threads(1)
st = Study(sys.argv[1])
naming = naming_words()
res = {True: [], False: []}
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(1000):
    P = ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2)
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); n = int(il[k]); M = int(tl[k])
        toks = [st.vocab[int(i)] for i in x["input_ids"][k][:M]]
        A = sum(t.lstrip("#") not in naming for t in toks)
        rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        named = {o for sp in acap["spans"] for o in sp["objects"]}
        claimed = [any(iou(rb[r], ann["objects"][o]["box"]) >= 0.5 for o in named) for r in range(n)]
        U = n - sum(claimed)
        for sp in acap["spans"]:
            if sp["kind"] != "shape" or not sp["objects"]: continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            good = [any(iou(rb[r], ann["objects"][o]["box"]) >= 0.5 for o in sp["objects"]) for r in range(n)]
            hit = good[int(P[k][ts][:, :n].sum(0).argmax())]
            res[hit].append((A / M, U / n, A / M - U / n))
for hit, v in res.items():
    v = np.array(v)
    print("hits" if hit else "misses", len(v), "absorber share %.2f, unclaimed share %.2f, capacity short in %.0f%%" % (v[:, 0].mean(), v[:, 1].mean(), 100 * (v[:, 2] < 0).mean()))
