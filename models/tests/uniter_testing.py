"""Helpers shared by test_model.py and test_export.py: small random models, padded batches and an
independent functional UNITER forward (written from the UNITER paper's description of the model,
reading only the state dict) used as a second implementation; and running the Go binary."""
from __future__ import annotations

import json
import math
import os
import subprocess
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uniter.model import UniterConfig, UniterForPretraining

EPS = 1e-12
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Worst differences measured by the tests, {(what, output): value}; conftest prints them at the
# end of the run.
MEASURED: Dict[tuple, float] = {}


def record(what: str, output: str, value: float, worst=max) -> None:
    key = (what, output)
    MEASURED[key] = worst(MEASURED.get(key, value), value)


def small_config(**kw) -> UniterConfig:
    base = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=40, img_dim=24, img_label_dim=6)
    base.update(kw)
    return UniterConfig(**base)


def random_bundle_kwargs(cfg: UniterConfig, folder, name: str) -> dict:
    """write_bundle's keyword arguments for a random-weight model of `cfg`: a vocabulary of the
    specials and w0, w1, … (written to folder/vocab.txt) and region labels c1, c2, … after the
    background."""
    vocab = os.path.join(str(folder), "vocab.txt")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    with open(vocab, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in specials + [f"w{i}" for i in range(cfg.vocab_size - len(specials))])
    return dict(name=name, vocab_path=vocab, region_labels=["__background__"] + [f"c{i}" for i in range(1, cfg.img_label_dim)],
                lowercase=True, max_text_length=cfg.max_position_embeddings, random_weights=True)


