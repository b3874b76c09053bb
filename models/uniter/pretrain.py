"""UNITER pre-training: the paper's recipe (Chen et al., "UNITER: UNiversal Image-TExt
Representation Learning", ECCV 2020) as a library, and its command line
(``python3 -m uniter.pretrain --help``, at the end of this module).

Pieces, each usable on its own (the tests exercise them one by one):

- :func:`parse_mix`, :class:`TaskSampler` — one task per mini-batch, drawn with the mix ratios
  (default ITM:MLM:MRFR:MRC-kl = 3:4:2:2), deterministic from the seed.
- :func:`mask_tokens`, :func:`mask_regions` — conditional masking: MLM masks 15% of the text
  tokens (never [CLS]/[SEP]/[PAD]; 80% [MASK], 10% a random ordinary token, 10% unchanged; at
  least one per caption) with the image complete; MRM masks 15% of the regions (at least one per
  image) with the text complete. :func:`prepare_task` applies the right one for a task.
- :func:`itm_samples` — image-text matching pairs: each caption's image is swapped, with
  probability 0.5, for a random image the caption is FALSE on (``truth.npz``), target 0.
- :func:`forward_task` — the five losses: ``mlm`` (cross-entropy on the masked tokens through the
  tied decoder), ``mrfr`` (MSE, mean over the masked regions' feature elements, to the original
  features through the tied transposed ``img_linear``), ``mrc`` (cross-entropy to the argmax of
  the soft label over classes 1..C-1), ``mrc-kl`` (KL(soft label ‖ softmax(prediction)) summed
  over the C classes, averaged over the masked regions — the true KL; the official code's
  element-wise mean is this divided by C), ``itm`` (2-way cross-entropy on
  ``itm_output(pooled)``) plus ``ot_weight`` × :func:`wra_loss` (word-region alignment by IPOT
  optimal transport, on positive and negative pairs).
- :func:`build_optimizer` (AdamW (0.9, 0.98), weight decay 0.01 except biases and LayerNorms),
  :func:`lr_factor` (linear warm-up, then linear decay to 0), gradient clipping at 5.
- :func:`pretrain` — the loop: logs, tqdm bar, official-layout checkpoints, validation.

Everything random is drawn from generators derived from one seed (task order, batch order, ITM
negatives, masking, dropout, initialisation): the same seed gives the same losses.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple


def _blas_threads_env(argv: Sequence[str]) -> None:
    """OPENBLAS_NUM_THREADS from ``--blas-threads N`` in ``argv``, else the environment's, else 2.
    OpenBLAS sizes its thread pool when it loads: run as a program, this module sets it before
    importing numpy and torch."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--blas-threads")
    known, _ = ap.parse_known_args(argv)
    if known.blas_threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(known.blas_threads)
    else:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")


if __name__ == "__main__":
    _blas_threads_env(sys.argv[1:])

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from .data import PretrainDataset, Vocab, collate  # noqa: E402
from .model import UniterConfig, UniterForPretraining, load_checkpoint  # noqa: E402
from .ot import (DEFAULT_BETA, DEFAULT_ITERATIONS, cost_matrix_cosine, ipot_log_rows,  # noqa: E402
                 ipot_region_potential, optimal_transport_dist)

try:  # the progress bar is a nicety: training works without python3-tqdm
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover
    _tqdm = None

__all__ = [
    "TASKS", "DEFAULT_MIX", "SMALL_CONFIG", "TrainConfig", "parse_mix", "TaskSampler",
    "CaptionBatcher", "check_images", "mask_tokens", "mask_regions", "prepare_task", "itm_samples", "forward_task", "wra_loss",
    "mrc_hard_labels", "build_optimizer", "lr_factor", "resolve_config", "build_model",
    "evaluate", "pretrain", "save_checkpoint",
]

TASKS = ("itm", "mlm", "mrfr", "mrc", "mrc-kl")
GROUNDED_TASK = "grounded-mlm"  # the warm-up's MLM batches in logs (TrainConfig.grounded_mlm_steps)
DEFAULT_MIX = "itm:3,mlm:4,mrfr:2,mrc-kl:2"

# The default model for training from scratch on 2 CPU cores. BERT's proportions at a quarter of
# the width and a third of the depth of UNITER-base: head size 64 (as BERT/UNITER), FFN 4x hidden.
# ~3.2M encoder parameters; ~0.2 s per batch of 32 pairs (~20 tokens + ~6 regions) here. Position
# table 128 covers the bundles' max_text_length (60 by default) with room to spare.
SMALL_CONFIG = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}


