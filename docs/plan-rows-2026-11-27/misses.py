"""Where the plan loses a noun that the cosine grounds.

    /usr/bin/python3 docs/plan-rows-2026-11-27/misses.py RUN/final.pt [CAPTIONS] [EXAMPLES]

For the shape-noun spans of the first CAPTIONS validation captions (IoU >= 0.5, spans as
`uniter eval`), counts the plan's hits and sorts its misses: the cosine's argmax wrong too; or
the cosine right and the plan's argmax region unclaimed (no naming word's cosine peaks there) or
claimed by another naming word. For the misses with the cosine right it prints how the plan shares
out the right region's column: the noun, the other naming words (colours, shapes, sizes) and
the rest ([CLS], [SEP], words naming nothing); and the first EXAMPLES of them (default 4).
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grounding-2026-11-26"))
import numpy as np, torch
from collections import Counter
from readouts_common import Study, iou, naming_words
from uniter.ot import ipot

torch.set_num_threads(1)
ckpt = sys.argv[1]
NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
EXAMPLES = int(sys.argv[3]) if len(sys.argv) > 3 else 4
st = Study(ckpt)
naming = naming_words()
count, shares, shown = Counter(), [], 0
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    P = ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2)                      # tokens x regions
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); n, T = int(il[k]), int(tl[k])
        rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        toks = [st.vocab[int(i)] for i in x["input_ids"][k][:T]]
        names = [t.lstrip("#") in naming for t in toks]
        cos, plan = (1 - C[k])[:T, :n], P[k][:T, :n]
        for sp in acap["spans"]:
            if sp["kind"] != "shape" or not sp["objects"]:
                continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            good = [any(iou(rb[r], ann["objects"][o]["box"]) >= 0.5 for o in sp["objects"]) for r in range(n)]
            rp, rc = int(plan[ts].sum(0).argmax()), int(cos[ts].sum(0).argmax())
            if good[rp]:
                count["hit"] += 1
                continue
            if not good[rc]:
                count["miss: the cosine's argmax wrong too"] += 1
                continue
            claimed = any(names[t] and t not in ts and int(cos[t].argmax()) == rp for t in range(T))
            count["miss, cosine right: the plan's region " + ("claimed by another naming word" if claimed
                                                                else "unclaimed")] += 1
            col = plan[:, rc] / plan[:, rc].sum()
            noun = float(col[ts].sum())
            other = float(sum(col[t] for t in range(T) if names[t] and t not in ts))
            shares.append((noun, other, 1 - noun - other))
            if shown < EXAMPLES:
                shown += 1
                print(f"{cap['text']!r}: noun {[toks[t] for t in ts]}, right region {rc}, plan's {rp}; "
                      "the right region's column: " +
                      ", ".join(f"{toks[t]} {float(col[t]):.2f}" for t in range(T) if col[t] >= 0.01))
print(f"{ckpt}, {NCAP} validation captions, {sum(count.values())} shape nouns")
for key, v in count.most_common():
    print(f"  {key:70s} {v:5d}  {100 * v / sum(count.values()):5.1f}%")
if shares:
    s = np.mean(shares, 0)
    print(f"  the right region's column in those misses: the noun {s[0]:.2f}, other naming words {s[1]:.2f}, "
          f"the rest {s[2]:.2f}")
