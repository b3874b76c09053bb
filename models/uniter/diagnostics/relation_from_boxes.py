"""Do the stored region boxes answer Shapes-QA's relation yes/no questions?

    python3 -m uniter.diagnostics.relation_from_boxes --split DIR [--features DIR] [--limit N]

For each relation yes/no question of --split whose two descriptions each name one object, the
object's detected region (highest IoU with its annotated box) is looked up in the features the
model reads (uniter extract's regions.npz), and the relation is decided from the two regions'
stored locations (box centres; no margin). Printed: questions, how many the boxes answer as the
generator did, and the same from the annotated boxes. A model that misses these questions does not
miss them for want of the positions.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from .. import finetune as ft
from ..data import RegionStore
from .common import matches


def _holds(rel: str, a, b) -> bool:
    return {"above": a[1] < b[1], "below": a[1] > b[1], "left_of": a[0] < b[0], "right_of": a[0] > b[0]}[rel]


def check(split: str, features: str, limit: int = 0) -> dict:
    store = RegionStore(os.path.join(features, "regions.npz"))
    with open(os.path.join(split, "annotations.jsonl"), encoding="utf-8") as f:
        scenes = [json.loads(line) for line in f if line.strip()]
    n = from_boxes = from_annotations = skipped = 0
    with open(os.path.join(split, "qa.jsonl"), encoding="utf-8") as f:
        for line in f:
            it = json.loads(line)
            if it["type"] != "relation_yesno":
                continue
            lf = it["form"]["lf"]
            objs = scenes[it["image_id"]]["objects"]
            a = [o for o in objs if matches(lf["a"], o)]
            b = [o for o in objs if matches(lf["b"], o)]
            if len(a) != 1 or len(b) != 1:
                skipped += 1
                continue
            lo, hi = int(store.offsets[it["image_id"]]), int(store.offsets[it["image_id"] + 1])
            boxes, locs = store.boxes[lo:hi], store.locations[lo:hi]
            centre = lambda o: locs[int(ft.box_iou(boxes, np.asarray(o["box"], np.float32)).argmax())]
            ra, rb = centre(a[0]), centre(b[0])
            truth = it["answer"] == "yes"
            from_boxes += _holds(lf["rel"], ((ra[0] + ra[2]) / 2, (ra[1] + ra[3]) / 2),
                                 ((rb[0] + rb[2]) / 2, (rb[1] + rb[3]) / 2)) == truth
            from_annotations += _holds(lf["rel"], a[0]["center"], b[0]["center"]) == truth
            n += 1
            if limit and n >= limit:
                break
    return {"questions": n, "skipped": skipped, "from_boxes": from_boxes / max(n, 1),
            "from_annotations": from_annotations / max(n, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.relation_from_boxes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", required=True, help="a task split folder (uniter synth --task qa)")
    ap.add_argument("--features", default=None, help="its region features (default: as uniter.finetune finds them)")
    ap.add_argument("--limit", type=int, default=0, help="at most N questions (0: all)")
    args = ap.parse_args(argv)
    print(json.dumps(check(args.split, ft.features_dir(args.split, args.features), args.limit)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