@dataclass
class TrainConfig:
    steps: int = 10000
    batch_size: int = 32
    lr: float = 5e-5
    warmup: Optional[int] = None      # None: 10% of steps
    weight_decay: float = 0.01
    betas: Tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 5.0
    mix: str = DEFAULT_MIX
    # Per-task loss multipliers, "itm:10" (tasks not named: 1). Each batch holds one task, so a
    # multiplier scales that task's gradients against the others' in AdamW's shared moments.
    loss_weights: str = ""
    ot_weight: float = 0.1            # 0 disables WRA (the paper's ablation)
    ot_beta: float = DEFAULT_BETA
    ot_iterations: int = DEFAULT_ITERATIONS
    mask_prob: float = 0.15
    itm_neg_prob: float = 0.5
    # > 0: each ITM negative is the highest-scoring (by the current model) of this many images the
    # caption is false on — the hard-negative mining of UNITER's retrieval fine-tuning.
    itm_hard_negatives: int = 0
    # Share of ITM negatives that keep the image and take a minimal edit of the caption that is
    # false on it (false_captions.jsonl): text-side hard negatives that differ from the truth in
    # one colour, shape, size, count or relation (UNITER's retrieval fine-tuning samples negatives
    # on both sides). 0: every negative is another image, as in the paper's pre-training.
    itm_text_negatives: float = 0.0
    # Share of ITM image negatives (of the hard-negative candidates, with itm_hard_negatives)
    # drawn among the caption's near misses (truth.npz's near: the caption's objects there in
    # another number or arrangement, or one attribute off), the rest among all false images.
    # Random false images rarely hold a relation caption's two objects, so a relation is seldom
    # what tells a negative apart. 0: all among the false images.
    itm_near_negatives: float = 0.0
    # Weight of the plan distillation in ITM batches (0: none, as the paper): on matching pairs,
    # each text token's softmax over regions of the cosine of final states (the WRA cost, at
    # temperature PLAN_DISTILL_TAU) is pulled towards the model's own attention between the token
    # and the regions (both directions, all layers and heads: heads.CrossAttention), detached.
    # The attention grounds words; the final states, which the OT plan reads, otherwise do not.
    plan_distill: float = 0.0
    # With plan_distill: [CLS] and [SEP] are distilled too, towards the regions the words leave
    # unclaimed (see plan_distill_loss), so that the plan's uniform region marginal has somewhere
    # other than the nouns to send unnamed objects. False: only the words.
    plan_absorb: bool = False
    # What the distillation pulls towards the attention: "cosine", each token's softmax of the
    # cosine over regions, or "plan", the OT plan's row itself (the cosine plus the regions'
    # potential in the plan, ot.ipot_region_potential, detached), both at PLAN_DISTILL_TAU.
    plan_target: str = "cosine"
    # With plan_distill: the regions' side too, each region's softmax over the tokens pulled
    # towards the targets' column (see plan_distill_loss). False: the tokens' rows only.
    plan_columns: bool = False
    # With plan_distill: each word's target is its attention's argmax region, smoothed,
    # (1 - plan_argmax) one-hot + plan_argmax uniform over the real regions, instead of the
    # attention's spread (see plan_distill_loss ``argmax``). None: the attention alignment itself.
    plan_argmax: Optional[float] = None
    # With plan_absorb: token ids of the words that name objects (colours, shapes, sizes). When
    # given, every other text token (articles, counts, relation words) absorbs too, not only [CLS]
    # and [SEP]. (): only [CLS] and [SEP].
    plan_naming_ids: Tuple[int, ...] = ()
    # Weight of the plan-rows loss in ITM batches (with plan_distill, over the same words): each
    # word's row of the OT plan itself (ot.ipot_log_rows, differentiable through the other
    # tokens' claims on the regions), sharpened to the power PLAN_ROWS_POWER, is pulled onto its
    # target region, the argmax of ``plan_rows_target``: "attention" (as plan_argmax) or
    # "cosine" (the token's own WRA cost). The distillation shapes the cosine a token at a time;
    # the plan's argmax is lost when a noun's colour and size words take its object's region
    # mass and its rest piles onto one unnamed region. 0: none.
    plan_rows: float = 0.0
    plan_rows_target: str = "attention"
    # A grounding warm-up before the recipe: the first ``grounded_mlm_steps`` steps are MLM
    # batches that mask, in every caption, one word of one group of ``grounded_groups`` (token id
    # tuples, e.g. the detector's attribute words and its class words), the groups taking turns
    # batch by batch (see :func:`mask_grounded`). 0: none, the paper's recipe from step 1.
    grounded_mlm_steps: int = 0
    grounded_groups: Tuple[Tuple[int, ...], ...] = ()
    # A curriculum inside the warm-up: its first ``grounded_images_steps`` steps draw captions only
    # from these training images (indices into the split), e.g. two-object scenes, where a
    # relation word has one answer the model can find before it must pick the two objects out of
    # six. (): every caption from step 1.
    grounded_images: Tuple[int, ...] = ()
    grounded_images_steps: int = 0
    # "mlm-head": only the MLM head's own parameters (its transform and output bias) learn; the
    # encoder, the word embeddings its decoder is tied to and the other heads stay as loaded
    # (see :func:`freeze_all_but`). "": every parameter learns.
    train_only: str = ""
    seed: int = 42
    # > 0: a wall-clock budget in minutes. After ``budget_probe`` steps the measured rate fixes the
    # step count (never above ``steps``) so that training, its linear decay included, ends in time.
    minutes: float = 0.0
    budget_probe: int = 200
    log_every: int = 50
    ckpt_every: int = 1000            # 0: only at the end
    val_batches: int = 20             # per task, at each checkpoint
    progress: bool = True

    def warmup_steps(self) -> int:
        return self.steps // 10 if self.warmup is None else int(self.warmup)


# ---------------------------------------------------------------------------------------------
# Task sampling


def parse_mix(spec) -> Dict[str, float]:
    """``"itm:3,mlm:4,mrfr:2,mrc-kl:2"`` (or a dict) → ``{task: weight}`` without zero weights."""
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, w = part.rpartition(":")
            if not sep:
                raise ValueError(f"mix entry {part!r} is not task:weight")
            try:
                items.append((name.strip().lower(), float(w)))
            except ValueError:
                raise ValueError(f"mix entry {part!r}: weight is not a number") from None
    mix: Dict[str, float] = {}
    for name, w in items:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r} in mix (tasks: {', '.join(TASKS)})")
        if name in mix:
            raise ValueError(f"task {name!r} appears twice in mix")
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"task {name!r}: weight must be >= 0, got {w}")
        if w > 0:
            mix[name] = float(w)
    if not mix:
        raise ValueError(f"mix {spec!r} has no task with a positive weight")
    return mix


def _derive(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream)])


def _derive_torch(seed: int, stream: int) -> torch.Generator:
    s = int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(s & ((1 << 63) - 1))


class TaskSampler:
    """Draws one task per mini-batch with probability proportional to its mix weight."""

    def __init__(self, mix, seed: int):
        self.mix = parse_mix(mix)
        self.tasks = list(self.mix)
        w = np.array([self.mix[t] for t in self.tasks], dtype=np.float64)
        self.p = w / w.sum()
        self.rng = _derive(seed, 1)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return self.tasks[int(self.rng.choice(len(self.tasks), p=self.p))]

    def sample(self, n: int) -> List[str]:
        return [next(self) for _ in range(n)]


def check_images(images: Sequence[int], num_images: int) -> None:
    """Raises ValueError unless ``images`` is a non-empty list of image indices of a split of
    ``num_images`` images (the grounded curriculum's images)."""
    bad = [i for i in images if not 0 <= i < num_images]
    if not images or bad:
        raise ValueError(f"want image indices 0..{num_images - 1} of the training split, got "
                         + (f"{bad[:5]}" if bad else "none"))


class CaptionBatcher:
    """Endless shuffled epochs over the captions (or over ``pool``, a subset of caption indices,
    drawn from its own random stream), ``batch_size`` at a time."""

    def __init__(self, n: int, batch_size: int, seed: int, pool: Optional[Sequence[int]] = None):
        self.pool = None if pool is None else np.asarray(pool, dtype=np.int64)
        self.n = n if pool is None else len(self.pool)
        if self.n < 1:
            raise ValueError("no captions to draw batches from")
        self.bs, self.rng = batch_size, _derive(seed, 2 if pool is None else 7)
        self.queue: List[int] = []

    def __next__(self) -> List[int]:
        while len(self.queue) < self.bs:
            order = self.rng.permutation(self.n)
            self.queue.extend((order if self.pool is None else self.pool[order]).tolist())
        out, self.queue = self.queue[: self.bs], self.queue[self.bs:]
        return out


# ---------------------------------------------------------------------------------------------
# Conditional masking


