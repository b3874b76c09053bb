#!/usr/bin/env python3
"""Makes the tiny random-weight detector of the fixture bundle, its test images and goldens
(docs/detector-contract.md):

    cd /work/main && /usr/bin/python3 models/make_detector_fixture.py

writes, under --out (testdata):
    bundles/tiny-random/detector.onnx, attribute_labels.txt, and the manifest's graphs.detector
        entry and "detector" section (the rest of manifest.json is kept as it is; run
        models/make_fixture.py first if the bundle is missing, and this again after it, since
        make_fixture.py rewrites manifest.json)
    images/*.png          small synthetic pictures (coloured shapes on a textured background)
    golden/detector-tiny-random.json
        per image: original and resized sizes, scale, statistics of the preprocessed tensor, the
        raw graph outputs computed by PyTorch, and the regions selected from them (by the
        reference selection in uniter/detector.py, cross-checked against torchvision.ops.nms)
        under several selection settings; plus hand-built selection cases with hand-written
        expectations. See GOLDEN_LAYOUT below for the field names.

Deterministic for a given --seed. Float32 values are written in their shortest round-trip
decimal form, so parsing one and converting it to float32 gives back the exact value.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter.detector import (BUTD_PREPROCESS, BUTD_SELECTION, Detector, DetectorConfig,  # noqa: E402
                             load_rgb, nms_reference, preprocess, select_regions)
from uniter.detector_export import DETECTOR_OPSET, NO_ATTRIBUTE, write_detector  # noqa: E402

GOLDEN_LAYOUT = """
{
  "bundle": "bundles/tiny-random", "graph": "detector", "generator", "seed", "opset",
  "detector_config": {...DetectorConfig fields...},
  "preprocess": {...as in the manifest...}, "background_index": 0,
  "images": [{
    "file": "images/NAME.png" (relative to testdata), "width", "height" (original),
    "scale", "resized_width", "resized_height", "resized" (false when Wr == W and Hr == H),
    "objects": [{"label", "attribute", "box": [x1, y1, x2, y2]}]  (what was drawn; information),
    "input": {"shape": [1, 3, Hr, Wr], "sha256" (of the float32 little-endian CHW bytes),
              "sum", "mean", "min", "max" (float64 over all values),
              "channel_sums": [3], "samples": [[c, y, x, value], ...]},
    "outputs": {"proposals": P, "boxes": [P][4], "class_probs": [P][C], "features": [P][D],
                "attr_probs": [P][A]},                       (PyTorch on the tensor above)
    "selections": [{
      "name", "selection": {"nms_iou", "min_confidence", "min_boxes", "max_boxes"},
      "branch": "min_boxes" | "threshold" | "max_boxes", "num_above_threshold",
      "proposal_confidences": [P] (conf of every proposal after step 1),
      "regions": {"indices": [n], "boxes": [n][4] (original pixels), "confidences": [n],
                  "soft_labels": [n][C], "features": [n][D], "attribute_probs": [n][A],
                  "locations": [n][7]}}]}],
  "selection_cases": [{"name", "description", "boxes": [P][4] (resized pixels),
      "class_probs": [P][C], "features": [P][1], "scale", "width", "height",
      "selection": {...}, "background_index": 0,
      "expected": {"indices", "confidences", "boxes", "locations", "features", "branch",
                   "proposal_confidences"}}]
}
"""

ATTRIBUTES = [NO_ATTRIBUTE, "red", "green", "blue", "yellow", "orange", "purple", "white",
              "black"]
COLOURS = {"red": (220, 30, 30), "green": (40, 170, 60), "blue": (40, 70, 220),
           "yellow": (240, 220, 40), "orange": (245, 140, 20), "purple": (140, 50, 170),
           "white": (250, 250, 250), "black": (15, 15, 15)}
PREPROCESS = dict(BUTD_PREPROCESS, shorter_side=128, longer_side_max=192)
SELECTION = dict(BUTD_SELECTION)          # 0.3 / 0.2 / 10 / 100
# Selection settings recorded in the golden for every image. Random weights give class
# probabilities below 0.2, so "fixture" (the manifest's own) takes the min_boxes branch, "low"
# the max_boxes branch and "mid" (another NMS IoU too) the threshold branch.
SELECTIONS = [
    ("fixture", SELECTION),
    ("low", {"nms_iou": 0.3, "min_confidence": 0.05, "min_boxes": 2, "max_boxes": 20}),
    ("mid", {"nms_iou": 0.5, "min_confidence": 0.15, "min_boxes": 2, "max_boxes": 100}),
]
DETECTOR = dict(num_classes=11, num_attributes=len(ATTRIBUTES), feature_dim=64,
                backbone_channels=(8, 16, 16, 16, 16, 16), backbone_strides=(2, 2, 2, 2, 1, 1),
                anchor_sizes=(32, 64, 128), aspect_ratios=(0.5, 1.0, 2.0),
                rpn_pre_nms_top_n_test=600, rpn_post_nms_top_n_test=100)
# (name, width, height, background style, shapes: (label, colour, cx, cy, size) in 0..1 units).
IMAGES = [
    ("shapes-160x128", 160, 128, 0, [("circle", "red", 0.28, 0.35, 0.30),
                                     ("square", "blue", 0.70, 0.60, 0.32),
                                     ("triangle", "yellow", 0.30, 0.75, 0.28)]),
    # portrait, upscaled (shorter side 96 → 128)
    ("shapes-96x120", 96, 120, 1, [("star", "orange", 0.50, 0.30, 0.45),
                                   ("diamond", "green", 0.45, 0.75, 0.35)]),
    # wide, longer side capped (300 → 192)
    ("shapes-300x140", 300, 140, 2, [("hexagon", "purple", 0.15, 0.50, 0.45),
                                     ("cross", "white", 0.45, 0.40, 0.40),
                                     ("circle", "black", 0.72, 0.60, 0.30),
                                     ("square", "green", 0.90, 0.30, 0.25)]),
    # portrait, longer side capped (200 → 192)
    ("shapes-96x200", 96, 200, 3, [("triangle", "blue", 0.50, 0.20, 0.60),
                                   ("circle", "yellow", 0.40, 0.55, 0.45),
                                   ("square", "red", 0.55, 0.85, 0.40)]),
]


# ---------------------------------------------------------------------- images

def _shape_points(label, cx, cy, r):
    def poly(n, rot, rr=None):
        pts = []
        for k in range(n):
            a = rot + 2 * math.pi * k / n
            rad = r if rr is None else rr[k % len(rr)]
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if label == "triangle":
        return poly(3, -math.pi / 2)
    if label == "diamond":
        return poly(4, -math.pi / 2)
    if label == "hexagon":
        return poly(6, 0)
    if label == "star":
        return poly(10, -math.pi / 2, [r, r * 0.45])
    if label == "cross":
        t = r * 0.35
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
                (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
                (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t)]
    raise ValueError(label)


def draw_image(w, h, style, shapes):
    """A textured background (gradient + stripes or checks, smooth enough for PNG) with shapes."""
    from PIL import Image, ImageDraw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.array([[150, 170, 190], [190, 175, 140], [120, 150, 120], [170, 160, 175]][style],
                    dtype=np.float32)
    grad = (xx / w * 40 - yy / h * 30)[..., None]
    if style % 2 == 0:
        tex = ((((xx + yy) // 6) % 2) * 18)[..., None]                   # diagonal stripes
    else:
        tex = (((xx // 8 + yy // 8) % 2) * 14)[..., None]                # checks
    img = np.clip(base + grad + tex * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    d = ImageDraw.Draw(im)
    objects = []
    s = min(w, h)
    for label, colour, fx, fy, fs in shapes:
        cx, cy, r = fx * w, fy * h, fs * s / 2
        fill = COLOURS[colour]
        if label == "circle":
            box = [cx - r, cy - r, cx + r, cy + r]
            d.ellipse(box, fill=fill)
        elif label == "square":
            box = [cx - r, cy - r, cx + r, cy + r]
            d.rectangle(box, fill=fill)
        else:
            pts = _shape_points(label, cx, cy, r)
            d.polygon(pts, fill=fill)
            box = [min(p[0] for p in pts), min(p[1] for p in pts),
                   max(p[0] for p in pts), max(p[1] for p in pts)]
        box = [round(min(max(v, 0), lim), 2) for v, lim in zip(box, (w, h, w, h))]
        objects.append({"label": label, "attribute": colour, "box": box})
    return im, objects


# ---------------------------------------------------------------------- JSON values

def f32(a):
    """float32 array → nested lists of Python floats in shortest round-trip float32 form."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return float(str(a[()]))
    flat = [float(str(v)) for v in a.ravel()]
    if a.ndim == 1:
        return flat
    return np.array(flat, dtype=object).reshape(a.shape).tolist()


