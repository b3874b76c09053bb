"""Which argmax could the plan distillation follow? Grounding of candidate target sources.

    python3 -m uniter.diagnostics.plan_sources RUN/final.pt [--captions 1000] [--bundle DIR]

For the first N validation captions, noun and colour-word grounding (IoU >= 0.5, spans as
`uniter eval`) of the argmax region of:
  plan        the model's IPOT plan (what `uniter eval` measures)
  attention   the attention alignment (the distillation's targets, --plan-argmax)
  cosine      the cosine of the token and region outputs
  att*cos     attention (scaled to sum to 1) times softmax(cos / tau)
  X|label     X over the regions whose detector class (argmax of the soft labels) is the
              token's shape word, when the image has one; X itself otherwise (colour words and
              tokens naming no shape are unchanged)
and the IPOT plan of the smoothed-argmax targets of each source (the plan of a perfect
distillation, as uniter.diagnostics.plan_targets computes it).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from ..ot import ipot
from ..pretrain import PLAN_DISTILL_TAU, absorber_targets
from .common import Batch, Study, naming_words, score_spans, study_parser
from .plan_targets import attention_targets, ideal_plan, print_hits, token_masks


def token_classes(vocab: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    """Per vocabulary id, the detector class its word names (a shape, singular or plural; 0:
    none). ``classes``: the bundle's region labels, background first."""
    shape_class = {}
    for k, c in enumerate(classes[1:], 1):
        for w in (c, c + "s", c + "es"):
            shape_class[w] = k
    return torch.tensor([shape_class.get(t, 0) for t in vocab])


def label_restricted(q: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """``q`` (``[B, T, N]``) kept on the regions ``match`` marks (``[B, T, N]`` bool) for the
    tokens that have any (a tiny floor keeps an all-zero row's argmax among them), unchanged
    for the others."""
    has = match.any(-1, keepdim=True)
    return torch.where(has, q * match + 1e-9 * match, q)


def sources(b: Batch, tok_class: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The candidate sources of one batch, each ``[B, T, N]``."""
    real = ~b.ipad
    att = attention_targets(b)
    cos = (1 - b.cost).masked_fill(~real[:, None, :], -2)
    sm = F.softmax((cos / PLAN_DISTILL_TAU).masked_fill(~real[:, None, :], -1e4), -1)
    prod = att * sm
    rcls = b.x["img_soft_labels"].argmax(-1).masked_fill(b.ipad, -1)            # [B, N]
    tcls = tok_class[b.x["input_ids"]]                                           # [B, T]
    match = (rcls[:, None, :] == tcls[:, :, None]) & (tcls[:, :, None] > 0)       # [B, T, N]
    return {"attention": att, "cosine": sm, "att*cos": prod,
            "attention|label": label_restricted(att, match), "cosine|label": label_restricted(sm, match),
            "att*cos|label": label_restricted(prod, match)}


def smoothed_argmax_targets(q: torch.Tensor, name: torch.Tensor, other: torch.Tensor,
                            real: torch.Tensor) -> torch.Tensor:
    """0.7 one-hot on each token's argmax region + 0.3 uniform over the real regions, with the
    tokens naming no object absorbing what the naming words leave unclaimed."""
    hot = F.one_hot(q.argmax(-1), q.size(-1)).float()
    flat = real[:, None, :].float() / real.sum(-1)[:, None, None].clamp_min(1)
    p = (0.7 * hot + 0.3 * flat).masked_fill(~real[:, None, :], 0)
    return absorber_targets(p, name, other, real)


def analyse(st: Study, ncap: int, naming, classes: Sequence[str]):
    tok_class = token_classes(st.vocab, classes)
    hits: Dict[str, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for b in st.batches(ncap):
        _, _, name, other = token_masks(st.vocab, b.x["input_ids"], b.tpad, naming)
        src = sources(b, tok_class)
        plans = {"plan": ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)}
        plans.update(src)
        for k, q in src.items():
            plans["ideal plan:" + k] = ideal_plan(smoothed_argmax_targets(q, name, other, ~b.ipad), b)
        score_spans(st, b, plans, hits)
    return hits


def main(argv=None) -> int:
    args = study_parser("plan_sources", __doc__, bundle=True).parse_args(argv)
    torch.set_num_threads(args.threads)
    st = Study(args.checkpoint, args.work)
    with open(f"{args.bundle}/region_labels.txt", encoding="utf-8") as f:
        classes = f.read().split()
    hits = analyse(st, args.captions, naming_words(args.bundle), classes)
    print_hits(args.checkpoint, min(args.captions, len(st.caps)), hits, width=28)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
