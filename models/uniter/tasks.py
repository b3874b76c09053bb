"""The official fine-tuned UNITER models (ChenRocks/UNITER `model/*.py`) on the reference backbone.

Each class keeps the official state-dict layout key for key, so that a checkpoint saved by the
official training scripts (a flat state dict: `ModelSaver.save`) loads without renaming:

| class (official name)                        | task       | keys beside `uniter.*`                          |
|----------------------------------------------|------------|-------------------------------------------------|
| UniterForPretraining (model.py)              | pretrain   | cls.*, feat_regress.*, region_classifier.*, itm_output.* |
| UniterForImageTextRetrieval                  | retrieval  | itm_output.*, rank_output.*                     |
| UniterForVisualQuestionAnswering             | vqa        | vqa_output.{0,2,3}.* (Linear h→2h, GELU, LN, Linear 2h→answers) |
| UniterForVisualEntailment                    | ve         | the VQA head with 3 outputs (contradiction, entailment, neutral) |
| UniterForNlvr2Paired                         | nlvr2      | nlvr2_output.* (Linear 2h→2)                    |
| UniterForNlvr2Triplet                        | nlvr2      | nlvr2_output.* (Linear h→2)                     |
| UniterForNlvr2PairedAttn                     | nlvr2      | attn1.*, attn2.*, fc.0.*, attn_pool.fc.0.*, nlvr2_output.* (Linear 2h→2) |
| UniterForReferringExpressionComprehension    | re         | re_output.* (Linear h→1) or re_output.{0,2,3}.* (the MLP variant) |

The NLVR2 models have a third token-type row (`init_type_embedding`): the official data loaders
give the first image's regions token type 1 and the second image's type 2.

All models take the service's padded layout ([text padded to T | regions padded to N] with masks
that are 1 on real positions, see model.UniterModel); the NLVR2 models take both images as
[B, 2, N, ...] with one mask per image. The forward passes give the outputs of the official packed
(`gather_index`) layout: attention, attention pooling and the masked softmaxes do not depend on
where the padding sits.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .model import (LN_EPS, TIED, LoadReport, UniterConfig, UniterForPretraining, UniterModel,
                    normalise_state_dict)

TASKS = ("pretrain", "retrieval", "vqa", "ve", "nlvr2", "re")
NLVR2_LAYOUTS = ("paired", "triplet", "paired_attn")
VE_LABELS = ["contradiction", "entailment", "neutral"]  # official utils/misc.py VE_ENT2IDX order
RE_MASK_VALUE = -10000.0  # official re.py: scores.masked_fill(obj_masks, -1e4)

# Every head a bundle can declare, in the manifest's order, and the encoder outputs of those that
# the encoder graph computes, in the graph's output order (after `pooled` and `hidden`).
HEADS = ("itm", "rank", "mlm", "mrc", "vqa", "ve", "nlvr2", "re")
ENCODER_HEAD_OUTPUTS = (("itm", "itm_logits"), ("rank", "rank_logits"), ("vqa", "vqa_logits"),
                        ("ve", "ve_logits"), ("re", "re_logits"))


# ---------------------------------------------------------------------------------------------
# Modules of the NLVR2 paired-attention head


class MultiheadAttention(nn.Module):
    """Multi-head attention with the parameter layout of PyTorch's nn.MultiheadAttention, which
    the official `model/attention.py` reproduces: `in_proj_weight` [3h, h] and `in_proj_bias` [3h]
    (query, key, value rows in that order) and `out_proj`. Batch first here; the official module is
    sequence first, which changes nothing but the transposes. Keys where `key_padding_mask` is
    True get -inf before the softmax, queries are scaled by head_dim^-0.5 after their projection."""

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError("hidden size must be a multiple of the attention heads")
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * hidden))
        self.out_proj = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split(self, x):
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, query, key, key_padding_mask):
        h = self.hidden
        w, bias = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:h], bias[:h]) * (self.head_dim ** -0.5)
        k = F.linear(key, w[h:2 * h], bias[h:2 * h])
        v = F.linear(key, w[2 * h:], bias[2 * h:])
        scores = torch.matmul(self._split(q), self._split(k).transpose(-1, -2))
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = self.dropout(F.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, self._split(v)).permute(0, 2, 1, 3)
        return self.out_proj(ctx.reshape(query.shape))


class AttentionPool(nn.Module):
    """Official nlvr2.py AttentionPool: score = ReLU(Linear(h, 1)(x)), -1e4 added on padding,
    softmax over the sequence, the weighted sum of x."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(hidden, 1), nn.ReLU())
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pad_mask):
        score = self.fc(x).squeeze(-1) + pad_mask.to(x.dtype) * -1e4
        weights = self.dropout(F.softmax(score, dim=1))
        return torch.matmul(weights.unsqueeze(1), x).squeeze(1)


