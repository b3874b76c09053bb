"""Trains the project's region detector (uniter/detector.py) on a Shapes World split.

Classes: __background__ + the 8 shapes; attributes: __no_attribute__ + the 8 colours (each box's
``color`` is its attribute label, so the region features encode colour as well as shape).

Preprocessing follows docs/detector-contract.md with a small input: BGR, BUTD means, std 1,
shorter side 256, longer side at most 384. Shapes World images are 160–320 px with objects of
0.13–0.27 of the shorter side, so at 256 the smallest objects are ~33 px (two cells of the
stride-16 feature map, matched by the 32-px anchors) and the largest ~69 px; 384 caps the
wide images (aspect up to 1.8) at ~100k pixels, which keeps a batch of 8 well under a second
on two CPU cores. Upscaling further buys nothing for flat-coloured shapes; going below 224
makes the small objects hard to separate at stride 16.

    # data (Go CLI)
    bin/uniter synth --split train --count 8000 --out .cache/shapes-train/train
    bin/uniter synth --split val --out .cache/shapes-train/val
    # train + evaluate on val (+ export into an existing encoder bundle)
    PYTHONPATH=models OPENBLAS_NUM_THREADS=1 /usr/bin/python3 -m uniter.train_detector \\
        --data .cache/shapes-train/train --val .cache/shapes-train/val \\
        --out .cache/shapes-train/run1 [--export BUNDLE_DIR]
    # continue (same --steps: finish an interrupted run; larger --steps: a longer cosine tail,
    # the learning rate resumes at the new schedule's value for the checkpoint's step)
    ... --resume .cache/shapes-train/run1/detector.pt --out .cache/shapes-train/run2 --steps 1900
    # evaluate / export a checkpoint without training
    ... --steps 0 --resume .cache/shapes-train/run1/detector.pt --val DIR [--export BUNDLE_DIR]

Outputs in --out: train_log.jsonl (losses every --log-every steps and the evaluations),
detector.pt (state_dict, DetectorConfig, optimizer, step, preprocess/selection/labels),
detector_config.json, eval_val.json (final evaluation).

Evaluation (val): VOC-style AP@0.5 per class (all-point interpolation) over the per-class NMS
detections of the exported path (raw RPN proposals scored by class_probs, as the contract's
selection sees them); colour accuracy of the best-overlapping selected region for each
ground-truth object; and region recall: the fraction of ground-truth objects covered
(IoU ≥ 0.5) by the regions that the contract's selection keeps (select_regions).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # measured fastest for conv training here

import argparse
import json
import math
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .detector import (BUTD_PREPROCESS, BUTD_SELECTION, Detector,  # noqa: E402
                       DetectorConfig, load_rgb, preprocess, select_regions)

SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross", "heart", "hexagon"]
COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
LABELS = ["__background__"] + SHAPES
ATTRIBUTES = ["__no_attribute__"] + COLORS
PREPROCESS = dict(BUTD_PREPROCESS, shorter_side=256, longer_side_max=384)
SELECTION = dict(BUTD_SELECTION)


def default_config(feature_dim: int = 256) -> DetectorConfig:
    """Small detector for 2 CPU cores: 6 plain convs (stride 16, thin at full resolution, 128
    channels at stride 16, receptive field 95 px ≥ the largest object), square-ish anchors
    32–96 px (objects are 28–70 px after resizing, boxes close to 1:1), fewer proposals and RoI
    samples than BUTD (2–6 objects per image): 64 RoIs per image, because torchvision's CPU
    RoIAlign backward is single-threaded and was half of a step at 128; D = feature_dim."""
    return DetectorConfig(
        num_classes=len(LABELS), num_attributes=len(ATTRIBUTES), feature_dim=feature_dim,
        backbone_channels=(16, 32, 64, 128, 128, 128), backbone_strides=(2, 2, 2, 2, 1, 1),
        batch_norm=False, anchor_sizes=(32, 48, 64, 96), aspect_ratios=(0.75, 1.0, 1.33),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=150,
        rpn_batch_size_per_image=128, box_batch_size_per_image=64)


# ---------------------------------------------------------------------- data

def load_split(split_dir: str) -> List[dict]:
    recs = []
    with open(os.path.join(split_dir, "annotations.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                recs.append({"file": os.path.join(split_dir, r["file"]), "width": r["width"],
                             "height": r["height"], "objects": r["objects"]})
    if not recs:
        raise ValueError(f"{split_dir}: no annotations")
    return recs


def gt_arrays(rec: dict):
    """(boxes [G, 4] float64 in original pixels, shape labels [G] 1..8, colour attrs [G] 1..8)."""
    objs = rec["objects"]
    boxes = np.array([o["box"] for o in objs], dtype=np.float64).reshape(-1, 4)
    labels = np.array([LABELS.index(o["shape"]) for o in objs], dtype=np.int64)
    attrs = np.array([ATTRIBUTES.index(o["color"]) if o.get("color") in ATTRIBUTES else -1
                      for o in objs], dtype=np.int64)
    return boxes, labels, attrs


def make_example(rec: dict, pre: dict, flip: bool = False):
    """Preprocessed image [3, Hr, Wr] and its target (boxes in resized pixels)."""
    x, _, wr, hr = preprocess(load_rgb(rec["file"]), pre)
    x = x[0]
    boxes, labels, attrs = gt_arrays(rec)
    b = boxes.copy()
    b[:, 0::2] *= wr / rec["width"]
    b[:, 1::2] *= hr / rec["height"]
    if flip:
        x = x.flip(-1)
        b = np.stack([wr - b[:, 2], b[:, 1], wr - b[:, 0], b[:, 3]], axis=1)
    t = {"boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.tensor(labels, dtype=torch.int64),
         "attributes": torch.tensor(attrs, dtype=torch.int64)}
    return x.contiguous(), t


# ---------------------------------------------------------------------- metrics

def iou_matrix(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+): area under the precision envelope."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(dets: Sequence[tuple], gts: Dict[object, np.ndarray], iou_thr: float = 0.5):
    """VOC-style AP for one class. dets: (image_key, score, box[4]); gts: image_key → [G, 4]
    boxes of this class. Greedy matching in descending score order (ties: input order); a
    detection is a true positive when its best-IoU ground truth (≥ iou_thr) is still unmatched.
    Returns nan when the class has no ground truth."""
    npos = sum(len(g) for g in gts.values())
    if npos == 0:
        return float("nan")
    order = sorted(range(len(dets)), key=lambda i: -float(dets[i][1]))
    used = {k: np.zeros(len(g), dtype=bool) for k, g in gts.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for r, i in enumerate(order):
        key, _, box = dets[i]
        g = gts.get(key)
        if g is None or len(g) == 0:
            fp[r] = 1
            continue
        ious = iou_matrix([box], g)[0]
        j = int(np.argmax(ious))
        if ious[j] >= iou_thr and not used[key][j]:
            used[key][j] = True
            tp[r] = 1
        else:
            fp[r] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec)


@torch.no_grad()
def evaluate(model: Detector, recs: Sequence[dict], pre: dict = PREPROCESS,
             selection: dict = SELECTION, det_min_score: float = 0.01,
             progress: bool = False) -> dict:
    """mAP@0.5, colour accuracy, region recall and selected-region counts on recs."""
    from torchvision.ops import nms
    was_training = model.training
    model.eval()
    dets = {c: [] for c in range(1, len(LABELS))}
    gts = {c: {} for c in range(1, len(LABELS))}
    n_gt = covered = attr_ok = shape_ok = matched = 0
    n_sel, n_props, t_fwd = [], [], 0.0
    it = enumerate(recs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(recs), desc="eval", leave=False, file=sys.stderr)
    for k, rec in it:
        x, scale, _, _ = preprocess(load_rgb(rec["file"]), pre)
        t0 = time.perf_counter()
        out = model(x)
        t_fwd += time.perf_counter() - t0
        boxes, probs, feats = out[0], out[1], out[2]
        attr = out[3] if len(out) > 3 else None
        n_props.append(int(boxes.shape[0]))
        gb, gl, ga = gt_arrays(rec)
        orig = boxes.double() / scale
        for c in range(1, len(LABELS)):
            gts[c][k] = gb[gl == c]
            keep = nms(boxes, probs[:, c], selection["nms_iou"])
            keep = keep[probs[keep, c] >= det_min_score]
            for i in keep.tolist():
                dets[c].append((k, float(probs[i, c]), orig[i].tolist()))
        sel = select_regions(boxes.numpy(), probs.numpy(), None,
                             None if attr is None else attr.numpy(), scale=scale,
                             width=rec["width"], height=rec["height"], selection=selection)
        n_sel.append(len(sel["indices"]))
        n_gt += len(gb)
        if len(gb) and len(sel["boxes"]):
            ious = iou_matrix(gb, sel["boxes"])
            best = ious.argmax(axis=1)
            for g in range(len(gb)):
                if ious[g, best[g]] >= 0.5:
                    covered += 1
                    matched += 1
                    j = best[g]
                    shape_ok += int(np.argmax(sel["soft_labels"][j][1:]) + 1 == gl[g])
                    if attr is not None:
                        attr_ok += int(np.argmax(sel["attribute_probs"][j][1:]) + 1 == ga[g])
    ap = {LABELS[c]: average_precision(dets[c], gts[c]) for c in dets}
    vals = [v for v in ap.values() if not math.isnan(v)]
    model.train(was_training)
    return {
        "images": len(recs),
        "map50": float(np.mean(vals)) if vals else float("nan"),
        "ap50": ap,
        "region_recall": covered / max(n_gt, 1),
        "color_accuracy": attr_ok / max(matched, 1),
        "shape_accuracy": shape_ok / max(matched, 1),
        "matched": matched,
        "gt_objects": n_gt,
        "selected_mean": float(np.mean(n_sel)),
        "selected_min": int(np.min(n_sel)),
        "selected_max": int(np.max(n_sel)),
        "proposals_mean": float(np.mean(n_props)),
        "forward_ms_mean": 1000 * t_fwd / len(recs),
    }


# ---------------------------------------------------------------------- training

def lr_at(step: int, total: int, base: float, warmup: int, final_frac: float = 0.05) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    if total <= warmup:
        return base
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def save_checkpoint(path: str, model: Detector, opt, step: int, extra: Optional[dict] = None):
    ck = {"state_dict": model.state_dict(), "config": model.config.to_dict(),
          "optimizer": opt.state_dict() if opt is not None else None, "step": step,
          "preprocess": PREPROCESS, "selection": SELECTION, "labels": LABELS,
          "attributes": ATTRIBUTES}
    if extra:
        ck.update(extra)
    tmp = path + ".tmp"
    torch.save(ck, tmp)
    os.replace(tmp, path)
    with open(os.path.splitext(path)[0] + "_config.json", "w") as f:
        json.dump(model.config.to_dict(), f, indent=2)
        f.write("\n")


def load_checkpoint(path: str):
    ck = torch.load(path, map_location="cpu")
    model = Detector(DetectorConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["state_dict"])
    return model, ck


def train_steps(model: Detector, recs: Sequence[dict], steps: int, *, batch_size: int = 8,
                lr: float = 1e-3, warmup: int = 100, weight_decay: float = 1e-4,
                grad_clip: float = 10.0, seed: int = 0, flip: bool = True, pre: dict = PREPROCESS,
                start_step: int = 0, opt=None, log=None, log_every: int = 10,
                on_step=None, progress: bool = False, fixed_batch: bool = False):
    """Runs optimizer steps start_step..steps-1; returns (optimizer, list of total losses).
    fixed_batch: always the first batch_size records, no flips (overfitting check)."""
    model.train()
    if opt is None:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    per_epoch = max(1, len(recs) // batch_size)
    totals = []
    it = range(start_step, steps)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=start_step, desc="train", file=sys.stderr,
                   dynamic_ncols=True, mininterval=5)
    t_start = time.time()
    for step in it:
        epoch, pos = divmod(step, per_epoch)
        if fixed_batch:
            idx, flips = list(range(min(batch_size, len(recs)))), [False] * batch_size
        else:
            g = torch.Generator().manual_seed(seed * 100003 + epoch)
            perm = torch.randperm(len(recs), generator=g)
            idx = perm[pos * batch_size:(pos + 1) * batch_size].tolist()
            fg = torch.Generator().manual_seed(seed * 7919 + step)
            flips = (torch.rand(len(idx), generator=fg) < 0.5).tolist() if flip else [False] * len(idx)
        images, targets = [], []
        for i, f in zip(idx, flips):
            x, t = make_example(recs[i], pre, f)
            images.append(x)
            targets.append(t)
        cur_lr = lr_at(step, steps, lr, warmup)
        for gparam in opt.param_groups:
            gparam["lr"] = cur_lr
        losses = model.losses(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        totals.append(float(loss))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        if log is not None and (step % log_every == 0 or step == steps - 1):
            rec = {"step": step, "epoch": epoch, "lr": cur_lr, "loss": float(loss),
                   "grad_norm": float(gn), "elapsed_s": round(time.time() - t_start, 1)}
            rec.update({k: float(v) for k, v in losses.items()})
            log(rec)
        if on_step is not None:
            on_step(step, opt)
    if bar is not None:
        bar.close()
    return opt, totals


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.train_detector", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", metavar="DIR", help="training split (annotations.jsonl + images/)")
    ap.add_argument("--val", metavar="DIR", help="validation split (evaluated during and after training)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output folder (log, checkpoint, eval)")
    ap.add_argument("--steps", type=int, default=1300, help="optimizer steps (default 1300; 0: evaluate/export only)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (cosine decay to 5%%)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--grad-clip", type=float, default=10.0)
    ap.add_argument("--feature-dim", type=int, default=256, help="D, the region feature size (= the encoder's img_dim)")
    ap.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint (model, optimizer, step)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every", type=int, default=200, help="0: only at the end")
    ap.add_argument("--eval-every", type=int, default=400, help="quick val evaluation every N steps (0: none)")
    ap.add_argument("--eval-images", type=int, default=200, help="val images in the quick evaluations")
    ap.add_argument("--final-eval-images", type=int, default=0, help="val images in the final evaluation (0: all)")
    ap.add_argument("--export", metavar="BUNDLE_DIR",
                    help="write detector.onnx + manifest section into this encoder bundle (needs its manifest.json)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "detector.pt")
    log_f = open(os.path.join(args.out, "train_log.jsonl"), "a")

    def log(rec):
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()

    start, opt_state = 0, None
    if args.resume:
        model, ck = load_checkpoint(args.resume)
        start, opt_state = int(ck.get("step", 0)), ck.get("optimizer")
        print(f"resumed {args.resume} at step {start}", file=sys.stderr)
    else:
        model = Detector(default_config(args.feature_dim)).init_weights(args.seed)
    cfg = model.config
    nparams = sum(p.numel() for p in model.parameters())
    print(f"detector: {nparams / 1e6:.2f}M parameters, C={cfg.num_classes} A={cfg.num_attributes} "
          f"D={cfg.feature_dim}; preprocess {PREPROCESS['shorter_side']}/{PREPROCESS['longer_side_max']}",
          file=sys.stderr)
    val = load_split(args.val) if args.val else None
    log({"event": "start", "argv": sys.argv[1:] if argv is None else list(argv), "step": start,
         "config": cfg.to_dict(), "params": nparams, "time": time.time()})

    if args.steps > start:
        if not args.data:
            raise SystemExit("--data is required to train")
        recs = load_split(args.data)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        if opt_state:
            opt.load_state_dict(opt_state)
        t0 = time.time()

        def on_step(step, opt):
            done = step + 1
            if args.ckpt_every and done % args.ckpt_every == 0 and done < args.steps:
                save_checkpoint(ckpt_path, model, opt, done)
            if val and args.eval_every and done % args.eval_every == 0 and done < args.steps:
                ev = evaluate(model, val[: args.eval_images])
                ev.update(event="eval", step=done, elapsed_s=round(time.time() - t0, 1))
                log(ev)
                print(f"step {done}: mAP@0.5 {ev['map50']:.3f} colour {ev['color_accuracy']:.3f} "
                      f"recall {ev['region_recall']:.3f} regions {ev['selected_mean']:.1f}",
                      file=sys.stderr, flush=True)

        opt, _ = train_steps(model, recs, args.steps, batch_size=args.batch_size, lr=args.lr,
                             warmup=args.warmup, weight_decay=args.weight_decay,
                             grad_clip=args.grad_clip, seed=args.seed, flip=not args.no_flip,
                             start_step=start, opt=opt, log=log, log_every=args.log_every,
                             on_step=on_step, progress=not args.no_progress)
        train_s = time.time() - t0
        save_checkpoint(ckpt_path, model, opt, args.steps, {"train_seconds": train_s})
        log({"event": "trained", "step": args.steps, "train_seconds": round(train_s, 1)})
        print(f"trained {args.steps - start} steps in {train_s / 60:.1f} min → {ckpt_path}",
              file=sys.stderr)

    if val:
        sub = val[: args.final_eval_images] if args.final_eval_images else val
        ev = evaluate(model, sub, progress=not args.no_progress)
        ev.update(event="final_eval", step=max(args.steps, start), split=args.val)
        log(ev)
        with open(os.path.join(args.out, "eval_val.json"), "w") as f:
            json.dump(ev, f, indent=2)
            f.write("\n")
        print(json.dumps(ev, indent=2))

    if args.export:
        if os.path.exists(os.path.join(args.export, "manifest.json")):
            from .detector_export import write_detector
            write_detector(model, args.export, preprocess=PREPROCESS, selection=SELECTION,
                           labels=LABELS, attributes=ATTRIBUTES)
            print(f"exported detector.onnx into {args.export}", file=sys.stderr)
        else:
            print(f"{args.export} has no manifest.json (no encoder bundle yet): the detector is "
                  f"saved in {ckpt_path}; export it when the encoder bundle exists with\n"
                  f"  PYTHONPATH={os.path.dirname(os.path.dirname(os.path.abspath(__file__)))} "
                  f"{sys.executable} -m uniter.train_detector --steps 0 --resume {ckpt_path} "
                  f"--out {args.out} --export {args.export}", file=sys.stderr)
    log_f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
