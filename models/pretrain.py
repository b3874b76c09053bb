#!/usr/bin/env python3
"""Pre-trains UNITER with the paper's recipe (MLM, MRFR, MRC/MRC-kl, ITM + WRA by optimal
transport; one task per mini-batch drawn by mix ratio) on a split in the format described in
models/uniter/data.py (regions.npz, captions.jsonl, optional truth.npz and vocab.txt).

    /usr/bin/python3 models/pretrain.py --data data/shapes/train --val data/shapes/val \\
        --out runs/shapes-small --steps 20000 --lr 3e-4 --warmup 1000

writes OUT/log.jsonl (per-task running losses every --log-every steps; validation at each
checkpoint), OUT/ckpt/model_step_N.pt (+ .json: step, config, seed, losses) every --ckpt-every
steps and at the end, OUT/final.pt (+ .json) and OUT/config.json. The checkpoints are flat
official-layout state dicts: export them with

    /usr/bin/python3 models/export_bundle.py --checkpoint OUT/final.pt --config OUT/config.json ...

The default model (no --config) is a small UNITER for 2 CPU cores: hidden 256, 4 layers, 4 heads,
intermediate 1024, max 128 positions; vocab_size, img_dim and img_label_dim are read from the
data. --config takes a JSON file or an inline JSON object of UNITER config fields overriding it.
The paper's lr (5e-5) is for continuing from a pre-trained model; from scratch on small data use
something like 3e-4 to 1e-3.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, metavar="DIR", help="training split directory")
    ap.add_argument("--val", metavar="DIR", help="validation split directory (evaluated at each checkpoint)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output directory")
    ap.add_argument("--config", metavar="JSON",
                    help="UNITER config fields (file or inline JSON) overriding the small default")
    ap.add_argument("--vocab", metavar="FILE",
                    help="vocab.txt (default: DATA/vocab.txt; without one the special ids are "
                         "[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 and the size comes from --config or the data)")
    ap.add_argument("--init", metavar="CKPT", help="start from this official-layout checkpoint")
    ap.add_argument("--steps", type=int, default=10000, help="optimizer steps (default 10000)")
    ap.add_argument("--minutes", type=float, default=0,
                    help="wall-clock budget: after 200 steps the measured rate caps --steps so that "
                         "training (its lr decay included) ends in about this many minutes; 0: none")
    ap.add_argument("--batch-size", type=int, default=32, help="pairs per mini-batch (default 32)")
    ap.add_argument("--lr", type=float, default=5e-5,
                    help="peak learning rate (default 5e-5, the paper's; from scratch use ~3e-4..1e-3)")
    ap.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default 10%% of --steps)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--grad-clip", type=float, default=5.0)
    ap.add_argument("--mix", default="itm:3,mlm:4,mrfr:2,mrc-kl:2",
                    help="task mix ratios, tasks itm mlm mrfr mrc mrc-kl (default %(default)s)")
    ap.add_argument("--loss-weights", default="", metavar="TASK:W,...",
                    help="per-task loss multipliers, e.g. itm:10 (tasks not named: 1); default none")
    ap.add_argument("--ot-weight", type=float, default=0.1,
                    help="weight of the WRA optimal-transport loss in ITM batches; 0 disables it (default 0.1)")
    ap.add_argument("--mask-prob", type=float, default=0.15)
    ap.add_argument("--itm-neg-prob", type=float, default=0.5)
    ap.add_argument("--itm-hard-negatives", type=int, default=0, metavar="K",
                    help="each ITM negative is the model's highest-scoring of K false images (UNITER's "
                         "hard-negative retrieval fine-tuning); 0: a random false image (default)")
    ap.add_argument("--itm-text-negatives", type=float, default=0.0, metavar="P",
                    help="share of ITM negatives that keep the image and take a minimal edit of the caption "
                         "that is false on it (DATA/false_captions.jsonl); 0: only image negatives (default)")
    ap.add_argument("--itm-near-negatives", type=float, default=0.0, metavar="P",
                    help="share of ITM image negatives (hard-negative candidates with --itm-hard-negatives) "
                         "drawn among the caption's near misses (DATA/truth.npz's near, written by uniter "
                         "extract); 0: all among the false images (default)")
    ap.add_argument("--plan-distill", type=float, default=0.0, metavar="W",
                    help="weight of the plan distillation in ITM batches: on matching pairs, each token's "
                         "softmax over regions of the cosine of final states (the WRA cost) is pulled towards "
                         "the model's own token-region attention; 0: none, as the paper (default)")
    ap.add_argument("--plan-absorb", action="store_true",
                    help="with --plan-distill: distil [CLS] and [SEP] too, towards the regions the words "
                         "leave unclaimed, so that the plan sends unnamed objects to them, not to the nouns")
    ap.add_argument("--plan-target", choices=("cosine", "plan"), default="cosine",
                    help="with --plan-distill: distil into each token's softmax of the cosine over regions "
                         "(cosine, default) or into the OT plan's row itself (plan: the cosine plus the "
                         "plan's region potential)")
    ap.add_argument("--plan-columns", action="store_true",
                    help="with --plan-distill: distil the regions' side too, each region's softmax over the "
                         "tokens towards the targets' column (which token a region's plan mass should go "
                         "to); off by default, see docs/plan-columns-2026-11-26")
    ap.add_argument("--plan-argmax", type=float, default=None, metavar="D",
                    help="with --plan-distill: each word's target is its attention's argmax region, "
                         "(1-D) one-hot + D uniform over the real regions, not the attention's spread "
                         "(docs/plan-targets-2026-11-27); off by default")
    ap.add_argument("--plan-naming-words", default="", metavar="FILE[,FILE...]",
                    help="with --plan-absorb: the words that name objects (e.g. the bundle's "
                         "attribute_labels.txt,region_labels.txt and the size words); every other text "
                         "token absorbs too (docs/plan-targets-2026-11-27); default: only [CLS] and [SEP]")
    ap.add_argument("--plan-rows", type=float, default=0.0, metavar="W",
                    help="with --plan-distill: weight of the plan-rows loss, each word's row of the OT plan "
                         "itself (differentiated through the solver) pulled onto its target region "
                         "(docs/plan-rows-2026-11-27); 0: none (default)")
    ap.add_argument("--plan-rows-target", choices=("attention", "cosine"), default="attention",
                    help="with --plan-rows: a word's target region is the argmax of its attention "
                         "(default) or of its cosine")
    ap.add_argument("--grounded-words", default="", metavar="FILE[,FILE...]",
                    help="word groups for --grounded-mlm-steps, one file per group, a word per line (e.g. "
                         "the bundle's attribute_labels.txt,region_labels.txt); plurals in the vocabulary "
                         "are added, __names__ skipped")
    ap.add_argument("--grounded-mlm-steps", type=int, default=0, metavar="N",
                    help="a grounding warm-up: the first N steps are MLM batches masking one word of one "
                         "group per caption, groups taking turns (0: none, the paper's recipe throughout)")
    ap.add_argument("--grounded-images", default="", metavar="FILE",
                    help="a curriculum for the grounded steps: image indices of the training split, one "
                         "per line; the first --grounded-images-steps steps draw captions only from them")
    ap.add_argument("--grounded-images-steps", type=int, default=0, metavar="N",
                    help="grounded steps on --grounded-images only (default 0; at most --grounded-mlm-steps)")
    ap.add_argument("--train-only", default="", choices=["", "mlm-head"],
                    help="mlm-head: only the MLM head's transform and bias learn, the rest of the "
                         "loaded model is frozen (re-fitting the head on a fine-tuned encoder; needs "
                         "every step to be MLM: --grounded-mlm-steps = --steps, or --mix mlm:1)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=1000, help="0: only at the end")
    ap.add_argument("--val-batches", type=int, default=20, help="validation batches per task")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: fastest for transformer training on 2 cores)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS threads (default: $OPENBLAS_NUM_THREADS, else 2)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default), cuda, cuda:N, or auto (cuda when available)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return ap


def _load_config_arg(arg):
    if not arg:
        return {}
    if arg.lstrip().startswith("{"):
        return json.loads(arg)
    with open(arg) as f:
        return json.load(f)


def _read_words(path: str, flag: str) -> list:
    """The words of a word-list file, one per line (a flag's argument; a clear exit if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().split()
    except OSError as e:
        raise SystemExit(f"{flag}: {e}") from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Must precede the first numpy/torch import: OpenBLAS sizes its pool when it loads.
    if args.blas_threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    else:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from uniter.data import PretrainDataset, Vocab
    from uniter.model import load_checkpoint
    from uniter.pretrain import (TrainConfig, build_model, check_images, grounded_groups, parse_mix,
                                 pretrain, resolve_config)

    torch.set_num_threads(args.threads)
    parse_mix(args.mix)  # fail early on a bad mix
    if args.loss_weights:
        parse_mix(args.loss_weights)
    user_cfg = _load_config_arg(args.config)
    vocab_path = args.vocab or os.path.join(args.data, "vocab.txt")
    vocab = Vocab.from_file(vocab_path) if os.path.exists(vocab_path) else None
    if args.vocab and vocab is None:
        raise SystemExit(f"--vocab {args.vocab}: no such file")
    max_len = int(user_cfg.get("max_position_embeddings", 128))
    train_ds = PretrainDataset(args.data, max_text_len=max_len, vocab=vocab)
    cfg = resolve_config(user_cfg, train_ds, vocab)
    if vocab is None:
        vocab = Vocab(cfg.vocab_size)
    train_ds.max_text_len = cfg.max_position_embeddings
    val_ds = PretrainDataset(args.val, max_text_len=cfg.max_position_embeddings, vocab=vocab) \
        if args.val else None
    if val_ds is not None and (val_ds.regions.feat_dim != cfg.img_dim
                               or val_ds.regions.label_dim != cfg.img_label_dim
                               or val_ds.max_token_id() >= cfg.vocab_size):
        raise SystemExit(f"--val {args.val}: dims or token ids do not match the training data")

    if not 0 <= args.itm_text_negatives <= 1:
        raise SystemExit(f"--itm-text-negatives {args.itm_text_negatives}: a share, 0..1")
    if args.itm_text_negatives > 0 and not train_ds.false_captions:
        raise SystemExit(f"--itm-text-negatives needs {args.data}/false_captions.jsonl (written by uniter extract)")
    if not 0 <= args.itm_near_negatives <= 1:
        raise SystemExit(f"--itm-near-negatives {args.itm_near_negatives}: a share, 0..1")
    if args.itm_near_negatives > 0 and train_ds.near is None:
        raise SystemExit(f"--itm-near-negatives needs near misses in {args.data}/truth.npz "
                         "(written by uniter extract since near misses were added: extract again)")
    if args.plan_distill < 0:
        raise SystemExit(f"--plan-distill {args.plan_distill}: want >= 0")
    if (args.plan_absorb or args.plan_columns or args.plan_target != "cosine"
            or args.plan_argmax is not None) and args.plan_distill == 0:
        raise SystemExit("--plan-absorb, --plan-columns, --plan-target and --plan-argmax need --plan-distill W > 0")
    if args.plan_rows < 0:
        raise SystemExit(f"--plan-rows {args.plan_rows}: want >= 0")
    if args.plan_rows > 0 and args.plan_distill == 0:
        raise SystemExit("--plan-rows needs --plan-distill W > 0 (it reads the same words)")
    if args.plan_argmax is not None and not 0 <= args.plan_argmax < 1:
        raise SystemExit(f"--plan-argmax {args.plan_argmax}: a share, 0 <= D < 1")
    naming = ()
    if args.plan_naming_words:
        if not args.plan_absorb:
            raise SystemExit("--plan-naming-words needs --plan-absorb")
        try:
            naming = tuple(sorted({i for g in grounded_groups(vocab, [_read_words(p, "--plan-naming-words")
                                                                    for p in args.plan_naming_words.split(",")])
                                   for i in g}))
        except ValueError as e:
            raise SystemExit(f"--plan-naming-words: {e}") from None
    groups = ()
    if args.grounded_mlm_steps < 0:
        raise SystemExit(f"--grounded-mlm-steps {args.grounded_mlm_steps}: want >= 0")
    if args.grounded_mlm_steps > 0:
        if not args.grounded_words:
            raise SystemExit("--grounded-mlm-steps needs --grounded-words")
        lists = [_read_words(path, "--grounded-words") for path in args.grounded_words.split(",")]
        try:
            groups = grounded_groups(vocab, lists)
        except ValueError as e:
            raise SystemExit(f"--grounded-words: {e}") from None
        print(f"grounding warm-up: {args.grounded_mlm_steps} steps over groups of "
              f"{[len(g) for g in groups]} token ids", file=sys.stderr)
    images = ()
    if args.grounded_images_steps < 0 or args.grounded_images_steps > args.grounded_mlm_steps:
        raise SystemExit(f"--grounded-images-steps {args.grounded_images_steps}: want 0..--grounded-mlm-steps")
    if bool(args.grounded_images) != bool(args.grounded_images_steps):
        raise SystemExit("--grounded-images and --grounded-images-steps go together")
    if args.grounded_images:
        try:
            with open(args.grounded_images, encoding="utf-8") as f:
                images = tuple(int(w) for w in f.read().split())
            check_images(images, train_ds.num_images)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--grounded-images {args.grounded_images}: {e}") from None
    model = build_model(cfg, args.seed)
    if args.init:
        report = load_checkpoint(model, args.init, strict=True)
        print(f"initialised from {args.init}: {report}", file=sys.stderr)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data {args.data}: {len(train_ds)} captions, {train_ds.num_images} images, "
          f"truth.npz {'yes' if train_ds.truth is not None else 'no'}; {vocab}", file=sys.stderr)
    print(f"model: {json.dumps(cfg.to_dict())}; {n_params / 1e6:.2f}M parameters", file=sys.stderr)
    print(f"device {device}; threads: torch {torch.get_num_threads()}, OPENBLAS_NUM_THREADS "
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}", file=sys.stderr)

    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                     weight_decay=args.weight_decay, grad_clip=args.grad_clip, mix=args.mix,
                     loss_weights=args.loss_weights,
                     ot_weight=args.ot_weight, mask_prob=args.mask_prob,
                     itm_neg_prob=args.itm_neg_prob, itm_hard_negatives=args.itm_hard_negatives,
                     itm_text_negatives=args.itm_text_negatives, itm_near_negatives=args.itm_near_negatives,
                     plan_distill=args.plan_distill, plan_absorb=args.plan_absorb,
                     plan_target=args.plan_target, plan_columns=args.plan_columns,
                     plan_argmax=args.plan_argmax, plan_naming_ids=naming,
                     plan_rows=args.plan_rows, plan_rows_target=args.plan_rows_target,
                     grounded_mlm_steps=args.grounded_mlm_steps, grounded_groups=groups,
                     grounded_images=images, grounded_images_steps=args.grounded_images_steps,
                     train_only=args.train_only,
                     seed=args.seed, minutes=args.minutes, log_every=args.log_every,
                     ckpt_every=args.ckpt_every, val_batches=args.val_batches,
                     progress=not args.no_progress)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=2)
        f.write("\n")
    result = pretrain(model, train_ds, vocab, tc, out_dir=args.out, val_ds=val_ds,
                      extra_meta={"init": args.init, "vocab": vocab_path if os.path.exists(vocab_path) else None})
    print(f"wrote {result['final']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