def _answer_mlp(hidden: int, out: int, width: int) -> nn.Sequential:
    """Linear(hidden, width) → GELU (erf) → LayerNorm(width, 1e-12) → Linear(width, out): the
    official VQA/VE head (width 2h) and the RE MLP variant (width h)."""
    return nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.LayerNorm(width, eps=LN_EPS),
                         nn.Linear(width, out))


# ---------------------------------------------------------------------------------------------
# Task models


class TaskModel(nn.Module):
    """Backbone `uniter` plus one fine-tuning head; `task` and `official_class` name it."""

    task = ""
    official_class = ""
    head_names: Tuple[str, ...] = ()

    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.config = cfg
        self.uniter = UniterModel(cfg)

    def task_manifest(self) -> dict:
        return {"name": self.task, "class": self.official_class}

    def init_weights(self, seed: int = 0, bias_std: float = 0.0, ln_std: float = 0.0):
        """BERT initialisation, N(0, initializer_range) for Linear/Embedding weights and the
        attention in-projection; biases N(0, bias_std) and LayerNorm gains 1 + N(0, ln_std)
        (0 and exactly 1 by default, as the official init)."""
        g = torch.Generator().manual_seed(seed)
        std = self.config.initializer_range

        def normal(t, s, mean=0.0):
            with torch.no_grad():
                t.copy_(mean + torch.randn(t.shape, generator=g) * s)

        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                normal(mod.weight, std)
                if isinstance(mod, nn.Linear) and mod.bias is not None:
                    normal(mod.bias, bias_std)
            elif isinstance(mod, nn.LayerNorm):
                normal(mod.weight, ln_std, 1.0)
                normal(mod.bias, bias_std)
            elif isinstance(mod, MultiheadAttention):
                normal(mod.in_proj_weight, std)
                normal(mod.in_proj_bias, bias_std)
        return self

    def encode(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        """(hidden, pooled) of the backbone."""
        hidden, pooled, _ = self.uniter(input_ids, text_mask, img_feat, img_loc, img_mask)
        return hidden, pooled


class UniterForImageTextRetrieval(TaskModel):
    """Official itm.py: the pre-training ITM head kept, plus rank_output Linear(h, 1) on the
    pooled output (the retrieval score)."""

    task = "retrieval"
    official_class = "UniterForImageTextRetrieval"
    head_names = ("itm", "rank")

    def __init__(self, cfg: UniterConfig):
        super().__init__(cfg)
        self.itm_output = nn.Linear(cfg.hidden_size, 2)
        self.rank_output = nn.Linear(cfg.hidden_size, 1)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        return self.rank_output(self.encode(input_ids, text_mask, img_feat, img_loc, img_mask)[1])


class UniterForVisualQuestionAnswering(TaskModel):
    """Official vqa.py: vqa_output = Linear(h, 2h) → GELU → LayerNorm → Linear(2h, answers) on
    the pooled output; sigmoid scores (trained with binary cross-entropy)."""

    task = "vqa"
    official_class = "UniterForVisualQuestionAnswering"
    head_names = ("vqa",)

    def __init__(self, cfg: UniterConfig, num_answer: int):
        super().__init__(cfg)
        self.num_answer = num_answer
        self.vqa_output = _answer_mlp(cfg.hidden_size, num_answer, 2 * cfg.hidden_size)

    def task_manifest(self) -> dict:
        return dict(super().task_manifest(), labels="answers.txt")

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        return self.vqa_output(self.encode(input_ids, text_mask, img_feat, img_loc, img_mask)[1])


class UniterForVisualEntailment(UniterForVisualQuestionAnswering):
    """Official ve.py: the VQA model with 3 answers, VE_LABELS order."""

    task = "ve"
    official_class = "UniterForVisualEntailment"
    head_names = ("ve",)

    def __init__(self, cfg: UniterConfig):
        super().__init__(cfg, len(VE_LABELS))

    def task_manifest(self) -> dict:
        return {"name": self.task, "class": self.official_class, "labels": "ve_labels.txt"}


class UniterForReferringExpressionComprehension(TaskModel):
    """Official re.py: re_output (Linear(h, 1), or with mlp=2 Linear → GELU → LN → Linear(h, 1))
    on each region's hidden state; padded regions get -1e4 (masked_fill, not added)."""

    task = "re"
    official_class = "UniterForReferringExpressionComprehension"
    head_names = ("re",)

    def __init__(self, cfg: UniterConfig, mlp: int = 1):
        super().__init__(cfg)
        if mlp == 1:
            self.re_output = nn.Linear(cfg.hidden_size, 1)
        elif mlp == 2:
            self.re_output = _answer_mlp(cfg.hidden_size, 1, cfg.hidden_size)
        else:
            raise ValueError("re_output has 1 or 2 layers (official mlp=1 or mlp=2)")
        self.mlp = mlp

    def task_manifest(self) -> dict:
        return dict(super().task_manifest(), re_mlp=self.mlp)

    def region_scores(self, hidden, text_mask, img_mask):
        """[B, N] scores of the region positions of `hidden` [B, T+N, H]. The region part is
        picked by index (T + 0..N-1, computed from the masks' values, not their shapes, so that
        the exported graph has no shape arithmetic)."""
        scores = self.re_output(hidden).squeeze(-1)                     # [B, T+N]
        t = (text_mask * 0 + 1).sum(dim=1, keepdim=True)                # [B, 1] = T
        idx = t + torch.cumsum(img_mask * 0 + 1, dim=1) - 1             # [B, N] = T..T+N-1
        region = torch.gather(scores, 1, idx)
        return region.masked_fill(img_mask == 0, RE_MASK_VALUE)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        hidden, _ = self.encode(input_ids, text_mask, img_feat, img_loc, img_mask)
        return self.region_scores(hidden, text_mask, img_mask)


class _Nlvr2(TaskModel):
    """NLVR2 models: inputs input_ids, text_mask [B, T], img_feat [B, 2, N, D], img_loc
    [B, 2, N, 7], img_mask [B, 2, N]; output [B, 2] logits (index 1: the statement is true)."""

    task = "nlvr2"
    layout = ""
    head_names = ("nlvr2",)

    def __init__(self, cfg: UniterConfig):
        cfg = copy.deepcopy(cfg)
        cfg.type_vocab_size = 3  # official init_type_embedding: image 2 gets token type 2
        super().__init__(cfg)

    def task_manifest(self) -> dict:
        return dict(super().task_manifest(), layout=self.layout)

    def image_pass(self, input_ids, text_mask, img_feat, img_loc, img_mask, i: int):
        """(hidden, pooled, full mask) of one (text, image i) sequence, token type i + 1."""
        im = img_mask[:, i]
        hidden, pooled, _ = self.uniter(input_ids, text_mask, img_feat[:, i], img_loc[:, i], im,
                                        img_type_ids=im * 0 + (i + 1))
        return hidden, pooled, torch.cat([text_mask, im], dim=1)


class UniterForNlvr2Paired(_Nlvr2):
    """Official paired format: (text, image 1) and (text, image 2) encoded apart, their pooled
    outputs concatenated [image 1 | image 2] → nlvr2_output Linear(2h, 2)."""

    official_class = "UniterForNlvr2Paired"
    layout = "paired"

    def __init__(self, cfg: UniterConfig):
        super().__init__(cfg)
        self.nlvr2_output = nn.Linear(2 * cfg.hidden_size, 2)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        p1 = self.image_pass(input_ids, text_mask, img_feat, img_loc, img_mask, 0)[1]
        p2 = self.image_pass(input_ids, text_mask, img_feat, img_loc, img_mask, 1)[1]
        return self.nlvr2_output(torch.cat([p1, p2], dim=-1))


class UniterForNlvr2Triplet(_Nlvr2):
    """Official triplet format: one sequence [text | image 1 regions | image 2 regions] (token
    types 1 and 2) → pooled → nlvr2_output Linear(h, 2)."""

    official_class = "UniterForNlvr2Triplet"
    layout = "triplet"

    def __init__(self, cfg: UniterConfig):
        super().__init__(cfg)
        self.nlvr2_output = nn.Linear(cfg.hidden_size, 2)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        m1, m2 = img_mask[:, 0], img_mask[:, 1]
        feat = torch.cat([img_feat[:, 0], img_feat[:, 1]], dim=1)
        loc = torch.cat([img_loc[:, 0], img_loc[:, 1]], dim=1)
        mask = torch.cat([m1, m2], dim=1)
        types = torch.cat([m1 * 0 + 1, m2 * 0 + 2], dim=1)
        _, pooled, _ = self.uniter(input_ids, text_mask, feat, loc, mask, img_type_ids=types)
        return self.nlvr2_output(pooled)


class UniterForNlvr2PairedAttn(_Nlvr2):
    """Official paired-attn format: the two (text, image i) sequences' hidden states attend to
    each other (attn1: image-1 sequence queries the image-2 sequence, attn2 the reverse, keys
    masked on padding), fc(concat[attended, own]) = Linear(2h, h) → ReLU, attention pooling
    (shared attn_pool) over each sequence, nlvr2_output Linear(2h, 2) on [pool 1 | pool 2]."""

    official_class = "UniterForNlvr2PairedAttn"
    layout = "paired_attn"

    def __init__(self, cfg: UniterConfig):
        super().__init__(cfg)
        h = cfg.hidden_size
        self.attn1 = MultiheadAttention(h, cfg.num_attention_heads, cfg.attention_probs_dropout_prob)
        self.attn2 = MultiheadAttention(h, cfg.num_attention_heads, cfg.attention_probs_dropout_prob)
        self.fc = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(), nn.Dropout(cfg.hidden_dropout_prob))
        self.attn_pool = AttentionPool(h, cfg.attention_probs_dropout_prob)
        self.nlvr2_output = nn.Linear(2 * h, 2)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        left, _, lm = self.image_pass(input_ids, text_mask, img_feat, img_loc, img_mask, 0)
        right, _, rm = self.image_pass(input_ids, text_mask, img_feat, img_loc, img_mask, 1)
        lpad, rpad = lm == 0, rm == 0
        l2r = self.attn1(left, right, rpad)
        r2l = self.attn2(right, left, lpad)
        left = self.fc(torch.cat([l2r, left], dim=-1))
        right = self.fc(torch.cat([r2l, right], dim=-1))
        pooled = torch.cat([self.attn_pool(left, lpad), self.attn_pool(right, rpad)], dim=-1)
        return self.nlvr2_output(pooled)