def mask_tokens(input_ids: torch.Tensor, text_mask: torch.Tensor, vocab: Vocab,
                gen: torch.Generator, prob: float = 0.15) -> Tuple[torch.Tensor, torch.Tensor]:
    """MLM masking of a padded batch. Returns ``(masked_ids, labels)``; ``labels`` holds the
    original id at the chosen positions and -1 elsewhere.

    Each real token other than [CLS]/[SEP]/[PAD] is chosen with probability ``prob``; a caption
    with none chosen gets one chosen uniformly among its maskable tokens. A chosen token becomes
    [MASK] (80%), a random ordinary token (10%) or stays (10%) — the forced one included."""
    sp = vocab.special
    never = torch.tensor([sp.cls, sp.sep, sp.pad], dtype=input_ids.dtype)
    maskable = text_mask.bool() & ~torch.isin(input_ids, never)
    shape = input_ids.shape
    chosen = (torch.rand(shape, generator=gen) < prob) & maskable
    need = maskable.any(1) & ~chosen.any(1)
    if need.any():
        rows = need.nonzero().squeeze(1)
        pick = torch.multinomial(maskable[rows].float(), 1, generator=gen).squeeze(1)
        chosen[rows, pick] = True
    u = torch.rand(shape, generator=gen)
    rnd = vocab.random_ids[torch.randint(len(vocab.random_ids), shape, generator=gen)]
    ids = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, sp.mask), input_ids)
    ids = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, ids)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -1))
    return ids, labels


