#!/usr/bin/env python3
"""Makes the tiny random-weight fixture: an official-layout checkpoint, its bundle, and golden
outputs computed by PyTorch for fixed inputs (single pairs and a padded mixed batch).

    /usr/bin/python3 models/make_fixture.py --out testdata

writes testdata/checkpoints/tiny-random.{pt,json}, testdata/bundles/tiny-random/ and
testdata/golden/tiny-random.json. Deterministic for a given --seed.
"""
from __future__ import annotations

import argparse
import json
import os
import string
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter import wordpiece  # noqa: E402
from uniter.export import write_bundle  # noqa: E402
from uniter.model import UniterConfig, UniterForPretraining  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """a an the one two three four five six some something nothing is are of and with
left right above below near next to on in small large big tiny red green blue yellow orange
purple white black gray grey pink brown circle circles square squares triangle triangles star
stars diamond diamonds cross crosses heart hexagon shape shapes object objects picture image
there here man woman dog cat person people playing play ball street car tree sky water""".split()
SUBWORDS = ["##s", "##es", "##ing", "##ed", "##er", "##ly", "##y"]
REGION_LABELS = ["__background__", "circle", "square", "triangle", "star", "diamond", "cross",
                 "heart", "hexagon", "person", "dog"]

CASES = [
    ("a red square left of a blue circle", 640, 480, 5),
    ("two green triangles", 300, 500, 3),
    ("Something orange above a star.", 800, 600, 7),
]


def make_vocab() -> list:
    chars = [c for c in string.ascii_letters + string.digits + string.punctuation]
    toks = SPECIALS + WORDS + SUBWORDS + chars + ["##" + c for c in string.ascii_letters + string.digits]
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def loc7(box, w, h):
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    return [x1 / w, y1 / h, x2 / w, y2 / h, bw / w, bh / h, (bw / w) * (bh / h)]


def make_pairs(cfg, vocab, g, max_len):
    pairs = []
    for text, w, h, n in CASES:
        boxes = []
        for _ in range(n):
            x1, y1 = torch.rand(2, generator=g).tolist()
            x1, y1 = round(x1 * w * 0.7, 2), round(y1 * h * 0.7, 2)
            bw, bh = torch.rand(2, generator=g).tolist()
            x2, y2 = round(x1 + 1 + bw * (w - x1 - 1), 2), round(y1 + 1 + bh * (h - y1 - 1), 2)
            boxes.append([x1, y1, x2, y2])
        feats = torch.randn(n, cfg.img_dim, generator=g).abs().tolist()  # pooled ReLU features are ≥ 0
        feats = [[round(v, 5) for v in row] for row in feats]
        pairs.append({"text": text, "lowercase": True, "width": w, "height": h, "boxes": boxes,
                      "features": feats,
                      "ids": wordpiece.encode(text, vocab, lowercase=True, max_length=max_len),
                      "locations": [loc7(b, w, h) for b in boxes]})
    return pairs


def pad_batch(pairs, cfg):
    T = max(len(p["ids"]) for p in pairs)
    N = max(len(p["boxes"]) for p in pairs)
    B = len(pairs)
    ids = torch.zeros(B, T, dtype=torch.long)
    tm = torch.zeros(B, T, dtype=torch.long)
    feat = torch.zeros(B, N, cfg.img_dim)
    loc = torch.zeros(B, N, 7)
    im = torch.zeros(B, N, dtype=torch.long)
    for b, p in enumerate(pairs):
        t, n = len(p["ids"]), len(p["boxes"])
        ids[b, :t] = torch.tensor(p["ids"])
        tm[b, :t] = 1
        feat[b, :n] = torch.tensor(p["features"])
        loc[b, :n] = torch.tensor(p["locations"], dtype=torch.float32)
        im[b, :n] = 1
    return ids, tm, feat, loc, im


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="testdata", help="testdata root")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-text-length", type=int, default=40)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    vocab_list = make_vocab()
    cfg = UniterConfig(vocab_size=len(vocab_list), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                       img_dim=64, img_label_dim=len(REGION_LABELS))
    # Larger-than-BERT init so that outputs differ visibly between inputs.
    cfg.initializer_range = 0.2
    model = UniterForPretraining(cfg).init_weights(args.seed).eval()

    ck_dir = os.path.join(args.out, "checkpoints")
    os.makedirs(ck_dir, exist_ok=True)
    vocab_path = os.path.join(ck_dir, "tiny-random-vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab_list) + "\n")
    torch.save(model.state_dict(), os.path.join(ck_dir, "tiny-random.pt"))
    cfg_dict = cfg.to_dict()
    with open(os.path.join(ck_dir, "tiny-random.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")

    bundle = os.path.join(args.out, "bundles", "tiny-random")
    write_bundle(model, bundle, name="tiny-random", vocab_path=vocab_path,
                 region_labels=REGION_LABELS, lowercase=True,
                 max_text_length=args.max_text_length, random_weights=True,
                 description="Tiny UNITER with random weights (hidden 32, 2 layers): a test "
                             "fixture, not a model. Its scores mean nothing.",
                 provenance={"created_by": "models/make_fixture.py", "seed": args.seed,
                             "checkpoint": "testdata/checkpoints/tiny-random.pt"})

    vocab = wordpiece.load_vocab(vocab_path)
    g = torch.Generator().manual_seed(args.seed + 1)
    pairs = make_pairs(cfg, vocab, g, args.max_text_length)
    golden = {"bundle": "bundles/tiny-random", "pairs": pairs, "batches": []}
    with torch.no_grad():
        for members in ([0], [1], [2], [0, 1, 2], [2, 0]):
            batch = pad_batch([pairs[i] for i in members], cfg)
            hidden, pooled, attn = model.uniter(*batch)
            T = batch[0].shape[1]
            golden["batches"].append({
                "pairs": members,
                "text_len": T, "regions_len": batch[2].shape[1],
                "itm_logits": model.itm_output(pooled).tolist(),
                "pooled": pooled.tolist(),
                "hidden": hidden.tolist(),
                "attention": torch.stack(attn, dim=1).tolist(),
                "mlm_logits": model.cls(hidden[:, :T]).tolist(),
                "mrc_logits": model.region_classifier(hidden[:, T:]).tolist(),
            })
    os.makedirs(os.path.join(args.out, "golden"), exist_ok=True)
    with open(os.path.join(args.out, "golden", "tiny-random.json"), "w") as f:
        json.dump(golden, f)
    print(f"wrote {bundle} and {args.out}/golden/tiny-random.json")


if __name__ == "__main__":
    main()
