"""Which read-out of a trained UNITER grounds words? Validation captions, PyTorch checkpoint.

    /usr/bin/python3 docs/grounding-2026-11-26/grounding-readouts.py RUN/final.pt [CAPTIONS] [WORK]

For the first CAPTIONS (default 1000) validation captions (WORK/feat-val and WORK/val, default
.cache/shapes-train), every shape-noun and colour-word span that refers to objects is grounded
to the region with most of its weight under several tokens x regions read-outs, and counted a
hit when that region overlaps a referred object with IoU >= 0.5 (the measure of `uniter eval`):

  ot           the IPOT plan on the cosine cost of final hidden states (beta 0.5, /v1/align)
  ot_b0.1      the same with beta 0.1 (sharper)
  cos          the cosine similarity itself, no transport
  cos_centred  cosine after subtracting the pair's mean hidden state
  attn_tr      attention text -> region, mean over layers and heads
  attn_lK      attention text -> region of layer K, mean over heads
  attn_both    attention both ways (text -> region + region -> text), summed over every layer
               and head: heads.CrossAttention, what `uniter eval` reports as "by attention"
  chance       the share of the image's regions that hit

It also says where the OT plan's noun argmax lands (the referred object, another object, a
sliver < 2 px wide or high, or something else) and splits nouns by whether their phrase has a
colour word (does the colour word take the object's transport mass?).
"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
from readouts_common import Study, iou
from uniter.ot import cost_matrix_cosine, ipot

torch.set_num_threads(2)
ckpt = sys.argv[1]
NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
st = Study(ckpt, sys.argv[3] if len(sys.argv) > 3 else ".cache/shapes-train")

hits, lands = {}, {"referred object": 0, "another object": 0, "sliver": 0, "other": 0}
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    txt, img = h[:, :L], h[:, L:]
    valid = torch.cat([x["text_mask"], x["img_mask"]], 1).float().unsqueeze(-1)
    mu = (h * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
    Cc = cost_matrix_cosine(txt - mu, img - mu).masked_fill(jp, 0)
    readouts = {"ot": ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2),
                "ot_b0.1": ipot(C, tl, tpad, il, ipad, jp, beta=0.1).transpose(1, 2),
                "cos": (1 - C).masked_fill(jp, -9),
                "cos_centred": (1 - Cc).masked_fill(jp, -9),
                "attn_tr": torch.stack([a.mean(1)[:, :L, L:] for a in attn]).mean(0),
                **{f"attn_l{l}": attn[l].mean(1)[:, :L, L:] for l in range(len(attn))},
                "attn_both": torch.stack([a.sum(1)[:, :L, L:] + a.sum(1)[:, L:, :L].transpose(1, 2) for a in attn]).sum(0)}
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); assert len(tok) + 2 == len(cap["input_ids"])
        n = int(il[k]); rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        for sp in acap["spans"]:
            if sp["kind"] not in ("shape", "color") or not sp["objects"]:
                continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            refd = [ann["objects"][o]["box"] for o in sp["objects"]]
            good = [any(iou(rb[r], ob) >= 0.5 for ob in refd) for r in range(n)]
            kinds = [sp["kind"]]
            if sp["kind"] == "shape":
                coloured = any(o["kind"] == "color" and o["ref"] == sp["ref"] for o in acap["spans"])
                kinds.append("shape, phrase with a colour" if coloured else "shape, no colour word")
            for name, m in list(readouts.items()) + [("chance", None)]:
                if m is None:
                    hit = float(np.mean(good))
                else:
                    best = int(m[k][ts][:, :n].sum(0).argmax()); hit = float(good[best])
                    if name == "ot" and sp["kind"] == "shape":
                        bw, bh = rb[best][2] - rb[best][0], rb[best][3] - rb[best][1]
                        on_obj = any(iou(rb[best], o["box"]) >= 0.5 for o in ann["objects"])
                        lands["referred object" if good[best] else "another object" if on_obj
                              else "sliver" if min(bw, bh) < 2 else "other"] += 1
                for kind in kinds:
                    v = hits.setdefault(kind, {}).setdefault(name, [0.0, 0])
                    v[0] += hit; v[1] += 1
print(f"{ckpt}: {NCAP} validation captions")
for kind, row in hits.items():
    print(f"  {kind:28s} (n={row['ot'][1]}): " + "  ".join(f"{m} {v[0] / v[1]:.3f}" for m, v in row.items()))
print("  the OT plan's noun argmax lands on:", lands)
