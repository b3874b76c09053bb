"""Fine-tunes the official task heads (tasks.py) from a pre-trained UNITER on the Shapes World tasks
that `uniter synth --task` writes (shapes/README.md, "Downstream tasks"), with the official
recipe's shape, and exports each result as a bundle the Go service serves.

    python3 -m uniter.finetune --task qa|ve|nlvr2|ref --split-dir DATA/train --val-dir DATA/val \\
        --init INIT/final.pt --out .cache/tasks/qa [--steps N --batch B --lr LR] [--resume]

(from models/, or with models/ on PYTHONPATH).

What is trained, and how (the official ChenRocks/UNITER train_*.py recipes):

| --task | class (tasks.py)                             | loss                                             |
|--------|----------------------------------------------|--------------------------------------------------|
| qa     | UniterForVisualQuestionAnswering (27 answers) | BCE with logits on one-hot targets, mean × answers |
| ve     | UniterForVisualEntailment (the VQA head, 3)   | the same BCE × 3 (official ve.py is the VQA model) |
| nlvr2  | UniterForNlvr2Paired (--nlvr2-layout)         | cross-entropy over (false, true)                 |
| ref    | UniterForReferringExpressionComprehension     | cross-entropy over the image's regions           |

AdamW (betas 0.9/0.98, weight decay 0.01 except biases and LayerNorms), linear warm-up then linear
decay to 0 at --steps, gradient clipping at 2.0, dropout 0.1; the VQA/VE head at --head-lr-mul
× the learning rate (official lr_mul 10). The NLVR2 model's third token type starts as a copy of
type 1 (official init_type_embedding).

Inputs. Region features come from `uniter extract` run with the serving bundle (the same
regions, features and locations the service computes): by default DIR's own regions.npz, else the
folder `feat-NAME` beside the split folder NAME (--train-features / --val-features override).
Texts are tokenised with the bundle's WordPiece rules (wordpiece.py), lower-cased, at most
--max-text-length tokens, with the vocabulary chosen by --vocab-mode:

  extend (default)  the init vocabulary with the split's task_words.txt words it lacks appended
                    at the end (ids of the existing tokens unchanged; the new word-embedding rows
                    drawn N(0, initializer_range) as BERT's): one token per word
  chars             the init vocabulary as it is: task words split into character pieces

--init is a pre-training checkpoint (uniter.recover gives one from a bundle), whose `uniter.*`
weights start the task model (its heads start from BERT's initialisation), or a checkpoint of the
same task class (a warm restart, as scripts/train-tasks.sh's later stages): then its head comes
along too.

Ref targets: the detected region with the highest IoU with the referred object's box (the
official RE code maps gold boxes to detections so); a prediction is right when its top region has
IoU >= 0.5 with the box. Items whose best region is below 0.5 are kept for evaluation (they count
as wrong) and left out of training.

Outputs in --out: log.jsonl (the curve: one line per --log-every steps with the mean loss and
lr, one per evaluation with the validation accuracy), last.pt (official key layout, the latest
evaluation) with state.pt (optimiser, step: what --resume reads), best.pt (the best validation
accuracy so far), final.pt / final.json (the best model and its full-validation numbers),
config.json, vocab.txt, answers.json (qa), and bundle/ (`export.export_checkpoint`, named
shapes-TASK). Training stops early after --patience evaluations without improvement.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import RegionStore
from .model import UniterConfig
from .tasks import (VE_LABELS, NLVR2_CLASSES, UniterForReferringExpressionComprehension,
                    UniterForVisualEntailment, UniterForVisualQuestionAnswering,
                    load_task_checkpoint)
from .wordpiece import basic_split, wordpiece

try:
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover
    _tqdm = None

TASK_FILES = {"qa": "qa.jsonl", "ve": "ve.jsonl", "nlvr2": "nlvr2.jsonl", "ref": "ref.jsonl"}
EXPORT_TASK = {"qa": "vqa", "ve": "ve", "ref": "re"}  # nlvr2: nlvr2-<layout>
REF_IOU = 0.5
HEAD_PREFIXES = ("vqa_output.", "nlvr2_output.", "re_output.", "attn1.", "attn2.", "fc.",
                 "attn_pool.")
DEFAULT_LR = {"qa": 5e-5, "ve": 5e-5, "nlvr2": 5e-5, "ref": 5e-5}
DEFAULT_HEAD_LR_MUL = {"qa": 10.0, "ve": 10.0, "nlvr2": 1.0, "ref": 1.0}


# ---------------------------------------------------------------------------------------------
# Vocabulary and tokenizer


def read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def build_vocab(base: Sequence[str], words: Sequence[str], mode: str) -> List[str]:
    """`base` with `words` it lacks appended (mode extend), or `base` unchanged (chars)."""
    tokens = list(base)
    if mode == "chars":
        return tokens
    if mode != "extend":
        raise ValueError(f"vocab mode {mode!r}: extend or chars")
    have = set(tokens)
    for w in words:
        w = w.strip().lower()
        if w and w not in have:
            tokens.append(w)
            have.add(w)
    return tokens


class Tokenizer:
    def __init__(self, tokens: Sequence[str], lowercase: bool = True, max_length: int = 40):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.lowercase, self.max_length = lowercase, max_length

    def encode(self, text: str) -> List[int]:
        toks = [p for w in basic_split(text, self.lowercase) for p in wordpiece(w, self.vocab)]
        toks = ["[CLS]"] + toks[: self.max_length - 2] + ["[SEP]"]
        return [self.vocab[t] for t in toks]


# ---------------------------------------------------------------------------------------------
# Data


def features_dir(split_dir: str, given: Optional[str] = None) -> str:
    if given:
        return given
    if os.path.exists(os.path.join(split_dir, "regions.npz")):
        return split_dir
    d = os.path.normpath(split_dir)
    return os.path.join(os.path.dirname(d), "feat-" + os.path.basename(d))


def scene_object_counts(split_dir: str) -> List[int]:
    """The number of objects of each image of a split, in image-id order (annotations.jsonl)."""
    with open(os.path.join(split_dir, "annotations.jsonl"), encoding="utf-8") as f:
        return [len(json.loads(line)["objects"]) for line in f if line.strip()]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] with box b [4] (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, 0], b[0])
    y1 = np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 2], b[2])
    y2 = np.minimum(a[:, 3], b[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)
    union = area(a) + area(np.asarray(b, dtype=np.float32)) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class TaskData:
    """One split's items of a task, tokenised, and its images' regions padded in memory."""

    def __init__(self, task: str, split_dir: str, feat_dir: str, tok: Tokenizer,
                 answers: Optional[List[str]] = None, max_images: int = 0, max_items: int = 0,
                 seed: int = 0):
        self.task = task
        store = RegionStore(os.path.join(feat_dir, "regions.npz"))
        n_img = store.num_images
        with open(os.path.join(split_dir, "annotations.jsonl"), encoding="utf-8") as f:
            n_ann = sum(1 for line in f if line.strip())
        if n_ann != n_img:
            raise ValueError(f"{feat_dir} has {n_img} images, {split_dir} {n_ann}: extract the "
                             "split again")
        counts = np.diff(store.offsets)
        N = int(counts.max())
        D = store.feat_dim
        self.feat = torch.zeros(n_img, N, D)
        self.loc = torch.zeros(n_img, N, 7)
        self.mask = torch.zeros(n_img, N, dtype=torch.long)
        self.boxes = np.zeros((n_img, N, 4), dtype=np.float32)
        feats = torch.from_numpy(store.features.astype(np.float32))
        locs = torch.from_numpy(store.locations)
        for i in range(n_img):
            a, b = int(store.offsets[i]), int(store.offsets[i + 1])
            self.feat[i, :b - a] = feats[a:b]
            self.loc[i, :b - a] = locs[a:b]
            self.mask[i, :b - a] = 1
            self.boxes[i, :b - a] = store.boxes[a:b]
        self.counts = counts

        items = []
        with open(os.path.join(split_dir, TASK_FILES[task]), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    items.append(json.loads(line))
        if max_images:
            key = "left_id" if task == "nlvr2" else "image_id"
            items = [it for it in items if it[key] < max_images
                     and (task != "nlvr2" or it["right_id"] < max_images)]
        if max_items and len(items) > max_items:
            keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:max_items])
            items = [items[i] for i in keep]
        self.ids, self.labels, self.images, self.types, self.trainable = [], [], [], [], []
        self.relations = []  # the relation word of an item's form ("" without one)
        ans_index = {a: i for i, a in enumerate(answers or [])}
        self.gold_boxes = []
        for it in items:
            text = {"qa": "question", "ve": "hypothesis", "nlvr2": "statement",
                    "ref": "expression"}[task]
            self.ids.append(tok.encode(it[text]))
            self.relations.append(it.get("form", {}).get("lf", {}).get("rel", ""))
            ok = True
            if task == "qa":
                self.labels.append(ans_index[it["answer"]])
                self.images.append(it["image_id"])
                self.types.append(it["type"])
            elif task == "ve":
                self.labels.append(VE_LABELS.index(it["label"]))
                self.images.append(it["image_id"])
                self.types.append(it.get("rule", ""))
            elif task == "nlvr2":
                self.labels.append(int(bool(it["label"])))
                self.images.append((it["left_id"], it["right_id"]))
                self.types.append(it["type"])
            else:
                i = it["image_id"]
                iou = box_iou(self.boxes[i, :counts[i]], np.asarray(it["box"], dtype=np.float32))
                self.labels.append(int(iou.argmax()))
                ok = bool(iou.max() >= REF_IOU)
                self.images.append(i)
                self.types.append("relation" if it.get("with_relation") else "attribute")
                self.gold_boxes.append(np.asarray(it["box"], dtype=np.float32))
            self.trainable.append(ok)
        self.trainable = np.array(self.trainable)

    def __len__(self):
        return len(self.ids)

    def batch(self, idx: Sequence[int]) -> Dict[str, torch.Tensor]:
        T = max(len(self.ids[i]) for i in idx)
        ids = torch.zeros(len(idx), T, dtype=torch.long)
        tmask = torch.zeros(len(idx), T, dtype=torch.long)
        for b, i in enumerate(idx):
            ids[b, :len(self.ids[i])] = torch.tensor(self.ids[i])
            tmask[b, :len(self.ids[i])] = 1
        if self.task == "nlvr2":
            left = torch.tensor([self.images[i][0] for i in idx])
            right = torch.tensor([self.images[i][1] for i in idx])
            img = torch.stack([left, right], dim=1)  # [B, 2]
            mask = self.mask[img]                     # [B, 2, N]
            n = int(mask.sum(-1).max())
            feat, loc, mask = self.feat[img][:, :, :n], self.loc[img][:, :, :n], mask[:, :, :n]
        else:
            img = torch.tensor([self.images[i] for i in idx])
            mask = self.mask[img]
            n = int(mask.sum(-1).max())
            feat, loc, mask = self.feat[img][:, :n], self.loc[img][:, :n], mask[:, :n]
        return {"input_ids": ids, "text_mask": tmask, "img_feat": feat, "img_loc": loc,
                "img_mask": mask, "labels": torch.tensor([self.labels[i] for i in idx])}


# ---------------------------------------------------------------------------------------------
# Models, losses, accuracy


def build_task_model(task: str, cfg: UniterConfig, num_answer: int = 27, nlvr2_layout: str = "paired",
                     re_mlp: int = 1):
    if task == "qa":
        return UniterForVisualQuestionAnswering(cfg, num_answer)
    if task == "ve":
        return UniterForVisualEntailment(cfg)
    if task == "nlvr2":
        return NLVR2_CLASSES[nlvr2_layout](cfg)
    if task == "ref":
        return UniterForReferringExpressionComprehension(cfg, re_mlp)
    raise ValueError(f"task {task!r}: one of {', '.join(TASK_FILES)}")


def init_from_pretrained(model, init_sd: Dict[str, torch.Tensor]) -> dict:
    """Copies the init checkpoint's `uniter.*` weights into a BERT-initialised task model: word
    embeddings row for row (rows past the init vocabulary keep their N(0, 0.02) draw), the NLVR2
    third token type from type 1. Returns what was done."""
    own = model.state_dict()
    sd = {k: v for k, v in init_sd.items() if k.startswith("uniter.")}
    done = {"new_word_rows": 0, "copied": 0}
    we = "uniter.embeddings.word_embeddings.weight"
    if we in sd and sd[we].shape != own[we].shape:
        old = sd[we]
        if old.shape[0] > own[we].shape[0] or old.shape[1] != own[we].shape[1]:
            raise ValueError(f"init word embeddings {tuple(old.shape)} do not fit {tuple(own[we].shape)}")
        new = own[we].clone()
        new[:old.shape[0]] = old
        done["new_word_rows"] = int(own[we].shape[0] - old.shape[0])
        sd[we] = new
    tt = "uniter.embeddings.token_type_embeddings.weight"
    if tt in sd and sd[tt].shape[0] == 2 and own[tt].shape[0] == 3:
        sd[tt] = torch.cat([sd[tt], sd[tt][1:2]], dim=0)
        done["type_embedding"] = "row 2 = row 1 (official init_type_embedding)"
    # a fine-tuned init of the same class (a warm restart): its head comes along too
    heads = {k: v for k, v in init_sd.items()
             if not k.startswith("uniter.") and k in own and v.shape == own[k].shape}
    if heads:
        sd.update(heads)
        done["head_from_init"] = sorted({k.split(".")[0] for k in heads})
    missing = [k for k in own if k.startswith("uniter.") and k not in sd]
    if missing:
        raise ValueError(f"init checkpoint lacks {len(missing)} uniter.* keys: {missing[:5]}")
    bad = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"init checkpoint shapes differ: {bad}")
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    done["copied"] = sum(1 for k in sd if k in own)
    return done


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task in ("qa", "ve"):  # official train_vqa/train_ve: BCE on the targets, mean × answers
        targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets) * logits.shape[1]
    return F.cross_entropy(logits, labels)  # nlvr2 (false/true), ref (over regions; pads -1e4)


def correct(task: str, data: TaskData, idx: Sequence[int], logits: torch.Tensor) -> np.ndarray:
    pred = logits.argmax(dim=1).numpy()
    if task != "ref":
        return pred == np.array([data.labels[i] for i in idx])
    out = []
    for p, i in zip(pred, idx):
        img = data.images[i]
        out.append(box_iou(data.boxes[img, p:p + 1], data.gold_boxes[i])[0] >= REF_IOU)
    return np.array(out)


@torch.no_grad()
def evaluate(model, task: str, data: TaskData, idx: Optional[Sequence[int]] = None,
             batch: int = 256) -> dict:
    was = model.training
    model.eval()
    idx = list(range(len(data))) if idx is None else list(idx)
    ok = np.zeros(len(idx), dtype=bool)
    for s in range(0, len(idx), batch):
        part = idx[s:s + batch]
        b = data.batch(part)
        logits = model(b["input_ids"], b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
        ok[s:s + len(part)] = correct(task, data, part, logits)
    model.train(was)
    by_type: Dict[str, list] = {}
    for o, i in zip(ok, idx):
        by_type.setdefault(data.types[i], []).append(o)
    res = {"acc": float(ok.mean()) if len(ok) else 0.0, "items": len(idx),
           "by_type": {t: round(float(np.mean(v)), 4) for t, v in sorted(by_type.items())}}
    if task == "qa":
        rel = [o for o, i in zip(ok, idx) if data.types[i].startswith("relation")]
        res["relation"] = float(np.mean(rel)) if rel else 0.0
        yn: Dict[str, list] = {}  # relation yes/no per relation word
        for o, i in zip(ok, idx):
            if data.types[i] == "relation_yesno":
                yn.setdefault(data.relations[i], []).append(o)
        res["relation_yesno_by_relation"] = {r: round(float(np.mean(v)), 4) for r, v in sorted(yn.items())}
    return res


# ---------------------------------------------------------------------------------------------
# Optimiser and schedule


# The location embedding's input layer (7-d box → hidden). Its inputs are fractions of the image
# with little spread, so pre-training leaves the box a small ripple on a near-constant vector
# (on the default model: across regions, 5% of the embedding's energy; the feature embedding
# 45%); at the encoder's learning rate AdamW takes thousands of steps to make it loud enough
# for a task to compare two boxes. --pos-lr-mul trains it faster.
POS_PREFIX = "uniter.img_embeddings.pos_linear."


def reinit_location_layer(linear: torch.nn.Linear, locations: torch.Tensor, seed: int,
                          spread: float = 0.5) -> None:
    """Give the location layer a well-conditioned start: a constant direction plus one direction
    per standardised box coordinate, all orthogonal to each other and to the all-ones vector (so
    the LayerNorm after it neither cancels them nor rescales them away). Across regions the
    variable part is `spread` × √7 of the constant one, instead of the few per cent pre-training
    leaves."""
    g = torch.Generator().manual_seed(seed)
    hidden, dim = linear.weight.shape
    a = torch.randn(hidden, dim + 1, generator=g)
    q, _ = torch.linalg.qr(a - a.mean(0, keepdim=True))
    mean, std = locations.mean(0), locations.std(0).clamp_min(1e-3)
    w = hidden ** 0.5 * spread * q[:, 1:] / std
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(hidden ** 0.5 * q[:, 0] - w @ mean)


def build_optimizer(model, lr: float, head_lr_mul: float, weight_decay: float = 0.01,
                    pos_lr_mul: float = 1.0):
    groups = {}
    for n, p in model.named_parameters():
        kind = "head" if n.startswith(HEAD_PREFIXES) else "pos" if n.startswith(POS_PREFIX) else "encoder"
        decay = not (n.endswith(".bias") or isinstance(_module_of(model, n), torch.nn.LayerNorm))
        groups.setdefault((kind, decay), []).append(p)
    mul = {"head": head_lr_mul, "pos": pos_lr_mul, "encoder": 1.0}
    params = [{"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr_mul": mul[kind]}
              for (kind, decay), ps in sorted(groups.items())]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98))


def _module_of(model, name: str):
    mod = model
    for part in name.split(".")[:-1]:
        mod = getattr(mod, part)
    return mod


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Official get_lr_sched: linear warm-up over `warmup` steps, then linear decay to 0."""
    if step < warmup:
        return peak * (step + 1) / max(1, warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def batch_indices(n_items: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The batch of global step `step`: epoch e = step // (n/batch) draws permutation seed+e."""
    per_epoch = max(1, n_items // batch)
    epoch, j = divmod(step, per_epoch)
    perm = np.random.default_rng(seed + epoch).permutation(n_items)
    return perm[j * batch:(j + 1) * batch]


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_state_dict(model, path: str):
    tmp = path + ".tmp"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


def write_json(path: str, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def export_bundle(args, out: str, cfg_path: str, vocab_path: str, answers_path: Optional[str],
                  labels_path: str, meta: dict, log=None):
    from .export import export_checkpoint
    task = EXPORT_TASK.get(args.task) or "nlvr2-" + args.nlvr2_layout.replace("_", "-")
    bundle = os.path.join(out, "bundle")
    val = meta.get("val", {})
    desc = (f"UNITER fine-tuned for Shapes-{args.task.upper()} from {meta.get('init_name', 'the default model')} "
            f"(uniter.finetune; val accuracy {val.get('acc', float('nan')):.4f})")
    return export_checkpoint(os.path.join(out, "final.pt"), cfg_path, vocab_path, labels_path, bundle,
                             f"shapes-{args.task}", task=task, answers=answers_path,
                             lowercase=True, max_text_length=args.max_text_length, strict=True,
                             description=desc, provenance={"finetune": meta}, log=log,
                             attention=False)  # task bundles are served without attention maps: half the size


# ---------------------------------------------------------------------------------------------
# The run


def run(args) -> dict:
    t0 = time.time()
    out = args.out
    os.makedirs(out, exist_ok=True)
    say = (lambda s: _tqdm.write(s, file=sys.stderr)) if (_tqdm and args.progress) else \
        (lambda s: print(s, file=sys.stderr, flush=True))
    torch.manual_seed(args.seed)
    if args.export_only:  # the run's own config, vocabulary and answers, as it trained with them
        with open(os.path.join(out, "final.json")) as f:
            meta = json.load(f)
        answers_path = os.path.join(out, "answers.json") if args.task == "qa" else None
        labels_path = args.labels or os.path.join(args.init_bundle, "region_labels.txt")
        shutil.rmtree(os.path.join(out, "bundle"), ignore_errors=True)
        export_bundle(args, out, os.path.join(out, "config.json"), os.path.join(out, "vocab.txt"),
                      answers_path, labels_path, meta, log=say)
        say(f"wrote {os.path.join(out, 'bundle')} from {os.path.join(out, 'final.pt')}")
        return {"exported": True}

    # the init: a pre-training checkpoint (flat state dict) with its config.json beside it
    cfg_src = args.config or os.path.join(os.path.dirname(args.init), "config.json")
    with open(cfg_src) as f:
        cfg_dict = json.load(f)
    init_vocab = args.init_vocab or os.path.join(args.init_bundle, "vocab.txt")
    base = read_lines(init_vocab)
    while base and base[-1] == "":
        base.pop()
    words_path = os.path.join(args.split_dir, "task_words.txt")
    words = read_lines(words_path) if os.path.exists(words_path) else []
    tokens = build_vocab(base, words, args.vocab_mode)
    vocab_path = os.path.join(out, "vocab.txt")
    if args.resume and os.path.exists(vocab_path) and \
            [t for t in read_lines(vocab_path) if t] != tokens:
        raise SystemExit(f"{vocab_path} differs from the vocabulary this run would build")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    cfg_dict = dict(cfg_dict, vocab_size=len(tokens))
    if args.dropout is not None:
        cfg_dict.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    cfg = UniterConfig.from_dict(cfg_dict)
    cfg_path = os.path.join(out, "config.json")
    write_json(cfg_path, {k: v for k, v in cfg.to_dict().items()})
    tok = Tokenizer(tokens, lowercase=True, max_length=args.max_text_length)

    answers = None
    answers_path = None
    if args.task == "qa":
        answers = [a for a in read_lines(os.path.join(args.split_dir, "qa_answers.txt")) if a]
        answers_path = os.path.join(out, "answers.json")
        write_json(answers_path, answers)

    init_sd = torch.load(args.init, map_location="cpu")
    if "model" in init_sd and isinstance(init_sd["model"], dict):
        init_sd = init_sd["model"]
    say(f"finetune {args.task}: loading data")
    train = TaskData(args.task, args.split_dir, features_dir(args.split_dir, args.train_features),
                     tok, answers, max_images=args.max_images, max_items=args.max_items, seed=args.seed)
    val = TaskData(args.task, args.val_dir, features_dir(args.val_dir, args.val_features), tok,
                   answers, max_items=0, seed=args.seed)
    train_idx = np.flatnonzero(train.trainable)
    if args.types:
        wanted = set(args.types.split(","))
        if unknown := wanted - set(train.types):
            raise SystemExit(f"--types: no training item has type {sorted(unknown)}")
        train_idx = np.array([i for i in train_idx if train.types[i] in wanted], dtype=np.int64)
    if args.relations:
        wanted = set(args.relations.split(","))
        train_idx = np.array([i for i in train_idx if train.relations[i] in wanted], dtype=np.int64)
    if args.max_objects:
        objects = scene_object_counts(args.split_dir)
        imgs = lambda i: train.images[i] if args.task == "nlvr2" else (train.images[i],)
        train_idx = np.array([i for i in train_idx
                              if all(objects[j] <= args.max_objects for j in imgs(i))], dtype=np.int64)
    if len(train_idx) == 0:
        raise SystemExit("no training item is left after --types / --max-objects")
    val_sub = np.sort(np.random.default_rng(args.seed + 1).permutation(len(val))[:args.val_items]) \
        if args.val_items and args.val_items < len(val) else np.arange(len(val))
    say(f"train items {len(train)} ({len(train_idx)} trainable), val {len(val)} "
        f"(evaluating on {len(val_sub)}), vocab {len(tokens)} ({len(tokens) - len(base)} new words)")

    model = build_task_model(args.task, cfg, len(answers or []) or 27, args.nlvr2_layout, args.re_mlp)
    model.init_weights(args.seed)
    init_info = init_from_pretrained(model, init_sd)
    if args.pos_scale != 1.0:  # (a resumed run loads its own weights over this below)
        with torch.no_grad():  # a louder box: the location layer's weight scaled, its bias kept
            model.uniter.img_embeddings.pos_linear.weight.mul_(args.pos_scale)
    if args.pos_reinit:
        real = train.mask.bool()
        reinit_location_layer(model.uniter.img_embeddings.pos_linear, train.loc[real], args.seed,
                              args.pos_reinit)
    lr_mul = args.head_lr_mul if args.head_lr_mul is not None else DEFAULT_HEAD_LR_MUL[args.task]
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.task]
    opt = build_optimizer(model, lr, lr_mul, pos_lr_mul=args.pos_lr_mul)
    warmup = args.warmup if args.warmup is not None else max(1, int(0.1 * args.steps))

    log_path = os.path.join(out, "log.jsonl")
    state_path = os.path.join(out, "state.pt")
    step, best, bad_evals, elapsed_before, st = 0, -1.0, 0, 0.0, {}
    if args.resume and os.path.exists(state_path):
        st = torch.load(state_path, map_location="cpu")
        model.load_state_dict(torch.load(os.path.join(out, "last.pt"), map_location="cpu"))
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["rng"])
        step, best, bad_evals = st["step"], st["best"], st["bad_evals"]
        elapsed_before = st.get("elapsed", 0.0)
        say(f"resumed at step {step} (best val {best:.4f})")
    elif os.path.exists(log_path):
        os.remove(log_path)
    meta_run = {"task": args.task, "init": os.path.abspath(args.init), "init_info": init_info,
                "lr": lr, "head_lr_mul": lr_mul, "pos_lr_mul": args.pos_lr_mul, "pos_scale": args.pos_scale,
                "pos_reinit": args.pos_reinit, "warmup": warmup, "steps": args.steps,
                "batch": args.batch, "seed": args.seed, "vocab_mode": args.vocab_mode,
                "train_items": len(train), "trainable_items": int(len(train_idx)),
                "max_images": args.max_images, "types": args.types,
                "max_objects": args.max_objects, "relations": args.relations, "nlvr2_layout": args.nlvr2_layout,
                "re_mlp": args.re_mlp, "split_dir": os.path.abspath(args.split_dir),
                "val_dir": os.path.abspath(args.val_dir)}

    def log(rec):
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def checkpoint(stopped: bool = False):
        save_state_dict(model, os.path.join(out, "last.pt"))
        torch.save({"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "step": step,
                    "best": best, "bad_evals": bad_evals, "stopped": stopped,
                    "elapsed": elapsed_before + time.time() - t0}, state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)

    stopped = bool(st.get("stopped")) if step else False
    model.train()
    bar = _tqdm(total=args.steps, initial=step, desc=f"finetune {args.task}", dynamic_ncols=True,
                file=sys.stderr) if (_tqdm and args.progress) else None
    run_loss, run_n = 0.0, 0
    if args.stop_after and step >= args.stop_after:
        if bar:
            bar.close()
        say(f"at step {step}, --stop-after {args.stop_after}: nothing to do")
        return {"step": step, "best": best, "interrupted": True}
    while step < args.steps and not stopped:
        idx = train_idx[batch_indices(len(train_idx), args.batch, step, args.seed)]
        b = train.batch(idx)
        cur_lr = lr_at(step, args.steps, warmup, lr)
        for g in opt.param_groups:
            g["lr"] = cur_lr * g["lr_mul"]
        logits = model(b["input_ids"], b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])
        loss = task_loss(args.task, logits, b["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_norm)
        opt.step()
        step += 1
        run_loss += float(loss)
        run_n += 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{cur_lr:.2e}")
        if step % args.log_every == 0 or step == args.steps:
            log({"step": step, "loss": run_loss / run_n, "lr": cur_lr, "grad_norm": float(gnorm),
                 "elapsed": round(elapsed_before + time.time() - t0, 1)})
            run_loss, run_n = 0.0, 0
        if step % args.eval_every == 0 or step == args.steps or step == args.stop_after:
            res = evaluate(model, args.task, val, val_sub)
            improved = res["acc"] > best
            if improved:
                best, bad_evals = res["acc"], 0
                save_state_dict(model, os.path.join(out, "best.pt"))
            else:
                bad_evals += 1
            rec = {"step": step, "val_acc": res["acc"], "val_items": res["items"],
                   "val_by_type": res["by_type"], "elapsed": round(elapsed_before + time.time() - t0, 1)}
            if "relation" in res:
                rec["val_relation"] = res["relation"]
                rec["val_relation_yesno_by_relation"] = res["relation_yesno_by_relation"]
            log(rec)
            say(f"step {step}: val acc {res['acc']:.4f}" + (f" relation {res['relation']:.4f}"
                if "relation" in res else "") + f" {res['by_type']}" + (" *" if improved else ""))
            stopped = bool(args.patience and bad_evals >= args.patience)
            if stopped:
                say(f"no improvement in {args.patience} evaluations: stopping at step {step}")
            checkpoint(stopped)
            if args.stop_after and step >= args.stop_after:
                if bar:
                    bar.close()
                say(f"stopped after step {step} (--stop-after); --resume continues")
                return {"step": step, "best": best, "interrupted": True}
    if bar:
        bar.close()

    # final: the best model on the full validation split, then the bundle
    best_path = os.path.join(out, "best.pt")
    model.load_state_dict(torch.load(best_path if os.path.exists(best_path)
                                     else os.path.join(out, "last.pt"), map_location="cpu"))
    res = evaluate(model, args.task, val)
    meta = dict(meta_run, steps_done=step, early_stopped=stopped, val=res,
                init_name=os.path.basename(os.path.normpath(args.init_bundle)),
                wall_seconds=round(elapsed_before + time.time() - t0, 1))
    log({"final": True, "step": step, "val_acc": res["acc"], "val_items": res["items"],
         "val_by_type": res["by_type"], **({"val_relation": res["relation"]} if "relation" in res else {})})
    save_state_dict(model, os.path.join(out, "final.pt"))
    write_json(os.path.join(out, "final.json"), meta)
    say(f"final (best) model: val acc {res['acc']:.4f} on {res['items']} items {res['by_type']}")
    if not args.no_export:
        labels_path = args.labels or os.path.join(args.init_bundle, "region_labels.txt")
        export_bundle(args, out, cfg_path, vocab_path, answers_path, labels_path, meta, log=say)
        say(f"wrote {os.path.join(out, 'bundle')}")
    return {"step": step, "best": best, "val": res}


CLI_DESCRIPTION = __doc__.split("\n\n", 1)[1].split("What is trained")[0] + \
    "See the module docstring (models/uniter/finetune.py) for the recipe and the outputs."


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.finetune", description=CLI_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=sorted(TASK_FILES))
    ap.add_argument("--split-dir", required=True, help="training split folder (uniter synth --task)")
    ap.add_argument("--val-dir", required=True, help="validation split folder")
    ap.add_argument("--train-features", default=None, help="uniter extract output of --split-dir "
                    "(default: DIR/regions.npz, else feat-NAME beside it)")
    ap.add_argument("--val-features", default=None, help="the same for --val-dir")
    ap.add_argument("--init", help="pre-trained checkpoint (official flat state "
                    "dict, e.g. uniter.recover's final.pt); config.json beside it")
    ap.add_argument("--config", default=None, help="model config JSON (default: config.json beside --init)")
    ap.add_argument("--init-bundle", default="../bundles/shapes-uniter",
                    help="the init's bundle: its vocab.txt and region_labels.txt (default %(default)s)")
    ap.add_argument("--init-vocab", default=None, help="the init's vocabulary (default: --init-bundle's)")
    ap.add_argument("--labels", default=None, help="region labels (default: --init-bundle's)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-mode", choices=("extend", "chars"), default="extend")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-5)")
    ap.add_argument("--head-lr-mul", type=float, default=None,
                    help="head learning-rate multiplier (default: 10 for qa/ve as official lr_mul, 1 otherwise)")
    ap.add_argument("--pos-lr-mul", type=float, default=1.0,
                    help="learning-rate multiplier of the location embedding's input layer (default 1)")
    ap.add_argument("--pos-scale", type=float, default=1.0,
                    help="multiply the location layer's weight by this at the start (its bias kept): "
                         "the box varies more against the constant part of the location embedding")
    ap.add_argument("--pos-reinit", type=float, default=0.0, metavar="SPREAD",
                    help="start the location layer afresh, well-conditioned, with this spread of the "
                         "box against the constant part (e.g. 0.5; 0: keep the pre-trained layer)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10%% of --steps)")
    ap.add_argument("--grad-norm", type=float, default=2.0)
    ap.add_argument("--dropout", type=float, default=None, help="override the config's dropout")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-images", type=int, default=0, help="train on items of the first N images only")
    ap.add_argument("--max-items", type=int, default=0, help="at most N training items (random)")
    ap.add_argument("--types", default="",
                    help="train on the items of these types only (comma-separated: QA question types, "
                         "VE rules, NLVR2 statement types, Ref attribute|relation); validation keeps all")
    ap.add_argument("--relations", default="",
                    help="train on the items whose form uses these relations only (comma-separated: "
                         "above, below, left_of, right_of); validation keeps all")
    ap.add_argument("--max-objects", type=int, default=0,
                    help="train on items whose scenes hold at most N objects (a curriculum stage); "
                         "validation keeps all")
    ap.add_argument("--val-items", type=int, default=2000, help="items per periodic evaluation (0: all)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--patience", type=int, default=4, help="stop after N evaluations without improvement (0: never)")
    ap.add_argument("--max-text-length", type=int, default=40)
    ap.add_argument("--nlvr2-layout", choices=sorted(NLVR2_CLASSES), default="paired")
    ap.add_argument("--re-mlp", type=int, choices=(1, 2), default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    ap.add_argument("--stop-after", type=int, default=0, help="stop (as if interrupted) after step N")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--export-only", action="store_true",
                    help="write OUT/bundle again from a finished run (OUT/final.pt, final.json); no training")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    if not args.init and not args.export_only:
        ap.error("--init is required (except with --export-only)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
