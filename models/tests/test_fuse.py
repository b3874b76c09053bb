"""Operator fusion and float16 (models/uniter/fuse.py), node by node and in numbers.

The rewritten graphs are checked node by node (the fused nodes are there with the right inputs
and attributes, none of the old pattern is left), then evaluated by a small numpy evaluator of the
operators the encoder graphs use, com.microsoft.Attention and Gelu included (written from the
ONNX and the ONNX Runtime contrib operator specifications; float16 nodes computed in float32 and
rounded, as ONNX Runtime's CPU provider does). End to end, through ONNX Runtime (the Go binary's
`UNITER_BIN run-graph`; skipped without it), the fused graph is compared with the unfused one and
the float16 graph with float32. On the CPU provider the float16 graph runs through the Casts ONNX
Runtime inserts around nodes that have no float16 kernel: its error is float16 storage, not the
GPU's float16 arithmetic (`UNITER_ORT_PROVIDER=cuda` runs the same test on the GPU).
"""
import hashlib
import json
import math
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from uniter_testing import REPO, make_model, make_pairs, pad_batch, random_bundle_kwargs, record, small_config
from uniter_testing import run_bundle_graph as run_graph
from uniter import fuse as F
from uniter import quantize as Q
from uniter.export import write_bundle

torch.set_num_threads(1)

FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-random")
NLVR2_FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-nlvr2-paired-attn")
ATTENTION_PATTERN = ("Softmax", "Reshape", "Transpose", "Div", "Unsqueeze")


# ---------------------------------------------------------------------------------------------
# A numpy evaluator of the operators the encoder graphs use


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _attention(x, w, b, mask, num_heads, scale, mask_filter_value):
    """com.microsoft.Attention with a raw [batch, seq] mask: fill value where the mask is 0."""
    B, S, _ = x.shape
    qkv = x @ w + b
    H = w.shape[1] // 3
    D = H // num_heads

    def heads(t):
        return t.reshape(B, S, num_heads, D).transpose(0, 2, 1, 3)

    q, k, v = heads(qkv[..., :H]), heads(qkv[..., H:2 * H]), heads(qkv[..., 2 * H:])
    scores = q @ k.transpose(0, 1, 3, 2) * np.float32(scale)
    scores = scores + np.where(mask > 0, 0.0, mask_filter_value).astype(np.float32)[:, None, None, :]
    return (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, S, H)


def _op(node, args):
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    t = node.op_type
    if t == "Constant":
        return [numpy_helper.to_array(a["value"])]
    if t == "Identity":
        return [args[0]]
    if t == "Cast":
        return [args[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]])]
    # float16 nodes compute in float32 and round their outputs (ONNX Runtime's CPU provider).
    half = any(isinstance(x, np.ndarray) and x.dtype == np.float16 for x in args)
    args = [x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype == np.float16 else x
            for x in args]
    outs = _op32(t, a, args)
    return [o.astype(np.float16) if half and o.dtype == np.float32 else o for o in outs]


