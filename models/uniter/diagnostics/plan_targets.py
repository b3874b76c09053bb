"""What would a perfect plan distillation give? The OT plan of the distillation's own targets.

    python3 -m uniter.diagnostics.plan_targets RUN/final.pt [--captions 1000] [--bundle DIR]

The distillation (uniter.pretrain --plan-distill, --plan-absorb) fits each token's softmax over the
regions of cos / tau to a target p, so at its optimum cos(t, r) = tau * log p(t, r) + c_t, and the
WRA cost 1 - cos is -tau * log p up to per-token constants, which do not change an OT plan with
fixed marginals. So the plan of a perfectly distilled model is the IPOT plan of the cost
-tau * log p. For the first N validation captions this prints noun and colour-word grounding
(IoU >= 0.5, spans as `uniter eval`) of:
  plan      the model's IPOT plan (beta 0.5, 50 iterations, uniform marginals, [CLS]/[SEP] in)
  cosine    the argmax of the cosine alone;  attention  the argmax of the attention alignment
  ideal:X   the IPOT plan of -tau * log p for target design X (same marginals and solver):
            the trained design (words keep their attention, [CLS]/[SEP] absorb what the words
            leave unclaimed), no absorbers, every token naming no object absorbing, the
            attention's tails cut, and mixtures of the attention's smoothed argmax with the
            attention itself (the plan stage's --plan-argmax targets are the pure argmax).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from ..ot import ipot
from ..pretrain import PLAN_DISTILL_TAU, absorber_targets, attention_alignment
from .common import Batch, Study, naming_words, score_spans, study_parser


def token_masks(vocab: Sequence[str], ids: torch.Tensor, tpad: torch.Tensor, naming) -> Tuple[torch.Tensor, ...]:
    """``[B, T]`` masks: the special tokens ([CLS], [SEP]), the words (every other real token),
    the words that name objects, and the tokens that name none (specials included)."""
    index = {t: i for i, t in enumerate(vocab)}
    special = torch.tensor(sorted(index[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in index))
    spec = torch.isin(ids, special) & ~tpad
    words = ~tpad & ~spec
    name = torch.tensor([[vocab[int(i)].lstrip("#") in naming for i in row] for row in ids]) & words
    return spec, words, name, ~tpad & ~name


def attention_targets(b: Batch) -> torch.Tensor:
    """Each token's attention alignment over the real regions, scaled to sum to 1 (the
    distillation's targets)."""
    real = ~b.ipad
    p = attention_alignment(b.attn, b.T).masked_fill(~real[:, None, :], 0)
    return p / p.sum(-1, keepdim=True).clamp_min(1e-12)


def cut(q: torch.Tensor, a: float) -> torch.Tensor:
    """q with every region below ``a`` times the row's maximum set to 0, scaled to sum to 1."""
    q = q * (q >= a * q.amax(-1, keepdim=True))
    return q / q.sum(-1, keepdim=True).clamp_min(1e-12)


def smooth(q: torch.Tensor, d: float, real: torch.Tensor) -> torch.Tensor:
    """(1 - d) q + d uniform over the real regions (``real``: ``[B, N]``): the tails pinned, not
    left free."""
    u = real[:, None, :].float() / real.sum(-1)[:, None, None].clamp_min(1)
    return (1 - d) * q + d * u


def ideal_plan(q: torch.Tensor, b: Batch) -> torch.Tensor:
    """The IPOT plan (tokens x regions) of the cost -tau * log q: the plan of a model whose
    distillation fitted the targets ``q`` exactly."""
    Cq = (-PLAN_DISTILL_TAU * q.clamp_min(1e-6).log()).masked_fill(b.jpad, 0)
    return ipot(Cq, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)


def designs(p: torch.Tensor, spec: torch.Tensor, words: torch.Tensor, name: torch.Tensor,
            other: torch.Tensor, real: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The target designs compared, from the attention targets ``p``."""
    t = absorber_targets
    argmax = smooth(cut(p, 1.0), 0.3, real)  # the attention's argmax region, smoothed
    out = {"ideal:trained (words p, [CLS]/[SEP] absorb)": t(p, words, spec, real),
           "ideal:no absorbers": p,
           "ideal:non-naming tokens absorb": t(p, name, other, real),
           "ideal:tails cut at 0.5 x max": t(cut(p, 0.5), words, spec, real),
           "ideal:tails cut at 0.5 x max, non-naming absorb": t(cut(p, 0.5), name, other, real)}
    for lam in (1.0, 0.99, 0.95, 0.9, 0.8, 0.5):
        mix = lam * argmax + (1 - lam) * p
        out[f"ideal:{lam} argmax (smoothed 0.3) + {1 - lam:.2f} attention"] = t(mix, words, spec, real)
        out[f"ideal:{lam} argmax + {1 - lam:.2f} attention, non-naming absorb"] = t(mix, name, other, real)
    return out


def analyse(st: Study, ncap: int, naming) -> Dict[str, Dict[str, list]]:
    hits: Dict[str, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for b in st.batches(ncap):
        p = attention_targets(b)
        spec, words, name, other = token_masks(st.vocab, b.x["input_ids"], b.tpad, naming)
        plans = {"plan": ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2),
                 "cosine": 1 - b.cost, "attention": p}
        for k, q in designs(p, spec, words, name, other, ~b.ipad).items():
            plans[k] = ideal_plan(q, b)
        score_spans(st, b, plans, hits)
    return hits


def print_hits(ckpt: str, ncap: int, hits, width: int = 48) -> None:
    print(f"{ckpt}, {ncap} validation captions")
    for name, d in hits.items():
        print(f"  {name:{width}s} nouns {100 * np.mean(d['shape']):5.1f}%  colours {100 * np.mean(d['color']):5.1f}%"
              f"  (n {len(d['shape'])}/{len(d['color'])})")


def main(argv=None) -> int:
    args = study_parser("plan_targets", __doc__, bundle=True).parse_args(argv)
    torch.set_num_threads(args.threads)
    st = Study(args.checkpoint, args.work)
    hits = analyse(st, args.captions, naming_words(args.bundle))
    print_hits(args.checkpoint, min(args.captions, len(st.caps)), hits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