def mask_grounded(input_ids: torch.Tensor, text_mask: torch.Tensor, group: Sequence[int],
                  vocab: Vocab, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grounded-word masking, as :func:`mask_tokens` returns it: in every caption one token whose
    id is in ``group``, chosen uniformly among them, becomes [MASK] (always: the target must come
    from the image); captions without such a token are left whole and have no target.

    Why: with BERT's random 15% masking the few tokens that only the image can predict (colour,
    shape) share every batch with tokens the text predicts and with size and relation words the
    model cannot read yet; on Shapes World that noise keeps the model from learning to read
    colours from the regions at all (docs/model-card.md, "What was tried": the grounding warm-up). A batch of one group's words,
    groups alternating, teaches the text-to-region lookup in a few hundred steps."""
    grp = torch.as_tensor(list(group), dtype=input_ids.dtype)
    cand = text_mask.bool() & torch.isin(input_ids, grp)
    rows = cand.any(1).nonzero().squeeze(1)
    ids, labels = input_ids.clone(), torch.full_like(input_ids, -1)
    if rows.numel():
        pick = torch.multinomial(cand[rows].float(), 1, generator=gen).squeeze(1)
        labels[rows, pick] = input_ids[rows, pick]
        ids[rows, pick] = vocab.special.mask
    return ids, labels


def grounded_groups(vocab: Vocab, word_lists: Sequence[Sequence[str]]) -> Tuple[Tuple[int, ...], ...]:
    """Token ids of each word list (e.g. a bundle's attribute_labels.txt, region_labels.txt):
    each word and its plural (+s, +es) where the vocabulary has them as whole tokens; names
    starting with "__" (``__background__``, ``__no_attribute__``) are skipped. A list with no
    word in the vocabulary, or a vocabulary without its tokens, is an error."""
    if vocab.tokens is None:
        raise ValueError("grounded words need the vocabulary's tokens (a vocab.txt)")
    index: Dict[str, int] = {}
    for i, t in enumerate(vocab.tokens):
        index.setdefault(t, i)
    out = []
    for words in word_lists:
        ids = []
        for w in words:
            w = w.strip().lower()
            if not w or w.startswith("__"):
                continue
            for form in (w, w + "s", w + "es"):
                i = index.get(form)
                if i is not None and i not in ids:
                    ids.append(i)
        if not ids:
            raise ValueError(f"no word of {list(words)[:5]}... is a token of the vocabulary")
        out.append(tuple(ids))
    return tuple(out)


def mask_regions(img_mask: torch.Tensor, gen: torch.Generator, prob: float = 0.15) -> torch.Tensor:
    """MRM: bool ``[B, N]``, each real region chosen with probability ``prob``, at least one per
    image (uniformly among its regions when none was drawn)."""
    real = img_mask.bool()
    chosen = (torch.rand(real.shape, generator=gen) < prob) & real
    need = real.any(1) & ~chosen.any(1)
    if need.any():
        rows = need.nonzero().squeeze(1)
        pick = torch.multinomial(real[rows].float(), 1, generator=gen).squeeze(1)
        chosen[rows, pick] = True
    return chosen


def prepare_task(task: str, batch: Dict[str, torch.Tensor], vocab: Vocab, gen: torch.Generator,
                 mask_prob: float = 0.15) -> Dict[str, torch.Tensor]:
    """Model inputs and targets for one task; conditional masking: one modality at a time.

    Keys: ``input_ids text_mask img_feat img_loc img_mask`` (model inputs), ``img_masks`` (bool
    [B, N] or None), ``txt_labels`` (MLM, -1 = not a target), ``feat_targets`` (the unmasked
    features), ``img_soft_labels``, ``targets`` (ITM)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    x = {k: batch[k] for k in ("input_ids", "text_mask", "img_feat", "img_loc", "img_mask",
                               "img_soft_labels")}
    x["img_masks"], x["txt_labels"], x["feat_targets"] = None, None, None
    if task == "mlm":
        x["input_ids"], x["txt_labels"] = mask_tokens(batch["input_ids"], batch["text_mask"],
                                                      vocab, gen, mask_prob)
    elif task in ("mrfr", "mrc", "mrc-kl"):
        m = mask_regions(batch["img_mask"], gen, mask_prob)
        x["img_masks"] = m
        x["feat_targets"] = batch["img_feat"]
        # zeroed here; the model adds mask_embedding[1] where img_masks is set
        x["img_feat"] = batch["img_feat"].masked_fill(m.unsqueeze(-1), 0.0)
    else:  # itm
        if "targets" not in batch:
            raise ValueError("an ITM batch needs targets (build it with itm_samples)")
        x["targets"] = batch["targets"]
    return x


def _text_negative(ds: PretrainDataset, c: int, rng: np.random.Generator, text_prob: float) -> Optional[dict]:
    """With probability ``text_prob`` (no draw at 0: runs without text negatives keep their random
    sequence), the pair of a minimal edit of caption ``c`` that is false on c's image, target 0."""
    if text_prob <= 0 or rng.random() >= text_prob:
        return None
    f = ds.text_negative(c, rng)
    return None if f is None else ds.false_pair(f)


def itm_samples(ds: PretrainDataset, captions: Sequence[int], rng: np.random.Generator,
                neg_prob: float = 0.5, text_prob: float = 0.0, near_prob: float = 0.0) -> List[dict]:
    """Each caption with its own image (target 1) or, with probability ``neg_prob``, a negative
    (target 0): a random image the caption is false on (truth.npz decides, else any other image;
    a share ``near_prob`` of them among its near misses) or, for a share ``text_prob`` of the
    negatives, the caption's own image with a minimal edit of
    the caption that is false on it (false_captions.jsonl)."""
    out = []
    for c in captions:
        c = int(c)
        if rng.random() >= neg_prob:
            out.append(ds.pair(c, int(ds.image_of[c]), 1))
            continue
        neg = _text_negative(ds, c, rng, text_prob)
        if neg is None:
            j = ds.negative_image(c, rng, near_prob)
            neg = ds.pair(c, int(ds.image_of[c]), 1) if j is None else ds.pair(c, j, 0)
        out.append(neg)
    return out


@torch.no_grad()
def hard_itm_samples(model: UniterForPretraining, ds: PretrainDataset, captions: Sequence[int],
                     rng: np.random.Generator, neg_prob: float, k: int, pad_id: int = 0,
                     text_prob: float = 0.0, near_prob: float = 0.0) -> List[dict]:
    """As :func:`itm_samples`, but each image negative is the image with the highest match logit
    (by ``model``, in eval mode) among ``k`` drawn images the caption is false on, each drawn
    among its near misses with probability ``near_prob`` (text negatives are minimal edits
    already, and are not mined)."""
    decisions = []  # (caption, candidate images or None for the positive, or a ready pair)
    for c in captions:
        c = int(c)
        if rng.random() < neg_prob:
            neg = _text_negative(ds, c, rng, text_prob)
            if neg is not None:
                decisions.append((c, neg))
                continue
            js = [j for j in (ds.negative_image(c, rng, near_prob) for _ in range(k)) if j is not None]
            decisions.append((c, js or None))
        else:
            decisions.append((c, None))
    cands = [(c, j) for c, js in decisions if isinstance(js, list) for j in js]
    best = {}
    if cands:
        was = model.training
        model.eval()
        device = next(model.parameters()).device
        x = _to(collate([ds.pair(c, j, 0) for c, j in cands], pad_id), device)
        _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"], x["img_mask"])
        logits = model.itm_output(pooled)[:, 1].float().cpu()
        model.train(was)
        for (c, j), v in zip(cands, logits.tolist()):
            if c not in best or v > best[c][1]:
                best[c] = (j, v)
    out = []
    for c, js in decisions:
        if isinstance(js, dict):  # a text negative, ready
            out.append(js)
        elif js:  # the best-scoring of the false images
            out.append(ds.pair(c, best[c][0], 0))
        else:  # the positive (or a negative with no false image to draw)
            out.append(ds.pair(c, int(ds.image_of[c]), 1))
    return out


# ---------------------------------------------------------------------------------------------
# Losses


def mrc_hard_labels(soft: torch.Tensor) -> torch.Tensor:
    """Argmax over classes 1..C-1 (background, class 0, is never a target), as a class index."""
    return soft[..., 1:].argmax(-1) + 1


PLAN_DISTILL_TAU = 0.1


def attention_alignment(attn: Sequence[torch.Tensor], T: int) -> torch.Tensor:
    """``[B, T, N]``: attention from text token t to region r plus from r to t, summed over
    layers and heads (``attn``: per layer ``[B, heads, T+N, T+N]``, text first) — the weights of
    heads.CrossAttention before they are scaled to sum to 1."""
    a = torch.stack(list(attn)).sum(dim=(0, 2))
    return a[:, :T, T:] + a[:, T:, :T].transpose(1, 2)


def absorber_targets(p: torch.Tensor, words: torch.Tensor, absorbers: torch.Tensor,
                     real: torch.Tensor) -> torch.Tensor:
    """``p`` (``[B, T, N]`` targets over the regions) with each ``absorbers`` row (``[B, T]``
    bool) replaced by the regions the ``words`` leave unclaimed: max(0, 1/N − the mean of the
    words' rows), scaled to sum to 1 (``real``: ``[B, N]`` bool, the real regions)."""
    claim = (p * words[..., None]).sum(1) / words.sum(1, keepdim=True).clamp_min(1)   # [B, N]
    left = (real.float() / real.sum(-1, keepdim=True).clamp_min(1) - claim).clamp_min(0)
    left = left / left.sum(-1, keepdim=True).clamp_min(1e-12)
    return torch.where(absorbers[..., None], left[:, None, :], p)


def plan_distill_loss(h_txt: torch.Tensor, h_img: torch.Tensor, attn: Sequence[torch.Tensor],
                      img_mask: torch.Tensor, words: torch.Tensor, tau: float = PLAN_DISTILL_TAU,
                      absorbers: Optional[torch.Tensor] = None,
                      region_potential: Optional[torch.Tensor] = None, columns: bool = False,
                      argmax: Optional[float] = None) -> torch.Tensor:
    """Mean over the ``words`` (and ``absorbers``) positions (``[B, T]`` bool) of KL(p ‖ q): q the
    softmax over the real regions of cos(h_token, h_region) / tau; p, for a word, its attention
    alignment over them (:func:`attention_alignment`, detached, scaled to sum to 1); for an
    absorber ([CLS], [SEP]), the regions the pair's words leave unclaimed: max(0, 1/N − the mean of
    the words' p), scaled to sum to 1. Every region must send 1/N of the plan's mass somewhere;
    absorbers give the mass of regions no word refers to (objects the caption does not name,
    background) a place other than the words. With ``region_potential`` (``[B, N]``, detached:
    :func:`uniter.ot.ipot_region_potential`), q is the softmax of (cos + potential) / tau: the OT
    plan's own row for the token (``-C + phi`` over its temperature), at temperature tau.

    With ``columns``, the regions' side is added: for each real region of a pair, the softmax over
    the pair's selected tokens of cos / tau is pulled towards the targets' column, p(t, r) over
    the sum of p(·, r) (every token holding the same mass, as in the plan's uniform marginal).
    The rows say where a token goes; only the columns say which token an unnamed region goes to,
    and the plan's argmax for a noun is lost when that token is the noun.

    With ``argmax`` (a share in [0, 1)), a word's p is its attention's argmax region, smoothed:
    (1 - argmax) one-hot + argmax uniform over the real regions. The plan is an OT solution: it
    reads the whole cost, and with the attention's spread a noun stays cheap for every object of
    its shape, so the plan gives it an unnamed one and its own object to the phrase's other
    words. Flat tails take that away; they keep the noun's own object only together with more
    absorbers (forward_task ``plan_naming_ids``) and the columns."""
    T = h_txt.size(1)
    real = img_mask.bool()[:, None, :]
    p = attention_alignment(attn, T).detach().masked_fill(~real, 0.0)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    if argmax is not None:
        hot = F.one_hot(p.argmax(-1), p.size(-1)).to(p.dtype)
        flat = real.to(p.dtype) / real.sum(-1, keepdim=True).clamp_min(1)
        p = ((1 - argmax) * hot + argmax * flat).masked_fill(~real, 0.0)
    sel = words
    if absorbers is not None:
        absorbers = absorbers & words.any(1, keepdim=True)   # a pair without words has no claim
        p = absorber_targets(p, words, absorbers, real[:, 0])
        sel = words | absorbers
    cos = F.normalize(h_txt, dim=-1) @ F.normalize(h_img, dim=-1).transpose(1, 2)
    if region_potential is not None:
        cos = cos + region_potential.detach()[:, None, :]
    logq = F.log_softmax((cos / tau).masked_fill(~real, -1e4), -1)
    kl = torch.where(p > 0, p * (p.clamp_min(1e-12).log() - logq), torch.zeros_like(p)).sum(-1)
    loss = kl[sel].mean() if sel.any() else h_txt.sum() * 0.0
    if columns:
        pc = (p * sel[..., None]).masked_fill(~real, 0.0)
        mass = pc.sum(1)                                         # [B, N]
        pc = pc / mass[:, None, :].clamp_min(1e-12)
        logqc = F.log_softmax((cos / tau).masked_fill(~sel[..., None], -1e4), 1)
        klc = torch.where(pc > 0, pc * (pc.clamp_min(1e-12).log() - logqc), torch.zeros_like(pc)).sum(1)
        cols = mass > 0
        if cols.any():
            loss = loss + klc[cols].mean()
    return loss


PLAN_ROWS_POWER = 4.0
PLAN_ROWS_TARGETS = ("attention", "cosine")


def plan_rows_loss(h_txt: torch.Tensor, h_img: torch.Tensor, attn: Sequence[torch.Tensor],
                   text_mask: torch.Tensor, img_mask: torch.Tensor, words: torch.Tensor,
                   target: str = "attention", power: float = PLAN_ROWS_POWER,
                   beta: float = DEFAULT_BETA, iterations: int = DEFAULT_ITERATIONS
                   ) -> Tuple[torch.Tensor, float]:
    """Mean over the ``words`` positions (``[B, T]`` bool) of the cross-entropy between the
    word's row of the IPOT plan raised to ``power`` (rescaled to sum to 1) and its target region,
    the argmax over the real regions of its attention alignment (``target`` "attention") or of
    its cosine ("cosine"); and the share of those words whose plan row already peaks there.

    The plan is differentiated through (ot.ipot_log_rows): the loss can make a colour word give
    up some of its object's region to the noun, or make an unnamed region dearer for every word
    that would take it. The power makes one region holding a row's overflow cost more than the
    same mass spread thin, since only the row's argmax is read."""
    if target not in PLAN_ROWS_TARGETS:
        raise ValueError(f"plan rows target {target!r}: want one of {PLAN_ROWS_TARGETS}")
    pairs = words.any(1)
    if not pairs.any():
        return h_txt.sum() * 0.0, 0.0
    words = words[pairs]
    tpad, ipad = text_mask[pairs] == 0, img_mask[pairs] == 0
    C = cost_matrix_cosine(h_txt[pairs].float(), h_img[pairs].float())
    C = C.masked_fill(tpad[..., None] | ipad[:, None, :], 0)
    rows = ipot_log_rows(C, tpad, ipad, beta=beta, iterations=iterations)        # [b, T, N]
    with torch.no_grad():
        score = attention_alignment([a[pairs] for a in attn], h_txt.size(1)) if target == "attention" else -C
        goal = score.masked_fill(ipad[:, None, :], float("-inf")).argmax(-1)      # [b, T]
        hit = (rows.argmax(-1) == goal)[words].float().mean().item()
    logp = torch.log_softmax(power * rows, -1).gather(-1, goal[..., None]).squeeze(-1)
    return -logp[words].mean().to(h_txt.dtype), hit


def wra_loss(dist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Σ d_pos − Σ d_neg) / (n_pos + n_neg): pulls matching pairs' OT distance down and pushes
    mismatched pairs' up."""
    pos = dist[targets == 1].sum()
    neg = dist[targets == 0].sum()
    return (pos - neg) / dist.numel()


def forward_task(model: UniterForPretraining, task: str, x: Dict[str, torch.Tensor],
                 ot_weight: float = 0.1, ot_beta: float = DEFAULT_BETA,
                 ot_iterations: int = DEFAULT_ITERATIONS, plan_distill: float = 0.0,
                 special_ids: Sequence[int] = (), plan_absorb: bool = False,
                 plan_target: str = "cosine", plan_columns: bool = False,
                 plan_argmax: Optional[float] = None,
                 plan_naming_ids: Sequence[int] = (), plan_rows: float = 0.0,
                 plan_rows_target: str = "attention") -> Tuple[torch.Tensor, Dict[str, float]]:
    """The task's loss (a scalar tensor) and its metrics (floats; ``loss`` included). With
    ``plan_distill`` > 0, ITM adds that weight of :func:`plan_distill_loss` over the matching
    pairs' text tokens other than ``special_ids`` ([CLS], [SEP]...), and with ``plan_absorb`` those
    special tokens as its absorbers; ``plan_target`` "plan" distils into the OT plan's rows (the
    cosine plus the plan's region potential) rather than the cosine alone; ``plan_columns`` adds
    the regions' side (:func:`plan_distill_loss` ``columns``), ``plan_argmax`` distils towards
    the attention's argmax region, smoothed (:func:`plan_distill_loss` ``argmax``), and
    ``plan_naming_ids`` (with ``plan_absorb``) keeps only those tokens as words: every other text
    token absorbs too. ``plan_rows`` > 0 (with ``plan_distill``) adds that weight of
    :func:`plan_rows_loss` over the same words, towards ``plan_rows_target``."""
    hidden, pooled, attn = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], x["img_loc"],
                                     x["img_mask"], img_masks=x["img_masks"])
    T = x["input_ids"].size(1)
    h_txt, h_img = hidden[:, :T], hidden[:, T:]
    m: Dict[str, float] = {}
    if task == "mlm":
        sel = x["txt_labels"] != -1
        labels = x["txt_labels"][sel]
        if labels.numel() == 0:  # only captions without maskable tokens: nothing to predict
            loss = hidden.sum() * 0.0
            m["acc"] = 0.0
        else:
            logits = model.cls(h_txt[sel])
            loss = F.cross_entropy(logits, labels)
            m["acc"] = (logits.argmax(-1) == labels).float().mean().item()
        m["n"] = float(labels.numel())
    elif task == "mrfr":
        sel = x["img_masks"]
        pred = model.feat_regress(h_img[sel])
        loss = F.mse_loss(pred, x["feat_targets"][sel])
        m["n"] = float(sel.sum())
    elif task in ("mrc", "mrc-kl"):
        sel = x["img_masks"]
        logits = model.region_classifier(h_img[sel])
        soft = x["img_soft_labels"][sel]
        hard = mrc_hard_labels(soft)
        if task == "mrc":
            loss = F.cross_entropy(logits, hard)
        else:
            target = soft.clamp_min(0)
            target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
            loss = F.kl_div(F.log_softmax(logits, -1), target, reduction="batchmean")
        m["acc"] = (logits.argmax(-1) == hard).float().mean().item()
        m["n"] = float(sel.sum())
    elif task == "itm":
        targets = x["targets"]
        logits = model.itm_output(pooled)
        xe = F.cross_entropy(logits, targets)
        m["xe"] = xe.item()
        m["acc"] = (logits.argmax(-1) == targets).float().mean().item()
        m["pos_frac"] = targets.float().mean().item()
        loss = xe
        if ot_weight > 0:
            dist, _ = optimal_transport_dist(h_txt.float(), h_img.float(), x["text_mask"] == 0,
                                             x["img_mask"] == 0, beta=ot_beta,
                                             iterations=ot_iterations)
            ot = wra_loss(dist, targets)
            loss = xe + ot_weight * ot
            m["ot"] = ot.item()
            if (targets == 1).any():
                m["ot_pos"] = dist[targets == 1].mean().item()
            if (targets == 0).any():
                m["ot_neg"] = dist[targets == 0].mean().item()
        if plan_distill > 0:
            pos = targets == 1
            special = x["text_mask"].bool() & pos[:, None] & torch.isin(
                x["input_ids"], torch.tensor(list(special_ids), dtype=torch.long, device=targets.device))
            words = x["text_mask"].bool() & pos[:, None] & ~special
            if plan_naming_ids:
                naming = torch.isin(x["input_ids"], torch.tensor(list(plan_naming_ids), dtype=torch.long,
                                                                 device=targets.device))
                special = special | (words & ~naming)
                words = words & naming
            phi = None
            if plan_target == "plan":
                tpad, ipad = x["text_mask"] == 0, x["img_mask"] == 0
                cost = cost_matrix_cosine(h_txt.detach().float(), h_img.detach().float())
                phi = ipot_region_potential(cost.masked_fill(tpad[..., None] | ipad[:, None, :], 0), tpad, ipad,
                                            beta=ot_beta, iterations=ot_iterations).to(h_txt.dtype)
            elif plan_target != "cosine":
                raise ValueError(f"plan_target {plan_target!r}: want cosine or plan")
            distill = plan_distill_loss(h_txt.float(), h_img.float(), attn, x["img_mask"], words,
                                        absorbers=special if plan_absorb else None, region_potential=phi,
                                        columns=plan_columns, argmax=plan_argmax)
            loss = loss + plan_distill * distill
            m["distill"] = distill.item()
            if plan_rows > 0:
                rows, m["rows_hit"] = plan_rows_loss(h_txt, h_img, attn, x["text_mask"], x["img_mask"], words,
                                                     plan_rows_target, beta=ot_beta, iterations=ot_iterations)
                loss = loss + plan_rows * rows
                m["rows"] = rows.item()
    else:
        raise ValueError(f"unknown task {task!r}")
    m["loss"] = loss.item()
    return loss, m


