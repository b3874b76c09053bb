#!/usr/bin/env python3
"""Golden values for detector.NMS, computed by torchvision.ops.nms.

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision 0.14):
    /usr/bin/python3 detector/testdata/make_nms_golden.py > detector/testdata/nms_golden.json

The threshold is passed as float(np.float32(t)) because the Go side holds it as float32.
Cases mix random boxes, duplicated boxes, zero-area boxes and quantised scores (ties).
"""
import json

import numpy as np
import torch
import torchvision
from torchvision.ops import nms


def f32(values):
    return [float("%.9g" % v) for v in np.asarray(values, dtype=np.float32).ravel()]


def random_boxes(rng, n, size, max_wh):
    x1 = rng.uniform(0, size, n)
    y1 = rng.uniform(0, size, n)
    w = rng.uniform(0, max_wh, n)
    h = rng.uniform(0, max_wh, n)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def main():
    rng = np.random.RandomState(7)
    cases = []
    specs = [(20, 0.3, False, False), (50, 0.5, False, False), (100, 0.3, False, False),
             (100, 0.7, True, False), (60, 0.3, False, True), (80, 0.0, True, True),
             (40, 0.9, False, False), (1, 0.3, False, False), (150, 0.45, True, False),
             (30, 1.0, False, True)]
    for n, thr, ties, degenerate in specs:
        boxes = random_boxes(rng, n, 50, 40)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        if ties:
            scores = (np.floor(scores * 4) / 4).astype(np.float32)
        if degenerate and n >= 6:
            boxes[1] = boxes[0]                       # an exact duplicate
            boxes[2, 2] = boxes[2, 0]                 # zero width
            boxes[3, 3] = boxes[3, 1]                 # zero height
            boxes[4] = boxes[3]                       # two identical zero-area boxes
            boxes[5] = np.float32([10, 10, 10, 10])   # a point
        t = float(np.float32(thr))
        keep = nms(torch.from_numpy(boxes), torch.from_numpy(scores), t)
        cases.append({"boxes": f32(boxes), "scores": f32(scores), "iou": t, "keep": keep.tolist()})
    print(json.dumps({"generator": "make_nms_golden.py, torch %s, torchvision %s" % (
        torch.__version__, torchvision.__version__), "cases": cases}, separators=(",", ":")))


if __name__ == "__main__":
    main()
