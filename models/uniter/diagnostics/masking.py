"""Which MLM masking teaches the small UNITER to read colours and shapes from the regions?

    python3 -m uniter.diagnostics.masking MODE STEPS [--work DIR] [--regions all|confident|standardised]

A fresh hidden-128 x 4 model (the default's size, seed 0) trains on MLM alone, 64 captions per
step, AdamW at --lr (default 1e-3) constant, with MODE:

  mlm        BERT masking (pretrain.mask_tokens, 15%, 80/10/10)
  one        one token per caption, uniform
  content    one word per caption among colour, shape, size and relation words
  colour     the first colour word          shape    one shape word
  cs         one colour-or-shape word       cs-size / cs-rel   ... or a size / relation word
  alt        colour words and shape words in alternate batches
  catbatch   colour, shape, size, relation words, one group per batch in turn

--regions changes what the model sees of the images (training and probes alike): all (default);
confident, only the regions whose best class probability is at least 0.5 (at least one per image:
bottom-up-attention's minimum of 10 boxes pads small scenes with weak ones); standardised, the
features standardised per dimension with the training split's statistics.

Every --probe-every steps (default 250): the first colour (shape) word of 1,000 validation
captions is replaced by [MASK] and predicted with the caption's image ("image"), with the region
features zeroed ("zero") and with another image's regions ("other"). Reading the image shows as
"image" well above the other two.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data import PretrainDataset, collate
from ..pretrain import build_model, build_optimizer, forward_task, prepare_task, resolve_config
from .common import (DEFAULT_WORK, STUDY_CONFIG, WORD_GROUPS, group_ids, mask_one_of, masked_word_accuracy,
                     spread)

MODES = ("mlm", "one", "content", "colour", "shape", "cs", "cs-size", "cs-rel", "alt", "catbatch")
REGIONS = ("all", "confident", "standardised")


def maskable(mode: str, step: int, ids: torch.Tensor, text_mask: torch.Tensor, groups: dict) -> torch.Tensor:
    """``[B, T]`` bool: the positions MODE may mask at this step (one is drawn per caption).
    ``groups``: token id tensors of "colour", "shape", "size" and "relation"."""
    can = text_mask.bool() & (ids > 4)
    colour, shape, size, relation = (groups[k] for k in ("colour", "shape", "size", "relation"))
    if mode == "colour":
        hit = torch.isin(ids, colour)
        can = torch.zeros_like(can)
        can[torch.arange(len(ids)), hit.float().argmax(1)] = hit.any(1)
        return can
    allowed: Optional[torch.Tensor] = {
        "one": None, "content": torch.cat([colour, shape, size, relation]), "shape": shape,
        "cs": torch.cat([colour, shape]), "cs-size": torch.cat([colour, shape, size]),
        "cs-rel": torch.cat([colour, shape, relation]), "alt": colour if step % 2 else shape,
        "catbatch": (colour, shape, size, relation)[step % 4]}[mode]
    return can if allowed is None else can & torch.isin(ids, allowed)


def keep_confident(ds: PretrainDataset, threshold: float = 0.5) -> int:
    """Keeps, in place, each image's regions whose best non-background class probability is at
    least ``threshold`` (the most confident one when none is); returns the regions kept."""
    r = ds.regions
    conf = r.soft_labels.astype(np.float32)[:, 1:].max(1)
    rows, offs = [], [0]
    for i in range(r.num_images):
        a, b = int(r.offsets[i]), int(r.offsets[i + 1])
        k = [j for j in range(a, b) if conf[j] >= threshold] or [a + int(conf[a:b].argmax())]
        rows += k
        offs.append(len(rows))
    rows = np.array(rows)
    r.features, r.locations, r.soft_labels, r.boxes = r.features[rows], r.locations[rows], r.soft_labels[rows], r.boxes[rows]
    r.offsets = np.array(offs, dtype=np.int64)
    return len(rows)


def standardise(ds: PretrainDataset, mean: np.ndarray, std: np.ndarray) -> None:
    """The region features standardised per dimension, in place (kept float16)."""
    ds.regions.features = ((ds.regions.features.astype(np.float32) - mean) / std).astype(np.float16)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.masking", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=MODES, metavar="MODE")
    ap.add_argument("steps", type=int, metavar="STEPS")
    ap.add_argument("--work", default=DEFAULT_WORK, metavar="DIR",
                    help="train-shapes.sh's work folder: feat-train, feat-val (default %(default)s)")
    ap.add_argument("--regions", choices=REGIONS, default="all")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--probe-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tr = PretrainDataset(os.path.join(args.work, "feat-train"), max_text_len=128)
    va = PretrainDataset(os.path.join(args.work, "feat-val"), max_text_len=128, vocab=tr.vocab)
    if args.regions == "confident":
        kept = [keep_confident(d) for d in (tr, va)]
        print(f"confident regions: {kept[0]} train, {kept[1]} validation", flush=True)
    elif args.regions == "standardised":
        f = tr.regions.features.astype(np.float32)
        mean, std = f.mean(0), f.std(0) + 1e-3
        for d in (tr, va):
            standardise(d, mean, std)
    groups = {k: group_ids(tr.vocab.tokens, WORD_GROUPS[k]) for k in ("colour", "shape", "size", "relation")}
    model = build_model(resolve_config(dict(STUDY_CONFIG), tr, tr.vocab), 0)
    opt = build_optimizer(model, args.lr)
    gen = torch.Generator().manual_seed(0)
    mask_id = tr.vocab.special.mask

    def probe(idx, group, how):
        model.eval()
        return masked_word_accuracy(model, collate([va[int(c)] for c in idx], 0), group, mask_id, how)

    rng = np.random.default_rng(0)
    t0 = time.time()
    idx = spread(len(va))
    for step in range(1, args.steps + 1):
        model.train()
        b = collate([tr[int(c)] for c in rng.integers(len(tr), size=args.batch_size)], 0)
        if args.mode == "mlm":
            loss, _ = forward_task(model, "mlm", prepare_task("mlm", b, tr.vocab, gen, 0.15))
        else:
            can = maskable(args.mode, step, b["input_ids"], b["text_mask"], groups)
            ids, rows, pick, labels = mask_one_of(b["input_ids"], can, mask_id, gen)
            h, _, _ = model.uniter(ids, b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
            loss = F.cross_entropy(model.cls(h[rows, pick]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.probe_every == 0:
            row = "  ".join(f"{k} image {probe(idx, groups[k], 'image'):.3f} zero {probe(idx, groups[k], 'zeroed'):.3f} "
                            f"other {probe(idx, groups[k], 'other'):.3f}" for k in ("colour", "shape"))
            print(f"{args.mode} step {step} loss {loss.item():.3f} {row} ({time.time() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
