"""Reference UNITER (Chen et al., ECCV 2020) with the official checkpoint layout.

Every module and parameter name below reproduces the official state-dict keys exactly
(`uniter.` backbone with HuggingFace BERT names, `cls`, `feat_regress`, `region_classifier`,
`itm_output`, optional `rank_output`), so an official checkpoint loads without renaming.
The encoder is plain post-LayerNorm BERT with exact erf GELU and LayerNorm eps 1e-12.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12
IMG_DIM = 2048        # bottom-up-attention pooled feature size
IMG_LABEL_DIM = 1601  # 1600 Visual Genome classes + background at index 0
LOC_DIM = 7


@dataclass
class UniterConfig:
    """The official `uniter-base.json` fields, plus the image dims the official code passes apart."""

    vocab_size: int = 28996
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    img_dim: int = IMG_DIM
    img_label_dim: int = IMG_LABEL_DIM
    extra: Dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "UniterConfig":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.extra = {k: v for k, v in d.items() if k not in known}
        if cfg.hidden_act != "gelu":
            raise ValueError(f"hidden_act {cfg.hidden_act!r} is not supported (UNITER uses gelu)")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        return cfg

    @classmethod
    def from_json(cls, path: str) -> "UniterConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


class UniterTextEmbeddings(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Positions 0..T-1 and token type 0, written without the tensor's size so that the exported
        # graph computes no shapes (shape nodes are what ONNX Runtime's CUDA provider leaves on the CPU).
        types = input_ids * 0
        pos = torch.cumsum(types + 1, dim=1) - 1
        e = self.word_embeddings(input_ids) + self.position_embeddings(pos) \
            + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(e))


class UniterImageEmbeddings(nn.Module):
    """LN(LN(img_linear(feat)) + LN(pos_linear(loc7)) + token_type[1]); no position embedding."""

    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.img_linear = nn.Linear(cfg.img_dim, cfg.hidden_size)
        self.img_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.pos_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.pos_linear = nn.Linear(LOC_DIM, cfg.hidden_size)
        self.mask_embedding = nn.Embedding(2, cfg.img_dim, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, img_feat, img_loc, type_embeddings, img_masks: Optional[torch.Tensor] = None):
        if img_masks is not None:  # masked region modelling: add mask_embedding[1] where masked
            img_feat = img_feat + self._mask(img_masks)
        im = self.img_layer_norm(self.img_linear(img_feat))
        pos = self.pos_layer_norm(self.pos_linear(img_loc))
        return self.dropout(self.LayerNorm(im + pos + type_embeddings))

    def _mask(self, img_masks: torch.Tensor) -> torch.Tensor:
        # Row 0 means "not masked" and must contribute nothing, whatever the checkpoint holds.
        w = self.mask_embedding.weight
        row1 = w[1].view(1, 1, -1)
        return img_masks.to(w.dtype).unsqueeze(-1) * row1


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _split(self, x):
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, additive_mask):
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + additive_mask
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(self.dropout(probs), v).permute(0, 2, 1, 3)
        return ctx.reshape(x.shape), probs


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x, additive_mask):
        ctx, probs = self.self(x, additive_mask)
        return self.output(ctx, x), probs


class BertIntermediate(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x):
        return F.gelu(self.dense(x))  # exact erf GELU


class BertOutput(BertSelfOutput):
    def __init__(self, cfg: UniterConfig):
        nn.Module.__init__(self)
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)


class BertLayer(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, additive_mask):
        a, probs = self.attention(x, additive_mask)
        return self.output(self.intermediate(a), a), probs


class UniterEncoder(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, x, additive_mask) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        attn = []
        for layer in self.layer:
            x, probs = layer(x, additive_mask)
            attn.append(probs)
        return x, attn


class BertPooler(nn.Module):
    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden):
        return torch.tanh(self.dense(hidden[:, 0]))


class UniterModel(nn.Module):
    """The single-stream backbone over the padded layout [text padded to T | regions padded to N].

    `text_mask` and `img_mask` are 1 on real positions and 0 on padding; the attention mask is
    their concatenation, applied additively as (1 - m) * -10000 like the official code. This
    padded layout gives the same outputs as the official packed `gather_index` layout.
    """

    def __init__(self, cfg: UniterConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = UniterTextEmbeddings(cfg)
        self.img_embeddings = UniterImageEmbeddings(cfg)
        self.encoder = UniterEncoder(cfg)
        self.pooler = BertPooler(cfg)

    def embed(self, input_ids, img_feat, img_loc, img_masks=None, img_type_ids=None):
        txt = self.embeddings(input_ids)
        if img_type_ids is None:
            img_type = self.embeddings.token_type_embeddings.weight[1]  # token type 1, broadcast over regions
        else:  # per-region token types [B, N] (NLVR2: 1 for the first image, 2 for the second)
            img_type = self.embeddings.token_type_embeddings(img_type_ids)
        img = self.img_embeddings(img_feat, img_loc, img_type, img_masks)
        return torch.cat([txt, img], dim=1)

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask, img_masks=None,
                img_type_ids=None):
        x = self.embed(input_ids, img_feat, img_loc, img_masks, img_type_ids)
        m = torch.cat([text_mask, img_mask], dim=1).to(x.dtype)
        additive = ((1.0 - m) * -10000.0)[:, None, None, :]
        hidden, attn = self.encoder(x, additive)
        return hidden, self.pooler(hidden), attn


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg: UniterConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg.hidden_size)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: UniterConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, word_embeddings)

    def forward(self, x):
        return self.predictions(x)


class RegionFeatureRegression(nn.Module):
    """MRFR: Linear → GELU → LN, then the transposed (tied) img_linear weight plus a bias."""

    def __init__(self, hidden: int, img_linear: nn.Linear):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.LayerNorm(hidden, eps=LN_EPS))
        self.weight = img_linear.weight  # tied, [hidden, img_dim]
        self.bias = nn.Parameter(torch.zeros(img_linear.in_features))

    def forward(self, x):
        return F.linear(self.net(x), self.weight.t(), self.bias)


class RegionClassification(nn.Module):
    """MRC / MRC-kl: Linear → GELU → LN → Linear(hidden, label_dim)."""

    def __init__(self, hidden: int, label_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.LayerNorm(hidden, eps=LN_EPS), nn.Linear(hidden, label_dim))

    def forward(self, x):
        return self.net(x)


class UniterForPretraining(nn.Module):
    """Backbone plus the pre-training heads, with the official 230-key state dict
    (231 with a fine-tuned retrieval `rank_output`)."""

    def __init__(self, cfg: UniterConfig, with_rank: bool = False):
        super().__init__()
        self.config = cfg
        self.uniter = UniterModel(cfg)
        self.cls = BertOnlyMLMHead(cfg, self.uniter.embeddings.word_embeddings)
        self.feat_regress = RegionFeatureRegression(cfg.hidden_size,
                                                    self.uniter.img_embeddings.img_linear)
        self.region_classifier = RegionClassification(cfg.hidden_size, cfg.img_label_dim)
        self.itm_output = nn.Linear(cfg.hidden_size, 2)
        self.rank_output = nn.Linear(cfg.hidden_size, 1) if with_rank else None

    def init_weights(self, seed: int = 0):
        """BERT initialisation: N(0, initializer_range) for Linear/Embedding, LN = (1, 0)."""
        g = torch.Generator().manual_seed(seed)
        std = self.config.initializer_range
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                with torch.no_grad():
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * std)
                    if isinstance(mod, nn.Linear) and mod.bias is not None:
                        mod.bias.zero_()
            elif isinstance(mod, nn.LayerNorm):
                with torch.no_grad():
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
        if self.rank_output is not None:
            with torch.no_grad():
                self.rank_output.weight.copy_(self.itm_output.weight[1:2])
                self.rank_output.bias.copy_(self.itm_output.bias[1:2])
        return self


# ---------------------------------------------------------------------------------------------
# Checkpoint loading


@dataclass
class LoadReport:
    missing: List[str]
    unexpected: List[str]
    renamed: Dict[str, str]
    tied_filled: List[str]

    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [f"renamed {len(self.renamed)} legacy keys (gamma/beta, module.)",
                 f"filled {len(self.tied_filled)} tied keys from their source: {self.tied_filled}"]
        if self.missing:
            lines.append(f"missing {len(self.missing)} keys: {self.missing}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)} keys: {self.unexpected}")
        return "\n".join(lines)


TIED = {
    "cls.predictions.decoder.weight": "uniter.embeddings.word_embeddings.weight",
    "feat_regress.weight": "uniter.img_embeddings.img_linear.weight",
}


def normalise_state_dict(sd: Dict[str, torch.Tensor], layer_norms: Optional[Set[str]] = None
                         ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Maps legacy names onto the official ones: LayerNorm `gamma`/`beta` → `weight`/`bias`,
    a DataParallel `module.` prefix dropped.

    `layer_norms` names the model's LayerNorm modules; it matters for the heads' unnamed
    LayerNorms inside `nn.Sequential` (`feat_regress.net.2`, `region_classifier.net.2`), which
    the name heuristic (`LayerNorm`/`layer_norm` in the path) alone would miss."""
    out, renamed = {}, {}
    for k, v in sd.items():
        nk = k[len("module."):] if k.startswith("module.") else k
        parts = nk.split(".")
        if parts[-1] in ("gamma", "beta") and (
                any("LayerNorm" in p or "layer_norm" in p for p in parts[:-1])
                or (layer_norms is not None and ".".join(parts[:-1]) in layer_norms)):
            parts[-1] = "weight" if parts[-1] == "gamma" else "bias"
            nk = ".".join(parts)
        if nk != k:
            renamed[k] = nk
        out[nk] = v
    return out, renamed


