#!/usr/bin/env python3
"""Golden values for detector.Select: bottom-up-attention region selection as written in
docs/detector-contract.md, implemented here independently with torchvision.ops.nms per class.

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision 0.14):
    /usr/bin/python3 detector/testdata/make_select_golden.py > detector/testdata/select_golden.json

Thresholds are float32 on both sides (the Go spec holds them as float32).
"""
import json

import numpy as np
import torch
import torchvision
from torchvision.ops import nms


def f32(values):
    return [float("%.9g" % v) for v in np.asarray(values, dtype=np.float32).ravel()]


def select(boxes, probs, spec):
    """Selection over the proposals at least min_side wide and high (all with min_side 0),
    indices into all proposals."""
    side = np.float32(spec.get("min_side", 0))
    keep = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= side) & (boxes[:, 3] - boxes[:, 1] >= side))
    idx, conf = select_all(boxes[keep], probs[keep], spec)
    return keep[idx].tolist(), conf


def select_all(boxes, probs, spec):
    P, C = probs.shape
    conf = np.zeros(P, dtype=np.float32)
    tb = torch.from_numpy(boxes)
    for c in range(C):
        if c == spec["background"]:
            continue
        keep = nms(tb, torch.from_numpy(np.ascontiguousarray(probs[:, c])), float(np.float32(spec["nms_iou"])))
        for i in keep.tolist():
            conf[i] = max(conf[i], probs[i, c])
    # descending confidence, ties by lower index: a stable sort of the negated values
    order = np.argsort(-conf, kind="stable")
    n = int(np.sum(conf >= np.float32(spec["min_confidence"])))
    if n < spec["min_boxes"]:
        n = min(spec["min_boxes"], P)
    n = min(n, spec["max_boxes"])
    idx = order[:n]
    return idx, conf[idx]


def main():
    rng = np.random.RandomState(11)
    cases = []
    base = {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 10, "max_boxes": 100, "background": 0}
    specs = [
        (60, 8, 3.0, base),                                        # typical
        (150, 12, 4.0, dict(base, max_boxes=36)),                  # more than max_boxes
        (40, 6, 0.5, dict(base, min_boxes=15, min_confidence=0.4)),  # fewer than min_boxes
        (7, 5, 2.0, base),                                         # P < min_boxes
        (80, 10, 5.0, dict(base, background=3, nms_iou=0.5)),      # background elsewhere
        (50, 4, 3.0, dict(base, background=-1, min_confidence=0.5, min_boxes=0, max_boxes=20)),
        (120, 15, 6.0, dict(base, nms_iou=0.7, min_confidence=0.05)),
        (300, 11, 5.0, base),                                      # P of a real detector
        # min_side (min_box_size × scale): slivers and small boxes dropped before selection
        (60, 8, 3.0, dict(base, min_side=2.0)),
        (40, 6, 2.0, dict(base, min_side=40.0, min_boxes=30)),     # fewer left than min_boxes
    ]
    for P, C, sharp, spec in specs:
        x1 = rng.uniform(0, 600, P)
        y1 = rng.uniform(0, 400, P)
        w = rng.uniform(0, 250, P)
        h = rng.uniform(0, 250, P)
        boxes = np.stack([x1, y1, np.minimum(x1 + w, 800), np.minimum(y1 + h, 600)], 1).astype(np.float32)
        if P >= 10:
            boxes[1] = boxes[0]             # duplicate box
            boxes[2, 2] = boxes[2, 0]       # zero width
            boxes[5] = boxes[4]
        if "min_side" in spec:
            boxes[3, 3] = boxes[3, 1]       # zero height
            boxes[8, 2] = boxes[8, 0] + 1.5  # narrower than 2
            boxes[9, 2] = boxes[9, 0] + 2   # exactly 2 wide: kept at min_side 2
        logits = rng.normal(0, sharp, size=(P, C))
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
        if P >= 10:
            probs[7] = probs[6]             # a tie in every class
        idx, conf = select(boxes, probs, spec)
        cases.append({"boxes": f32(boxes), "probs": f32(probs), "classes": C, "spec": spec,
                      "idx": idx, "conf": f32(conf)})
    print(json.dumps({"generator": "make_select_golden.py, torch %s, torchvision %s" % (
        torch.__version__, torchvision.__version__), "cases": cases}, separators=(",", ":")))


if __name__ == "__main__":
    main()
