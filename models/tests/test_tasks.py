"""The official fine-tuned UNITER classes (uniter/tasks.py), their checkpoints, bundles and goldens.

- State-dict layouts against key lists written out by hand from the official model files
  (ChenRocks/UNITER model/*.py) for the tiny config.
- Key-exact loading of the committed official-layout checkpoints (testdata/checkpoints/tiny-*.pt);
  a missing encoder key is refused by name, unexpected keys are listed.
- The forward passes against an independent reimplementation of the official packed layout
  (gather_index packing, the NLVR2 pair/triplet batches with token types 1 and 2, PyTorch's own
  multi_head_attention_forward for the paired-attention model).
- Every graph of the committed bundles (testdata/bundles/tiny-*) against PyTorch, through ONNX
  Runtime when it is installed for Python, otherwise through the small NumPy ONNX evaluator below.
- The goldens (testdata/golden/tiny-*.json) against PyTorch and the graphs; padding invariance.
- The exporter: class detection, only the heads a checkpoint has, official configs without
  img_dim / img_label_dim.

Regenerate the fixtures with `PYTHONPATH=models python3 -m uniter.fixtures.tiny_tasks --out testdata`.
"""
import hashlib
import json
import math
import os

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from uniter_testing import REPO, record, ref_encoder
from uniter import wordpiece
from uniter.export import export_checkpoint, main as export_main, read_answers
from uniter.fixtures import tiny_tasks
from uniter.model import UniterConfig, UniterForPretraining
from uniter.tasks import (IncompleteEncoder, UniterForImageTextRetrieval, UniterForNlvr2Paired,
                          UniterForNlvr2PairedAttn, UniterForNlvr2Triplet,
                          UniterForReferringExpressionComprehension, UniterForVisualEntailment,
                          UniterForVisualQuestionAnswering, build_model, detect_task,
                          load_task_checkpoint, resolve_config)

torch.set_num_threads(1)

TESTDATA = os.path.join(REPO, "testdata")
CK = os.path.join(TESTDATA, "checkpoints")
LAYOUTS = tiny_tasks.LAYOUTS
ATOL = 1e-4

# layout → (task, official class, nlvr2 layout, heads with weights)
EXPECTED = {
    "retrieval": ("retrieval", "UniterForImageTextRetrieval", None, ["itm", "rank"]),
    "vqa": ("vqa", "UniterForVisualQuestionAnswering", None, ["vqa"]),
    "ve": ("ve", "UniterForVisualEntailment", None, ["ve"]),
    "nlvr2-paired": ("nlvr2", "UniterForNlvr2Paired", "paired", ["nlvr2"]),
    "nlvr2-triplet": ("nlvr2", "UniterForNlvr2Triplet", "triplet", ["nlvr2"]),
    "nlvr2-paired-attn": ("nlvr2", "UniterForNlvr2PairedAttn", "paired_attn", ["nlvr2"]),
    "re": ("re", "UniterForReferringExpressionComprehension", None, ["re"]),
}


def tiny_cfg() -> UniterConfig:
    with open(os.path.join(CK, "tiny-random-vocab.txt"), encoding="utf-8") as f:
        return tiny_tasks.tiny_config(sum(1 for _ in f))


# ------------------------------------------------------------------ state-dict layouts, by hand
# Tiny config: vocab 243, hidden 32, intermediate 64, 64 positions, img_dim 64, 11 region labels,
# 2 layers. Written from the official model.py / layer.py / pretrain.py / itm.py / vqa.py / ve.py
# / nlvr2.py / re.py (and PyTorch's MultiheadAttention, which model/attention.py reproduces).
V, H, I, P, D, L = 243, 32, 64, 64, 64, 11

LAYER = [  # BertLayer (official layer.py), per layer
    ("attention.self.query.weight", (H, H)), ("attention.self.query.bias", (H,)),
    ("attention.self.key.weight", (H, H)), ("attention.self.key.bias", (H,)),
    ("attention.self.value.weight", (H, H)), ("attention.self.value.bias", (H,)),
    ("attention.output.dense.weight", (H, H)), ("attention.output.dense.bias", (H,)),
    ("attention.output.LayerNorm.weight", (H,)), ("attention.output.LayerNorm.bias", (H,)),
    ("intermediate.dense.weight", (I, H)), ("intermediate.dense.bias", (I,)),
    ("output.dense.weight", (H, I)), ("output.dense.bias", (H,)),
    ("output.LayerNorm.weight", (H,)), ("output.LayerNorm.bias", (H,)),
]


def backbone(types=2):
    keys = [
        ("uniter.embeddings.word_embeddings.weight", (V, H)),
        ("uniter.embeddings.position_embeddings.weight", (P, H)),
        ("uniter.embeddings.token_type_embeddings.weight", (types, H)),
        ("uniter.embeddings.LayerNorm.weight", (H,)),
        ("uniter.embeddings.LayerNorm.bias", (H,)),
        ("uniter.img_embeddings.img_linear.weight", (H, D)),
        ("uniter.img_embeddings.img_linear.bias", (H,)),
        ("uniter.img_embeddings.img_layer_norm.weight", (H,)),
        ("uniter.img_embeddings.img_layer_norm.bias", (H,)),
        ("uniter.img_embeddings.pos_layer_norm.weight", (H,)),
        ("uniter.img_embeddings.pos_layer_norm.bias", (H,)),
        ("uniter.img_embeddings.pos_linear.weight", (H, 7)),
        ("uniter.img_embeddings.pos_linear.bias", (H,)),
        ("uniter.img_embeddings.mask_embedding.weight", (2, D)),
        ("uniter.img_embeddings.LayerNorm.weight", (H,)),
        ("uniter.img_embeddings.LayerNorm.bias", (H,)),
    ]
    for n in (0, 1):
        keys += [(f"uniter.encoder.layer.{n}.{k}", s) for k, s in LAYER]
    return keys + [("uniter.pooler.dense.weight", (H, H)), ("uniter.pooler.dense.bias", (H,))]


VQA_HEAD = lambda n: [  # noqa: E731
    ("vqa_output.0.weight", (2 * H, H)), ("vqa_output.0.bias", (2 * H,)),
    ("vqa_output.2.weight", (2 * H,)), ("vqa_output.2.bias", (2 * H,)),
    ("vqa_output.3.weight", (n, 2 * H)), ("vqa_output.3.bias", (n,))]

