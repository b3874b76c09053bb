"""Assembles a Shapes World model bundle: UNITER encoder + the trained detector + vocab + labels.

Two uses, one code path:
  * before pre-training, with no --checkpoint: a random-weight encoder of the chosen size next to
    the trained detector, so that `uniter extract` can run the serving pipeline over the splits
    (the encoder is not used by extraction; the bundle says random_weights: true);
  * after pre-training, with --checkpoint (official layout, from uniter.pretrain): the model
    that is served.

    python3 -m uniter.shapes_bundle --detector .cache/shapes-train/run1/detector.pt \\
        --vocab .cache/shapes-train/vocab.txt --out .cache/shapes-train/bundle-init
    python3 -m uniter.shapes_bundle --detector ... --vocab ... \\
        --checkpoint RUN/final.pt --config RUN/config.json --name shapes-uniter --out bundles/shapes

(from models/, or with models/ on PYTHONPATH)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .detector_export import write_detector
from .export import write_bundle
from .model import UniterConfig, UniterForPretraining, load_checkpoint
from .pretrain import SMALL_CONFIG
from .train_detector import ATTRIBUTES, LABELS, PREPROCESS, SELECTION
from .train_detector import load_checkpoint as load_detector


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.shapes_bundle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", required=True, help="detector.pt from uniter.train_detector")
    ap.add_argument("--vocab", required=True, help="vocab.txt from uniter.make_vocab")
    ap.add_argument("--checkpoint", help="UNITER checkpoint (official layout); none: random weights")
    ap.add_argument("--config", help="UNITER config JSON (default: the pre-training's small config)")
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--name", default=None)
    ap.add_argument("--max-text-length", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="encoder init seed without --checkpoint")
    ap.add_argument("--provenance", default="{}", help="extra JSON merged into the manifest's provenance")
    ap.add_argument("--min-box-size", type=float, default=0.0,
                    help="selection.min_box_size: drop proposals smaller than this many original-image "
                         "pixels before selection (bottom-up-attention's RPN_MIN_SIZE); 0 keeps all")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    det, det_ck = load_detector(args.detector)
    det.eval()
    with open(args.vocab, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    d = dict(SMALL_CONFIG)
    if args.config:
        with open(args.config) as f:
            d.update(json.load(f))
    d.update(vocab_size=vocab_size, img_dim=det.config.feature_dim, img_label_dim=det.config.num_classes)
    cfg = UniterConfig.from_dict({k: v for k, v in d.items() if k != "extra"})
    model = UniterForPretraining(cfg)
    provenance = {"created_by": "python3 -m uniter.shapes_bundle", "detector": os.path.abspath(args.detector),
                  "detector_step": det_ck.get("step"), "detector_eval": det_ck.get("eval")}
    if args.checkpoint:
        report = load_checkpoint(model, args.checkpoint, strict=True)
        print(report, file=sys.stderr)
        provenance["checkpoint"] = os.path.abspath(args.checkpoint)
    else:
        model.init_weights(args.seed)
        provenance["encoder_init_seed"] = args.seed
    provenance.update(json.loads(args.provenance))
    random = not args.checkpoint
    name = args.name or ("shapes-init" if random else "shapes-uniter")
    write_bundle(model.eval(), args.out, name=name, vocab_path=args.vocab, region_labels=LABELS,
                 lowercase=True, max_text_length=args.max_text_length, random_weights=random,
                 description=("Shapes World detector with a random-weight encoder (for feature "
                              "extraction only)" if random else
                              "UNITER pre-trained on Shapes World with the paper's recipe"),
                 provenance=provenance)
    selection = dict(SELECTION, min_box_size=args.min_box_size) if args.min_box_size else SELECTION
    write_detector(det, args.out, preprocess=PREPROCESS, selection=selection, labels=LABELS,
                   attributes=ATTRIBUTES)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