def _op32(t, a, args):
    if t in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[t]
        return [f(args[0], args[1])]
    if t == "MatMul":
        return [np.matmul(args[0], args[1])]
    if t == "Gemm":
        A = args[0].T if a.get("transA", 0) else args[0]
        B = args[1].T if a.get("transB", 0) else args[1]
        y = np.float32(a.get("alpha", 1.0)) * (A @ B)
        if len(args) > 2:
            y = y + np.float32(a.get("beta", 1.0)) * args[2]
        return [y.astype(np.float32)]
    if t == "Tanh":
        return [np.tanh(args[0])]
    if t == "Erf":
        return [_erf(args[0]).astype(args[0].dtype)]
    if t == "Gelu":
        x = args[0]
        return [(0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))).astype(x.dtype)]
    if t == "Softmax":
        return [_softmax(args[0], a.get("axis", -1))]
    if t == "LayerNormalization":
        x, g, b = args[0], args[1], args[2] if len(args) > 2 else 0
        axis = a.get("axis", -1)
        mu = x.mean(axis=axis, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
        return [((x - mu) / np.sqrt(var + np.float32(a.get("epsilon", 1e-5))) * g + b).astype(x.dtype)]
    if t == "Attention":
        return [_attention(args[0], args[1], args[2], args[3], a["num_heads"],
                           a.get("scale", 1.0 / math.sqrt(args[1].shape[1] // 3 // a["num_heads"])),
                           a.get("mask_filter_value", -10000.0)).astype(args[0].dtype)]
    if t == "Gather":
        return [np.take(args[0], args[1], axis=a.get("axis", 0))]
    if t == "Concat":
        return [np.concatenate(args, axis=a["axis"])]
    if t == "Unsqueeze":
        y = args[0]
        for ax in sorted(int(i) for i in args[1].reshape(-1)):
            y = np.expand_dims(y, ax)
        return [y]
    if t == "CumSum":
        assert not a.get("exclusive", 0) and not a.get("reverse", 0)
        return [np.cumsum(args[0], axis=int(args[1])).astype(args[0].dtype)]
    if t == "Reshape":
        shape = [args[0].shape[i] if s == 0 else int(s) for i, s in enumerate(args[1])]
        return [args[0].reshape(shape)]
    if t == "Transpose":
        return [np.transpose(args[0], a.get("perm"))]
    if t == "Squeeze":
        return [np.squeeze(args[0], tuple(int(i) for i in args[1].reshape(-1)))]
    if t == "Equal":
        return [np.equal(args[0], args[1])]
    if t == "Where":
        return [np.where(args[0], args[1], args[2])]
    if t == "Relu":
        return [np.maximum(args[0], 0).astype(args[0].dtype)]
    raise NotImplementedError(t)


def evaluate(model, feeds, outputs=None):
    """The graph's `outputs` (default: all) from `feeds`, running only what they depend on."""
    g = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    values.update(feeds)
    producer = {o: n for n in g.node for o in n.output}

    def get(name):
        if name not in values:
            n = producer[name]
            for o, v in zip(n.output, _op(n, [get(i) for i in n.input if i])):
                values[o] = v
        return values[name]

    return {o: get(o) for o in (outputs or [o.name for o in g.output])}


def _feeds(spec_inputs, seed=0, B=3, T=7, N=5, vocab=243):
    """Padded inputs: text and regions padded in the middle of the sequence (row 0) and at the end."""
    rng = np.random.default_rng(seed)
    dims = {i["name"]: i["shape"] for i in spec_inputs}
    ids = rng.integers(5, vocab, (B, T))
    ids[:, 0] = 2
    tm = np.ones((B, T), np.int64)
    tm[0, 4:] = 0
    tm[1, 6:] = 0
    im = np.ones((B, N), np.int64)
    im[0, 3:] = 0
    im[2, 4:] = 0
    return {"input_ids": ids.astype(np.int64), "text_mask": tm,
            "img_feat": np.abs(rng.standard_normal((B, N, dims["img_feat"][-1]))).astype(np.float32),
            "img_loc": rng.random((B, N, dims["img_loc"][-1])).astype(np.float32), "img_mask": im}


def _manifest(bundle):
    with open(os.path.join(bundle, "manifest.json")) as f:
        return json.load(f)


def _load(bundle, role):
    return onnx.load(os.path.join(bundle, f"{role}.onnx"))


def _ops(model):
    return [n.op_type for n in model.graph.node]


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The fused graph, node by node


def test_fixture_encoder_attention_and_gelu_fused():
    model = _load(FIXTURE, "encoder")
    rep = {}
    fused = F.fuse(model, report=rep)
    onnx.checker.check_model(fused)
    ops = _ops(fused)
    layers = _manifest(FIXTURE)["model"]["num_hidden_layers"]
    assert ops.count("Attention") == layers and ops.count("Gelu") == layers
    assert rep["attention_unfused"] == [] and rep["gelu_unfused"] == []
    # None of the old pattern is left.
    for op in ATTENTION_PATTERN + ("Erf",):
        assert op not in ops, op
    assert ops.count("MatMul") == _ops(model).count("MatMul") - 5 * layers  # Q, K, V, Q·Kᵀ, P·V
    # LayerNorm was already one node per norm (opset 17), and stays so.
    assert ops.count("LayerNormalization") == rep["layer_norm"] == _ops(model).count("LayerNormalization")
    assert rep["reduce_mean"] == 0
    assert {(o.domain, o.version) for o in fused.opset_import} >= {("", 17), (F.MS_DOMAIN, 1)}
    # Inputs and outputs are unchanged.
    assert fused.graph.input == model.graph.input and fused.graph.output == model.graph.output
    # The original is not modified.
    assert "Attention" not in _ops(model)


def test_attention_node_inputs_and_attributes():
    model = _load(FIXTURE, "encoder")
    m = _manifest(FIXTURE)["model"]
    fused = F.fuse(model)
    inits = {i.name: numpy_helper.to_array(i) for i in fused.graph.initializer}
    orig = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    orig_nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in fused.graph.node for o in n.output}
    heads, hidden = m["num_attention_heads"], m["hidden_size"]
    attn = [n for n in fused.graph.node if n.op_type == "Attention"]
    casts = set()
    for layer, n in enumerate(attn):
        assert n.domain == F.MS_DOMAIN and len(n.input) == 4 and len(n.output) == 1
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        assert a["num_heads"] == heads
        assert a["scale"] == pytest.approx(1 / math.sqrt(hidden // heads), rel=1e-6)
        assert a["mask_filter_value"] == -10000.0
        # Input: the previous layer's output (or the embeddings); output: what Reshape_3 wrote.
        prefix = f"/uniter/encoder/layer.{layer}/attention/self/"
        assert n.input[0] == orig_nodes[prefix + "query/MatMul"].input[0]
        assert n.output[0] == orig_nodes[prefix + "Reshape_3"].output[0]
        # Packed weights and bias: Q | K | V side by side.
        w = np.concatenate([orig[orig_nodes[prefix + p + "/MatMul"].input[1]] for p in ("query", "key", "value")], 1)
        np.testing.assert_array_equal(inits[n.input[1]], w)
        assert inits[n.input[1]].shape == (hidden, 3 * hidden) and inits[n.input[2]].shape == (3 * hidden,)
        # The mask: the concatenated text/region mask as int32, one Cast for every layer.
        cast = producer[n.input[3]]
        assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.INT32
        assert producer[cast.input[0]].op_type == "Concat"
        assert list(producer[cast.input[0]].input) == ["text_mask", "img_mask"]
        casts.add(cast.name)
    assert len(casts) == 1


def test_gelu_node():
    fused = F.fuse(_load(FIXTURE, "encoder"))
    producer = {o: n for n in fused.graph.node for o in n.output}
    for n in (n for n in fused.graph.node if n.op_type == "Gelu"):
        assert n.domain == F.MS_DOMAIN and not n.attribute
        assert producer[n.input[0]].name.endswith("intermediate/dense/Add")
        readers = [c for c in fused.graph.node if n.output[0] in c.input]
        assert len(readers) == 1 and readers[0].name.endswith("output/dense/MatMul")


def test_attention_probabilities_output_stays_unfused():
    """encoder_attention returns the attention probabilities: Attention cannot, so its attention
    blocks are left as they are (GELU is still fused)."""
    model = _load(FIXTURE, "encoder_attention")
    rep = {}
    fused = F.fuse(model, report=rep)
    ops = _ops(fused)
    assert "Attention" not in ops and ops.count("Softmax") == _ops(model).count("Softmax") == 2
    assert ops.count("Gelu") == 2 and "Erf" not in ops
    assert len(rep["attention_unfused"]) == 2
    assert all("probabilities" in u["why"] for u in rep["attention_unfused"])


def test_nlvr2_self_attention_fused_cross_attention_left():
    rep = {}
    fused = F.fuse(_load(NLVR2_FIXTURE, "nlvr2"), report=rep)
    onnx.checker.check_model(fused)
    ops = _ops(fused)
    assert ops.count("Attention") == 4  # two layers, run on each image
    assert ops.count("Softmax") == 4  # attn1/attn2 (cross attention, Where mask) and attention pooling
    why = {u["node"]: u["why"] for u in rep["attention_unfused"]}
    assert set(why) == {"/m/attn1/Softmax", "/m/attn2/Softmax", "/m/attn_pool/Softmax", "/m/attn_pool_1/Softmax"}
    assert "Where" in why["/m/attn1/Softmax"] and "axis 1" in why["/m/attn_pool/Softmax"]


def test_a_pattern_that_differs_is_left():
    """A GELU with another constant, a mask with another fill value or a scale: only what the
    graph computes is fused."""
    model = _load(FIXTURE, "encoder")
    for n in model.graph.node:
        if n.output[0] == "/uniter/encoder/layer.0/intermediate/Constant_2_output_0":  # the 0.5
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(0.6, np.float32)))
        if n.output[0] == "/uniter/Constant_1_output_0":  # the -10000 fill value
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(-30000.0, np.float32)))
    rep = {}
    fused = F.fuse(model, report=rep)
    assert _ops(fused).count("Gelu") == 1 and _ops(fused).count("Erf") == 1
    assert rep["gelu_unfused"][0]["node"] == "/uniter/encoder/layer.0/intermediate/Erf"
    # The fill value is carried over, not assumed.
    attn = [n for n in fused.graph.node if n.op_type == "Attention"]
    assert len(attn) == 2
    assert all(helper.get_attribute_value(a) == -30000.0 for n in attn for a in n.attribute
               if a.name == "mask_filter_value")


