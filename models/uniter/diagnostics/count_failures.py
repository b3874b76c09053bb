"""Where do count captions lose image retrieval?

    python3 -m uniter.diagnostics.count_failures CKPT [--features DIR] [--split DIR]

Scores every count caption of a split ("two green triangles", "there are three stars"; default
test-100: --features from `uniter extract`, --split its annotations) against every image with the
PyTorch checkpoint (ITM match probability), ranks the images as `uniter eval` does, and for every
count caption whose top-ranked image is false reports how many objects matching the caption's
description that image holds, against the number the caption says. Then, over all count captions
and images, the mean match probability by (matching objects in the image - count said): a model
that reads "two squares" as "squares" scores images with more squares than said as high as the
exact count.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..data import PretrainDataset, collate
from .common import DEFAULT_WORK, load_model, matches


@torch.no_grad()
def count_scores(model, ds: PretrainDataset) -> np.ndarray:
    """[captions, images] ITM match probabilities, filled on the count captions' rows (0 elsewhere)."""
    scores = np.zeros((len(ds), ds.num_images), dtype=np.float32)
    for c in range(len(ds)):
        if ds.captions[c]["lf"]["op"] != "count":
            continue
        x = collate([ds.pair(c, i) for i in range(ds.num_images)])
        _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
        scores[c] = torch.softmax(model.itm_output(pooled), -1)[:, 1].numpy()
    return scores


def summarise(scores: np.ndarray, truth: np.ndarray, captions: Sequence[dict], images: Sequence[dict]) -> Dict:
    """R@1 of the count captions, their misses by (count said, matching objects in the top-ranked
    false image), and the mean match probability by (matching objects - count said)."""
    hits = n = 0
    wrong: collections.Counter = collections.Counter()
    diffs: Dict[int, List[float]] = collections.defaultdict(list)
    for c, cap in enumerate(captions):
        lf = cap["lf"]
        if lf["op"] != "count":
            continue
        n += 1
        have = [sum(matches(lf["obj"], o) for o in rec["objects"]) for rec in images]
        for i in range(len(images)):
            diffs[have[i] - lf["n"]].append(float(scores[c, i]))
        top = int(scores[c].argmax())
        if truth[c, top]:
            hits += 1
        else:
            wrong[(lf["n"], have[top])] += 1
    return {"captions": n, "r1": hits / n if n else float("nan"), "misses": dict(sorted(wrong.items())),
            "mean_p": {d: float(np.mean(v)) for d, v in sorted(diffs.items())},
            "pairs": {d: len(v) for d, v in sorted(diffs.items())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.count_failures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", metavar="CKPT", help="RUN/final.pt or RUN/ckpt/model_step_N.pt")
    ap.add_argument("--features", default=f"{DEFAULT_WORK}/feat-test-100", metavar="DIR",
                    help="the split's features with truth.npz (default %(default)s)")
    ap.add_argument("--split", default=f"{DEFAULT_WORK}/test-100", metavar="DIR",
                    help="the split's annotations.jsonl folder (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = PretrainDataset(args.features, max_text_len=128)
    if ds.truth is None:
        raise SystemExit(f"{args.features} has no truth.npz")
    model = load_model(args.checkpoint, ds)
    with open(os.path.join(args.split, "annotations.jsonl"), encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    r = summarise(count_scores(model, ds), ds.truth, ds.captions, recs)
    print(f"{args.checkpoint}: {r['captions']} count captions, R@1 {r['r1']:.3f}")
    print("misses by (count said, matching objects in the top-ranked false image):")
    for (said, have), k in r["misses"].items():
        print(f"  said {said}, image has {have}: {k}")
    print("mean match probability by (matching objects in the image − count said):")
    for d, p in r["mean_p"].items():
        print(f"  {d:+d}: {p:.3f} over {r['pairs'][d]} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