def f64(v, digits=12):
    if isinstance(v, (list, tuple, np.ndarray)):
        return [f64(x, digits) for x in v]
    return float(f"{float(v):.{digits}g}")


# ---------------------------------------------------------------------- selection golden

def check_against_torchvision(boxes, probs, nms_iou, background_index=0):
    """Cross-checks nms_reference with torchvision.ops.nms class by class. torchvision does not
    define the order of equal scores, so kept sets are compared as multisets of
    (score, box) — identical within tied groups — and tied classes are counted."""
    from torchvision.ops import nms
    b = torch.from_numpy(np.asarray(boxes, dtype=np.float32))
    s = np.asarray(probs, dtype=np.float32)
    tied = 0
    for c in range(s.shape[1]):
        if c == background_index:
            continue
        mine, _ = nms_reference(b.numpy(), s[:, c], nms_iou)
        tv = nms(b, torch.from_numpy(s[:, c].copy()), nms_iou).tolist()
        if len(np.unique(s[:, c])) < len(s):
            tied += 1
        key = lambda i: (float(s[i, c]), tuple(b[i].tolist()))  # noqa: E731
        assert sorted(map(key, mine)) == sorted(map(key, tv)), f"class {c}: NMS differs"
    return tied


def selection_record(name, sel, boxes, probs, feats, attrs, scale, w, h):
    r = select_regions(boxes, probs, feats, attrs, scale=scale, width=w, height=h,
                       selection=sel)
    # No IoU within 1e-5 of the threshold: float32 and float64 IoU make the same decisions.
    assert r["iou_margin"] > 1e-5, f"{name}: an IoU is {r['iou_margin']:.2e} from nms_iou"
    check_against_torchvision(boxes, probs, sel["nms_iou"])
    conf = r["proposal_confidences"]
    nz = conf[conf > 0]
    # Equal non-zero confidences only between proposals with identical class probabilities
    # (the same box, or degenerate boxes outside the feature map that pool to the same
    # features): structural ties, ordered by index as the contract says, never coincidences
    # that float rounding in another implementation could reorder.
    vals, counts = np.unique(nz, return_counts=True)
    for v in vals[counts > 1]:
        rows = np.flatnonzero(conf == v)
        assert all(np.array_equal(probs[rows[0]], probs[i]) for i in rows), f"{name}: conf tie"
    return {
        "name": name,
        "selection": dict(sel),
        "branch": r["branch"],
        "num_above_threshold": r["num_above_threshold"],
        "proposal_confidences": f32(conf),
        "regions": {
            "indices": r["indices"],
            "boxes": f64(r["boxes"]),
            "confidences": f32(r["confidences"]),
            "soft_labels": f32(r["soft_labels"]),
            "features": f32(r["features"]),
            "attribute_probs": f32(r["attribute_probs"]),
            "locations": f64(r["locations"]),
        },
    }


