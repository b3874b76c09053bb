"""Does ITM fine-tuning use relations if relation MLM keeps training beside it?

    python3 -m uniter.diagnostics.aux_relation_ft INIT_CKPT OUT_DIR [--text-negatives P] [--work DIR]

From INIT_CKPT (e.g. a relation stage's model: uniter.pretrain --grounded-words with left, right,
above, below), ITM steps as train-shapes.sh fine-tunes (batch 32, lr 3e-4, warm-up 200 then
linear decay, 4 hard-negative candidates, OT weight 0.1; a share --text-negatives of the
negatives minimal-edit text negatives from --data's false_captions.jsonl), and after every third
ITM step one MLM step with every caption's relation word masked (the relation stage's batches),
added to the same update, so that the encoder keeps computing relations while ITM learns. Logs
ITM accuracy and the relation MLM accuracy every 100 steps; writes OUT_DIR/final.pt (official
layout) and config.json, to bundle and probe like any run (uniter.shapes_bundle,
uniter.diagnostics.location_probe).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from ..data import PretrainDataset, collate
from ..model import load_checkpoint
from ..pretrain import (CaptionBatcher, _derive, _derive_torch, build_model, build_optimizer, forward_task,
                        grounded_groups, hard_itm_samples, lr_factor, mask_grounded, prepare_task,
                        resolve_config, save_checkpoint)
from .common import DEFAULT_WORK, WORD_GROUPS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.aux_relation_ft", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("init", metavar="INIT_CKPT")
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("--text-negatives", type=float, default=0.0, metavar="P",
                    help="share of ITM negatives that are minimal edits of the caption (default 0)")
    ap.add_argument("--work", default=DEFAULT_WORK, metavar="DIR", help="train-shapes.sh's work folder (default %(default)s)")
    ap.add_argument("--data", metavar="DIR", help="training features (default WORK/feat-train)")
    ap.add_argument("--config", metavar="JSON", help="the model's config.json (default WORK/pre-wra/config.json)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hard-negatives", type=int, default=4, metavar="K")
    ap.add_argument("--ot-weight", type=float, default=0.1)
    ap.add_argument("--mlm-every", type=int, default=3, help="a relation MLM step after every N-th ITM step")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ds = PretrainDataset(args.data or os.path.join(args.work, "feat-train"), max_text_len=128)
    if args.text_negatives > 0 and not ds.false_captions:
        raise SystemExit(f"--text-negatives needs {ds.root}/false_captions.jsonl")
    vocab = ds.vocab
    with open(args.config or os.path.join(args.work, "pre-wra", "config.json")) as f:
        cfg = resolve_config(json.load(f), ds, vocab)
    model = build_model(cfg, args.seed)
    load_checkpoint(model, args.init)
    model.train()
    group = grounded_groups(vocab, [WORD_GROUPS["relation"]])[0]
    opt = build_optimizer(model, args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.warmup, args.steps))
    itm_batches = CaptionBatcher(len(ds), args.batch_size, args.seed)
    mlm_batches = CaptionBatcher(len(ds), args.batch_size, args.seed + 1)
    rng, gen = _derive(args.seed, 3), _derive_torch(args.seed, 4)
    pad = vocab.special.pad
    t0, acc = time.time(), {"itm": [], "mlm": []}
    window = max(1, args.log_every // args.mlm_every)
    for step in range(1, args.steps + 1):
        b = collate(hard_itm_samples(model, ds, next(itm_batches), rng, 0.5, args.hard_negatives, pad,
                                     args.text_negatives), pad)
        loss, m = forward_task(model, "itm", prepare_task("itm", b, vocab, gen), args.ot_weight)
        acc["itm"].append(m["acc"])
        if step % args.mlm_every == 0:  # the relation MLM step, added to the same update
            b = collate([ds[c] for c in next(mlm_batches)], pad)
            x = prepare_task("mlm", b, vocab, gen)
            x["input_ids"], x["txt_labels"] = mask_grounded(b["input_ids"], b["text_mask"], group, vocab, gen)
            mlm_loss, mm = forward_task(model, "mlm", x)
            loss = loss + mlm_loss
            acc["mlm"].append(mm["acc"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
        opt.step()
        sched.step()
        if step % args.log_every == 0:
            itm = acc["itm"][-args.log_every:]
            mlm = acc["mlm"][-window:]
            print(f"step {step} itm acc {sum(itm) / len(itm):.3f} relation mlm acc "
                  f"{sum(mlm) / max(1, len(mlm)):.3f} ({time.time() - t0:.0f}s)", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)
        f.write("\n")
    save_checkpoint(model, os.path.join(args.out, "final.pt"),
                    {"study": "aux relation MLM in fine-tuning", "init": args.init,
                     "text_negatives": args.text_negatives, "steps": args.steps})
    print(f"wrote {args.out}/final.pt", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
