#!/usr/bin/env python3
"""Golden values for detector.Preprocess / the bilinear resize, computed by PyTorch.

Run with Debian's interpreter (python3-torch 1.13):
    /usr/bin/python3 detector/testdata/make_resize_golden.py > detector/testdata/resize_golden.json

"resize": random RGB uint8 images resized with
    torch.nn.functional.interpolate(x, size=(hr, wr), mode="bilinear", align_corners=False)
on 0..255 float32 values (x is [1, 3, h, w], RGB), output CHW.
"preprocess": the contract's whole preprocessing (docs/detector-contract.md), written here
independently of the Go code: scale, rounding half away from zero, channel order, resize
(skipped when the size is unchanged), mean and std.
"""
import json
import math

import numpy as np
import torch
import torch.nn.functional as F


def f32(values):
    # float32 values printed with enough digits to round-trip exactly
    return [float("%.9g" % v) for v in np.asarray(values, dtype=np.float32).ravel()]


def resize(img_hwc, hr, wr):
    x = torch.from_numpy(img_hwc.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
    return F.interpolate(x, size=(hr, wr), mode="bilinear", align_corners=False)[0]


def round_half_away(v):
    return int(math.floor(v + 0.5))  # v > 0 here


def preprocess(img_hwc, spec):
    h, w = img_hwc.shape[:2]
    scale = spec["shorter_side"] / min(w, h)
    if spec["longer_side_max"] > 0 and round_half_away(max(w, h) * scale) > spec["longer_side_max"]:
        scale = spec["longer_side_max"] / max(w, h)
    wr = max(1, round_half_away(w * scale))
    hr = max(1, round_half_away(h * scale))
    x = torch.from_numpy(img_hwc.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
    if spec["channel_order"] == "BGR":
        x = x[:, [2, 1, 0]].contiguous()
    if (wr, hr) != (w, h):
        x = F.interpolate(x, size=(hr, wr), mode="bilinear", align_corners=False)
    mean = torch.tensor(spec["pixel_means"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec["pixel_std"], dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - mean) / std
    return scale, wr, hr, x[0]


def main():
    rng = np.random.RandomState(20240611)
    out = {"resize": [], "preprocess": []}
    # (h, w, hr, wr): up, down, mixed, non-square, one axis unchanged, to and from 1 pixel,
    # non-integer ratios both ways.
    for h, w, hr, wr in [(5, 7, 11, 13), (9, 13, 4, 6), (6, 6, 6, 9), (8, 5, 3, 12),
                         (7, 9, 1, 1), (1, 1, 3, 5), (10, 10, 7, 7), (4, 12, 9, 2),
                         (16, 12, 37, 29), (31, 17, 10, 6), (3, 4, 3, 4), (2, 3, 5, 7)]:
        img = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        y = resize(img, hr, wr)
        out["resize"].append({"width": w, "height": h, "rgb": img.ravel().tolist(),
                              "resized_width": wr, "resized_height": hr, "chw": f32(y.numpy())})
    butd = {"channel_order": "BGR", "pixel_means": [102.9801, 115.9465, 122.7717],
            "pixel_std": [1.0, 1.0, 1.0]}
    cases = [
        (15, 20, dict(butd, shorter_side=12, longer_side_max=20)),   # shorter side rules: 16×12
        (10, 40, dict(butd, shorter_side=12, longer_side_max=20)),   # longer cap: 20×5
        (12, 17, dict(butd, shorter_side=12, longer_side_max=0)),    # unchanged: no resize
        (7, 9, {"channel_order": "RGB", "pixel_means": [123.675, 116.28, 103.53],
                "pixel_std": [58.395, 57.12, 57.375], "shorter_side": 11, "longer_side_max": 100}),
        (3, 50, dict(butd, shorter_side=6, longer_side_max=10)),     # extreme ratio: 10×1
        (13, 5, dict(butd, shorter_side=2, longer_side_max=30)),     # downscale 0.4 (5.2 → 5)
    ]
    for h, w, spec in cases:
        img = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        scale, wr, hr, y = preprocess(img, spec)
        out["preprocess"].append({"width": w, "height": h, "rgb": img.ravel().tolist(), "spec": spec,
                                  "scale": scale, "resized_width": wr, "resized_height": hr,
                                  "chw": f32(y.numpy())})
    out["generator"] = "make_resize_golden.py, torch %s" % torch.__version__
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
