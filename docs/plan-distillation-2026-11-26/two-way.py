"""models/pretrain.py with a two-way plan distillation (a study, not the recipe).

    /usr/bin/python3 docs/plan-distillation-2026-11-26/two-way.py PRETRAIN_ARGS...

As pretrain.py --plan-distill, plus the same pull in the other direction: each real region's
softmax over the caption's words of cos(h_word, h_region) / tau is pulled towards the region's
attention alignment over the words (scaled to sum to 1 over them). The OT plan normalises both
ways (token and region marginals), so a cost that ranks tokens per region as attention does
might let the plan keep the words' regions.
"""
import os
import runpy
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import uniter.pretrain as P  # noqa: E402

rows = P.plan_distill_loss


def two_way(h_txt, h_img, attn, img_mask, words, tau=P.PLAN_DISTILL_TAU):
    T = h_txt.size(1)
    w = words[:, :, None]
    p = P.attention_alignment(attn, T).detach().masked_fill(~w, 0.0)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    cos = F.normalize(h_txt, dim=-1) @ F.normalize(h_img, dim=-1).transpose(1, 2)
    logq = F.log_softmax((cos / tau).masked_fill(~w, -1e4), 1)
    kl = torch.where(p > 0, p * (p.clamp_min(1e-12).log() - logq), torch.zeros_like(p)).sum(1)
    regions = img_mask.bool() & words.any(1)[:, None]
    cols = kl[regions].mean() if regions.any() else h_txt.sum() * 0.0
    return rows(h_txt, h_img, attn, img_mask, words, tau) + cols


P.plan_distill_loss = two_way
sys.argv = [os.path.join(os.path.dirname(P.__file__), "..", "pretrain.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