# ---------------------------------------------------------------------------------------------
# Model, optimiser, schedule


def resolve_config(user: Optional[dict], ds: PretrainDataset,
                   vocab: Optional[Vocab] = None) -> UniterConfig:
    """SMALL_CONFIG overridden by ``user``; vocab_size, img_dim and img_label_dim come from the
    data (and the vocabulary) when not given, and are checked against it when given."""
    d = dict(SMALL_CONFIG)
    d.update(user or {})
    data_v = vocab.size if vocab is not None else ds.max_token_id() + 1
    d.setdefault("vocab_size", data_v)
    d.setdefault("img_dim", ds.regions.feat_dim)
    d.setdefault("img_label_dim", ds.regions.label_dim)
    cfg = UniterConfig.from_dict(d)
    if cfg.img_dim != ds.regions.feat_dim:
        raise ValueError(f"config img_dim {cfg.img_dim} != feature dim {ds.regions.feat_dim} in {ds.root}")
    if cfg.img_label_dim != ds.regions.label_dim:
        raise ValueError(f"config img_label_dim {cfg.img_label_dim} != soft-label dim "
                         f"{ds.regions.label_dim} in {ds.root}")
    if cfg.vocab_size <= ds.max_token_id():
        raise ValueError(f"config vocab_size {cfg.vocab_size} but the captions use id {ds.max_token_id()}")
    if vocab is not None and cfg.vocab_size != vocab.size:
        raise ValueError(f"config vocab_size {cfg.vocab_size} != vocabulary size {vocab.size}")
    return cfg


