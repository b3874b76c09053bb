"""Does a trained UNITER use the 7-d region locations? Validation captions, PyTorch checkpoint.

    /usr/bin/python3 docs/location-2026-11-26/location-probe.py RUN/final.pt [WORK]

On 1,000 validation captions with their own image (positives) and with a minimal edit of the
caption that is false on that image (negatives, by kind of edit; false_captions.jsonl from
`uniter extract`), the ITM head's P(match) is computed with the regions' true locations, with
the locations permuted among the image's regions (each feature keeps a wrong box) and with all
locations zeroed. A model that reads positions and sizes rejects relation and size edits and
loses confidence when locations are permuted.
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, resolve_config

torch.set_num_threads(2); torch.manual_seed(0)
ckpt = sys.argv[1]
work = sys.argv[2] if len(sys.argv) > 2 else ".cache/shapes-train"
run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt))) if "/ckpt/" in ckpt else os.path.dirname(ckpt)
va = PretrainDataset(f"{work}/feat-val-fc", max_text_len=128)
cfg = resolve_config(json.load(open(f"{run}/config.json")), va, va.vocab)
model = build_model(cfg, 0); load_checkpoint(model, ckpt); model.eval()
edits = [json.loads(l) for l in open(f"{work}/feat-val-fc/false_captions.jsonl")]


def p_match(samples, how):
    x = collate(samples, 0)
    loc = x["img_loc"].clone()
    if how == "permuted":
        for i in range(len(loc)):
            n = int(x["img_mask"][i].sum())
            loc[i, :n] = loc[i, torch.randperm(n)]
    elif how == "zeroed":
        loc.zero_()
    with torch.no_grad():
        _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], loc, x["img_mask"])
        return torch.softmax(model.itm_output(pooled), -1)[:, 1]


pos = [va[c] for c in range(0, 2000, 2)]
by_kind = {}
for f, e in enumerate(edits):
    if e.get("edit") not in (None, "random") and len(by_kind.setdefault(e["edit"], [])) < 300:
        by_kind[e["edit"]].append(va.false_pair(f))
print(f"{ckpt}")
for how in ("true", "permuted", "zeroed"):
    p = p_match(pos, how)
    row = [f"positives accepted {float((p > 0.5).float().mean()):.3f} (mean P {float(p.mean()):.3f})"]
    for kind, ss in sorted(by_kind.items()):
        q = p_match(ss, how)
        row.append(f"{kind} edits rejected {float((q <= 0.5).float().mean()):.3f}")
    print(f"  locations {how:8s}: " + ", ".join(row), flush=True)
