"""Where does the OT plan send a noun it does not ground, and who takes the referred object's boxes?

    python3 -m uniter.diagnostics.plan_anatomy RUN/final.pt [--captions 1000]

For the first N validation captions, every shape-noun span that refers to objects is grounded to
the region with most of its weight, as `uniter eval` does (IoU >= 0.5 with a referred object is a
hit), under:

  ot            the IPOT plan on the cosine cost of final hidden states (beta 0.5, 50 iterations,
                uniform marginals, [CLS] and [SEP] included: /v1/align)
  ot_nospecial  the same plan without [CLS] and [SEP]
  cos           the cosine itself, no transport

For the nouns the plan misses it says where the argmax lands (an object the caption names, an
object it does not name, no object) and which tokens take the plan mass of the referred object's
boxes, by the kind of caption span they sit in (special = [CLS]/[SEP]; function = in no span).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..ot import ipot
from .common import IOU_HIT, Batch, Study, iou, study_parser


def plan_without_specials(b: Batch) -> torch.Tensor:
    """The IPOT plan (tokens x regions) with [CLS] (first) and [SEP] (last real token) left out:
    their rows are 0 and the other tokens share the whole mass."""
    tp = b.tpad.clone()
    tp[:, 0] = True
    for k in range(len(tp)):
        tp[k, int(b.text_len[k]) - 1] = True
    jp = tp.unsqueeze(-1) | b.ipad.unsqueeze(-2)
    return ipot(b.cost.masked_fill(jp, 0), (~tp).sum(1).float(), tp, b.regions, b.ipad, jp).transpose(1, 2)


def token_kinds(tokens: Sequence[Tuple[int, int]], spans: Sequence[dict], M: int) -> Dict[int, str]:
    """Position -> the kind of the innermost annotation span holding the token (later spans win,
    as the annotation lists a phrase before its words); [CLS] and [SEP] are "special"; tokens in
    no span are left out."""
    kind = {}
    for sp in spans:
        for i, (s, e) in enumerate(tokens):
            if s >= sp["start"] and e <= sp["end"]:
                kind[i + 1] = sp["kind"]
    kind[0] = "special"
    kind[M - 1] = "special"
    return kind


def landing(boxes: np.ndarray, region: int, objects: Sequence[dict], mentioned) -> str:
    """Where a missed noun's argmax region lands: an object the caption mentions, an object it
    does not, or no object."""
    hit = [o for o, ob in enumerate(objects) if iou(boxes[region], ob["box"]) >= IOU_HIT]
    if any(o in mentioned for o in hit):
        return "mentioned other"
    return "unmentioned object" if hit else "no object"


def analyse(st: Study, ncap: int):
    """(grounding per variant {name: [hits, nouns]}, landings of the misses, mass of the
    referred boxes by token kind in the misses, tokens per caption, regions per image)."""
    land: Counter = Counter()
    taker: Counter = Counter()
    variants: Dict[str, List[int]] = {}
    ntok, nreg = [], []
    for b in st.batches(ncap):
        P = ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)
        P2 = plan_without_specials(b)
        for k, c in enumerate(b.captions):
            n, M = int(b.regions[k]), int(b.text_len[k])
            ntok.append(M)
            nreg.append(n)
            _, ann, acap = st.caption(c)
            mentioned = {o for sp in acap["spans"] for o in sp["objects"]}
            kind_of = None
            for s in st.spans(c, n, kinds=("shape",)):
                if kind_of is None:
                    kind_of = token_kinds(s.tokens, acap["spans"], M)
                for name, m in (("ot", P), ("ot_nospecial", P2), ("cos", 1 - b.cost)):
                    best = int(m[k][s.positions][:, :n].sum(0).argmax())
                    v = variants.setdefault(name, [0, 0])
                    v[0] += s.good[best]
                    v[1] += 1
                best = int(P[k][s.positions][:, :n].sum(0).argmax())
                if s.good[best]:
                    continue
                land[landing(s.boxes, best, ann["objects"], mentioned)] += 1
                gm = P[k][:M, :n][:, torch.tensor(s.good)].sum(1)
                for t in range(M):
                    taker[kind_of.get(t, "function")] += float(gm[t])
    return variants, land, taker, ntok, nreg


def main(argv=None) -> int:
    args = study_parser("plan_anatomy", __doc__).parse_args(argv)
    torch.set_num_threads(args.threads)
    variants, land, taker, ntok, nreg = analyse(Study(args.checkpoint, args.work), args.captions)
    print(args.checkpoint)
    print("noun grounding:", {k: round(v[0] / v[1], 3) for k, v in variants.items()})
    print("failed noun argmax lands on:", dict(land))
    tot = sum(taker.values()) or 1.0
    print("in failures, the referred boxes' mass goes to:", {k: round(v / tot, 3) for k, v in taker.most_common()})
    print("mean tokens", np.mean(ntok), "mean regions", np.mean(nreg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