def build_model(cfg: UniterConfig, seed: int = 0) -> UniterForPretraining:
    return UniterForPretraining(cfg).init_weights(seed)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01,
                    betas=(0.9, 0.98)) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm parameters (tied weights counted once)."""
    decay, no_decay, seen = [], [], set()
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if isinstance(mod, nn.LayerNorm) or name == "bias":
                no_decay.append(p)
            else:
                decay.append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=tuple(betas), eps=1e-6)


TRAIN_ONLY = ("mlm-head",)


def freeze_all_but(model: UniterForPretraining, part: str) -> List[str]:
    """Turns off ``requires_grad`` for every parameter outside ``part`` and returns the names of
    those that still learn. ``"mlm-head"``: the MLM head's transform and bias, not its decoder
    weight, which is the word embedding matrix (tied). Re-fitting the head on a fine-tuned,
    frozen encoder changes nothing the encoder computes (ITM, WRA, attention)."""
    if part not in TRAIN_ONLY:
        raise ValueError(f"train_only {part!r}: want one of {TRAIN_ONLY}")
    head = model.cls.predictions
    keep = {id(p) for p in head.transform.parameters()} | {id(head.bias)}
    names = []
    for name, p in model.named_parameters():  # tied weights are listed once, under their owner
        p.requires_grad_(id(p) in keep)
        if id(p) in keep:
            names.append(name)
    return names


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps to 1, then linear decay reaching 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# ---------------------------------------------------------------------------------------------
# Checkpoints, evaluation, the loop


def save_checkpoint(model: UniterForPretraining, path: str, meta: dict) -> None:
    """The official layout: ``model.state_dict()`` (flat, ``uniter.*`` + heads) in ``path``, and
    ``meta`` (step, config, seed, losses, …) in the same name with ``.json``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # tied keys share storage
    tmp = path + ".tmp"
    torch.save(sd, tmp)
    os.replace(tmp, path)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _to(x: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in x.items()}


def _batch_for(task, ds, captions, rng, neg_prob, pad_id, text_prob=0.0, near_prob=0.0):
    samples = itm_samples(ds, captions, rng, neg_prob, text_prob, near_prob) if task == "itm" \
        else [ds[c] for c in captions]
    return collate(samples, pad_id)


