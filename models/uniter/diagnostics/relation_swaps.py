"""A training folder whose only text negatives are relation swaps.

    python3 -m uniter.diagnostics.relation_swaps FEAT_DIR SPLIT_DIR OUT_DIR

OUT_DIR links FEAT_DIR's regions, captions, truth and vocabulary, and gets a false_captions.jsonl
holding, for every relation caption of FEAT_DIR, the caption with its relation word swapped for
the converse (left of <-> right of, above <-> below) when that is false on the caption's own
image. Truth follows the Shapes World grammar (shapes.Holds): box centres, margin 5% of the image
side; the swap is false when no object matching A stands in the converse relation to another
object matching B. Fine-tuned on it with uniter.pretrain --itm-text-negatives P, a share P of the
ITM negatives are relation swaps (a caption without its own swap takes another caption's swap of
the same image, itself a relation swap).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Tuple

from .common import matches
from .count_near_misses import link

MARGIN = 0.05
CONVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
LINKED = ("regions.npz", "captions.jsonl", "truth.npz", "vocab.txt")


def holds(rel: str, a: dict, b: dict, w: float, h: float) -> bool:
    """Whether object a stands in relation ``rel`` to object b in a w x h image."""
    ax, ay = (a["box"][0] + a["box"][2]) / 2, (a["box"][1] + a["box"][3]) / 2
    bx, by = (b["box"][0] + b["box"][2]) / 2, (b["box"][1] + b["box"][3]) / 2
    return {"left_of": ax < bx - MARGIN * w, "right_of": ax > bx + MARGIN * w,
            "above": ay < by - MARGIN * h, "below": ay > by + MARGIN * h}[rel]


def relation_true(lf: dict, rec: dict) -> bool:
    """Whether a relation caption's logical form holds in an annotated image."""
    objs = rec["objects"]
    return any(i != j and matches(lf["a"], a) and matches(lf["b"], b) and holds(lf["rel"], a, b, rec["width"], rec["height"])
               for i, a in enumerate(objs) for j, b in enumerate(objs))


def build(feat: str, split: str, out: str) -> Tuple[int, int]:
    """Writes OUT (see the module docstring); returns (relation captions, swaps written)."""
    with open(os.path.join(feat, "vocab.txt"), encoding="utf-8") as f:
        tok = {line.rstrip("\n"): i for i, line in enumerate(f)}
    swap = {tok["left"]: tok["right"], tok["right"]: tok["left"], tok["above"]: tok["below"], tok["below"]: tok["above"]}
    with open(os.path.join(split, "annotations.jsonl"), encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    link(feat, out, LINKED)
    n = kept = 0
    with open(os.path.join(feat, "captions.jsonl"), encoding="utf-8") as fi, \
            open(os.path.join(out, "false_captions.jsonl"), "w", encoding="utf-8") as fo:
        for c, line in enumerate(line for line in fi if line.strip()):
            cap = json.loads(line)
            lf = cap["lf"]
            if lf["op"] != "relation":
                continue
            n += 1
            rec = recs[cap["image"]]
            if not relation_true(lf, rec):
                raise ValueError(f"caption {c} is false on its own image")
            inv = dict(lf, rel=CONVERSE[lf["rel"]])
            if relation_true(inv, rec):
                continue
            ids = [swap.get(t, t) for t in cap["input_ids"]]
            if sum(a != b for a, b in zip(ids, cap["input_ids"])) != 1:
                raise ValueError(f"caption {c}: not one relation word to swap")
            fo.write(json.dumps({"image": cap["image"], "input_ids": ids, "source": c, "edit": "relation",
                                 "lf": inv}) + "\n")
            kept += 1
    return n, kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.relation_swaps", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("feat", metavar="FEAT_DIR", help="training features from uniter extract")
    ap.add_argument("split", metavar="SPLIT_DIR", help="the split's annotations.jsonl folder")
    ap.add_argument("out", metavar="OUT_DIR")
    args = ap.parse_args(argv)
    n, kept = build(args.feat, args.split, args.out)
    print(f"{kept} of {n} relation captions have a false swap")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