NLVR2_CLASSES = {"paired": UniterForNlvr2Paired, "triplet": UniterForNlvr2Triplet,
                 "paired_attn": UniterForNlvr2PairedAttn}


# ---------------------------------------------------------------------------------------------
# What a model is and which heads it has


def task_manifest(model: nn.Module) -> dict:
    """The manifest's `task` section of a model."""
    if isinstance(model, UniterForPretraining):
        return {"name": "pretrain", "class": "UniterForPretraining"}
    return model.task_manifest()


def model_heads(model: nn.Module) -> List[str]:
    """The heads the model has modules for, in HEADS order."""
    if isinstance(model, UniterForPretraining):
        have = ["itm", "mlm", "mrc"] + (["rank"] if model.rank_output is not None else [])
    else:
        have = list(model.head_names)
    return [h for h in HEADS if h in have]


def head_prefixes(model: nn.Module, head: str) -> Tuple[str, ...]:
    """State-dict key prefixes that hold a head's weights."""
    if head == "nlvr2" and isinstance(model, UniterForNlvr2PairedAttn):
        return ("nlvr2_output.", "attn1.", "attn2.", "fc.", "attn_pool.")
    return {"itm": ("itm_output.",), "rank": ("rank_output.",), "mlm": ("cls.",),
            "mrc": ("region_classifier.",), "vqa": ("vqa_output.",), "ve": ("vqa_output.",),
            "nlvr2": ("nlvr2_output.",), "re": ("re_output.",)}[head]