HAND_LAYOUTS = {
    "pretrain": lambda: (UniterForPretraining, backbone() + [
        ("cls.predictions.bias", (V,)),
        ("cls.predictions.transform.dense.weight", (H, H)),
        ("cls.predictions.transform.dense.bias", (H,)),
        ("cls.predictions.transform.LayerNorm.weight", (H,)),
        ("cls.predictions.transform.LayerNorm.bias", (H,)),
        ("cls.predictions.decoder.weight", (V, H)),
        ("feat_regress.weight", (H, D)), ("feat_regress.bias", (D,)),
        ("feat_regress.net.0.weight", (H, H)), ("feat_regress.net.0.bias", (H,)),
        ("feat_regress.net.2.weight", (H,)), ("feat_regress.net.2.bias", (H,)),
        ("region_classifier.net.0.weight", (H, H)), ("region_classifier.net.0.bias", (H,)),
        ("region_classifier.net.2.weight", (H,)), ("region_classifier.net.2.bias", (H,)),
        ("region_classifier.net.3.weight", (L, H)), ("region_classifier.net.3.bias", (L,)),
        ("itm_output.weight", (2, H)), ("itm_output.bias", (2,))]),
    "retrieval": lambda: (UniterForImageTextRetrieval, backbone() + [
        ("itm_output.weight", (2, H)), ("itm_output.bias", (2,)),
        ("rank_output.weight", (1, H)), ("rank_output.bias", (1,))]),
    "vqa": lambda: (lambda c: UniterForVisualQuestionAnswering(c, 12), backbone() + VQA_HEAD(12)),
    "ve": lambda: (UniterForVisualEntailment, backbone() + VQA_HEAD(3)),
    "nlvr2-paired": lambda: (UniterForNlvr2Paired, backbone(3) + [
        ("nlvr2_output.weight", (2, 2 * H)), ("nlvr2_output.bias", (2,))]),
    "nlvr2-triplet": lambda: (UniterForNlvr2Triplet, backbone(3) + [
        ("nlvr2_output.weight", (2, H)), ("nlvr2_output.bias", (2,))]),
    "nlvr2-paired-attn": lambda: (UniterForNlvr2PairedAttn, backbone(3) + [
        ("attn1.in_proj_weight", (3 * H, H)), ("attn1.in_proj_bias", (3 * H,)),
        ("attn1.out_proj.weight", (H, H)), ("attn1.out_proj.bias", (H,)),
        ("attn2.in_proj_weight", (3 * H, H)), ("attn2.in_proj_bias", (3 * H,)),
        ("attn2.out_proj.weight", (H, H)), ("attn2.out_proj.bias", (H,)),
        ("fc.0.weight", (H, 2 * H)), ("fc.0.bias", (H,)),
        ("attn_pool.fc.0.weight", (1, H)), ("attn_pool.fc.0.bias", (1,)),
        ("nlvr2_output.weight", (2, 2 * H)), ("nlvr2_output.bias", (2,))]),
    "re": lambda: (UniterForReferringExpressionComprehension, backbone() + [
        ("re_output.weight", (1, H)), ("re_output.bias", (1,))]),
    "re-mlp2": lambda: (lambda c: UniterForReferringExpressionComprehension(c, 2), backbone() + [
        ("re_output.0.weight", (H, H)), ("re_output.0.bias", (H,)),
        ("re_output.2.weight", (H,)), ("re_output.2.bias", (H,)),
        ("re_output.3.weight", (1, H)), ("re_output.3.bias", (1,))]),
}


@pytest.mark.parametrize("name", sorted(HAND_LAYOUTS))
def test_state_dict_matches_the_official_layout(name):
    cls, want = HAND_LAYOUTS[name]()
    assert len(want) == len(dict(want)), "duplicate key in the hand-written list"
    model = cls(tiny_cfg())
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert dict(got) == dict(want)
    assert len(got) == len(want)


def test_official_key_counts():
    # 12 layers as uniter-base: 210 backbone keys; the official pre-training model has 230.
    assert len(backbone()) == 16 + 2 * 16 + 2
    cfg = UniterConfig(vocab_size=50, hidden_size=32, num_hidden_layers=12, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=40, img_dim=24, img_label_dim=6)
    assert len(UniterForPretraining(cfg).state_dict()) == 230
    assert len(UniterForVisualQuestionAnswering(cfg, 3129).state_dict()) == 210 + 6
    assert len(UniterForNlvr2PairedAttn(cfg).state_dict()) == 210 + 14
    assert UniterForNlvr2Triplet(cfg).state_dict()[
        "uniter.embeddings.token_type_embeddings.weight"].shape == (3, 32)


# ------------------------------------------------------------------ checkpoints and loading

def _ck(layout):
    return torch.load(os.path.join(CK, f"tiny-{layout}.pt"), map_location="cpu")


def _load(layout, **kw):
    sd = _ck(layout)
    answers = read_answers(os.path.join(CK, "tiny-vqa-ans2label.json")) if layout == "vqa" else None
    choice = detect_task(sd, answers_given=answers is not None)
    with open(os.path.join(CK, "tiny-tasks.json")) as f:
        cfg = resolve_config(json.load(f), sd, choice.task, label_count=11)
    model = build_model(choice, cfg, answers and len(answers))
    report = load_task_checkpoint(model, sd, **kw)
    return model.eval(), report, choice