def randomize(model: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Every parameter random (non-zero biases, LayerNorm gains around 1), so that a wrong
    layout, a skipped LayerNorm or a swapped bias shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once
            if id(p) in seen:
                continue
            seen.add(id(p))
            noise = torch.randn(p.shape, generator=g)
            is_ln = ("LayerNorm" in name or "layer_norm" in name or ".net.2." in name)
            if is_ln and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(std * noise)
    return model.eval()


def make_model(cfg: UniterConfig, seed: int = 0, with_rank: bool = False, std: float = 0.1):
    torch.manual_seed(seed)
    return randomize(UniterForPretraining(cfg, with_rank=with_rank), seed, std)


def make_pairs(cfg: UniterConfig, text_lens: Sequence[int], region_counts: Sequence[int],
               seed: int = 0) -> List[dict]:
    """Random pairs: ids start with [CLS]=2 and end with [SEP]=3 (ids ≥ 5 between)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for t, n in zip(text_lens, region_counts):
        ids = torch.randint(5, cfg.vocab_size, (t,), generator=g)
        ids[0], ids[-1] = 2, 3
        feat = torch.randn(n, cfg.img_dim, generator=g).abs()
        xy = torch.rand(n, 2, generator=g) * 0.6
        wh = torch.rand(n, 2, generator=g) * 0.4 + 0.01
        loc = torch.cat([xy, xy + wh, wh, (wh[:, :1] * wh[:, 1:])], dim=1)
        pairs.append({"ids": ids, "feat": feat, "loc": loc})
    return pairs


def pad_batch(pairs: List[dict], cfg: UniterConfig, T: int = None, N: int = None):
    """The service's padded layout: text padded to T, regions padded to N, masks 1 on real data.
    Padding is filled with junk (not zeros) to prove the masks, not the values, hide it."""
    T = T or max(len(p["ids"]) for p in pairs)
    N = N or max(len(p["feat"]) for p in pairs)
    B = len(pairs)
    g = torch.Generator().manual_seed(99)
    ids = torch.zeros(B, T, dtype=torch.long)
    tm = torch.zeros(B, T, dtype=torch.long)
    feat = torch.randn(B, N, cfg.img_dim, generator=g)
    loc = torch.rand(B, N, 7, generator=g)
    im = torch.zeros(B, N, dtype=torch.long)
    for b, p in enumerate(pairs):
        t, n = len(p["ids"]), len(p["feat"])
        ids[b, :t] = p["ids"]
        tm[b, :t] = 1
        feat[b, :n] = p["feat"]
        loc[b, :n] = p["loc"]
        im[b, :n] = 1
    return ids, tm, feat, loc, im


# ------------------------------------------------------------------ independent functional UNITER

def _ln(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], EPS)


def _lin(x, sd, prefix):
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_text_embed(sd, ids):
    T = ids.shape[-1]
    e = sd["uniter.embeddings.word_embeddings.weight"][ids] \
        + sd["uniter.embeddings.position_embeddings.weight"][torch.arange(T)] \
        + sd["uniter.embeddings.token_type_embeddings.weight"][0]
    return _ln(e, sd, "uniter.embeddings.LayerNorm")


def ref_img_embed(sd, feat, loc, img_masks=None):
    p = "uniter.img_embeddings."
    if img_masks is not None:
        feat = feat + img_masks.to(feat.dtype).unsqueeze(-1) * sd[p + "mask_embedding.weight"][1]
    im = _ln(_lin(feat, sd, p + "img_linear"), sd, p + "img_layer_norm")
    pos = _ln(_lin(loc, sd, p + "pos_linear"), sd, p + "pos_layer_norm")
    return _ln(im + pos + sd["uniter.embeddings.token_type_embeddings.weight"][1], sd, p + "LayerNorm")


def ref_encoder(sd, x, mask, layers: int, heads: int):
    """Plain post-LN BERT on x [B,S,H] with mask [B,S] (1 = attend)."""
    B, S, H = x.shape
    d = H // heads
    add = ((1.0 - mask.to(x.dtype)) * -10000.0)[:, None, None, :]
    for n in range(layers):
        p = f"uniter.encoder.layer.{n}."

        def split(t):
            return t.view(B, S, heads, d).transpose(1, 2)
        q = split(_lin(x, sd, p + "attention.self.query"))
        k = split(_lin(x, sd, p + "attention.self.key"))
        v = split(_lin(x, sd, p + "attention.self.value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + add, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(B, S, H)
        a = _ln(_lin(ctx, sd, p + "attention.output.dense") + x, sd, p + "attention.output.LayerNorm")
        i = _gelu(_lin(a, sd, p + "intermediate.dense"))
        x = _ln(_lin(i, sd, p + "output.dense") + a, sd, p + "output.LayerNorm")
    return x


def ref_pool(sd, hidden):
    return torch.tanh(_lin(hidden[:, 0], sd, "uniter.pooler.dense"))


def ref_packed(sd, cfg: UniterConfig, pairs: List[dict]) -> List[Dict[str, torch.Tensor]]:
    """The official packed layout (gather_index): per sample [its text | its regions] with no
    gap, samples padded only at the end to the longest t_i + n_i. Returns per pair the hidden
    states of its valid positions, pooled and ITM logits."""
    L = max(len(p["ids"]) + len(p["feat"]) for p in pairs)
    B = len(pairs)
    x = torch.zeros(B, L, cfg.hidden_size)
    mask = torch.zeros(B, L)
    for b, p in enumerate(pairs):
        t, n = len(p["ids"]), len(p["feat"])
        x[b, :t] = ref_text_embed(sd, p["ids"])
        x[b, t:t + n] = ref_img_embed(sd, p["feat"], p["loc"])
        mask[b, :t + n] = 1
    h = ref_encoder(sd, x, mask, cfg.num_hidden_layers, cfg.num_attention_heads)
    pooled = ref_pool(sd, h)
    itm = _lin(pooled, sd, "itm_output")
    out = []
    for b, p in enumerate(pairs):
        t, n = len(p["ids"]), len(p["feat"])
        out.append({"text": h[b, :t], "regions": h[b, t:t + n], "pooled": pooled[b], "itm": itm[b]})
    return out


def run_uniter(bin_path, args, timeout=300):
    """Runs the Go binary from the repository root (as the Makefile does); fails the test on a
    non-zero exit."""
    env = dict(os.environ)
    if "UNITER_ORT_LIBRARY" not in env:  # the config default is relative to the repository root
        env["UNITER_ORT_LIBRARY"] = os.path.join(REPO, ".cache", "onnxruntime", "lib", "libonnxruntime.so")
    env.setdefault("UNITER_LOG_LEVEL", "warn")
    proc = subprocess.run([bin_path] + list(args), env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"uniter {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_bundle_graph(bin_path, bundle_dir, graph, inputs, tmp):
    """Runs one graph through ONNX Runtime via the Go binary; returns {name: np.ndarray}."""
    payload = {k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()}
               for k, v in inputs.items()}
    fin, fout = os.path.join(tmp, f"{graph}-in.json"), os.path.join(tmp, f"{graph}-out.json")
    with open(fin, "w") as f:
        json.dump(payload, f)
    env = dict(os.environ)
    if "UNITER_ORT_LIBRARY" not in env:  # the config default is relative to the repository root
        env["UNITER_ORT_LIBRARY"] = os.path.join(REPO, ".cache", "onnxruntime", "lib",
                                                 "libonnxruntime.so")
    env.setdefault("UNITER_LOG_LEVEL", "warn")
    proc = subprocess.run([bin_path, "run-graph", "--bundle", bundle_dir, "--graph", graph,
                           "--in", fin, "--out", fout], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"run-graph {graph} failed:\n{proc.stdout}\n{proc.stderr}"
    with open(fout) as f:
        res = json.load(f)
    return {k: np.asarray(v["data"], dtype=np.float64).reshape(v["shape"]) for k, v in res.items()}


# A Detector configuration unlike the tiny fixture's: BatchNorm, no attribute head, other
# anchors, a small pre-NMS top-n (so k = pre_nms_top_n on larger inputs).
OTHER_DETECTOR = dict(num_classes=11, num_attributes=0, feature_dim=64,
                      backbone_channels=(12, 24, 24, 32, 32), backbone_strides=(2, 2, 2, 2, 1),
                      batch_norm=True, anchor_sizes=(16, 48, 96), aspect_ratios=(0.5, 1.0, 2.0, 3.0),
                      rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=40, rpn_nms_thresh=0.6)


def small_butd_config(**kw):
    """A bottom-up-attention network small enough for unit tests (ResNet-50 layout, narrow)."""
    from uniter.butd import BUTDConfig
    base = dict(depth=50, width_per_group=8, stem_out_channels=8, res2_out_channels=32,
                anchor_sizes=(16.0, 32.0), rpn_hidden_channels=16, pre_nms_topk_test=200,
                post_nms_topk_test=20, pooler_resolution=6, num_classes=10, num_attrs=6)
    base.update(kw)
    return BUTDConfig(**base)


def fixture_bundle_without_detector(dst) -> str:
    """A copy of the tiny fixture bundle (testdata/bundles/tiny-random) without its detector:
    files, graphs entry and manifest section removed, for tests that export one into it."""
    import json
    import shutil
    src = os.path.join(REPO, "testdata", "bundles", "tiny-random")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("detector.onnx", "attribute_labels.txt"))
    path = os.path.join(dst, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    m.pop("detector", None)
    m["graphs"].pop("detector", None)
    with open(path, "w") as f:
        json.dump(m, f, indent=2)
    return str(dst)
