#!/usr/bin/env python3
"""Tiny WebP files for the decoder tests (Go has no WebP encoder), and PIL's (libwebp's)
decoding of the lossy ones.

    /usr/bin/python3 detector/testdata/make_webp_fixtures.py   # writes into detector/testdata

tiny_lossless.webp: 4×3 RGB with known pixels (the test checks them exactly).
tiny_lossy.webp:    16×12 VP8 of a smooth gradient.
tiny_alpha.webp:    8×8 lossy flat colour with an alpha channel (VP8X + ALPH chunks).
webp_pil.json:      PIL's RGB decoding of the two lossy files (row-major, packed RGB).
"""
import json
import os

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
pixels = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
          (10, 20, 30), (40, 50, 60), (70, 80, 90), (0, 0, 0),
          (200, 100, 50), (1, 2, 3), (128, 128, 128), (250, 5, 125)]
im = Image.new("RGB", (4, 3))
im.putdata(pixels)
im.save(os.path.join(here, "tiny_lossless.webp"), lossless=True)

grad = Image.new("RGB", (16, 12))
grad.putdata([(16 * x, 255 - 20 * y, 40 + 5 * x + 5 * y) for y in range(12) for x in range(16)])
grad.save(os.path.join(here, "tiny_lossy.webp"), quality=95)
Image.new("RGBA", (8, 8), (30, 90, 200, 128)).save(os.path.join(here, "tiny_alpha.webp"), quality=95)

ref = {}
for name in ["tiny_lossy.webp", "tiny_alpha.webp"]:
    d = Image.open(os.path.join(here, name)).convert("RGB")
    ref[name] = {"width": d.width, "height": d.height, "rgb": [v for p in d.getdata() for v in p]}
with open(os.path.join(here, "webp_pil.json"), "w") as f:
    json.dump(ref, f, separators=(",", ":"))