@pytest.fixture(scope="module")
def loaded():
    return {layout: _load(layout, strict=True) for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_checkpoint_class_detected_and_loaded_key_exact(loaded, layout):
    model, report, choice = loaded[layout]
    task, cls, nlvr2_layout, heads = EXPECTED[layout]
    assert choice.task == task
    assert model.task_manifest()["class"] == cls
    if nlvr2_layout:
        assert choice.layout == nlvr2_layout
    assert report.missing == [] and report.unexpected == [] and report.renamed == {}
    assert report.heads == heads and report.absent_heads == []
    sd = _ck(layout)
    assert isinstance(sd, dict) and not isinstance(sd.get("model"), dict)  # flat, as ModelSaver
    assert sorted(sd) == sorted(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_missing_encoder_key_is_refused_by_name(tmp_path):
    sd = _ck("vqa")
    del sd["uniter.encoder.layer.1.output.dense.bias"]
    model = UniterForVisualQuestionAnswering(tiny_cfg(), 12)
    with pytest.raises(IncompleteEncoder, match=r"uniter\.encoder\.layer\.1\.output\.dense\.bias"):
        load_task_checkpoint(model, sd)
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(SystemExit, match=r"uniter\.encoder\.layer\.1\.output\.dense\.bias"):
        export_main(_cli_args(str(path), str(tmp_path / "out"), "--answers",
                              os.path.join(CK, "tiny-vqa-ans2label.json")))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_unexpected_keys_are_listed_and_strict_refuses(tmp_path):
    sd = _ck("ve")
    sd["itm_output.weight"] = torch.zeros(2, H)
    sd["itm_output.bias"] = torch.zeros(2)
    sd["something.else"] = torch.zeros(3)
    report = load_task_checkpoint(UniterForVisualEntailment(tiny_cfg()), dict(sd))
    assert report.unexpected == ["itm_output.bias", "itm_output.weight", "something.else"]
    assert report.missing == [] and report.heads == ["ve"]
    assert "unexpected 3 keys" in str(report)
    with pytest.raises(ValueError, match="something.else"):
        load_task_checkpoint(UniterForVisualEntailment(tiny_cfg()), dict(sd), strict=True)
    path = tmp_path / "extra.pt"
    torch.save(sd, path)
    m, _, _ = export_checkpoint(str(path), os.path.join(CK, "tiny-tasks.json"), _vocab(), _labels(),
                                str(tmp_path / "b"), "extra", verify=False, log=lambda s: None)
    assert m["provenance"]["unexpected_keys"] == report.unexpected
    assert m["heads"]["ve"] and not m["heads"]["itm"]  # a stray itm_output is not a VE head


def test_legacy_names_load(loaded):
    sd = {("module." + k): v for k, v in _ck("vqa").items()}
    for k in list(sd):
        if k.endswith("vqa_output.2.weight") or k.endswith("LayerNorm.weight"):
            sd[k[:-len("weight")] + "gamma"] = sd.pop(k)
        elif k.endswith("vqa_output.2.bias") or k.endswith("LayerNorm.bias"):
            sd[k[:-len("bias")] + "beta"] = sd.pop(k)
    model = UniterForVisualQuestionAnswering(tiny_cfg(), 12)
    report = load_task_checkpoint(model, sd, strict=True)
    assert "module.vqa_output.2.gamma" in report.renamed
    for k, v in loaded["vqa"][0].state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_half_precision_checkpoint_loads(loaded):
    """Checkpoints saved from an apex O2 (fp16) model hold half tensors."""
    sd = {k: v.half() for k, v in _ck("nlvr2-paired-attn").items()}
    model = UniterForNlvr2PairedAttn(tiny_cfg())
    load_task_checkpoint(model, sd, strict=True)
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k].float()), k


def test_incomplete_head_is_refused():
    sd = _ck("nlvr2-paired-attn")
    del sd["attn2.in_proj_bias"]
    with pytest.raises(ValueError, match=r"attn2\.in_proj_bias"):
        load_task_checkpoint(UniterForNlvr2PairedAttn(tiny_cfg()), sd)


def test_detection_rules_and_forcing():
    ve, vqa = _ck("ve"), _ck("vqa")
    assert detect_task(ve).task == "ve"
    assert detect_task(ve, answers_given=True).task == "vqa"  # a 3-answer VQA model
    assert detect_task(vqa).task == "vqa"
    assert detect_task(_ck("re")).re_mlp == 1
    assert detect_task(_ck("retrieval")).task == "retrieval"
    pre = torch.load(os.path.join(CK, "tiny-random.pt"), map_location="cpu")
    assert detect_task(pre).task == "pretrain" and not detect_task(pre).with_rank
    c = detect_task(_ck("nlvr2-paired"), force="nlvr2-triplet")
    assert (c.task, c.layout) == ("nlvr2", "triplet")
    with pytest.raises(ValueError, match="vqa_output"):
        detect_task(_ck("retrieval"), force="vqa")
    with pytest.raises(ValueError, match="not one of"):
        detect_task(ve, force="vcr")
    # The forced triplet layout does not fit a paired checkpoint's head.
    cfg = resolve_config(json.load(open(os.path.join(CK, "tiny-tasks.json"))),
                         _ck("nlvr2-paired"), "nlvr2", 11)
    with pytest.raises(ValueError, match="nlvr2_output.weight"):
        load_task_checkpoint(build_model(c, cfg), _ck("nlvr2-paired"))


# ------------------------------------------------------------------ configs

def test_official_config_without_image_dims_is_completed_from_the_tensors():
    with open(os.path.join(CK, "tiny-tasks.json")) as f:
        official = json.load(f)
    assert "img_dim" not in official and "img_label_dim" not in official
    cfg = resolve_config(official, _ck("re"), "re", label_count=11)
    assert (cfg.img_dim, cfg.img_label_dim, cfg.type_vocab_size) == (64, 11, 2)
    cfg = resolve_config(official, _ck("nlvr2-triplet"), "nlvr2", label_count=11)
    assert cfg.img_dim == 64
    # The pre-training checkpoint's region_classifier gives img_label_dim without labels.
    pre = torch.load(os.path.join(CK, "tiny-random.pt"), map_location="cpu")
    assert resolve_config(official, pre, "pretrain").img_label_dim == 11
    with pytest.raises(ValueError, match=r"img_label_dim.*--labels"):
        resolve_config(official, _ck("vqa"), "vqa")
    with pytest.raises(ValueError, match="img_dim: the config says 2048"):
        resolve_config(dict(official, img_dim=2048), _ck("vqa"), "vqa", 11)
    with pytest.raises(ValueError, match="img_label_dim: the config says 5"):
        resolve_config(dict(official, img_label_dim=5), pre, "pretrain")
    with pytest.raises(ValueError, match="num_attention_heads"):
        resolve_config({k: v for k, v in official.items() if k != "num_attention_heads"},
                       _ck("vqa"), "vqa", 11)


# ------------------------------------------------------------------ the official packed forward
# An independent reimplementation of what the official models compute on the official batches
# (data/*.py collates: per sample [text | regions] packed with no gap, padded at the end), from the
# state dict alone.

def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-12)


