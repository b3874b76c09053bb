#!/usr/bin/env python3
"""Exports an official-format UNITER checkpoint to a model bundle the Go service loads.

    /usr/bin/python3 models/export_bundle.py --checkpoint uniter-base.pt --config uniter-base.json \
        --vocab vocab.txt --labels region_labels.txt --name uniter-base --out bundles/uniter-base

The checkpoint is a flat state dict (`uniter.` prefix; legacy gamma/beta names and missing tied
keys are handled). The key report is printed; --strict refuses any missing or unexpected key.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter.export import write_bundle  # noqa: E402
from uniter.model import UniterConfig, UniterForPretraining, load_checkpoint  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="official-format .pt state dict")
    ap.add_argument("--config", required=True, help="official config JSON (uniter-base.json fields)")
    ap.add_argument("--vocab", required=True, help="BERT WordPiece vocab.txt")
    ap.add_argument("--labels", required=True, help="detector class names, one per line, background first")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--lowercase", action="store_true", help="uncased vocabulary (UNITER uses cased)")
    ap.add_argument("--max-text-length", type=int, default=60)
    ap.add_argument("--rank", action="store_true", help="keep a fine-tuned rank_output head")
    ap.add_argument("--strict", action="store_true", help="fail on missing or unexpected keys")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cfg = UniterConfig.from_json(args.config)
    model = UniterForPretraining(cfg, with_rank=args.rank)
    report = load_checkpoint(model, args.checkpoint, strict=args.strict)
    print(report, file=sys.stderr)
    with open(args.labels, encoding="utf-8") as f:
        labels = [line.rstrip("\n") for line in f if line.strip()]
    write_bundle(model, args.out, name=args.name, vocab_path=args.vocab, region_labels=labels,
                 lowercase=args.lowercase, max_text_length=args.max_text_length,
                 random_weights=False, description=args.description,
                 provenance={"checkpoint": os.path.abspath(args.checkpoint),
                             "config": os.path.abspath(args.config),
                             "missing_keys": report.missing, "unexpected_keys": report.unexpected})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
