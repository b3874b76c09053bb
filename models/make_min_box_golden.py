#!/usr/bin/env python3
"""Golden for the min_box_size selection key through the serving pipeline:

    cd /work/main && /usr/bin/python3 models/make_min_box_golden.py

For every image of testdata/golden/detector-tiny-random.json, the reference selection
(uniter/detector.py select_regions) of the recorded PyTorch graph outputs with one of the
golden's selections plus a min_box_size in original-image pixels (the first of CANDIDATE_SIZES
and selection that tests the key: see build), written to
testdata/golden/detector-min-box-size.json. The Go test (models/detector_golden_test.go) runs
the bundle with that override through ONNX Runtime and must select the same proposals. No
proposal side is within MARGIN pixels of the threshold, so ONNX Runtime's ~1e-5 px differences
from PyTorch cannot flip a decision; and the filter must change each image's selection, or the
test would not test it (on at least one image), and so must forgetting the image's scale.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter.detector import select_regions  # noqa: E402

CANDIDATE_SIZES = [float(v) for v in np.arange(4, 20.5, 0.5)]
MARGIN = 0.25

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "golden")
g = json.load(open(os.path.join(root, "detector-tiny-random.json")))
SELECTIONS = {s["name"]: s["selection"] for s in g["images"][0]["selections"]}


def build(name, size):
    """The golden for one min_box_size, or None when it would not test the conversion: some
    side within MARGIN of the threshold, or no image where the filter changes the selection, or
    none where forgetting the scale (the size taken as resized pixels) would."""
    fixture = SELECTIONS[name]
    sel = dict(fixture, min_box_size=size)
    images, changed, scale_matters = [], False, False
    for im in g["images"]:
        o = im["outputs"]
        boxes = np.asarray(o["boxes"], np.float32)
        probs = np.asarray(o["class_probs"], np.float32)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        side = np.float32(size) * np.float32(im["scale"])
        margin = float(np.abs(sides - side).min())
        if margin <= MARGIN * im["scale"]:
            return None
        kw = dict(scale=im["scale"], width=im["width"], height=im["height"],
                  background_index=g["background_index"])
        r = select_regions(boxes, probs, selection=sel, **kw)
        plain = select_regions(boxes, probs, selection=fixture, **kw)
        unscaled = select_regions(boxes, probs, selection=dict(sel, min_box_size=size / im["scale"]), **kw)
        assert all(sides[i] >= side for i in r["indices"])
        changed |= r["indices"] != plain["indices"]
        scale_matters |= r["indices"] != unscaled["indices"]
        images.append({"file": im["file"], "indices": r["indices"],
                       "dropped": sorted(int(i) for i in np.flatnonzero(sides < side)),
                       "changed": r["indices"] != plain["indices"], "margin_pixels": margin})
    if not (changed and scale_matters):
        return None
    return {"generator": "models/make_min_box_golden.py", "base_selection": name, "selection": sel,
            "images": images}


out = next(filter(None, (build(n, z) for n in SELECTIONS for z in CANDIDATE_SIZES)))
with open(os.path.join(root, "detector-min-box-size.json"), "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", os.path.join(root, "detector-min-box-size.json"), "min_box_size", out["selection"]["min_box_size"],
      [(i["file"], len(i["dropped"]), i["changed"]) for i in out["images"]])