@torch.no_grad()
def evaluate(model: UniterForPretraining, ds: PretrainDataset, vocab: Vocab, tasks: Sequence[str],
             tc: TrainConfig, max_batches: Optional[int] = None) -> Dict[str, float]:
    """Per-task metrics on a split, in eval mode, with masking and negatives fixed by the seed
    (the same numbers every time for the same weights). Averages are over batches weighted by
    their size; ``max_batches`` per task (None: the whole split)."""
    was = model.training
    device = next(model.parameters()).device
    model.eval()
    out: Dict[str, float] = {}
    order = list(range(len(ds)))
    n_batches = math.ceil(len(order) / tc.batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    for task in tasks:
        k = TASKS.index(task)  # a stream per task: its numbers do not depend on the other tasks
        rng, gen = _derive(tc.seed, 100 + k), _derive_torch(tc.seed, 200 + k)
        sums, total = defaultdict(float), 0
        for b in range(n_batches):
            caps = order[b * tc.batch_size:(b + 1) * tc.batch_size]
            batch = _batch_for(task, ds, caps, rng, tc.itm_neg_prob, vocab.special.pad)
            x = _to(prepare_task(task, batch, vocab, gen, tc.mask_prob), device)
            _, m = forward_task(model, task, x, tc.ot_weight, tc.ot_beta, tc.ot_iterations, tc.plan_distill,
                                (vocab.special.cls, vocab.special.sep), tc.plan_absorb, tc.plan_target,
                                tc.plan_columns, tc.plan_argmax, tc.plan_naming_ids,
                                tc.plan_rows, tc.plan_rows_target)
            for key, v in m.items():
                if key != "n":
                    sums[key] += v * len(caps)
            total += len(caps)
        for key, v in sums.items():
            out[f"{task}_{key}"] = v / max(1, total)
    model.train(was)
    return out


class _Meter:
    """Running means of per-task metrics over a window."""

    def __init__(self):
        self.sums = defaultdict(float)
        self.counts = defaultdict(int)

    def add(self, task: str, metrics: Dict[str, float]):
        for k, v in metrics.items():
            if k == "n":
                continue
            self.sums[f"{task}_{k}"] += v
            self.counts[f"{task}_{k}"] += 1
        self.counts[f"{task}_batches"] += 1

    def means(self) -> Dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        out.update({k: c for k, c in self.counts.items() if k.endswith("_batches")})
        return out


def _fmt(rec: Dict[str, float], tasks: Sequence[str]) -> str:
    parts = [f"step {rec['step']}", f"lr {rec['lr']:.2e}"]
    for t in tasks:
        if f"{t}_loss" not in rec:
            continue
        s = f"{t} {rec[f'{t}_loss']:.4f}"
        if f"{t}_acc" in rec:
            s += f" acc {rec[f'{t}_acc']:.3f}"
        if t == "itm" and "itm_ot" in rec:
            s += f" (xe {rec['itm_xe']:.4f} ot {rec['itm_ot']:+.4f})"
        parts.append(s)
    if "sec_per_step" in rec:
        parts.append(f"{rec['sec_per_step']:.3f} s/step")
    return " | ".join(parts)


def pretrain(model: UniterForPretraining, train_ds: PretrainDataset, vocab: Vocab, tc: TrainConfig,
             out_dir: Optional[str] = None, val_ds: Optional[PretrainDataset] = None,
             extra_meta: Optional[dict] = None,
             print_fn: Optional[Callable[[str], None]] = None) -> dict:
    """Trains ``model`` in place with the recipe. Writes, when ``out_dir`` is given:
    ``log.jsonl`` (a line per log window, ``"split": "train"``, and per validation,
    ``"split": "val"``), ``ckpt/model_step_{N}.pt`` + ``.json`` every ``ckpt_every`` steps and at
    the end, ``final.pt`` + ``final.json``, and ``config.json`` (the model config, for export).

    Returns ``{"history": [per-step {step, task, loss, ...}], "logs": [...], "final": path}``."""
    if tc.steps < 1 or tc.batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if tc.grounded_mlm_steps < 0 or (tc.grounded_mlm_steps and not tc.grounded_groups):
        raise ValueError("grounded_mlm_steps needs grounded_groups (and must be >= 0)")
    if tc.grounded_images_steps and (not tc.grounded_images or tc.grounded_images_steps > tc.grounded_mlm_steps):
        raise ValueError("grounded_images_steps needs grounded_images and at most grounded_mlm_steps steps")
    mix = parse_mix(tc.mix)
    tasks = list(mix)
    if tc.train_only and tc.grounded_mlm_steps < tc.steps and set(mix) != {"mlm"}:
        raise ValueError(f"train_only {tc.train_only!r} trains the MLM head alone: every step must be MLM "
                         "(grounded_mlm_steps = steps, or mix mlm:1)")
    loss_weights = parse_mix(tc.loss_weights) if tc.loss_weights else {}
    cfg = model.config
    if cfg.vocab_size != vocab.size:
        raise ValueError(f"model vocab_size {cfg.vocab_size} != vocabulary size {vocab.size}")
    if train_ds.regions.feat_dim != cfg.img_dim or train_ds.regions.label_dim != cfg.img_label_dim:
        raise ValueError("data feature/label dims do not match the model config")
    device = next(model.parameters()).device  # batches are built and masked on the CPU, then moved
    say = print_fn or (lambda s: (_tqdm.write(s) if _tqdm else print(s, flush=True)))
    torch.manual_seed(tc.seed)  # dropout
    sampler = TaskSampler(mix, tc.seed)
    batcher = CaptionBatcher(len(train_ds), tc.batch_size, tc.seed)
    curriculum = None
    if tc.grounded_images_steps:
        check_images(tc.grounded_images, train_ds.num_images)
        pool = np.flatnonzero(np.isin(train_ds.image_of, np.asarray(tc.grounded_images)))
        curriculum = CaptionBatcher(len(train_ds), tc.batch_size, tc.seed, pool=pool)
        say(f"curriculum: the first {tc.grounded_images_steps} steps on {len(pool)} captions of "
            f"{len(set(tc.grounded_images))} images")
    neg_rng = _derive(tc.seed, 3)
    gen = _derive_torch(tc.seed, 4)
    if tc.train_only:
        say(f"training only {tc.train_only}: {', '.join(freeze_all_but(model, tc.train_only))}")
    opt = build_optimizer(model, tc.lr, tc.weight_decay, tc.betas)
    warmup = tc.warmup_steps()
    total_steps = tc.steps  # may shrink once, under a time budget (tc.minutes)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total_steps))
    params = [p for p in model.parameters() if p.requires_grad]

    log_path = None
    if out_dir:
        os.makedirs(os.path.join(out_dir, "ckpt"), exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=2)
            f.write("\n")
        log_path = os.path.join(out_dir, "log.jsonl")
        open(log_path, "w").close()

    def write_log(rec):
        logs.append(rec)
        if log_path:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec, default=_json_default) + "\n")

    def meta(step):
        return {"step": step, "config": cfg.to_dict(), "seed": tc.seed, "train": asdict(tc),
                "tasks": mix, "special_ids": vocab.special.as_dict(),
                "losses": last_window or window.means(), "totals": total.means(),
                "val": last_val, "data": os.path.abspath(train_ds.root),
                "val_data": os.path.abspath(val_ds.root) if val_ds else None,
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra_meta or {})}

    def checkpoint(step):
        nonlocal last_val
        if val_ds is not None:
            last_val = {k: round(v, 6) for k, v in
                        evaluate(model, val_ds, vocab, tasks, tc, tc.val_batches).items()}
            write_log({"step": step, "split": "val", **last_val})
            say(f"val step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
        if out_dir:
            path = os.path.join(out_dir, "ckpt", f"model_step_{step}.pt")
            save_checkpoint(model, path, meta(step))
            return path
        return None

    history: List[dict] = []
    logs: List[dict] = []
    window, total = _Meter(), _Meter()
    last_window: Dict[str, float] = {}
    last_val: Optional[dict] = None
    model.train()
    bar = _tqdm(total=tc.steps, desc="pretrain", dynamic_ncols=True, file=sys.stderr) \
        if (_tqdm and tc.progress) else None
    t_window, n_window = time.perf_counter(), 0
    t_start = time.perf_counter()
    last_ckpt = None
    step = 0
    while step < total_steps:
        step += 1
        t0 = time.perf_counter()
        grounded = step <= tc.grounded_mlm_steps
        task = "mlm" if grounded else next(sampler)
        caps = next(curriculum if step <= tc.grounded_images_steps else batcher)
        if grounded:
            batch = _batch_for("mlm", train_ds, caps, neg_rng, tc.itm_neg_prob, vocab.special.pad)
        elif task == "itm" and tc.itm_hard_negatives > 0:
            batch = collate(hard_itm_samples(model, train_ds, caps, neg_rng, tc.itm_neg_prob,
                                             tc.itm_hard_negatives, vocab.special.pad,
                                             tc.itm_text_negatives, tc.itm_near_negatives), vocab.special.pad)
        else:
            batch = _batch_for(task, train_ds, caps, neg_rng, tc.itm_neg_prob, vocab.special.pad,
                               tc.itm_text_negatives, tc.itm_near_negatives)
        x = prepare_task(task, batch, vocab, gen, tc.mask_prob)
        if grounded:  # replaces prepare_task's MLM masking (whose draws stay: the committed
            # default bundle was trained with this random sequence)
            group = tc.grounded_groups[(step - 1) % len(tc.grounded_groups)]
            x["input_ids"], x["txt_labels"] = mask_grounded(batch["input_ids"], batch["text_mask"],
                                                            group, vocab, gen)
        x = _to(x, device)
        loss, m = forward_task(model, task, x, tc.ot_weight, tc.ot_beta, tc.ot_iterations, tc.plan_distill,
                               (vocab.special.cls, vocab.special.sep), tc.plan_absorb, tc.plan_target,
                               tc.plan_columns, tc.plan_argmax, tc.plan_naming_ids,
                               tc.plan_rows, tc.plan_rows_target)
        if grounded:
            task = GROUNDED_TASK  # logged apart from the recipe's MLM
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: {task} loss is {loss.item()}")
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        (loss * loss_weights.get(task, 1.0)).backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)) if tc.grad_clip > 0 else 0.0
        opt.step()
        if tc.minutes > 0 and step == tc.budget_probe and step < total_steps:
            # before sched.step(), so the next step's lr already follows the new end
            rate = (time.perf_counter() - t_start) / step
            fit = int(tc.minutes * 60 / rate)
            if fit < total_steps:
                total_steps = max(step + 1, fit)
                say(f"time budget {tc.minutes:g} min at {rate:.3f} s/step: {total_steps} steps "
                    f"instead of {tc.steps}")
                if bar:
                    bar.total = total_steps
        sched.step()
        dt = time.perf_counter() - t0
        history.append({"step": step, "task": task, **m, "lr": lr, "grad_norm": gnorm, "time_s": dt})
        window.add(task, m)
        total.add(task, m)
        n_window += 1
        if bar:
            bar.update(1)
            bar.set_postfix_str(f"{task} {m['loss']:.3f}", refresh=False)
        if step % tc.log_every == 0 or step == total_steps:
            rec = {"step": step, "split": "train", "lr": lr, **window.means(),
                   "sec_per_step": (time.perf_counter() - t_window) / n_window}
            write_log(rec)
            say(_fmt(rec, [GROUNDED_TASK] + tasks))
            last_window = window.means()
            window = _Meter()
            t_window, n_window = time.perf_counter(), 0
        if tc.ckpt_every and step % tc.ckpt_every == 0 and step != total_steps:
            last_ckpt = checkpoint(step)
    last_ckpt = checkpoint(total_steps)
    if bar:
        bar.close()
    final = None
    if out_dir:
        final = os.path.join(out_dir, "final.pt")
        save_checkpoint(model, final, meta(total_steps))
    return {"history": history, "logs": logs, "final": final, "last_checkpoint": last_ckpt}