# Hand-built selection cases with hand-written expectations (C = 3: background + 2 classes).
SELECTION_CASES = [
    {
        "name": "fewer_than_min_boxes",
        "description": "one proposal above min_confidence, min_boxes 3: the first 3 by "
                       "confidence are kept; the background column is ignored",
        "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]],
        "class_probs": [[0.5, 0.3, 0.2], [0.8, 0.1, 0.1], [0.7, 0.05, 0.25],
                        [0.9, 0.06, 0.04]],
        "scale": 1.0, "width": 80, "height": 20,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.28, "min_boxes": 3, "max_boxes": 10},
        "expected": {"indices": [0, 2, 1], "confidences": [0.3, 0.25, 0.1],
                     "proposal_confidences": [0.3, 0.1, 0.25, 0.06], "branch": "min_boxes"},
    },
    {
        "name": "more_than_max_boxes",
        "description": "five separate proposals above min_confidence, max_boxes 3",
        "boxes": [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10],
                  [80, 0, 90, 10]],
        "class_probs": [[0.1, 0.5, 0.4], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25],
                        [0.05, 0.45, 0.5]],
        "scale": 1.0, "width": 100, "height": 20,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 1, "max_boxes": 3},
        "expected": {"indices": [2, 1, 0], "confidences": [0.7, 0.6, 0.5],
                     "proposal_confidences": [0.5, 0.6, 0.7, 0.35, 0.5], "branch": "max_boxes"},
    },
    {
        "name": "ties",
        "description": "proposals 0 and 2 are the same box with the same scores: NMS keeps "
                       "the lower index in every class, so 2 ends at confidence 0; 0 and 1 "
                       "tie on confidence and sort by index; min_boxes fills up with 3, then 2",
        "boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10], [80, 0, 90, 10]],
        "class_probs": [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25],
                        [0.9, 0.05, 0.05]],
        "scale": 1.0, "width": 100, "height": 100,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 4, "max_boxes": 10},
        "expected": {"indices": [0, 1, 3, 2], "confidences": [0.25, 0.25, 0.05, 0.0],
                     "proposal_confidences": [0.25, 0.25, 0.0, 0.05], "branch": "min_boxes"},
    },
    {
        "name": "cross_class_suppression",
        "description": "proposals 0 and 1 overlap (IoU 0.818): class 1 keeps 0 and suppresses "
                       "1 (its 0.5 does not count), class 2 keeps 1 (0.3) and suppresses 0; "
                       "proposal 2's background 0.9 is ignored",
        "boxes": [[0, 0, 10, 10], [1, 0, 11, 10], [100, 100, 110, 110]],
        "class_probs": [[0.2, 0.6, 0.2], [0.2, 0.5, 0.3], [0.9, 0.05, 0.05]],
        "scale": 1.0, "width": 120, "height": 120,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 1, "max_boxes": 10},
        "expected": {"indices": [0, 1], "confidences": [0.6, 0.3],
                     "proposal_confidences": [0.6, 0.3, 0.05], "branch": "threshold"},
    },
    {
        "name": "iou_equal_to_threshold",
        "description": "IoU exactly 0.5 = nms_iou is not suppressed (suppress only when >)",
        "boxes": [[0, 0, 10, 10], [0, 0, 10, 5]],
        "class_probs": [[0.1, 0.6, 0.3], [0.1, 0.5, 0.4]],
        "scale": 1.0, "width": 20, "height": 20,
        "selection": {"nms_iou": 0.5, "min_confidence": 0.2, "min_boxes": 0, "max_boxes": 10},
        "expected": {"indices": [0, 1], "confidences": [0.6, 0.5],
                     "proposal_confidences": [0.6, 0.5], "branch": "threshold"},
    },
    {
        "name": "fewer_proposals_than_min_boxes",
        "description": "P = 2 < min_boxes = 10: all proposals, sorted by confidence",
        "boxes": [[0, 0, 10, 10], [30, 30, 40, 40]],
        "class_probs": [[0.9, 0.05, 0.05], [0.8, 0.15, 0.05]],
        "scale": 1.0, "width": 50, "height": 50,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 10, "max_boxes": 100},
        "expected": {"indices": [1, 0], "confidences": [0.15, 0.05],
                     "proposal_confidences": [0.05, 0.15], "branch": "min_boxes"},
    },
    {
        "name": "mapping_clamp_degenerate",
        "description": "scale 0.5 (W 101, H 50 → 51 × 25): boxes map back ×2 and clamp to the "
                       "original (102 → 101); a zero-width box is kept and located by the "
                       "same formula",
        "boxes": [[10, 5, 51, 25], [0, 0, 0, 20]],
        "class_probs": [[0.2, 0.7, 0.1], [0.3, 0.1, 0.6]],
        "scale": 0.5, "width": 101, "height": 50,
        "selection": {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 2, "max_boxes": 10},
        "expected": {"indices": [0, 1], "confidences": [0.7, 0.6],
                     "proposal_confidences": [0.7, 0.6], "branch": "threshold",
                     "boxes": [[20, 10, 101, 50], [0, 0, 0, 40]],
                     "locations": [[20 / 101, 10 / 50, 1.0, 1.0, 81 / 101, 40 / 50,
                                    81 / 101 * 40 / 50],
                                   [0.0, 0.0, 0.0, 0.8, 0.0, 0.8, 0.0]]},
    },
]