def encoder_head_outputs(model: nn.Module, heads: Sequence[str], pooled, hidden, text_mask,
                         img_mask) -> List[Tuple[str, torch.Tensor]]:
    """The encoder graph's head outputs after pooled and hidden, ENCODER_HEAD_OUTPUTS order."""
    outs = []
    for head, name in ENCODER_HEAD_OUTPUTS:
        if head not in heads:
            continue
        if head == "itm":
            outs.append((name, model.itm_output(pooled)))
        elif head == "rank":
            outs.append((name, model.rank_output(pooled)))
        elif head in ("vqa", "ve"):
            outs.append((name, model.vqa_output(pooled)))
        elif head == "re":
            outs.append((name, model.region_scores(hidden, text_mask, img_mask)))
    return outs


# ---------------------------------------------------------------------------------------------
# Checkpoints: which class, which config, key-exact loading

PRETRAIN_ONLY = ("cls.", "feat_regress.", "region_classifier.")


@dataclass
class TaskChoice:
    task: str
    layout: str = ""      # nlvr2
    re_mlp: int = 0       # re
    with_rank: bool = False  # pretrain with a rank_output head

    def describe(self) -> str:
        extra = {"nlvr2": f" ({self.layout})", "re": f" (re_output mlp={self.re_mlp})",
                 "pretrain": " (with rank_output)" if self.with_rank else ""}.get(self.task, "")
        return self.task + extra


