"""Is there room in the OT plan for the objects a caption does not name?

    python3 -m uniter.diagnostics.plan_capacity RUN/final.pt [--captions 1000] [--bundle DIR]

For the first N validation captions, per shape noun: the share of the plan's token mass held by
tokens that name no object ([CLS], [SEP], articles, counts, relation words: the absorbers of
--plan-naming-words) against the share of region mass on regions that cover no object the caption
names. With uniform marginals, when the second is larger ("capacity short") the plan must send
unnamed regions to naming words. Reported separately for the nouns the plan grounds (hits) and
those it misses.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..ot import ipot
from .common import IOU_HIT, Study, iou, naming_words, span_hit, study_parser


def capacity(tokens: Sequence[str], naming, claimed: Sequence[bool]) -> Tuple[float, float]:
    """(the share of a caption's tokens that name no object, the share of its image's regions
    that cover no named object)."""
    absorbers = sum(t.lstrip("#") not in naming for t in tokens)
    return absorbers / len(tokens), (len(claimed) - sum(claimed)) / len(claimed)


def analyse(st: Study, ncap: int, naming) -> Dict[bool, np.ndarray]:
    """{hit: rows of (absorber share, unclaimed share, their difference)} over the shape nouns."""
    res: Dict[bool, List[Tuple[float, float, float]]] = {True: [], False: []}
    for b in st.batches(ncap):
        P = ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)
        for k, c in enumerate(b.captions):
            n, M = int(b.regions[k]), int(b.text_len[k])
            toks = [st.vocab[int(i)] for i in b.x["input_ids"][k][:M]]
            cap, ann, acap = st.caption(c)
            rb = st.image_boxes(cap["image"], n)
            named = {o for sp in acap["spans"] for o in sp["objects"]}
            claimed = [any(iou(rb[r], ann["objects"][o]["box"]) >= IOU_HIT for o in named) for r in range(n)]
            a, u = capacity(toks, naming, claimed)
            for s in st.spans(c, n, kinds=("shape",)):
                res[span_hit(P[k], s.positions, s.good)].append((a, u, a - u))
    return {hit: np.array(v).reshape(-1, 3) for hit, v in res.items()}


def main(argv=None) -> int:
    args = study_parser("plan_capacity", __doc__, bundle=True).parse_args(argv)
    torch.set_num_threads(args.threads)
    st = Study(args.checkpoint, args.work)
    print(f"{args.checkpoint}, {min(args.captions, len(st.caps))} validation captions")
    for hit, v in analyse(st, args.captions, naming_words(args.bundle)).items():
        if not len(v):
            print(f"  {'hits' if hit else 'misses'}: none")
            continue
        print(f"  {'hits' if hit else 'misses'} {len(v)}: absorber share {v[:, 0].mean():.2f}, unclaimed share "
              f"{v[:, 1].mean():.2f}, capacity short in {100 * (v[:, 2] < 0).mean():.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
