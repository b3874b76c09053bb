"""Which argmax could the plan distillation follow? Grounding of candidate target sources.

    /usr/bin/python3 docs/plan-rows-2026-11-27/sources.py RUN/final.pt [CAPTIONS]

For the first CAPTIONS validation captions, noun and colour-word grounding (IoU >= 0.5, spans as
`uniter eval`) of the argmax region of:
  plan        the model's IPOT plan (what `uniter eval` measures)
  attention   the attention alignment (the default's distillation targets, --plan-argmax)
  cosine      the cosine of the token and region outputs
  att*cos     attention (scaled to sum to 1) times softmax(cos / tau)
  X|label     X over the regions whose detector class (argmax of the soft labels) is the
              token's shape word, when the image has one; X itself otherwise (colour words and
              tokens naming no shape are unchanged)
and the IPOT plan of the smoothed-argmax targets of each source (the plan of a perfect
distillation, as ../plan-targets-2026-11-27/targets.py computes it).
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grounding-2026-11-26"))
import numpy as np, torch
import torch.nn.functional as F
from collections import defaultdict
from readouts_common import Study, naming_words, score_spans
from uniter.ot import ipot
from uniter.pretrain import attention_alignment, absorber_targets, PLAN_DISTILL_TAU

torch.set_num_threads(1)
ckpt = sys.argv[1]; NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
st = Study(ckpt)
naming = naming_words()
classes = open("bundles/shapes-uniter/region_labels.txt").read().split()
shape_class = {}
for k, c in enumerate(classes[1:], 1):
    for w in (c, c + "s", c + "es"):
        shape_class[w] = k
ids = {t: i for i, t in enumerate(st.vocab)}
special = {ids[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in ids}
tok_class = torch.tensor([shape_class.get(t, 0) for t in st.vocab])

hits = defaultdict(lambda: defaultdict(list))
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    real = ~ipad
    att = attention_alignment(attn, L).masked_fill(~real[:, None, :], 0)
    att = att / att.sum(-1, keepdim=True).clamp_min(1e-12)
    cos = (1 - C).masked_fill(~real[:, None, :], -2)
    sm = F.softmax((cos / PLAN_DISTILL_TAU).masked_fill(~real[:, None, :], -1e4), -1)
    prod = att * sm
    ids_ = x["input_ids"]
    spec = torch.isin(ids_, torch.tensor(sorted(special))) & ~tpad
    words = ~tpad & ~spec
    name = torch.tensor([[st.vocab[int(i)].lstrip("#") in naming for i in row] for row in ids_]) & words
    other = ~tpad & ~name
    # region classes and the label restriction
    rcls = x["img_soft_labels"].argmax(-1).masked_fill(ipad, -1)            # [B, N]
    tcls = tok_class[ids_]                                                    # [B, T]
    match = (rcls[:, None, :] == tcls[:, :, None]) & (tcls[:, :, None] > 0)   # [B, T, N]
    has = match.any(-1, keepdim=True)
    def label(q):
        return torch.where(has, q * match + 1e-9 * match, q)
    sources = {"attention": att, "cosine": sm, "att*cos": prod,
               "attention|label": label(att), "cosine|label": label(sm), "att*cos|label": label(prod)}
    plans = {"plan": ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2)}
    plans.update(sources)
    for k_, q in sources.items():
        hot = F.one_hot(q.argmax(-1), q.size(-1)).float()
        flat = real[:, None, :].float() / real.sum(-1)[:, None, None].clamp_min(1)
        p = (0.7 * hot + 0.3 * flat).masked_fill(~real[:, None, :], 0)
        p = absorber_targets(p, name, other, real)
        Cq = (-PLAN_DISTILL_TAU * p.clamp_min(1e-6).log()).masked_fill(jp, 0)
        plans["ideal plan:" + k_] = ipot(Cq, tl, tpad, il, ipad, jp).transpose(1, 2)
    score_spans(st, cs, il, plans, hits)
print(f"{ckpt}, {NCAP} validation captions")
for name_, d in hits.items():
    print(f"  {name_:28s} nouns {100*np.mean(d['shape']):5.1f}%  colours {100*np.mean(d['color']):5.1f}%  (n {len(d['shape'])}/{len(d['color'])})")
