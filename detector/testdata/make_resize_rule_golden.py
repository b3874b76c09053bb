#!/usr/bin/env python3
"""Golden resized sizes for both resize rules (docs/detector-contract.md, Preprocessing step 2),
computed by the Python golden side (models/uniter/detector.py resized_size), for
detector.ResizeScale's cross-check (preprocess_test.go, TestResizeRulesMatchPython).

Run from the repository root with Debian's interpreter:
    PYTHONPATH=models /usr/bin/python3 detector/testdata/make_resize_rule_golden.py \\
        > detector/testdata/resize_rule_golden.json

"cases": {rule: [[w, h, shorter_side, longer_side_max, scale, wr, hr], ...]} for both rules, at:
  - every size in 1..2000 × 1..2000 whose resized size differs between the two rules at
    600 / 1000 (the .5 ties of the capped branch);
  - 100 sizes where the cap test itself goes the other way (unrounded vs rounded longer side:
    the scale differs by more than float noise, e.g. 1999×1199);
  - random sizes up to 20000 px under several (shorter_side, longer_side_max) pairs.
"digests": per rule, the SHA-256 over w = 1..N, h = 1..N (h fastest) of wr and hr as
little-endian uint32 and the scale's float64 bits, little-endian, at 600 / 1000 (N = "range").
"""
import hashlib
import json
import random
import struct

from uniter.detector import BUTD_PREPROCESS, resized_size

RULES = ("shorter_side", "detectron2")
RANGE = 2000


def spec(short, long, rule):
    return dict(BUTD_PREPROCESS, shorter_side=short, longer_side_max=long, resize_rule=rule)


def case(w, h, short, long, rule):
    scale, wr, hr = resized_size(w, h, spec(short, long, rule))
    return [w, h, short, long, scale, wr, hr]


def main():
    digests = {}
    differ = []
    scale_only = []
    by_rule = {r: spec(600, 1000, r) for r in RULES}
    sums = {r: hashlib.sha256() for r in RULES}
    row = struct.Struct("<IId")
    for w in range(1, RANGE + 1):
        bufs = {r: bytearray() for r in RULES}
        for h in range(1, RANGE + 1):
            got = {}
            for r in RULES:
                scale, wr, hr = resized_size(w, h, by_rule[r])
                bufs[r] += row.pack(wr, hr, scale)
                got[r] = (scale, wr, hr)
            a, b = got["shorter_side"], got["detectron2"]
            if a[1:] != b[1:]:
                differ.append((w, h))
            elif a[0] != b[0] and abs(a[0] - b[0]) > 1e-6 * a[0]:
                scale_only.append((w, h))  # the cap test itself went the other way
        for r in RULES:
            sums[r].update(bufs[r])
    for r in RULES:
        digests[r] = sums[r].hexdigest()

    sizes = [(w, h, 600, 1000) for w, h in differ]
    rng = random.Random(20240611)
    sizes += [(w, h, 600, 1000) for w, h in rng.sample(scale_only, min(100, len(scale_only)))]
    for short, long in [(600, 1000), (128, 192), (800, 1333), (5, 7), (600, 600), (1, 1000)]:
        for _ in range(30):
            w = rng.choice([rng.randint(1, 50), rng.randint(1, 2000), rng.randint(1, 20000)])
            h = rng.choice([rng.randint(1, 50), rng.randint(1, 2000), rng.randint(1, 20000)])
            sizes.append((w, h, short, long))
    cases = {r: [case(*s, r) for s in sizes] for r in RULES}
    out = {"generator": "make_resize_rule_golden.py (uniter.detector.resized_size)",
           "range": RANGE, "digests": digests, "differing_sizes": len(differ),
           "scale_only_sizes": len(scale_only),
           "cases": cases}
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
