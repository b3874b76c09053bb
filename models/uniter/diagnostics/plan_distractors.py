"""When the OT plan misses a noun that the cosine grounds, what is the region it lands on?

    python3 -m uniter.diagnostics.plan_distractors RUN/final.pt [--captions 1000]

For the first N validation captions, every shape-noun span that refers to objects is grounded as
`uniter eval` does, by the IPOT plan (beta 0.5, 50 iterations, uniform marginals, [CLS] and [SEP]
included) and by the cosine of final states. For the nouns the plan misses it counts whether the
landing region covers an object of the noun's own shape that the span does not refer to (a
same-shape distractor), and how the noun's plan mass splits between the referred object's boxes
and the landing region.
"""
from __future__ import annotations

from collections import Counter
from typing import List, Sequence

import numpy as np
import torch

from ..ot import ipot
from .common import IOU_HIT, Study, iou, study_parser

NO_OBJECT = "... lands on no object"
SAME_SHAPE = "... lands on an object of the noun's shape"
OTHER_SHAPE = "... lands on an object of another shape"


def landing(boxes: np.ndarray, region: int, objects: Sequence[dict], referred: Sequence[int]) -> str:
    """Whether a missed noun's landing region covers no object, an unreferred object of the
    noun's shape (the shape of its first referred object), or only objects of other shapes."""
    shape = objects[referred[0]]["shape"]
    others = [o for o, ob in enumerate(objects) if iou(boxes[region], ob["box"]) >= IOU_HIT and o not in referred]
    if not others:
        return NO_OBJECT
    return SAME_SHAPE if any(objects[o]["shape"] == shape for o in others) else OTHER_SHAPE


def analyse(st: Study, ncap: int):
    """(Counter: nouns, plan misses, those the cosine grounds, landings; the misses' plan mass on
    the referred boxes; on the landing region)."""
    count: Counter = Counter()
    share_good: List[float] = []
    share_land: List[float] = []
    for b in st.batches(ncap):
        P = ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)
        for k, c in enumerate(b.captions):
            n = int(b.regions[k])
            for s in st.spans(c, n, kinds=("shape",)):
                row = P[k][s.positions][:, :n].sum(0)
                best = int(row.argmax())
                best_cos = int((1 - b.cost[k])[s.positions][:, :n].sum(0).argmax())
                count["nouns"] += 1
                if s.good[best]:
                    continue
                count["plan misses"] += 1
                count["... the cosine grounds it"] += s.good[best_cos]
                count[landing(s.boxes, best, s.image["objects"], s.span["objects"])] += 1
                share_good.append(float(row[torch.tensor(s.good)].sum() / row.sum()))
                share_land.append(float(row[best] / row.sum()))
    return count, share_good, share_land


def main(argv=None) -> int:
    args = study_parser("plan_distractors", __doc__).parse_args(argv)
    torch.set_num_threads(args.threads)
    count, share_good, share_land = analyse(Study(args.checkpoint, args.work), args.captions)
    print(args.checkpoint)
    print(dict(count))
    if share_good:
        print("in misses, the noun's plan mass: on the referred boxes %.3f, on the landing region %.3f" %
              (np.mean(share_good), np.mean(share_land)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