def load_checkpoint(model: UniterForPretraining, path_or_sd, strict: bool = False) -> LoadReport:
    """Loads an official-format checkpoint (a flat dict) into `model` and reports the key diff.

    Tied keys absent from the file are filled from their source; `rank_output` is initialised
    from row 1 of `itm_output` when the model has one and the file does not.
    """
    sd = path_or_sd if isinstance(path_or_sd, dict) else torch.load(path_or_sd, map_location="cpu")
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    layer_norms = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    sd, renamed = normalise_state_dict(sd, layer_norms)
    tied_filled = []
    for dst, src in TIED.items():
        if dst not in sd and src in sd:
            sd[dst] = sd[src]
            tied_filled.append(dst)
    own = model.state_dict()
    if model.rank_output is not None and "rank_output.weight" not in sd and "itm_output.weight" in sd:
        sd["rank_output.weight"] = sd["itm_output.weight"][1:2].clone()
        sd["rank_output.bias"] = sd["itm_output.bias"][1:2].clone()
        tied_filled += ["rank_output.weight", "rank_output.bias"]
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    bad_shape = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]
    if bad_shape:
        raise ValueError("checkpoint shapes do not match the config: " + "; ".join(bad_shape))
    report = LoadReport(missing, unexpected, renamed, tied_filled)
    if strict and not report.ok():
        raise ValueError("checkpoint does not match the model:\n" + str(report))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return report
