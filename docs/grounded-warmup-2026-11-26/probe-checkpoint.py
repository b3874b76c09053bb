"""MLM probe of a pre-training checkpoint: which caption words does it read from the image?

    /usr/bin/python3 docs/grounded-warmup-2026-11-26/probe-checkpoint.py RUN/ckpt/model_step_N.pt [WORK]

For colour, shape, size and relation words: the first such word of 1,000 validation captions
(WORK/feat-val, default .cache/shapes-train) becomes [MASK] and is predicted with the caption's
image, with another image's regions (captions 37 places on, so another image), and with the
region features zeroed. Reading the image shows as "image" well above the other two.
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, resolve_config

torch.set_num_threads(1)
ckpt = sys.argv[1]
work = sys.argv[2] if len(sys.argv) > 2 else ".cache/shapes-train"
run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt))) if "/ckpt/" in ckpt else os.path.dirname(ckpt)
va = PretrainDataset(f"{work}/feat-val", max_text_len=128)
cfg = resolve_config(json.load(open(f"{run}/config.json")), va, va.vocab)
model = build_model(cfg, 0)
load_checkpoint(model, ckpt)
model.eval()
words = va.vocab.tokens
KINDS = {"colour": "red green blue yellow orange purple white black",
         "shape": "circle square triangle star diamond cross heart hexagon",
         "size": "small large", "relation": "left right above below"}


def accuracy(idx, group, how):
    x = collate([va[int(c)] for c in idx], 0)
    ids = x["input_ids"]; hit = torch.isin(ids, group)
    first, keep = hit.float().argmax(1), hit.any(1)
    rows = torch.arange(len(ids))
    lab = ids[rows, first]; ids = ids.clone(); ids[rows, first] = va.vocab.special.mask
    feat, loc, mask = x["img_feat"], x["img_loc"], x["img_mask"]
    if how == "other":
        p = torch.roll(rows, 37); feat, loc, mask = feat[p], loc[p], mask[p]
    elif how == "zeroed":
        feat = torch.zeros_like(feat)
    with torch.no_grad():
        h, _, _ = model.uniter(ids, x["text_mask"], feat, loc, mask)
        pred = model.cls(h[rows, first]).argmax(1)
    return (pred[keep] == lab[keep]).float().mean().item()


idx = np.arange(0, 2000, 2)
for kind, ws in KINDS.items():
    group = torch.tensor([words.index(w) for w in ws.split()])
    print(f"{os.path.basename(ckpt)} {kind:8s} " + "  ".join(
        f"{how} {accuracy(idx, group, how):.3f}" for how in ("image", "other", "zeroed")), flush=True)
