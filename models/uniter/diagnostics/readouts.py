"""Which read-out of a trained UNITER grounds words? Validation captions, PyTorch checkpoint.

    python3 -m uniter.diagnostics.readouts RUN/final.pt [--captions 1000] [--work DIR]

For the first N validation captions, every shape-noun and colour-word span that refers to objects
is grounded to the region with most of its weight under several tokens x regions read-outs, and
counted a hit when that region overlaps a referred object with IoU >= 0.5 (the measure of
`uniter eval`):

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
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ..ot import cost_matrix_cosine, ipot
from .common import IOU_HIT, Batch, Study, iou, study_parser

LANDINGS = ("referred object", "another object", "sliver", "other")


def readouts(b: Batch) -> Dict[str, torch.Tensor]:
    """The read-outs of one batch, each ``[B, T, N]`` (tokens x regions)."""
    h, T, jp, C = b.hidden, b.T, b.jpad, b.cost
    x, attn = b.x, b.attn
    txt, img = h[:, :T], h[:, T:]
    valid = torch.cat([x["text_mask"], x["img_mask"]], 1).float().unsqueeze(-1)
    mu = (h * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
    Cc = cost_matrix_cosine(txt - mu, img - mu).masked_fill(jp, 0)
    args = (b.text_len, b.tpad, b.regions, b.ipad, jp)
    return {"ot": ipot(C, *args).transpose(1, 2),
            "ot_b0.1": ipot(C, *args, beta=0.1).transpose(1, 2),
            "cos": (1 - C).masked_fill(jp, -9),
            "cos_centred": (1 - Cc).masked_fill(jp, -9),
            "attn_tr": torch.stack([a.mean(1)[:, :T, T:] for a in attn]).mean(0),
            **{f"attn_l{k}": a.mean(1)[:, :T, T:] for k, a in enumerate(attn)},
            "attn_both": torch.stack([a.sum(1)[:, :T, T:] + a.sum(1)[:, T:, :T].transpose(1, 2)
                                      for a in attn]).sum(0)}


def landing(boxes: np.ndarray, region: int, good: bool, objects) -> str:
    """Where an argmax region lands: on a referred object, on another annotated object, on a
    sliver (< 2 px wide or high), or elsewhere."""
    if good:
        return "referred object"
    if any(iou(boxes[region], o["box"]) >= IOU_HIT for o in objects):
        return "another object"
    bw, bh = boxes[region][2] - boxes[region][0], boxes[region][3] - boxes[region][1]
    return "sliver" if min(bw, bh) < 2 else "other"


def analyse(st: Study, ncap: int):
    """({kind: {read-out: [hits, spans]}}, {landing: count} of the OT plan's noun argmax)."""
    hits: Dict[str, Dict[str, list]] = {}
    lands = dict.fromkeys(LANDINGS, 0)
    for b in st.batches(ncap):
        ro = readouts(b)
        for k, c in enumerate(b.captions):
            for s in st.spans(c, int(b.regions[k])):
                if len(s.tokens) + 2 != len(s.caption["input_ids"]):
                    raise ValueError(f"caption {c}: the tokenizer and the vocabulary disagree")
                n = len(s.good)
                kinds = [s.kind]
                if s.kind == "shape":
                    coloured = any(o["kind"] == "color" and o["ref"] == s.span["ref"] for o in s.annotation["spans"])
                    kinds.append("shape, phrase with a colour" if coloured else "shape, no colour word")
                for name, m in list(ro.items()) + [("chance", None)]:
                    if m is None:
                        hit = float(np.mean(s.good))
                    else:
                        best = int(m[k][s.positions][:, :n].sum(0).argmax())
                        hit = float(s.good[best])
                        if name == "ot" and s.kind == "shape":
                            lands[landing(s.boxes, best, s.good[best], s.image["objects"])] += 1
                    for kind in kinds:
                        v = hits.setdefault(kind, {}).setdefault(name, [0.0, 0])
                        v[0] += hit
                        v[1] += 1
    return hits, lands


def main(argv=None) -> int:
    args = study_parser("readouts", __doc__).parse_args(argv)
    torch.set_num_threads(args.threads)
    st = Study(args.checkpoint, args.work)
    hits, lands = analyse(st, args.captions)
    print(f"{args.checkpoint}: {min(args.captions, len(st.caps))} validation captions")
    for kind, row in hits.items():
        print(f"  {kind:28s} (n={row['ot'][1]}): " + "  ".join(f"{m} {v[0] / v[1]:.3f}" for m, v in row.items()))
    print("  the OT plan's noun argmax lands on:", lands)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
