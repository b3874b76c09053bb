"""What would a perfect plan distillation give? The OT plan of the distillation's own targets.

    /usr/bin/python3 docs/plan-targets-2026-11-27/targets.py RUN/final.pt [CAPTIONS]

The distillation (pretrain.py --plan-distill, --plan-absorb) fits each token's softmax over the
regions of cos / tau to a target p, so at its optimum cos(t, r) = tau * log p(t, r) + c_t, and the
WRA cost 1 - cos is -tau * log p up to per-token constants, which do not change an OT plan with
fixed marginals. So the plan of a perfectly distilled model is the IPOT plan of the cost
-tau * log p. For the first CAPTIONS validation captions this prints noun and colour-word
grounding (IoU >= 0.5, spans as `uniter eval`) of:
  plan      the model's IPOT plan (beta 0.5, 50 iterations, uniform marginals, [CLS]/[SEP] in)
  cosine    the argmax of the cosine alone;  attention  the argmax of the attention alignment
  ideal:X   the IPOT plan of -tau * log p for target design X (same marginals and solver).
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grounding-2026-11-26"))
import numpy as np, torch
from collections import defaultdict
from readouts_common import Study, naming_words, score_spans
from uniter.ot import ipot
from uniter.pretrain import attention_alignment, absorber_targets, PLAN_DISTILL_TAU

torch.set_num_threads(1)
ckpt = sys.argv[1]; NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
st = Study(ckpt)
naming = naming_words()
ids = {t: i for i, t in enumerate(st.vocab)}
special = {ids[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in ids}


# The distillation's targets (plan_distill_loss): words keep p, absorbers get what they leave unclaimed.
targets = absorber_targets


hits = defaultdict(lambda: defaultdict(list))
for cs, x, h, attn, L, tpad, ipad, jp, C, tl, il in st.batches(NCAP):
    real = ~ipad
    p = attention_alignment(attn, L).masked_fill(~real[:, None, :], 0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    ids_ = x["input_ids"]
    spec = torch.isin(ids_, torch.tensor(sorted(special))) & ~tpad
    words = ~tpad & ~spec
    name = torch.tensor([[st.vocab[int(i)].lstrip("#") in naming for i in row] for row in ids_]) & words
    def cut(q, a):
        """q with every region below a times the row's maximum set to 0, scaled to sum to 1."""
        q = q * (q >= a * q.amax(-1, keepdim=True))
        return q / q.sum(-1, keepdim=True).clamp_min(1e-12)

    def smooth(q, d):
        """(1 - d) q + d uniform over the real regions: the tails pinned, not left free."""
        u = real[:, None, :].float() / real.sum(-1)[:, None, None].clamp_min(1)
        return (1 - d) * q + d * u
    naming_words, other = name, ~tpad & ~name          # other: [CLS], [SEP] and words naming no object
    argmax = smooth(cut(p, 1.0), 0.3)                   # the attention's argmax region, smoothed
    designs = {"ideal:trained (words p, [CLS]/[SEP] absorb)": targets(p, words, spec, real),
               "ideal:no absorbers": p,
               "ideal:non-naming tokens absorb": targets(p, naming_words, other, real),
               "ideal:tails cut at 0.5 x max": targets(cut(p, 0.5), words, spec, real),
               "ideal:tails cut at 0.5 x max, non-naming absorb": targets(cut(p, 0.5), naming_words, other, real)}
    for lam in (1.0, 0.99, 0.95, 0.9, 0.8, 0.5):
        mix = lam * argmax + (1 - lam) * p
        designs[f"ideal:{lam} argmax (smoothed 0.3) + {1 - lam:.2f} attention"] = targets(mix, words, spec, real)
        designs[f"ideal:{lam} argmax + {1 - lam:.2f} attention, non-naming absorb"] = targets(mix, naming_words, other, real)
    plans = {"plan": ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2), "cosine": 1 - C, "attention": p}
    for k_, q in designs.items():
        Cq = (-PLAN_DISTILL_TAU * q.clamp_min(1e-6).log()).masked_fill(jp, 0)
        plans[k_] = ipot(Cq, tl, tpad, il, ipad, jp).transpose(1, 2)
    score_spans(st, cs, il, plans, hits)
print(f"{ckpt}, {NCAP} validation captions")
for name_, d in hits.items():
    print(f"  {name_:48s} nouns {100*np.mean(d['shape']):5.1f}%  colours {100*np.mean(d['color']):5.1f}%  (n {len(d['shape'])}/{len(d['color'])})")