def _legacy_names(keys: Iterable[str]) -> List[str]:
    """Keys with `module.` dropped and gamma/beta read as weight/bias, for detection only."""
    out = []
    for k in keys:
        k = k[len("module."):] if k.startswith("module.") else k
        out.append(re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k)))
    return out


def detect_task(sd: Dict[str, torch.Tensor], force: Optional[str] = None,
                answers_given: bool = False) -> TaskChoice:
    """The official class a state dict was saved from, by its head keys (or `force`: a task name,
    or nlvr2-paired / nlvr2-triplet / nlvr2-paired-attn).

    vqa_output with 3 outputs is read as VE (the official VE model is the VQA model with 3
    answers) unless an answer list is given."""
    names = _legacy_names(sd)
    shapes = dict(zip(names, (v.shape for v in sd.values())))
    keys = set(names)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    forced_layout = ""
    if force:
        f = force.replace("-", "_")
        if f.startswith("nlvr2_"):
            forced_layout, f = f[len("nlvr2_"):], "nlvr2"
            if forced_layout not in NLVR2_LAYOUTS:
                raise ValueError(f"--task {force}: the NLVR2 layouts are "
                                 + ", ".join("nlvr2-" + x.replace("_", "-") for x in NLVR2_LAYOUTS))
        if f not in TASKS:
            raise ValueError(f"--task {force}: not one of {', '.join(TASKS)}")
        task = f
    elif has("nlvr2_output."):
        task = "nlvr2"
    elif has("vqa_output."):
        out = shapes.get("vqa_output.3.weight")
        task = "ve" if out is not None and out[0] == len(VE_LABELS) and not answers_given else "vqa"
    elif has("re_output."):
        task = "re"
    elif has("rank_output.") and not any(has(p) for p in PRETRAIN_ONLY):
        task = "retrieval"
    else:
        task = "pretrain"

    need = {"vqa": "vqa_output.", "ve": "vqa_output.", "nlvr2": "nlvr2_output.", "re": "re_output."}
    if task in need and not has(need[task]):
        raise ValueError(f"task {task}: the checkpoint has no {need[task]}* weights")
    choice = TaskChoice(task)
    if task == "nlvr2":
        if forced_layout:
            choice.layout = forced_layout
        elif has("attn1.") or has("attn_pool."):
            choice.layout = "paired_attn"
        else:
            w = shapes.get("nlvr2_output.weight")
            h = shapes.get("uniter.embeddings.word_embeddings.weight")
            if w is None or h is None:
                raise ValueError("nlvr2: cannot tell paired from triplet without "
                                 "nlvr2_output.weight and the word embeddings")
            choice.layout = "paired" if w[1] == 2 * h[1] else "triplet"
    elif task == "re":
        choice.re_mlp = 1 if "re_output.weight" in keys else 2
    elif task == "pretrain":
        choice.with_rank = has("rank_output.")
    return choice