# ---------------------------------------------------------------------------------------------
# Command line

CLI_DESCRIPTION = """Pre-trains UNITER with the paper's recipe (MLM, MRFR, MRC/MRC-kl, ITM + WRA by optimal
transport; one task per mini-batch drawn by mix ratio) on a split in the format described in
uniter/data.py (regions.npz, captions.jsonl, optional truth.npz and vocab.txt).

    python3 -m uniter.pretrain --data data/shapes/train --val data/shapes/val \\
        --out runs/shapes-small --steps 20000 --lr 3e-4 --warmup 1000

writes OUT/log.jsonl (per-task running losses every --log-every steps; validation at each
checkpoint), OUT/ckpt/model_step_N.pt (+ .json: step, config, seed, losses) every --ckpt-every
steps and at the end, OUT/final.pt (+ .json) and OUT/config.json. The checkpoints are flat
official-layout state dicts: export them with

    python3 -m uniter.export --checkpoint OUT/final.pt --config OUT/config.json ...

The default model (no --config) is a small UNITER for 2 CPU cores: hidden 256, 4 layers, 4 heads,
intermediate 1024, max 128 positions; vocab_size, img_dim and img_label_dim are read from the
data. --config takes a JSON file or an inline JSON object of UNITER config fields overriding it.
The paper's lr (5e-5) is for continuing from a pre-trained model; from scratch on small data use
something like 3e-4 to 1e-3.
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.pretrain", description=CLI_DESCRIPTION,
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
                         "to); off by default")
    ap.add_argument("--plan-argmax", type=float, default=None, metavar="D",
                    help="with --plan-distill: each word's target is its attention's argmax region, "
                         "(1-D) one-hot + D uniform over the real regions, not the attention's spread; "
                         "off by default")
    ap.add_argument("--plan-naming-words", default="", metavar="FILE[,FILE...]",
                    help="with --plan-absorb: the words that name objects (e.g. the bundle's "
                         "attribute_labels.txt,region_labels.txt and the size words); every other text "
                         "token absorbs too; default: only [CLS] and [SEP]")
    ap.add_argument("--plan-rows", type=float, default=0.0, metavar="W",
                    help="with --plan-distill: weight of the plan-rows loss, each word's row of the OT plan "
                         "itself (differentiated through the solver) pulled onto its target region; "
                         "0: none (default)")
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
    # --blas-threads reached OPENBLAS_NUM_THREADS before numpy and torch were imported, when this
    # module runs as a program (see _blas_threads_env); OpenBLAS reads it only when it loads.
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
