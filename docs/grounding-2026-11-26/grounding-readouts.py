"""Which read-out of a trained UNITER grounds words? Validation captions, PyTorch checkpoint.

    /usr/bin/python3 docs/grounding-2026-11-26/grounding-readouts.py RUN/final.pt [CAPTIONS] [WORK]

For the first CAPTIONS (default 1000) validation captions (WORK/feat-val and WORK/val, default
.cache/shapes-train), every shape-noun and colour-word span that refers to objects is grounded
to the region with most of its weight under several tokens x regions read-outs, and counted a
hit when that region overlaps a referred object with IoU >= 0.5 (the measure of `uniter eval`):

  ot           the IPOT plan on the cosine cost of final hidden states (beta 0.5, /v1/align)
  ot_b0.1      the same with beta 0.1 (sharper)
  cos          the cosine similarity itself, no transport
  cos_centred  cosine after subtracting the pair's mean hidden state
  attn_tr      attention text -> region, mean over layers and heads
  attn_lK      attention text -> region of layer K, mean over heads
  attn_both    attention both ways (text -> region + region -> text), summed over every layer
               and head: heads.CrossAttention, what `uniter eval` reports as "by attention"
  chance       the share of the image's regions that hit

It also says where the OT plan's noun argmax lands (the referred object, another object, a
sliver < 2 px wide or high, or something else) and splits nouns by whether their phrase has a
colour word (does the colour word take the object's transport mass?).
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, resolve_config
from uniter.ot import cost_matrix_cosine, ipot

torch.set_num_threads(2)
ckpt = sys.argv[1]
NCAP = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
W = sys.argv[3] if len(sys.argv) > 3 else ".cache/shapes-train"
run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt))) if "/ckpt/" in ckpt else os.path.dirname(ckpt)
va = PretrainDataset(f"{W}/feat-val", max_text_len=128)
cfg = resolve_config(json.load(open(f"{run}/config.json")), va, va.vocab)
model = build_model(cfg, 0); load_checkpoint(model, ckpt); model.eval()
vocab = va.vocab.tokens
anns = [json.loads(l) for l in open(f"{W}/val/annotations.jsonl")]
caps = [json.loads(l) for l in open(f"{W}/feat-val/captions.jsonl")]
z = np.load(f"{W}/feat-val/regions.npz"); boxes, offs = z["boxes"], z["offsets"]
LAYERS = cfg.num_hidden_layers if hasattr(cfg, "num_hidden_layers") else 4


def wordpiece(text):
    """Character spans of the caption's tokens without [CLS]/[SEP] (greedy longest match)."""
    out, pos, low = [], 0, text.lower()
    for w in low.split():
        s = low.index(w, pos); pos = s + len(w); i = 0
        while i < len(w):
            j = len(w)
            while j > i and (w[i:j] if i == 0 else "##" + w[i:j]) not in vocab:
                j -= 1
            assert j > i, w
            out.append((s + i, s + j)); i = j
    return out


def iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0]); iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


hits, lands = {}, {"referred object": 0, "another object": 0, "sliver": 0, "other": 0}
for b0 in range(0, min(NCAP, len(caps)), 50):
    cs = list(range(b0, min(b0 + 50, NCAP, len(caps))))
    x = collate([va[c] for c in cs], 0)
    with torch.no_grad():
        h, _, attn = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
    L = x["input_ids"].shape[1]
    txt, img = h[:, :L], h[:, L:]
    tpad, ipad = x["text_mask"] == 0, x["img_mask"] == 0
    jp = tpad.unsqueeze(-1) | ipad.unsqueeze(-2)
    C = cost_matrix_cosine(txt, img).masked_fill(jp, 0)
    tl, il = (~tpad).sum(1).float(), (~ipad).sum(1).float()
    valid = torch.cat([x["text_mask"], x["img_mask"]], 1).float().unsqueeze(-1)
    mu = (h * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
    Cc = cost_matrix_cosine(txt - mu, img - mu).masked_fill(jp, 0)
    readouts = {"ot": ipot(C, tl, tpad, il, ipad, jp).transpose(1, 2),
                "ot_b0.1": ipot(C, tl, tpad, il, ipad, jp, beta=0.1).transpose(1, 2),
                "cos": (1 - C).masked_fill(jp, -9),
                "cos_centred": (1 - Cc).masked_fill(jp, -9),
                "attn_tr": torch.stack([a.mean(1)[:, :L, L:] for a in attn]).mean(0),
                **{f"attn_l{l}": attn[l].mean(1)[:, :L, L:] for l in range(len(attn))},
                "attn_both": torch.stack([a.sum(1)[:, :L, L:] + a.sum(1)[:, L:, :L].transpose(1, 2) for a in attn]).sum(0)}
    for k, c in enumerate(cs):
        cap = caps[c]; ann = anns[cap["image"]]
        acap = ann["captions"][int(cap["caption_id"].split("-")[1])]
        assert acap["text"] == cap["text"]
        tok = wordpiece(cap["text"]); assert len(tok) + 2 == len(cap["input_ids"])
        n = int(il[k]); rb = boxes[offs[cap["image"]]:offs[cap["image"]] + n]
        for sp in acap["spans"]:
            if sp["kind"] not in ("shape", "color") or not sp["objects"]:
                continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            refd = [ann["objects"][o]["box"] for o in sp["objects"]]
            good = [any(iou(rb[r], ob) >= 0.5 for ob in refd) for r in range(n)]
            kinds = [sp["kind"]]
            if sp["kind"] == "shape":
                coloured = any(o["kind"] == "color" and o["ref"] == sp["ref"] for o in acap["spans"])
                kinds.append("shape, phrase with a colour" if coloured else "shape, no colour word")
            for name, m in list(readouts.items()) + [("chance", None)]:
                if m is None:
                    hit = float(np.mean(good))
                else:
                    best = int(m[k][ts][:, :n].sum(0).argmax()); hit = float(good[best])
                    if name == "ot" and sp["kind"] == "shape":
                        bw, bh = rb[best][2] - rb[best][0], rb[best][3] - rb[best][1]
                        on_obj = any(iou(rb[best], o["box"]) >= 0.5 for o in ann["objects"])
                        lands["referred object" if good[best] else "another object" if on_obj
                              else "sliver" if min(bw, bh) < 2 else "other"] += 1
                for kind in kinds:
                    v = hits.setdefault(kind, {}).setdefault(name, [0.0, 0])
                    v[0] += hit; v[1] += 1
print(f"{ckpt}: {NCAP} validation captions")
for kind, row in hits.items():
    print(f"  {kind:28s} (n={row['ot'][1]}): " + "  ".join(f"{m} {v[0] / v[1]:.3f}" for m, v in row.items()))
print("  the OT plan's noun argmax lands on:", lands)