CONFIG_FROM_TENSORS = {
    "vocab_size": ("uniter.embeddings.word_embeddings.weight", 0),
    "hidden_size": ("uniter.embeddings.word_embeddings.weight", 1),
    "max_position_embeddings": ("uniter.embeddings.position_embeddings.weight", 0),
    "type_vocab_size": ("uniter.embeddings.token_type_embeddings.weight", 0),
    "intermediate_size": ("uniter.encoder.layer.0.intermediate.dense.weight", 0),
    "img_dim": ("uniter.img_embeddings.img_linear.weight", 1),
    "img_label_dim": ("region_classifier.net.3.weight", 0),
}


def resolve_config(cfg_dict: dict, sd: Dict[str, torch.Tensor], task: str,
                   label_count: Optional[int] = None) -> UniterConfig:
    """The model config of an official config JSON (as `uniter-base.json`: without img_dim and
    img_label_dim) checked against and completed from the checkpoint's tensors.

    A dimension the config gives must equal the tensor's (NLVR2's token types excepted: the
    official code adds the third row after building the model from the 2-type config). A dimension
    the config lacks comes from the tensors; img_label_dim, without a region_classifier, from
    `label_count` (the --labels file)."""
    names = _legacy_names(sd)
    shapes = dict(zip(names, (tuple(v.shape) for v in sd.values())))
    d = dict(cfg_dict)
    for fld, (key, axis) in CONFIG_FROM_TENSORS.items():
        got = shapes[key][axis] if key in shapes else None
        if fld == "type_vocab_size" and task == "nlvr2":
            if got is not None and got != 3:
                raise ValueError(f"nlvr2 checkpoint with {got} token types (the official NLVR2 "
                                 "models have 3)")
            d.pop(fld, None)  # the model adds the third row itself
            continue
        if fld in d:
            if got is not None and got != d[fld]:
                raise ValueError(f"{fld}: the config says {d[fld]}, the checkpoint's {key} "
                                 f"says {got}")
            continue
        if got is not None:
            d[fld] = got
        elif fld == "img_label_dim" and label_count is not None:
            d[fld] = label_count
        elif fld == "img_label_dim":
            raise ValueError("img_label_dim: not in the config and the checkpoint has no "
                             "region_classifier; pass --labels (the detector's class names, one "
                             "a line, background first) or add img_label_dim to the config")
        elif fld == "img_dim":
            raise ValueError("img_dim: not in the config and the checkpoint has no "
                             "uniter.img_embeddings.img_linear.weight; add img_dim to the config")
        # others: the config default stands; a wrong one shows as a shape mismatch at load
    layers = {int(m.group(1)) for k in names
              for m in [re.match(r"uniter\.encoder\.layer\.(\d+)\.", k)] if m}
    if layers and "num_hidden_layers" not in d:
        d["num_hidden_layers"] = max(layers) + 1
    if "num_attention_heads" not in d:
        raise ValueError("num_attention_heads: not in the config and not readable from the "
                         "tensors; pass --config with the official config (uniter-base.json)")
    return UniterConfig.from_dict(d)


