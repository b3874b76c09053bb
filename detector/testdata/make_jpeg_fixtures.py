#!/usr/bin/env python3
"""JPEG fixtures and PIL's (libjpeg-turbo's) decoding of them, for the decoder parity tests.

    /usr/bin/python3 detector/testdata/make_jpeg_fixtures.py   # writes into detector/testdata

blocky_<s>.jpg:  45×29 (odd sizes) of flat 16×16 blocks in random colours, quality 100, chroma
                 subsampling s. Flat blocks have no AC coefficients, so every decoder's IDCT gives
                 the same planes and Go must match libjpeg exactly: this isolates chroma
                 upsampling and the YCbCr→RGB conversion.
narrow_<s>.jpg:  4×37 blocky (coded chroma width ≤ 2: libjpeg replicates instead of interpolating).
photo_420.jpg:   61×47 smooth gradients plus noise, quality 90 (IDCT differences show here).
<name>.pil.png:  PIL's decoding, convert("RGB").
"""
import os

import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.RandomState(5)
SUB = {"444": 0, "422": 1, "420": 2}


def blocky(w, h):
    colours = rng.randint(0, 256, size=((h + 15) // 16, (w + 15) // 16, 3)).astype(np.uint8)
    return np.repeat(np.repeat(colours, 16, 0), 16, 1)[:h, :w]


def save(name, arr, **kw):
    path = os.path.join(here, name)
    Image.fromarray(arr).save(path, **kw)
    Image.open(path).convert("RGB").save(path[:-4] + ".pil.png")


for s, code in SUB.items():
    save("blocky_%s.jpg" % s, blocky(45, 29), quality=100, subsampling=code)
save("narrow_420.jpg", blocky(4, 37), quality=100, subsampling=2)
save("narrow_422.jpg", blocky(3, 20), quality=100, subsampling=1)
yy, xx = np.mgrid[0:47, 0:61]
photo = np.stack([40 + 3 * xx, 220 - 4 * yy, 100 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1)
photo = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
save("photo_420.jpg", photo, quality=90, subsampling=2)
