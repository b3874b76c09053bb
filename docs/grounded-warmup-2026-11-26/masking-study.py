"""Which MLM masking teaches the small UNITER to read colours and shapes from the regions?

    /usr/bin/python3 docs/grounded-warmup-2026-11-26/masking-study.py MODE STEPS [WORK]

WORK defaults to .cache/shapes-train (features from `make shapes-model`). A fresh hidden-128 x 4
model (seed 0) trains on MLM alone, 64 captions per step, AdamW lr 1e-3 constant, with MODE:

  mlm        BERT masking (pretrain.mask_tokens, 15%, 80/10/10)
  one        one token per caption, uniform
  content    one word per caption among colour, shape, size and relation words
  colour     the first colour word          shape    one shape word
  cs         one colour-or-shape word       cs-size / cs-rel   ... or a size / relation word
  alt        colour words and shape words in alternate batches
  catbatch   colour, shape, size, relation words, one group per batch in turn

Every 250 steps: the first colour (shape) word of 1,000 validation captions is replaced by [MASK]
and predicted with the caption's image, and with the region features zeroed ("zero").
"""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch, torch.nn.functional as F
from uniter.data import PretrainDataset, collate
from uniter.pretrain import build_model, build_optimizer, forward_task, prepare_task, resolve_config

torch.set_num_threads(1); torch.manual_seed(0)
mode, steps = sys.argv[1], int(sys.argv[2])
work = sys.argv[3] if len(sys.argv) > 3 else ".cache/shapes-train"
tr = PretrainDataset(f"{work}/feat-train", max_text_len=128)
va = PretrainDataset(f"{work}/feat-val", max_text_len=128, vocab=tr.vocab)
words = tr.vocab.tokens
ids_of = lambda ws: torch.tensor([words.index(w) for w in ws.split()])
colour = ids_of("red green blue yellow orange purple white black")
shape = ids_of("circle square triangle star diamond cross heart hexagon")
size, relation = ids_of("small large"), ids_of("left right above below")
groups = [colour, shape, size, relation]
cfg = resolve_config({"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "intermediate_size": 512}, tr, tr.vocab)
model = build_model(cfg, 0); opt = build_optimizer(model, 1e-3)
gen = torch.Generator().manual_seed(0)


def probe(idx, group, zero=False):
    x = collate([va[int(c)] for c in idx], 0)
    ids = x["input_ids"]; hit = torch.isin(ids, group)
    first, keep = hit.float().argmax(1), hit.any(1)
    rows = torch.arange(len(ids))
    lab = ids[rows, first]; ids = ids.clone(); ids[rows, first] = tr.vocab.special.mask
    feat = torch.zeros_like(x["img_feat"]) if zero else x["img_feat"]
    with torch.no_grad():
        h, _, _ = model.uniter(ids, x["text_mask"], feat, x["img_loc"], x["img_mask"])
        pred = model.cls(h[rows, first]).argmax(1)
    return (pred[keep] == lab[keep]).float().mean().item()


rng = np.random.default_rng(0); t0 = time.time()
for step in range(1, steps + 1):
    model.train()
    b = collate([tr[int(c)] for c in rng.integers(len(tr), size=64)], 0)
    if mode == "mlm":
        loss, _ = forward_task(model, "mlm", prepare_task("mlm", b, tr.vocab, gen, 0.15))
    else:
        ids = b["input_ids"]; can = b["text_mask"].bool() & (ids > 4)
        allowed = {"one": None, "content": torch.cat(groups), "shape": shape, "cs": torch.cat([colour, shape]),
                   "cs-size": torch.cat([colour, shape, size]), "cs-rel": torch.cat([colour, shape, relation]),
                   "alt": colour if step % 2 else shape, "catbatch": groups[step % 4]}
        if mode == "colour":
            hit = torch.isin(ids, colour); can = torch.zeros_like(can)
            can[torch.arange(len(ids)), hit.float().argmax(1)] = hit.any(1)
        elif allowed[mode] is not None:
            can &= torch.isin(ids, allowed[mode])
        rows = can.any(1).nonzero().squeeze(1)
        pick = torch.multinomial(can[rows].float(), 1, generator=gen).squeeze(1)
        lab = ids[rows, pick]; ids = ids.clone(); ids[rows, pick] = tr.vocab.special.mask
        h, _, _ = model.uniter(ids, b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
        loss = F.cross_entropy(model.cls(h[rows, pick]), lab)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 250 == 0:
        model.eval(); idx = np.arange(0, 5000, 5)
        print(f"{mode} step {step} loss {loss.item():.3f} colour image {probe(idx, colour):.3f} "
              f"zero {probe(idx, colour, True):.3f} shape image {probe(idx, shape):.3f} "
              f"zero {probe(idx, shape, True):.3f} ({time.time() - t0:.0f}s)", flush=True)