def run_selection_case(case):
    b = np.asarray(case["boxes"], dtype=np.float32)
    feats = np.arange(len(b), dtype=np.float32)[:, None]
    return select_regions(b, np.asarray(case["class_probs"], dtype=np.float32), feats,
                          scale=case["scale"], width=case["width"], height=case["height"],
                          selection=case["selection"])


def check_selection_case(case, r):
    exp = case["expected"]
    assert r["indices"] == exp["indices"], (case["name"], r["indices"])
    assert r["branch"] == exp["branch"], (case["name"], r["branch"])
    np.testing.assert_allclose(r["confidences"], exp["confidences"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(r["proposal_confidences"], exp["proposal_confidences"], atol=1e-7)
    if "boxes" in exp:
        np.testing.assert_allclose(r["boxes"], exp["boxes"], atol=1e-6)
    if "locations" in exp:
        np.testing.assert_allclose(r["locations"], exp["locations"], atol=1e-9)


def case_record(case):
    r = run_selection_case(case)
    check_selection_case(case, r)
    b = np.asarray(case["boxes"], dtype=np.float32)
    return {
        "name": case["name"], "description": case["description"],
        "boxes": f32(b), "class_probs": f32(case["class_probs"]),
        "features": f32(np.arange(len(b), dtype=np.float32)[:, None]),
        "scale": case["scale"], "width": case["width"], "height": case["height"],
        "selection": case["selection"], "background_index": 0,
        "expected": {"indices": r["indices"], "branch": r["branch"],
                     "confidences": f32(r["confidences"]),
                     "proposal_confidences": f32(r["proposal_confidences"]),
                     "boxes": f64(r["boxes"]), "locations": f64(r["locations"]),
                     "features": f32(r["features"])},
    }


# ---------------------------------------------------------------------- main

def input_stats(x: torch.Tensor, g: np.random.Generator):
    a = x.detach().numpy().astype(np.float32)
    _, _, h, w = a.shape
    pts = [(0, 0, 0), (1, h - 1, w - 1), (2, h // 2, w // 2), (0, h - 1, 0), (2, 0, w - 1)]
    pts += [(int(g.integers(3)), int(g.integers(h)), int(g.integers(w))) for _ in range(11)]
    return {
        "shape": list(a.shape),
        "sha256": hashlib.sha256(a.astype("<f4").tobytes()).hexdigest(),
        "sum": f64(a.astype(np.float64).sum()),
        "mean": f64(a.astype(np.float64).mean()),
        "min": f32(a.min()), "max": f32(a.max()),
        "channel_sums": f64(a.astype(np.float64).sum(axis=(0, 2, 3)).tolist()),
        "samples": [[c, y, x, f32(a[0, c, y, x])] for c, y, x in pts],
    }


def make_detector(seed: int) -> Detector:
    torch.manual_seed(seed)
    return Detector(DetectorConfig(**DETECTOR)).init_weights(seed).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="testdata", help="testdata root")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(2)  # convolutional work: fastest with 2 torch threads here

    bundle = os.path.join(args.out, "bundles", "tiny-random")
    if not os.path.exists(os.path.join(bundle, "manifest.json")):
        sys.exit(f"{bundle}/manifest.json is missing: run models/make_fixture.py first")
    model = make_detector(args.seed)
    with open(os.path.join(bundle, "region_labels.txt"), encoding="utf-8") as f:
        labels = f.read().splitlines()
    manifest = write_detector(model, bundle, preprocess=PREPROCESS, selection=SELECTION,
                              labels=labels, attributes=ATTRIBUTES)
    sec = manifest["detector"]

    img_dir = os.path.join(args.out, "images")
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    golden = {"bundle": "bundles/tiny-random", "graph": "detector",
              "generator": "models/make_detector_fixture.py", "seed": args.seed,
              "opset": DETECTOR_OPSET, "detector_config": model.config.to_dict(),
              "preprocess": sec["preprocess"], "background_index": sec["background_index"],
              "images": [], "selection_cases": [case_record(c) for c in SELECTION_CASES]}
    branches = set()
    for name, w, h, style, shapes in IMAGES:
        im, objects = draw_image(w, h, style, shapes)
        rel = f"images/{name}.png"
        path = os.path.join(args.out, rel)
        im.save(path, optimize=True)
        rgb = load_rgb(path)                      # decode what was written, as Go will
        assert rgb.size == (w, h)
        x, scale, wr, hr = preprocess(rgb, PREPROCESS)
        with torch.no_grad():
            boxes, probs, feats, attrs = (t.numpy() for t in model(x))
        P = len(boxes)
        entry = {"file": rel, "width": w, "height": h, "scale": scale,
                 "resized_width": wr, "resized_height": hr, "resized": (wr, hr) != (w, h),
                 "objects": objects, "input": input_stats(x, rng),
                 "outputs": {"proposals": P, "boxes": f32(boxes), "class_probs": f32(probs),
                             "features": f32(feats), "attr_probs": f32(attrs)},
                 "selections": []}
        for sname, sel in SELECTIONS:
            rec = selection_record(sname, sel, boxes, probs, feats, attrs, scale, w, h)
            entry["selections"].append(rec)
            branches.add(rec["branch"])
            print(f"{name}: {w}x{h} → {wr}x{hr} (scale {scale:.4f}), P={P}, {sname}: "
                  f"{rec['branch']} ({rec['num_above_threshold']} above, "
                  f"{len(rec['regions']['indices'])} kept)")
        golden["images"].append(entry)
    assert branches == {"min_boxes", "threshold", "max_boxes"}, branches

    gdir = os.path.join(args.out, "golden")
    os.makedirs(gdir, exist_ok=True)
    gpath = os.path.join(gdir, "detector-tiny-random.json")
    with open(gpath, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    sizes = sum(os.path.getsize(os.path.join(img_dir, f"{n[0]}.png")) for n in IMAGES)
    print(f"wrote {bundle}/detector.onnx, {img_dir} ({sizes} bytes), {gpath} "
          f"({os.path.getsize(gpath)} bytes)")


if __name__ == "__main__":
    main()
