"""A training folder whose near misses are those of count captions only.

    python3 -m uniter.diagnostics.count_near_misses FEAT_DIR OUT_DIR

OUT_DIR links FEAT_DIR's regions, captions, false captions and vocabulary, and gets a truth.npz
with FEAT_DIR's truth and its near misses kept only on the rows of count captions ("two squares":
images with another number of squares, more or fewer). Fine-tuned on it with uniter.pretrain
--itm-near-negatives P, only count captions draw hard-negative candidates among near misses;
every other caption draws among all its false images.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Tuple

import numpy as np

LINKED = ("regions.npz", "captions.jsonl", "false_captions.jsonl", "vocab.txt")


def link(src: str, out: str, names) -> None:
    """Symbolic links in ``out`` to ``src``'s files (those that exist), left as they are when there."""
    os.makedirs(out, exist_ok=True)
    for f in names:
        dst = os.path.join(out, f)
        if os.path.exists(os.path.join(src, f)) and not os.path.lexists(dst):
            os.symlink(os.path.abspath(os.path.join(src, f)), dst)


def build(feat: str, out: str) -> Tuple[int, int]:
    """Writes OUT (see the module docstring); returns (count captions, near misses kept)."""
    with np.load(os.path.join(feat, "truth.npz")) as z:
        if "near" not in z.files:
            raise ValueError(f"{feat}/truth.npz has no near misses (uniter extract writes them)")
        truth, near = z["truth"], z["near"]
    with open(os.path.join(feat, "captions.jsonl"), encoding="utf-8") as f:
        ops = np.array([json.loads(line)["lf"]["op"] for line in f if line.strip()])
    link(feat, out, LINKED)
    near = near & (ops == "count")[:, None]
    np.savez(os.path.join(out, "truth.npz"), truth=truth, near=near)
    return int((ops == "count").sum()), int(near.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.count_near_misses", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("feat", metavar="FEAT_DIR", help="training features from uniter extract")
    ap.add_argument("out", metavar="OUT_DIR")
    args = ap.parse_args(argv)
    n, kept = build(args.feat, args.out)
    print(f"{n} count captions keep {kept} near misses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
