"""What the grounding studies' scripts share: a checkpoint and the validation split loaded,
WordPiece character spans, box IoU, and forward passes in batches with the WRA cost.

Used by `grounding-readouts.py` here, `docs/plan-absorbers-2026-11-26/plan-anatomy.py` and
`docs/plan-targets-2026-11-27/` (`targets.py`, `capacity.py`).
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import numpy as np, torch
from uniter.data import PretrainDataset, collate
from uniter.model import load_checkpoint
from uniter.pretrain import build_model, resolve_config
from uniter.ot import cost_matrix_cosine


class Study:
    """A checkpoint (RUN/final.pt or RUN/ckpt/*.pt) in eval mode with WORK's validation split:
    ``va`` (features), ``anns`` (annotations), ``caps`` (captions.jsonl), ``boxes``/``offs``
    (the extracted regions)."""

    def __init__(self, ckpt, work=".cache/shapes-train"):
        run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt))) if "/ckpt/" in ckpt else os.path.dirname(ckpt)
        self.va = PretrainDataset(f"{work}/feat-val", max_text_len=128)
        cfg = resolve_config(json.load(open(f"{run}/config.json")), self.va, self.va.vocab)
        self.model = build_model(cfg, 0)
        load_checkpoint(self.model, ckpt)
        self.model.eval()
        self.vocab = self.va.vocab.tokens
        self.anns = [json.loads(l) for l in open(f"{work}/val/annotations.jsonl")]
        self.caps = [json.loads(l) for l in open(f"{work}/feat-val/captions.jsonl")]
        z = np.load(f"{work}/feat-val/regions.npz")
        self.boxes, self.offs = z["boxes"], z["offsets"]

    def wordpiece(self, text):
        """Character spans of the caption's tokens without [CLS]/[SEP] (greedy longest match)."""
        out, pos, low = [], 0, text.lower()
        for w in low.split():
            s = low.index(w, pos); pos = s + len(w); i = 0
            while i < len(w):
                j = len(w)
                while j > i and (w[i:j] if i == 0 else "##" + w[i:j]) not in self.vocab:
                    j -= 1
                assert j > i, w
                out.append((s + i, s + j)); i = j
        return out

    def caption(self, c):
        """(captions.jsonl entry, the image's annotation, the caption's annotation with its spans) of caption c."""
        cap = self.caps[c]
        ann = self.anns[cap["image"]]
        acap = ann["captions"][int(cap["caption_id"].split("-")[1])]
        assert acap["text"] == cap["text"]
        return cap, ann, acap

    def batches(self, ncap, size=50):
        """Forward passes over the first ``ncap`` captions: yields (caption indices, batch x,
        hidden, attention, text length, padding masks, joint padding, WRA cost, valid lengths)."""
        for b0 in range(0, min(ncap, len(self.caps)), size):
            cs = list(range(b0, min(b0 + size, ncap, len(self.caps))))
            x = collate([self.va[c] for c in cs], 0)
            with torch.no_grad():
                h, _, attn = self.model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"],
                                               x["img_mask"])
            L = x["input_ids"].shape[1]
            tpad, ipad = x["text_mask"] == 0, x["img_mask"] == 0
            jp = tpad.unsqueeze(-1) | ipad.unsqueeze(-2)
            C = cost_matrix_cosine(h[:, :L], h[:, L:]).masked_fill(jp, 0)
            yield cs, x, h, attn, L, tpad, ipad, jp, C, (~tpad).sum(1).float(), (~ipad).sum(1).float()


def naming_words(bundle="bundles/shapes-uniter"):
    """The words that name objects: the bundle's colour and shape labels, the size words, and
    their plurals (+s, +es), as pretrain.py --plan-naming-words reads them."""
    words = set(open(f"{bundle}/attribute_labels.txt").read().split()) | set(
        open(f"{bundle}/region_labels.txt").read().split()) | {"small", "large"}
    return words | {w + "s" for w in words} | {w + "es" for w in words}


def score_spans(st, cs, il, plans, hits):
    """For the captions ``cs`` of a batch (``il``: their region counts), appends to
    ``hits[name][kind]`` whether the argmax region of each shape or colour span's summed row in
    ``plans[name]`` (``[B, tokens, regions]``, [CLS] first) overlaps one of the span's objects
    with IoU >= 0.5, as `uniter eval` counts grounding."""
    for k, c in enumerate(cs):
        cap, ann, acap = st.caption(c)
        tok = st.wordpiece(cap["text"]); n = int(il[k])
        rb = st.boxes[st.offs[cap["image"]]:st.offs[cap["image"]] + n]
        for sp in acap["spans"]:
            if sp["kind"] not in ("shape", "color") or not sp["objects"]:
                continue
            ts = [i + 1 for i, (s, e) in enumerate(tok) if s >= sp["start"] and e <= sp["end"]]
            good = [any(iou(rb[r], ann["objects"][o]["box"]) >= 0.5 for o in sp["objects"]) for r in range(n)]
            for name, P in plans.items():
                hits[name][sp["kind"]].append(good[int(P[k][ts][:, :n].sum(0).argmax())])


def iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0]); iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