def _lin(x, sd, p):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _packed(sd, cfg, seqs):
    """seqs: [(ids, [(feat, loc, token_type), ...])] → sequence_output [B, L, H], attn_masks."""
    tt = sd["uniter.embeddings.token_type_embeddings.weight"]
    rows = []
    for ids, images in seqs:
        t = len(ids)
        txt = sd["uniter.embeddings.word_embeddings.weight"][ids] \
            + sd["uniter.embeddings.position_embeddings.weight"][:t] + tt[0]
        parts = [_ln(txt, sd, "uniter.embeddings.LayerNorm")]
        p = "uniter.img_embeddings."
        for feat, loc, typ in images:
            im = _ln(_lin(feat, sd, p + "img_linear"), sd, p + "img_layer_norm")
            pos = _ln(_lin(loc, sd, p + "pos_linear"), sd, p + "pos_layer_norm")
            parts.append(_ln(im + pos + tt[typ], sd, p + "LayerNorm"))
        rows.append(torch.cat(parts))
    Lmax = max(len(r) for r in rows)
    x = torch.zeros(len(rows), Lmax, cfg.hidden_size)
    mask = torch.zeros(len(rows), Lmax, dtype=torch.long)
    for b, r in enumerate(rows):
        x[b, :len(r)] = r
        mask[b, :len(r)] = 1
    return ref_encoder(sd, x, mask, cfg.num_hidden_layers, cfg.num_attention_heads), mask


def _pool(sd, h):
    return torch.tanh(_lin(h[:, 0], sd, "uniter.pooler.dense"))


def _case_tensors(case):
    ids = torch.tensor(case["ids"])
    imgs = [(torch.tensor(im["features"]), torch.tensor(im["locations"], dtype=torch.float32))
            for im in case["images"]]
    return ids, imgs


