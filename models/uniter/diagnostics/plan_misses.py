"""Where the OT plan loses a noun that the cosine grounds.

    python3 -m uniter.diagnostics.plan_misses RUN/final.pt [--captions 1000] [--examples 4]

For the shape-noun spans of the first N validation captions (IoU >= 0.5, spans as `uniter eval`),
counts the plan's hits and sorts its misses: the cosine's argmax wrong too; or the cosine right
and the plan's argmax region unclaimed (no naming word's cosine peaks there) or claimed by another
naming word. For the misses with the cosine right it prints how the plan shares out the right
region's column: the noun, the other naming words (colours, shapes, sizes) and the rest ([CLS],
[SEP], words naming nothing); and the first EXAMPLES of them.
"""
from __future__ import annotations

from collections import Counter
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..ot import ipot
from .common import Study, naming_words, study_parser

HIT = "hit"
COSINE_WRONG = "miss: the cosine's argmax wrong too"
CLAIMED = "miss, cosine right: the plan's region claimed by another naming word"
UNCLAIMED = "miss, cosine right: the plan's region unclaimed"


def classify(plan: torch.Tensor, cos: torch.Tensor, positions: Sequence[int], good: Sequence[bool],
             names: Sequence[bool]) -> Tuple[str, Optional[Tuple[float, float, float]]]:
    """One noun span of a caption (``plan``, ``cos``: its tokens x real regions; ``names``: per
    token, whether it names an object): its category and, for a miss the cosine gets right, the
    shares of the right region's plan column held by the noun, the other naming words and the rest."""
    ts = list(positions)
    rp, rc = int(plan[ts].sum(0).argmax()), int(cos[ts].sum(0).argmax())
    if good[rp]:
        return HIT, None
    if not good[rc]:
        return COSINE_WRONG, None
    T = plan.shape[0]
    claimed = any(names[t] and t not in ts and int(cos[t].argmax()) == rp for t in range(T))
    col = plan[:, rc] / plan[:, rc].sum()
    noun = float(col[ts].sum())
    other = float(sum(col[t] for t in range(T) if names[t] and t not in ts))
    return (CLAIMED if claimed else UNCLAIMED), (noun, other, 1 - noun - other)


def analyse(st: Study, ncap: int, naming, examples: int = 4):
    """(Counter of categories, column shares of the misses the cosine gets right, example lines)."""
    count: Counter = Counter()
    shares: List[Tuple[float, float, float]] = []
    shown: List[str] = []
    for b in st.batches(ncap):
        P = ipot(b.cost, b.text_len, b.tpad, b.regions, b.ipad, b.jpad).transpose(1, 2)  # tokens x regions
        for k, c in enumerate(b.captions):
            n, T = int(b.regions[k]), int(b.text_len[k])
            toks = [st.vocab[int(i)] for i in b.x["input_ids"][k][:T]]
            names = [t.lstrip("#") in naming for t in toks]
            cos, plan = (1 - b.cost[k])[:T, :n], P[k][:T, :n]
            for s in st.spans(c, n, kinds=("shape",)):
                kind, share = classify(plan, cos, s.positions, s.good, names)
                count[kind] += 1
                if share is None:
                    continue
                shares.append(share)
                if len(shown) < examples:
                    rp = int(plan[s.positions].sum(0).argmax())
                    rc = int(cos[s.positions].sum(0).argmax())
                    col = plan[:, rc] / plan[:, rc].sum()
                    shown.append(f"{s.caption['text']!r}: noun {[toks[t] for t in s.positions]}, right region {rc}, "
                                 f"plan's {rp}; the right region's column: " +
                                 ", ".join(f"{toks[t]} {float(col[t]):.2f}" for t in range(T) if col[t] >= 0.01))
    return count, shares, shown


def main(argv=None) -> int:
    ap = study_parser("plan_misses", __doc__, bundle=True)
    ap.add_argument("--examples", type=int, default=4, help="misses to show (default %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    st = Study(args.checkpoint, args.work)
    count, shares, shown = analyse(st, args.captions, naming_words(args.bundle), args.examples)
    for line in shown:
        print(line)
    total = sum(count.values())
    print(f"{args.checkpoint}, {min(args.captions, len(st.caps))} validation captions, {total} shape nouns")
    for key, v in count.most_common():
        print(f"  {key:70s} {v:5d}  {100 * v / total:5.1f}%")
    if shares:
        s = np.mean(shares, 0)
        print(f"  the right region's column in those misses: the noun {s[0]:.2f}, other naming words {s[1]:.2f}, "
              f"the rest {s[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