# ---------------------------------------------------------------------------------------------
# float16


def test_to_fp16_types_and_boundary_casts():
    model = F.fuse(_load(FIXTURE, "encoder"))
    rep = {}
    half = F.to_fp16(model, report=rep)
    onnx.checker.check_model(half)
    g = half.graph
    assert rep["clipped"] == 0
    assert not [i.name for i in g.initializer if i.data_type == TensorProto.FLOAT]
    assert any(i.data_type == TensorProto.FLOAT16 for i in g.initializer)
    for n in g.node:
        if n.op_type == "Constant":
            assert n.attribute[0].t.data_type != TensorProto.FLOAT, n.name
    # Inputs and outputs keep their types; float ones pass through one Cast at the boundary.
    assert g.input == model.graph.input and g.output == model.graph.output
    producer = {o: n for n in g.node for o in n.output}
    for i in g.input:
        readers = [n for n in g.node if i.name in n.input]
        if i.type.tensor_type.elem_type == TensorProto.FLOAT:
            assert len(readers) == 1 and readers[0].op_type == "Cast"
            assert readers[0].attribute[0].i == TensorProto.FLOAT16
        else:
            assert all(r.op_type != "Cast" or r.attribute[0].i != TensorProto.FLOAT16 for r in readers)
    for o in g.output:
        p = producer[o.name]
        assert p.op_type == "Cast" and p.attribute[0].i == TensorProto.FLOAT
    # Inside, no Cast to float32 is left (the mask's Cast now makes float16).
    inner = [n for n in g.node if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT]
    assert {n.output[0] for n in inner} == {o.name for o in g.output}
    # `hidden` is an output and read inside (the pooler): inside it is the float16 tensor.
    assert [n.op_type for n in g.node if "hidden" in n.input] == []
    assert half.graph.node[-1].op_type == "Cast"
    assert _ops(half).count("Attention") == 2