def official_forward(layout, sd, cfg, cases):
    """The official model's output for a batch of cases (as its eval collate builds it)."""
    if layout.startswith("nlvr2-paired"):  # [[txt, img1], [txt, img2]] per example, types 1, 2
        seqs = []
        for c in cases:
            ids, imgs = _case_tensors(c)
            seqs += [(ids, [(f, l, i + 1)]) for i, (f, l) in enumerate(imgs)]
        out, mask = _packed(sd, cfg, seqs)
        if layout == "nlvr2-paired":
            return _lin(_pool(sd, out).reshape(len(cases), -1), sd, "nlvr2_output")
        bs, tl, d = out.shape  # nlvr2.py UniterForNlvr2PairedAttn.forward
        left, right = out.reshape(bs // 2, tl * 2, d).chunk(2, dim=1)
        lmask, rmask = (mask == 0).reshape(bs // 2, tl * 2).chunk(2, dim=1)
        left, right = left.transpose(0, 1), right.transpose(0, 1)

        def mha(p, q, kv, pad):
            return F.multi_head_attention_forward(
                q, kv, kv, d, cfg.num_attention_heads, sd[p + ".in_proj_weight"],
                sd[p + ".in_proj_bias"], None, None, False, 0.0, sd[p + ".out_proj.weight"],
                sd[p + ".out_proj.bias"], training=False, key_padding_mask=pad,
                need_weights=False)[0]
        l2r, r2l = mha("attn1", left, right, rmask), mha("attn2", right, left, lmask)
        left = F.relu(_lin(torch.cat([l2r, left], -1), sd, "fc.0")).transpose(0, 1)
        right = F.relu(_lin(torch.cat([r2l, right], -1), sd, "fc.0")).transpose(0, 1)

        def pool(x, pad):
            score = F.relu(_lin(x, sd, "attn_pool.fc.0")).squeeze(-1) + pad.float() * -1e4
            return torch.softmax(score, 1).unsqueeze(1).matmul(x).squeeze(1)
        return _lin(torch.cat([pool(left, lmask), pool(right, rmask)], -1), sd, "nlvr2_output")
    if layout == "nlvr2-triplet":  # one sequence: text, image 1 (type 1), image 2 (type 2)
        seqs = []
        for c in cases:
            ids, imgs = _case_tensors(c)
            seqs.append((ids, [(f, l, i + 1) for i, (f, l) in enumerate(imgs)]))
        return _lin(_pool(sd, _packed(sd, cfg, seqs)[0]), sd, "nlvr2_output")
    seqs = [(ids, [(f, l, 1) for f, l in imgs]) for ids, imgs in map(_case_tensors, cases)]
    out, _ = _packed(sd, cfg, seqs)
    pooled = _pool(sd, out)
    if layout == "retrieval":
        return torch.cat([_lin(pooled, sd, "itm_output"), _lin(pooled, sd, "rank_output")], -1)
    if layout in ("vqa", "ve"):
        x = _ln(_gelu(_lin(pooled, sd, "vqa_output.0")), sd, "vqa_output.2")
        return _lin(x, sd, "vqa_output.3")
    if layout == "re":  # re.py: _get_image_hidden (zero padded), re_output, masked_fill -1e4
        nmax = max(len(c["images"][0]["boxes"]) for c in cases)
        img = torch.zeros(len(cases), nmax, cfg.hidden_size)
        obj_mask = torch.ones(len(cases), nmax, dtype=torch.bool)
        for b, c in enumerate(cases):
            t, n = len(c["ids"]), len(c["images"][0]["boxes"])
            img[b, :n] = out[b, t:t + n]
            obj_mask[b, :n] = False
        return _lin(img, sd, "re_output").squeeze(2).masked_fill(obj_mask, -1e4)
    raise ValueError(layout)


def _golden(layout):
    with open(os.path.join(TESTDATA, "golden", f"tiny-{layout}.json")) as f:
        return json.load(f)


def _task_logits(layout, out):
    if layout == "retrieval":
        return torch.cat([out["itm_logits"], out["rank_logits"]], -1)
    return out[{"vqa": "vqa_logits", "ve": "ve_logits", "re": "re_logits"}.get(layout, "nlvr2_logits")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_matches_the_official_packed_computation(loaded, layout):
    model = loaded[layout][0]
    sd = _ck(layout)
    cases = _golden(layout)["cases"]
    images = 2 if layout.startswith("nlvr2") else 1
    for members in ([0], [1], [2], [0, 1, 2], [2, 0]):
        sub = [cases[i] for i in members]
        with torch.no_grad():
            want = official_forward(layout, sd, model.config, sub)
            got = _task_logits(layout, tiny_tasks.graph_outputs(
                model, tiny_tasks.pad_cases(sub, model.config, images)))
        assert got.shape == want.shape
        diff = float((got - want).abs().max())
        record("tasks: padded model vs official packed", layout, diff)
        assert diff <= 1e-5, f"{layout} {members}: {diff:.2e}"


def test_nlvr2_second_image_uses_token_type_2(loaded):
    model = loaded["nlvr2-triplet"][0]
    cases = _golden("nlvr2-triplet")["cases"]
    batch = tiny_tasks.pad_cases(cases, model.config, 2)
    with torch.no_grad():
        before = model(*batch).clone()
        w = model.uniter.embeddings.token_type_embeddings.weight
        saved = w.clone()
        w[2] = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(0))
        after = model(*batch)
        w[1] = w[2]  # both images type 2: another result again
        both2 = model(*batch)
        w.copy_(saved)
    assert float((after - before).abs().max()) > 1e-3
    assert float((both2 - after).abs().max()) > 1e-3


# ------------------------------------------------------------------ ONNX graphs

def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


_ERF = np.vectorize(math.erf, otypes=[np.float64])
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def numpy_onnx_run(path, feeds):
    """A NumPy evaluator for the operators these graphs use (ONNX operator semantics at opset
    17), for machines without ONNX Runtime for Python. Refuses any other operator."""
    m = onnx.load(path)
    env = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    env.update(feeds)
    for n in m.graph.node:
        a, x, op = _attrs(n), [env[i] if i else None for i in n.input], n.op_type
        if op == "Constant":
            r = numpy_helper.to_array(a["value"])
        elif op == "Identity":
            r = x[0]
        elif op in ("Add", "Sub", "Mul"):
            r = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](x[0], x[1])
        elif op == "Div":
            r = x[0] / x[1] if x[0].dtype.kind == "f" else np.trunc(x[0] / x[1]).astype(x[0].dtype)
        elif op == "MatMul":
            r = np.matmul(x[0], x[1])
        elif op == "Gemm":
            A = x[0].T if a.get("transA") else x[0]
            B = x[1].T if a.get("transB") else x[1]
            r = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                r = r + a.get("beta", 1.0) * x[2]
        elif op == "Erf":
            r = _ERF(x[0]).astype(x[0].dtype)
        elif op == "Tanh":
            r = np.tanh(x[0])
        elif op == "Relu":
            r = np.maximum(x[0], 0)
        elif op == "Cast":
            r = x[0].astype(_DTYPES[a["to"]])
        elif op == "Equal":
            r = np.equal(x[0], x[1])
        elif op == "Where":
            r = np.where(x[0], x[1], x[2])
        elif op == "Concat":
            r = np.concatenate(x, axis=a["axis"])
        elif op == "Unsqueeze":
            r = np.expand_dims(x[0], tuple(int(v) for v in x[1]))
        elif op == "Squeeze":
            r = np.squeeze(x[0], tuple(int(v) for v in x[1]))
        elif op == "Transpose":
            r = np.transpose(x[0], a.get("perm"))
        elif op == "Reshape":
            shape = [x[0].shape[i] if v == 0 else int(v) for i, v in enumerate(x[1])]
            r = x[0].reshape(shape)
        elif op == "Gather":
            r = np.take(x[0], x[1], axis=a.get("axis", 0))
        elif op == "GatherElements":
            r = np.take_along_axis(x[0], x[1], axis=a.get("axis", 0))
        elif op == "CumSum":
            assert not a.get("exclusive") and not a.get("reverse")
            r = np.cumsum(x[0], axis=int(np.asarray(x[1]).reshape(())), dtype=x[0].dtype)
        elif op == "ReduceSum":
            r = np.sum(x[0], axis=tuple(int(v) for v in x[1]), keepdims=bool(a.get("keepdims", 1)),
                       dtype=x[0].dtype)
        elif op == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(x[0] - np.max(x[0], axis=ax, keepdims=True))
            r = e / e.sum(axis=ax, keepdims=True)
        elif op == "LayerNormalization":
            axes = tuple(range(a.get("axis", -1) % x[0].ndim, x[0].ndim))
            mu = x[0].mean(axis=axes, keepdims=True)
            var = ((x[0] - mu) ** 2).mean(axis=axes, keepdims=True)
            r = (x[0] - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * x[1]
            if len(x) > 2 and x[2] is not None:
                r = r + x[2]
        else:
            raise NotImplementedError(f"{path}: operator {op} (extend numpy_onnx_run)")
        env[n.output[0]] = np.asarray(r)
    return {o.name: env[o.name] for o in m.graph.output}


try:
    import onnxruntime as _ort
except ImportError:
    _ort = None
RUNNER = "ONNX Runtime" if _ort is not None else "NumPy ONNX evaluator"


def run_graph(path, feeds):
    if _ort is None:
        return numpy_onnx_run(path, feeds)
    sess = _ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _bundle(layout):
    d = os.path.join(TESTDATA, "bundles", f"tiny-{layout}")
    with open(os.path.join(d, "manifest.json")) as f:
        return d, json.load(f)


def _feeds(batch, images_of=None):
    ids, tm, feat, loc, im = batch
    if images_of is not None:  # the encoder graph of an NLVR2 bundle: one image
        feat, loc, im = feat[:, images_of], loc[:, images_of], im[:, images_of]
    return {"input_ids": ids.numpy(), "text_mask": tm.numpy(), "img_feat": feat.numpy(),
            "img_loc": loc.numpy(), "img_mask": im.numpy()}


def _torch_graph_outputs(model, role, batch, manifest):
    """What each graph computes, in PyTorch, as {output name: array}."""
    from uniter.export import Nlvr2Graph, TaskEncoderGraph
    nlvr2 = manifest["task"]["name"] == "nlvr2"
    with torch.no_grad():
        if role == "nlvr2":
            outs = [Nlvr2Graph(model)(*batch)]
        else:
            args = (batch[0], batch[1], batch[2][:, 0], batch[3][:, 0], batch[4][:, 0]) if nlvr2 \
                else batch
            heads = [] if nlvr2 else [h for h, on in manifest["heads"].items() if on]
            outs = TaskEncoderGraph(model, heads, role == "encoder_attention")(*args)
    names = [o["name"] for o in manifest["graphs"][role]["outputs"]]
    return dict(zip(names, (t.numpy() for t in outs)))


def _random_batch(cfg, images, seed, text_lens=(9, 4, 6), regions=((2, 5), (6, 3), (5, 5))):
    """A padded batch of other sizes than the export example's and the goldens', with junk (not
    zeros) on padding."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(text_lens), max(text_lens)
    N = max(max(r[:images]) for r in regions)
    ids = torch.randint(5, cfg.vocab_size, (B, T), generator=g)
    tm = torch.zeros(B, T, dtype=torch.long)
    feat = torch.randn(B, images, N, cfg.img_dim, generator=g)
    loc = torch.rand(B, images, N, 7, generator=g)
    im = torch.zeros(B, images, N, dtype=torch.long)
    for b, t in enumerate(text_lens):
        tm[b, :t] = 1
        ids[b, 0], ids[b, t - 1] = 2, 3
        for i in range(images):
            im[b, i, :regions[b][i]] = 1
    feat = feat.abs()
    if images == 1:
        return ids, tm, feat[:, 0], loc[:, 0], im[:, 0]
    return ids, tm, feat, loc, im


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bundle_graphs_match_pytorch(loaded, layout):
    model = loaded[layout][0]
    d, m = _bundle(layout)
    images = 2 if m["task"]["name"] == "nlvr2" else 1
    for seed in (1, 2):
        batch = _random_batch(model.config, images, seed)
        for role, spec in m["graphs"].items():
            one = images == 2 and role != "nlvr2"
            got = run_graph(os.path.join(d, spec["file"]), _feeds(batch, 0 if one else None))
            want = _torch_graph_outputs(model, role, batch, m)
            assert list(got) == [o["name"] for o in spec["outputs"]]
            for name, w in want.items():
                assert got[name].shape == w.shape, (role, name)
                diff = float(np.abs(got[name] - w).max())
                record(f"tasks: {RUNNER} vs PyTorch", f"{role}/{name}", diff)
                assert diff <= ATOL, f"{layout} {role} {name}: {diff:.2e}"


ELEM = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_manifest_declares_the_graphs_and_heads(loaded, layout):
    d, m = _bundle(layout)
    task, cls, nlvr2_layout, heads = EXPECTED[layout]
    want_task = {"name": task, "class": cls}
    want_task.update({"vqa": {"labels": "answers.txt"}, "ve": {"labels": "ve_labels.txt"},
                      "nlvr2": {"layout": nlvr2_layout}, "re": {"re_mlp": 1}}.get(task, {}))
    assert m["task"] == want_task
    assert list(m["heads"]) == ["itm", "rank", "mlm", "mrc", "attention", "vqa", "ve", "nlvr2", "re"]
    assert m["heads"] == {h: h in heads + ["attention"] for h in m["heads"]}
    want_graphs = ["nlvr2", "encoder", "encoder_attention"] if task == "nlvr2" \
        else ["encoder", "encoder_attention"]
    assert list(m["graphs"]) == want_graphs
    assert sorted(f for f in os.listdir(d) if f.endswith(".onnx")) == sorted(g + ".onnx" for g in want_graphs)
    head_outs = {"retrieval": ["itm_logits", "rank_logits"], "vqa": ["vqa_logits"],
                 "ve": ["ve_logits"], "re": ["re_logits"]}.get(task, [])
    assert [o["name"] for o in m["graphs"]["encoder"]["outputs"]] == ["pooled", "hidden"] + head_outs
    assert [o["name"] for o in m["graphs"]["encoder_attention"]["outputs"]] == \
        ["pooled", "hidden"] + head_outs + ["attention"]
    assert m["random_weights"] is True and m["model"]["feature_dim"] == 64
    for role, g in m["graphs"].items():
        path = os.path.join(d, g["file"])
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == g["sha256"], role
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
        assert proto.opset_import[0].version == 17
        ops = [n.op_type for n in proto.graph.node]
        for op in ("Shape", "ConstantOfShape", "Range", "Size", "Dropout"):
            assert op not in ops, f"{layout} {role}: {op}"
        inits = {i.name for i in proto.graph.initializer}
        for kind, declared, actual in (("inputs", g["inputs"], proto.graph.input),
                                       ("outputs", g["outputs"], proto.graph.output)):
            actual = [t for t in actual if t.name not in inits]
            assert [t["name"] for t in declared] == [t.name for t in actual], (role, kind)
            for dec, act in zip(declared, actual):
                assert ELEM[act.type.tensor_type.elem_type] == dec["dtype"]
                dims = [x.dim_param or x.dim_value for x in act.type.tensor_type.shape.dim]
                assert dims == dec["shape"], (role, dec["name"])
    if task == "nlvr2":
        assert [i["shape"] for i in m["graphs"]["nlvr2"]["inputs"]] == [
            ["batch", "text"], ["batch", "text"], ["batch", 2, "regions", 64],
            ["batch", 2, "regions", 7], ["batch", 2, "regions"]]
        assert m["graphs"]["nlvr2"]["outputs"] == [
            {"name": "nlvr2_logits", "dtype": "float32", "shape": ["batch", 2]}]
    if task == "vqa":
        with open(os.path.join(d, "answers.txt"), encoding="utf-8") as f:
            assert f.read().split("\n")[:-1] == tiny_tasks.ANSWERS
        assert m["graphs"]["encoder"]["outputs"][2]["shape"] == ["batch", len(tiny_tasks.ANSWERS)]
    if task == "ve":
        with open(os.path.join(d, "ve_labels.txt")) as f:
            assert f.read() == "contradiction\nentailment\nneutral\n"
    if task == "re":
        assert m["graphs"]["encoder"]["outputs"][2]["shape"] == ["batch", "regions"]


# ------------------------------------------------------------------ goldens

def _close(got, want, tol, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    assert diff <= tol, f"{what}: {diff:.2e}"
    return diff


def _same_answer(got, want, what):
    """Equal structure, strings and booleans; numbers within 1e-6."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), what
        for k in want:
            _same_answer(got[k], want[k], f"{what}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            _same_answer(g, w, f"{what}[{i}]")
    elif isinstance(want, (bool, str)) or want is None:
        assert got == want, what
    else:
        assert abs(got - want) <= 1e-6, what


@pytest.mark.parametrize("layout", LAYOUTS)
def test_goldens_match_pytorch_and_the_graphs(loaded, layout):
    model = loaded[layout][0]
    gold = _golden(layout)
    d, m = _bundle(layout)
    task = m["task"]["name"]
    assert gold["bundle"] == f"bundles/tiny-{layout}" and gold["task"] == task
    images = 2 if task == "nlvr2" else 1
    vocab = wordpiece.load_vocab(os.path.join(d, "vocab.txt"))
    answers = tiny_tasks.ANSWERS if task == "vqa" else None
    sizes = set()
    for i, case in enumerate(gold["cases"]):
        assert case["ids"] == wordpiece.encode(case["text"], vocab, lowercase=True, max_length=40)
        assert len(case["images"]) == images
        sizes.add(len(case["images"][0]["boxes"]))
        batch = tiny_tasks.pad_cases([case], model.config, images)
        want = tiny_tasks.graph_outputs(model, batch)
        assert sorted(case["outputs"]) == sorted(want) == sorted(gold["output_graphs"])
        for name, w in want.items():
            _close(case["outputs"][name], w, 1e-5, f"{layout} case {i} {name}")
        ref = tiny_tasks.post_process(task, {k: torch.tensor(v) for k, v in case["outputs"].items()},
                                      case, answers)
        _same_answer(ref, case["answer"], f"{layout} case {i} answer")
        # The graphs give the golden outputs.
        for name, graph in gold["output_graphs"].items():
            got = run_graph(os.path.join(d, f"{graph}.onnx"),
                            _feeds(batch, 0 if images == 2 and graph == "encoder" else None))
            _close(got[name], case["outputs"][name], ATOL, f"{layout} case {i} {name} ({graph})")
    assert len(sizes) == 3, "the cases should differ in region counts"
    b = gold["batch"]
    assert b["cases"] == [0, 1, 2]
    batch = tiny_tasks.pad_cases(gold["cases"], model.config, images)
    assert (b["text_len"], b["regions_len"]) == (batch[0].shape[1], batch[2].shape[-2])
    for name, w in tiny_tasks.graph_outputs(model, batch).items():
        _close(b["outputs"][name], w, 1e-5, f"{layout} batch {name}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_padding_invariance(loaded, layout):
    """Each case alone (goldens) equals its row of the padded batch, in PyTorch and in the graphs;
    RE scores are -10000 exactly on padded regions."""
    gold = _golden(layout)
    d, m = _bundle(layout)
    images = 2 if m["task"]["name"] == "nlvr2" else 1
    batch = tiny_tasks.pad_cases(gold["cases"], loaded[layout][0].config, images)
    graph_out = {}
    for name, graph in gold["output_graphs"].items():
        got = run_graph(os.path.join(d, f"{graph}.onnx"),
                        _feeds(batch, 0 if images == 2 and graph == "encoder" else None))
        graph_out[name] = got[name]
    for i, case in enumerate(gold["cases"]):
        for name, single in case["outputs"].items():
            single = np.asarray(single)[0]
            row = np.asarray(gold["batch"]["outputs"][name])[i]
            g_row = graph_out[name][i]
            if name == "re_logits":
                n = len(case["images"][0]["boxes"])
                assert np.all(row[n:] == -10000.0) and np.all(g_row[n:] == -10000.0)
                row, g_row = row[:n], g_row[:n]
            diff = _close(row, single, 1e-5, f"{layout} case {i} {name} batch vs alone")
            record("tasks: padded batch vs case alone", name, diff)
            _close(g_row, single, ATOL, f"{layout} case {i} {name} graph batch vs alone")


# ------------------------------------------------------------------ the exporter

def _vocab():
    return os.path.join(CK, "tiny-random-vocab.txt")


def _labels():
    return os.path.join(CK, "tiny-tasks-labels.txt")


def _cli_args(checkpoint, out, *extra):
    return ["--checkpoint", checkpoint, "--config", os.path.join(CK, "tiny-tasks.json"),
            "--vocab", _vocab(), "--labels", _labels(), "--name", "t", "--out", out,
            "--lowercase", "--max-text-length", "40", *extra]


def test_cli_exports_a_vqa_checkpoint_with_only_its_head(tmp_path, capsys):
    out = tmp_path / "vqa"
    export_main(_cli_args(os.path.join(CK, "tiny-vqa.pt"), str(out), "--answers",
                          os.path.join(CK, "tiny-vqa-ans2label.json"), "--strict"))
    err = capsys.readouterr().err
    assert "UniterForVisualQuestionAnswering" in err and "wrote" in err
    m = json.loads((out / "manifest.json").read_text())
    assert m["task"] == {"name": "vqa", "class": "UniterForVisualQuestionAnswering",
                         "labels": "answers.txt"}
    assert m["heads"] == {"itm": False, "rank": False, "mlm": False, "mrc": False,
                          "attention": True, "vqa": True, "ve": False, "nlvr2": False, "re": False}
    assert sorted(p.name for p in out.glob("*.onnx")) == ["encoder.onnx", "encoder_attention.onnx"]
    assert (out / "answers.txt").read_text().split("\n")[:-1] == tiny_tasks.ANSWERS
    # The same graphs as the committed bundle (same checkpoint, same exporter).
    _, committed = _bundle("vqa")
    for g in ("encoder", "encoder_attention"):
        assert m["graphs"][g]["outputs"] == committed["graphs"][g]["outputs"]
    with pytest.raises(SystemExit, match="--answers"):
        export_main(_cli_args(os.path.join(CK, "tiny-vqa.pt"), str(tmp_path / "no-answers")))


def test_retrieval_checkpoint_declares_itm_and_rank_only(tmp_path):
    m, report, _ = export_checkpoint(os.path.join(CK, "tiny-retrieval.pt"),
                                     os.path.join(CK, "tiny-tasks.json"), _vocab(), _labels(),
                                     str(tmp_path / "r"), "r", verify=False, log=lambda s: None)
    assert m["task"] == {"name": "retrieval", "class": "UniterForImageTextRetrieval"}
    assert [h for h, on in m["heads"].items() if on] == ["itm", "rank", "attention"]
    assert list(m["graphs"]) == ["encoder", "encoder_attention"]
    assert [o["name"] for o in m["graphs"]["encoder"]["outputs"]] == \
        ["pooled", "hidden", "itm_logits", "rank_logits"]


def test_pretrain_checkpoint_without_mlm_and_mrc_heads(tmp_path):
    """A backbone with ITM only: no mlm_head / mrc_head graph, heads false, label count from
    --labels; the full pre-training checkpoint keeps every head."""
    pre = torch.load(os.path.join(CK, "tiny-random.pt"), map_location="cpu")
    cfg_path = tmp_path / "official.json"
    with open(os.path.join(CK, "tiny-random.json")) as f:
        cfg = json.load(f)
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items()
                                    if k not in ("img_dim", "img_label_dim")}))
    full, report, _ = export_checkpoint(os.path.join(CK, "tiny-random.pt"), str(cfg_path), _vocab(),
                                        _labels(), str(tmp_path / "full"), "full", lowercase=True,
                                        strict=True, verify=False, log=lambda s: None)
    assert full["task"] == {"name": "pretrain", "class": "UniterForPretraining"}
    assert [h for h, on in full["heads"].items() if on] == ["itm", "mlm", "mrc", "attention"]
    assert list(full["graphs"]) == ["encoder", "encoder_attention", "mlm_head", "mrc_head"]
    assert [o["name"] for o in full["graphs"]["encoder"]["outputs"]] == ["pooled", "hidden", "itm_logits"]

    part = {k: v for k, v in pre.items() if not k.startswith(("cls.", "region_classifier."))}
    path = tmp_path / "itm-only.pt"
    torch.save(part, path)
    m, report, _ = export_checkpoint(str(path), str(cfg_path), _vocab(), _labels(),
                                     str(tmp_path / "part"), "part", verify=False, log=lambda s: None)
    assert [h for h, on in m["heads"].items() if on] == ["itm", "attention"]
    assert list(m["graphs"]) == ["encoder", "encoder_attention"]
    assert not (tmp_path / "part" / "mlm_head.onnx").exists()
    assert report.absent_heads == ["mlm", "mrc"]
    assert "region_classifier.net.3.weight" in m["provenance"]["missing_keys"]
    # --rank derives rank_output from itm_output row 1 (official init_output).
    m, report, model = export_checkpoint(str(path), str(cfg_path), _vocab(), _labels(),
                                         str(tmp_path / "rank"), "rank", rank=True, verify=False,
                                         log=lambda s: None)
    assert m["heads"]["rank"] and "rank_output.weight" in m["provenance"]["derived_keys"]
    assert torch.equal(model.rank_output.weight, pre["itm_output.weight"][1:2])
    assert m["task"]["name"] == "pretrain"
    # Forced to the retrieval class: rank_output is needed, or derived with --rank.
    with pytest.raises(ValueError, match="no rank_output"):
        export_checkpoint(str(path), str(cfg_path), _vocab(), _labels(), str(tmp_path / "ret"),
                          "ret", task="retrieval", verify=False, log=lambda s: None)
    m, report, _ = export_checkpoint(str(path), str(cfg_path), _vocab(), _labels(),
                                     str(tmp_path / "ret2"), "ret2", task="retrieval", rank=True,
                                     verify=False, log=lambda s: None)
    assert m["task"]["class"] == "UniterForImageTextRetrieval"
    assert [h for h, on in m["heads"].items() if on] == ["itm", "rank", "attention"]
    assert report.unexpected == sorted(k for k in part if k.startswith("feat_regress."))


def test_ve_checkpoint_through_the_cli_matches_the_committed_bundle(tmp_path):
    out = tmp_path / "ve"
    export_main(_cli_args(os.path.join(CK, "tiny-ve.pt"), str(out)))
    m = json.loads((out / "manifest.json").read_text())
    _, committed = _bundle("ve")
    assert m["task"] == committed["task"] and m["heads"] == committed["heads"]
    batch = _random_batch(tiny_cfg(), 1, 5)
    for g in m["graphs"]:
        a = run_graph(str(out / f"{g}.onnx"), _feeds(batch))
        b = run_graph(os.path.join(TESTDATA, "bundles", "tiny-ve", f"{g}.onnx"), _feeds(batch))
        for k in a:
            _close(a[k], b[k], 1e-6, f"{g} {k}")


def test_exporter_checks_the_graphs_with_onnxruntime_when_installed(tmp_path, monkeypatch):
    """export_checkpoint's ONNX Runtime check, with a stand-in `onnxruntime` module (the NumPy
    evaluator) where the real one is not installed; a graph that differs is refused."""
    import sys
    import types
    if _ort is None:
        fake = types.ModuleType("onnxruntime")

        class InferenceSession:
            def __init__(self, path, providers=None):
                self.path = path

            def run(self, names, feeds):
                out = numpy_onnx_run(self.path, feeds)
                return [out[n] for n in names]
        fake.InferenceSession = InferenceSession
        monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    logs = []
    m, _, model = export_checkpoint(os.path.join(CK, "tiny-nlvr2-paired-attn.pt"),
                                    os.path.join(CK, "tiny-tasks.json"), _vocab(), _labels(),
                                    str(tmp_path / "b"), "b", log=logs.append)
    assert any("ONNX Runtime matches PyTorch" in line for line in logs), logs
    from uniter.export import verify_bundle_onnxruntime
    with torch.no_grad():
        model.nlvr2_output.bias += 0.01  # PyTorch no longer what the graph holds
    with pytest.raises(ValueError, match="nlvr2_logits"):
        verify_bundle_onnxruntime(model, str(tmp_path / "b"), m)


def test_answers_must_match_the_checkpoint(tmp_path):
    a2l = tmp_path / "a2l.json"
    a2l.write_text(json.dumps({"yes": 0, "no": 1}))
    with pytest.raises(ValueError, match="12 answers, --answers lists 2"):
        export_checkpoint(os.path.join(CK, "tiny-vqa.pt"), os.path.join(CK, "tiny-tasks.json"),
                          _vocab(), _labels(), str(tmp_path / "b"), "b", answers=str(a2l),
                          verify=False, log=lambda s: None)
    a2l.write_text(json.dumps({"yes": 0, "no": 2}))
    with pytest.raises(ValueError, match="not 0..1"):
        read_answers(str(a2l))
    assert read_answers(os.path.join(CK, "tiny-vqa-ans2label.json")) == tiny_tasks.ANSWERS