def build_model(choice: TaskChoice, cfg: UniterConfig, num_answer: Optional[int] = None) -> nn.Module:
    if choice.task == "pretrain":
        return UniterForPretraining(cfg, with_rank=choice.with_rank)
    if choice.task == "retrieval":
        return UniterForImageTextRetrieval(cfg)
    if choice.task == "vqa":
        if not num_answer:
            raise ValueError("vqa: the number of answers is needed")
        return UniterForVisualQuestionAnswering(cfg, num_answer)
    if choice.task == "ve":
        return UniterForVisualEntailment(cfg)
    if choice.task == "nlvr2":
        return NLVR2_CLASSES[choice.layout](cfg)
    if choice.task == "re":
        return UniterForReferringExpressionComprehension(cfg, choice.re_mlp)
    raise ValueError(f"unknown task {choice.task!r}")


@dataclass
class TaskLoadReport(LoadReport):
    """LoadReport plus the heads whose weights all came from the checkpoint (or were derived
    from it: tied keys, rank_output from itm_output with --rank)."""

    heads: List[str] = field(default_factory=list)
    absent_heads: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [super().__str__(), f"heads with weights: {self.heads}"]
        if self.absent_heads:
            lines.append(f"heads without weights (not exported): {self.absent_heads}")
        return "\n".join(lines)


class IncompleteEncoder(ValueError):
    pass


def load_task_checkpoint(model: nn.Module, path_or_sd, strict: bool = False,
                         derive_rank: bool = False) -> TaskLoadReport:
    """Loads an official-format flat state dict into any model of this module (or
    UniterForPretraining) key for key and reports the difference.

    Refused: a missing `uniter.*` key (the encoder would be partly random), a shape that differs
    from the model's, a head that has some of its keys but not all. A head none of whose keys is in
    the file is reported absent (its weights stay as initialised and must not be exported).
    `derive_rank` fills a missing rank_output from row 1 of itm_output (the official init_output)."""
    sd = path_or_sd if isinstance(path_or_sd, dict) else torch.load(path_or_sd, map_location="cpu")
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    layer_norms = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    sd, renamed = normalise_state_dict(sd, layer_norms)
    own = model.state_dict()
    from_file = set(sd)
    filled = []
    for dst, src in TIED.items():
        if dst in own and dst not in sd and src in sd:
            sd[dst] = sd[src]
            filled.append(dst)
    if (derive_rank and "rank_output.weight" in own and "rank_output.weight" not in sd
            and "itm_output.weight" in sd):
        sd["rank_output.weight"] = sd["itm_output.weight"][1:2].clone()
        sd["rank_output.bias"] = sd["itm_output.bias"][1:2].clone()
        filled += ["rank_output.weight", "rank_output.bias"]
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    enc_missing = [k for k in missing if k.startswith("uniter.")]
    if enc_missing:
        raise IncompleteEncoder(f"the checkpoint's encoder is incomplete: {len(enc_missing)} "
                                f"uniter.* keys missing: {enc_missing}")
    bad_shape = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad_shape:
        raise ValueError("checkpoint shapes do not match the config: " + "; ".join(bad_shape))
    heads, absent = [], []
    derived = {"rank_output.weight", "rank_output.bias"} & set(filled)
    for h in model_heads(model):
        # A tied key (the MLM decoder) says nothing about the head: it is its source's copy.
        hk = [k for k in own if k.startswith(head_prefixes(model, h)) and k not in TIED]
        lacking = [k for k in hk if k not in from_file and k not in derived]
        if not lacking:
            heads.append(h)
        elif len(lacking) == len(hk):
            absent.append(h)
        else:
            raise ValueError(f"head {h} is incomplete in the checkpoint: missing {lacking}")
    report = TaskLoadReport(missing, unexpected, renamed, filled, heads=heads, absent_heads=absent)
    if strict and not report.ok():
        raise ValueError("checkpoint does not match the model:\n" + str(report))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return report