def test_to_fp16_clips_to_the_float16_range():
    w = np.array([[1e6, -1e6], [0.5, 70000.0]], np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          [numpy_helper.from_array(w, "W")])
    rep = {}
    half = F.to_fp16(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), report=rep)
    assert rep["clipped"] == 3
    got = numpy_helper.to_array(half.graph.initializer[0])
    assert got.dtype == np.float16 and np.isfinite(got).all() and got[0, 0] == np.float16(65504)
    x = np.array([[1.0, 2.0]], np.float32)
    y = evaluate(half, {"x": x})["y"]
    assert y.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# In numbers (numpy evaluator)


def test_fixture_fused_equals_unfused_numpy():
    spec = _manifest(FIXTURE)["graphs"]["encoder"]
    feeds = _feeds(spec["inputs"])
    model = _load(FIXTURE, "encoder")
    want = evaluate(model, feeds)
    got = evaluate(F.fuse(model), feeds)
    for k in want:
        d = float(np.abs(got[k] - want[k]).max())
        record("fused vs unfused (numpy, fixture)", k, d)
        assert d <= 1e-5, (k, d)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A small random model (every weight and bias random) exported fp32, then fused and fp16."""
    cfg = small_config(hidden_size=48, num_attention_heads=4, intermediate_size=96, img_dim=40)
    model = make_model(cfg, seed=31, std=0.1)
    d = tmp_path_factory.mktemp("fuse")
    out = {}
    kw = dict(random_bundle_kwargs(cfg, d, "test-fuse"), provenance={"created_by": "models/tests/test_fuse.py"})
    out["fp32"] = str(d / "fp32")
    write_bundle(model, out["fp32"], precision="fp32", **kw)
    out["fp16"] = str(d / "fp16")  # through the exporter's dispatch
    write_bundle(model, out["fp16"], precision="fp16", **kw)
    out["fp32-fused"] = str(d / "fused")  # through uniter.fuse's bundle copy
    F.fuse_bundle(out["fp32"], out["fp32-fused"])
    return {"model": model, "cfg": cfg, "dir": out}


def _batch(cfg):
    pairs = make_pairs(cfg, [7, 4, 9], [5, 3, 6], seed=3)
    ids, tmask, feat, loc, imask = pad_batch(pairs, cfg)
    return {"input_ids": ids.numpy(), "text_mask": tmask.numpy(), "img_feat": feat.numpy(),
            "img_loc": loc.numpy(), "img_mask": imask.numpy()}


def test_random_model_fused_and_fp16_numpy(bundles):
    feeds = _batch(bundles["cfg"])
    for role in ("encoder", "encoder_attention"):
        want = evaluate(_load(bundles["dir"]["fp32"], role), feeds)
        fused = evaluate(_load(bundles["dir"]["fp32-fused"], role), feeds)
        half = evaluate(_load(bundles["dir"]["fp16"], role), feeds)
        for k in want:
            assert fused[k].dtype == half[k].dtype == np.float32
            d = float(np.abs(fused[k] - want[k]).max())
            record(f"fused vs unfused (numpy) {role}", k, d)
            assert d <= 1e-5, (role, k, d)
            d = float(np.abs(half[k] - want[k]).max())
            record(f"fp16 vs fp32 (numpy) {role}", k, d)
            assert d <= 1e-2, (role, k, d)
        assert (half["itm_logits"].argmax(-1) == want["itm_logits"].argmax(-1)).all()


@pytest.mark.parametrize("bundle", ["tiny-nlvr2-paired", "tiny-nlvr2-paired-attn", "tiny-nlvr2-triplet"])
def test_nlvr2_fused_and_fp16_numpy(bundle):
    """The NLVR2 graphs (run-graph does not serve them): fused equals unfused, fp16 is near."""
    path = os.path.join(REPO, "testdata", "bundles", bundle)
    spec = _manifest(path)["graphs"]["nlvr2"]
    rng = np.random.default_rng(5)
    feeds = _feeds([{"name": "img_feat", "shape": spec["inputs"][2]["shape"]},
                    {"name": "img_loc", "shape": spec["inputs"][3]["shape"]}], vocab=100)
    B, N = feeds["img_mask"].shape
    # Two images a pair: [batch, 2, regions, ...], the second with its own padding.
    for k in ("img_feat", "img_loc", "img_mask"):
        other = feeds[k][::-1].copy()
        if k == "img_feat":
            other = np.abs(rng.standard_normal(other.shape)).astype(np.float32)
        feeds[k] = np.stack([feeds[k], other], axis=1)
    model = _load(path, "nlvr2")
    want = evaluate(model, feeds)["nlvr2_logits"]
    fused = F.fuse(model)
    got = evaluate(fused, feeds)["nlvr2_logits"]
    half = evaluate(F.to_fp16(fused), feeds)["nlvr2_logits"]
    assert "Attention" in _ops(fused)
    d = float(np.abs(got - want).max())
    record(f"fused vs unfused (numpy) {bundle}", "nlvr2_logits", d)
    assert d <= 1e-5
    d = float(np.abs(half - want).max())
    record(f"fp16 vs fp32 (numpy) {bundle}", "nlvr2_logits", d)
    assert d <= 1e-2 and half.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Bundles


def test_fuse_bundle_manifest(tmp_path):
    out = tmp_path / "fp16"
    m = F.fuse_bundle(FIXTURE, str(out), fp16=True)
    assert m["precision"] == "fp16" and m == _manifest(out)
    keys = list(m)
    assert keys.index("precision") == keys.index("random_weights") + 1
    orig = _manifest(FIXTURE)
    for role, spec in m["graphs"].items():
        assert spec["sha256"] == _sha(out / spec["file"]), role
        assert (spec["sha256"] == orig["graphs"][role]["sha256"]) == (role not in Q.QUANTIZED_GRAPHS)
        assert {k: v for k, v in spec.items() if k != "sha256"} == \
            {k: v for k, v in orig["graphs"][role].items() if k != "sha256"}
    fp = m["provenance"].pop("fusion")
    assert m["provenance"] == orig["provenance"]
    assert fp["graphs"]["encoder"]["attention_fused"] == 2
    assert fp["graphs"]["encoder"]["fp32_sha256"] == orig["graphs"]["encoder"]["sha256"]
    assert fp["graphs"]["encoder_attention"]["attention_fused"] == 0
    assert len(fp["graphs"]["encoder_attention"]["attention_unfused"]) == 2
    assert sorted(os.listdir(out)) == sorted(os.listdir(FIXTURE))
    # Only an fp32 bundle is fused; a non-empty destination is not overwritten.
    with pytest.raises(ValueError, match="precision"):
        F.fuse_bundle(str(out), str(tmp_path / "again"))
    with pytest.raises(ValueError, match="not empty"):
        F.fuse_bundle(FIXTURE, str(out))
    assert F.fuse_bundle(FIXTURE, str(out), force=True)["precision"] == "fp32-fused"


def test_fp16_over_an_appended_transport_is_refused(tmp_path):
    from uniter import ot_graph
    ot = tmp_path / "ot"
    ot_graph.add_ot_to_bundle(FIXTURE, str(ot))
    # float16 would take the transport out of its parity with heads.Align: refused, nothing left.
    with pytest.raises(ValueError, match="ot_in_graph.*uniter.fuse IN MID --fp16 && python3 -m uniter.ot_graph"):
        F.fuse_bundle(str(ot), str(tmp_path / "ot-fp16"), fp16=True)
    assert not (tmp_path / "ot-fp16").exists()
    # The order it names works, and keeps the transport's nodes float32; fusing alone is fine too.
    F.fuse_bundle(FIXTURE, str(tmp_path / "fp16"), fp16=True)
    m = ot_graph.add_ot_to_bundle(str(tmp_path / "fp16"), str(tmp_path / "fp16-ot"))
    assert m["precision"] == "fp16" and "ot_in_graph" in m["provenance"]
    enc = onnx.load(str(tmp_path / "fp16-ot" / m["graphs"]["encoder"]["file"]))
    consts = {t.name: t.data_type for t in enc.graph.initializer if t.name.startswith(ot_graph.PREFIX)}
    assert consts and set(consts.values()) <= {TensorProto.FLOAT, TensorProto.INT64}
    assert not any(n.op_type == "Cast" and n.name.startswith(ot_graph.PREFIX) for n in enc.graph.node
                   for a in n.attribute if a.name == "to" and a.i == TensorProto.FLOAT16)
    assert F.fuse_bundle(str(ot), str(tmp_path / "ot-fused"))["precision"] == "fp32-fused"


def test_fuse_cli(tmp_path, capsys):
    F.main([FIXTURE, str(tmp_path / "b")])
    assert _manifest(tmp_path / "b")["precision"] == "fp32-fused"
    err = capsys.readouterr().err
    assert "encoder: 2 attention fused, 2 GELU fused, attention left unfused: none" in err
    F.main([FIXTURE, str(tmp_path / "c"), "--fp16", "--graphs", "encoder"])
    m = _manifest(tmp_path / "c")
    assert m["precision"] == "fp16" and list(m["provenance"]["fusion"]["graphs"]) == ["encoder"]


def test_precisions_and_export_dispatch(bundles):
    assert set(F.FUSED_PRECISIONS) <= set(Q.PRECISIONS)
    m = _manifest(bundles["dir"]["fp16"])
    assert m["precision"] == "fp16" and set(m["provenance"]["fusion"]["graphs"]) == {"encoder", "encoder_attention"}
    for role, spec in m["graphs"].items():
        model = _load(bundles["dir"]["fp16"], role)
        assert spec["sha256"] == _sha(os.path.join(bundles["dir"]["fp16"], spec["file"]))
        half = any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
        assert half == (role in Q.QUANTIZED_GRAPHS), role
    assert "Attention" in _ops(_load(bundles["dir"]["fp16"], "encoder"))


def test_export_refuses_unknown_precision(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        write_bundle(make_model(small_config()), str(tmp_path / "b"), name="x", vocab_path=os.devnull,
                     region_labels=[], lowercase=True, max_text_length=10, random_weights=True,
                     provenance={}, precision="bf16")


# ---------------------------------------------------------------------------------------------
# End to end through ONNX Runtime (the Go binary)


def test_fused_and_fp16_onnxruntime(bundles, uniter_bin, tmp_path):
    """ONNX Runtime: the fused fp32 graph equals the unfused one (≤ 1e-4); the fp16 graph is
    within 1e-2 of fp32 on the logits with the same ITM decisions."""
    feeds = _batch(bundles["cfg"])
    cuda = os.environ.get("UNITER_ORT_PROVIDER") == "cuda"
    for role in ("encoder", "encoder_attention"):
        want = run_graph(uniter_bin, bundles["dir"]["fp32"], role, feeds, str(tmp_path))
        fused = run_graph(uniter_bin, bundles["dir"]["fp32-fused"], role, feeds, str(tmp_path))
        half = run_graph(uniter_bin, bundles["dir"]["fp16"], role, feeds, str(tmp_path))
        for k in want:
            d = float(np.abs(fused[k] - want[k]).max())
            record(f"fused vs unfused ORT {role}", k, d)
            assert d <= 1e-4, (role, k, d)
            d = float(np.abs(half[k] - want[k]).max())
            record(f"fp16 vs fp32 ORT {'cuda' if cuda else 'cpu'} {role}", k, d)
            assert d <= 1e-2, (role, k, d)
        assert (fused["itm_logits"].argmax(-1) == want["itm_logits"].argmax(-1)).all()
        assert (half["itm_logits"].argmax(-1) == want["itm_logits"].argmax(-1)).all()
