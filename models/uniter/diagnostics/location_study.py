"""Can the small UNITER learn to read region locations at all? MLM on size or relation words.

    python3 -m uniter.diagnostics.location_study MODE STEPS [--init CKPT] [--work DIR] [--save PATH]

A hidden-128 x 4 model (the default's size; fresh, seed 0, or INIT's weights) trains on MLM alone,
64 captions per step, AdamW lr 1e-3 constant, masking in every caption one word of MODE's group:

  size       small / large (needs the object's box size: w/W, h/H, area in the 7-d location)
  relation   left / right / above / below (needs two objects' positions)
  colour     the colour words (the control: read from the region features)
  count      two / three / four (needs the number of regions of a kind)

MODE may end in a variant, to test why the location is not read (not UNITER):
  +noln      no LayerNorm after pos_linear (the 7-d location enters linearly)
  +x10       the 7-d location multiplied by 10 before pos_linear (same information, larger scale)
  +uniform   (size) train only on captions of images whose objects all have the same size, so
             that the sizes of all regions, averaged, already tell the answer (a first step that
             needs no binding); +uniformN: only for the first N steps, then every caption
  +twoobj    (relation) the same with images of exactly two objects; +twoobjN likewise

Every --probe-every steps (and at step 0), the first word of the group in 1,000 validation
captions is masked and predicted with the image as is ("true"), with the locations permuted among
each image's regions ("permuted": features keep a wrong box) and with the region features zeroed
(locations kept); the same on the validation captions of the variant's images. Reading locations
shows as "true" well above "permuted". STEPS 0 probes a checkpoint (--init) without training.
With --save PATH the trained model is written there (official layout, as uniter.pretrain writes
it), so that ITM fine-tuning can start from it.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import PretrainDataset, collate
from ..model import load_checkpoint
from ..pretrain import build_model, build_optimizer, resolve_config, save_checkpoint
from .common import (DEFAULT_WORK, STUDY_CONFIG, WORD_GROUPS, group_ids, mask_one_of, masked_word_accuracy,
                     spread)

MODES = ("size", "relation", "colour", "count")


class ScaledInput(nn.Module):
    """``lin(k * x)``: the same information at a larger scale."""

    def __init__(self, lin: nn.Module, k: float):
        super().__init__()
        self.lin, self.k = lin, k

    def forward(self, x):
        return self.lin(self.k * x)


def parse_mode(spec: str) -> Tuple[str, str, int]:
    """MODE[+VARIANT] -> (mode, variant, subset steps): the steps that draw captions only from the
    variant's images (0: none)."""
    mode, _, variant = spec.partition("+")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: want one of {MODES}")
    for name in ("uniform", "twoobj"):
        if variant.startswith(name):
            rest = variant[len(name):]
            if rest and not rest.isdigit():
                raise ValueError(f"variant {variant!r}: {name} or {name}N")
            return mode, name, int(rest) if rest else -1
    if variant not in ("", "noln", "x10"):
        raise ValueError(f"unknown variant {variant!r}")
    return mode, variant, 0


def apply_variant(model, variant: str) -> None:
    """The location input's variants (noln, x10) on a model, in place."""
    emb = model.uniter.img_embeddings
    if variant == "noln":
        emb.pos_layer_norm = nn.Identity()
    elif variant == "x10":
        emb.pos_linear = ScaledInput(emb.pos_linear, 10.0)


def subset_images(annotations_path: str, variant: str) -> np.ndarray:
    """Per image, whether it belongs to the variant's subset: all objects of one size (uniform)
    or exactly two objects (twoobj)."""
    with open(annotations_path, encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    if variant == "twoobj":
        return np.array([len(r["objects"]) == 2 for r in recs])
    return np.array([len({o["size"] for o in r["objects"]}) == 1 for r in recs])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.location_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", metavar="MODE[+VARIANT]")
    ap.add_argument("steps", type=int, metavar="STEPS")
    ap.add_argument("--init", metavar="CKPT", help="start from this checkpoint (default: a fresh model, seed 0)")
    ap.add_argument("--work", default=DEFAULT_WORK, metavar="DIR",
                    help="train-shapes.sh's work folder: feat-train, feat-val, train/, val/ (default %(default)s)")
    ap.add_argument("--save", metavar="PATH", help="write the trained model here")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--probe-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        mode, variant, subset_steps = parse_mode(args.mode)
    except ValueError as e:
        ap.error(str(e))
    if subset_steps < 0:
        subset_steps = args.steps
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = args.work
    tr = PretrainDataset(os.path.join(work, "feat-train"), max_text_len=128)
    va = PretrainDataset(os.path.join(work, "feat-val"), max_text_len=128, vocab=tr.vocab)
    group = group_ids(tr.vocab.tokens, WORD_GROUPS[mode])
    model = build_model(resolve_config(dict(STUDY_CONFIG), tr, tr.vocab), 0)
    if args.init:
        load_checkpoint(model, args.init)
    apply_variant(model, variant)
    subset = "two-object" if variant == "twoobj" else "one-size"
    in_tr = subset_images(os.path.join(work, "train", "annotations.jsonl"), variant)
    in_va = subset_images(os.path.join(work, "val", "annotations.jsonl"), variant)
    all_caps = np.arange(len(tr))
    subset_caps = all_caps[in_tr[tr.image_of]]
    if subset_steps:
        print(f"{len(subset_caps)} of {len(tr)} training captions have {subset} images; "
              f"only they for the first {subset_steps} steps", flush=True)
    opt = build_optimizer(model, args.lr)
    gen = torch.Generator().manual_seed(0)
    mask_id = tr.vocab.special.mask
    name = f"{mode}{'+' + args.mode.partition('+')[2] if variant else ''}"

    def probe(idx, how):
        model.eval()
        return masked_word_accuracy(model, collate([va[int(c)] for c in idx], 0), group, mask_id, how)

    rng = np.random.default_rng(0)
    t0 = time.time()
    idx = spread(len(va))
    uidx = np.flatnonzero(in_va[va.image_of])[:1000]
    print(f"{name} from {args.init or 'scratch'}: step 0 true {probe(idx, 'image'):.3f} "
          f"permuted {probe(idx, 'permuted'):.3f} features zeroed {probe(idx, 'zeroed'):.3f}", flush=True)
    for step in range(1, args.steps + 1):
        model.train()
        caps = subset_caps if step <= subset_steps else all_caps
        b = collate([tr[int(c)] for c in caps[rng.integers(len(caps), size=args.batch_size)]], 0)
        can = b["text_mask"].bool() & torch.isin(b["input_ids"], group)
        ids, rows, pick, labels = mask_one_of(b["input_ids"], can, mask_id, gen)
        h, _, _ = model.uniter(ids, b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
        loss = F.cross_entropy(model.cls(h[rows, pick]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.probe_every == 0:
            sub = (f"| {subset} images: true {probe(uidx, 'image'):.3f} permuted {probe(uidx, 'permuted'):.3f} "
                   if len(uidx) else "")
            print(f"{name} step {step} loss {loss.item():.3f} true {probe(idx, 'image'):.3f} "
                  f"permuted {probe(idx, 'permuted'):.3f} features zeroed {probe(idx, 'zeroed'):.3f} "
                  f"{sub}({time.time() - t0:.0f}s)", flush=True)
    if args.save:
        save_checkpoint(model, args.save, {"study": name, "steps": args.steps, "init": args.init})
        print(f"wrote {args.save}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
