"""Dynamic int8 quantization (models/uniter/quantize.py), node by node.

The arithmetic is checked against numpy; the rewritten graphs are evaluated by a tiny numpy
evaluator of the few operators they use (MatMul, Gemm, MatMulInteger, DynamicQuantizeLinear,
Cast, Mul, Add, Identity, Transpose), written from the ONNX operator specification; no onnxruntime for
Python is needed. End to end, an int8 bundle run by ONNX Runtime (through the Go binary,
`UNITER_BIN run-graph`; skipped without it) is compared with PyTorch computing the same
quantization in float (fake quantization) and with the fp32 model.
"""
import hashlib
import json
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from uniter_testing import REPO, make_model, make_pairs, pad_batch, random_bundle_kwargs, record, small_config
from uniter_testing import run_bundle_graph as run_graph
from uniter import quantize as Q
from uniter.export import write_bundle

torch.set_num_threads(1)

FIXTURE = os.path.join(REPO, "testdata", "bundles", "tiny-random")


# ---------------------------------------------------------------------------------------------
# A numpy evaluator of the operators the rewritten graphs use


def _round(x):
    return np.rint(x)  # round half to even, as ONNX specifies


def _op(node, args):
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    t = node.op_type
    if t == "Identity":
        return [args[0]]
    if t == "MatMul":
        return [np.matmul(args[0], args[1]).astype(np.float32)]
    if t == "Gemm":
        A, B = args[0], args[1]
        A = A.T if a.get("transA", 0) else A
        B = B.T if a.get("transB", 0) else B
        y = np.float32(a.get("alpha", 1.0)) * (A @ B)
        if len(args) > 2 and args[2] is not None:
            y = y + np.float32(a.get("beta", 1.0)) * args[2]
        return [y.astype(np.float32)]
    if t == "DynamicQuantizeLinear":
        x = args[0].astype(np.float32)
        lo, hi = min(np.float32(0), x.min()), max(np.float32(0), x.max())
        scale = np.float32((hi - lo) / np.float32(255))
        zp = np.uint8(np.clip(_round(np.float32(0) - lo / scale), 0, 255))
        y = np.clip(_round(x / scale) + zp, 0, 255).astype(np.uint8)
        return [y, scale, zp]
    if t == "MatMulInteger":
        A = args[0].astype(np.int32)
        B = args[1].astype(np.int32)
        if len(args) > 2 and args[2] is not None:
            A = A - args[2].astype(np.int32)
        if len(args) > 3 and args[3] is not None:
            B = B - args[3].astype(np.int32)
        return [np.matmul(A, B).astype(np.int32)]
    if t == "Cast":
        return [args[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]])]
    if t == "Transpose":
        return [np.transpose(args[0], a.get("perm"))]
    if t == "Mul":
        return [np.multiply(args[0], args[1])]
    if t == "Add":
        return [np.add(args[0], args[1])]
    raise NotImplementedError(t)


def evaluate(model, outputs, feeds):
    """Evaluates `outputs` of `model` from `feeds`, running only the nodes they depend on."""
    g = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    values.update(feeds)
    producer = {o: n for n in g.node for o in n.output}

    def get(name):
        if name == "":
            return None
        if name not in values:
            n = producer[name]
            for o, v in zip(n.output, _op(n, [get(i) for i in n.input])):
                values[o] = v
        return values[name]

    return [get(o) for o in outputs]


def _linear_model(w, bias=None, bias_first=True, name="/layer/dense/MatMul", x_shape=(None, None, 0)):
    """x [B, S, K] → MatMul(x, W) (→ Add(bias, ·)) → y."""
    K, N = w.shape
    inits = [numpy_helper.from_array(w.astype(np.float32), "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm" if bias is not None else "y"], name=name)]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "bias"))
        nodes.append(helper.make_node("Add", ["bias", "mm"] if bias_first else ["mm", "bias"], ["y"],
                                      name="/layer/dense/Add"))
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _ops(model):
    return [n.op_type for n in model.graph.node]


# ---------------------------------------------------------------------------------------------
# The arithmetic


def test_quantize_weight_per_channel_and_per_tensor():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(40, 24)).astype(np.float32) * np.linspace(0.01, 3, 24, dtype=np.float32)
    w[:, 5] = 0
    q, s = Q.quantize_weight(w)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (24,)
    assert q.min() >= -127 and q.max() <= 127
    np.testing.assert_allclose(s[np.arange(24) != 5], np.abs(w).max(axis=0)[np.arange(24) != 5] / 127, rtol=1e-6)
    assert s[5] == 1 and not q[:, 5].any()
    assert (np.abs(q).max(axis=0)[np.arange(24) != 5] == 127).all()  # each column uses the full range
    err = np.abs(q * s - w)
    assert (err <= s / 2 + 1e-7).all()
    qt, st = Q.quantize_weight(w, per_channel=False)
    assert st.shape == () and np.isclose(st, np.abs(w).max() / 127)
    # Per channel is never worse, and much better for the small columns.
    errt = np.abs(qt * st - w)
    assert err.max(axis=0)[0] < errt.max(axis=0)[0] / 10


def test_quantize_weight_refuses_other_ranks():
    with pytest.raises(ValueError):
        Q.quantize_weight(np.zeros((2, 3, 4), np.float32))


def test_dynamic_quantize_linear_matches_the_onnx_example():
    # The example of the ONNX operator documentation.
    x = np.array([0, 2, -3, -2.5, 1.34, 0.5], np.float32)
    y, s, z = Q.dynamic_quantize_linear(x)
    assert np.isclose(s, 0.019607844) and z == 153
    assert y.tolist() == [153, 255, 0, 26, 221, 179]
    # Positive only: the range still holds 0, zero point 0; negative only: zero point 255.
    y, s, z = Q.dynamic_quantize_linear(np.array([1, 2.5, 0.2], np.float32))
    assert z == 0 and np.isclose(s, 2.5 / 255) and y.max() == 255
    y, s, z = Q.dynamic_quantize_linear(np.array([-1, -4.0], np.float32))
    assert z == 255 and y.min() == 0
    # The numpy evaluator's operator agrees with the module's reference.
    x = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32) * 4
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    ye, se, ze = _op(node, [x])
    yr, sr, zr = Q.dynamic_quantize_linear(x)
    assert se == sr and ze == zr and (ye == yr).all()
    # Dequantized, every element is within half a step of the input.
    assert np.abs((yr.astype(np.float32) - zr) * sr - x).max() <= sr / 2 * 1.0001


# ---------------------------------------------------------------------------------------------
# The rewrite, node by node


def test_matmul_rewrite_nodes_and_values():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(48, 40)).astype(np.float32) * 0.1
    bias = rng.normal(size=(40,)).astype(np.float32)
    m = _linear_model(w, bias)
    rep = {}
    q = Q.quantize_dynamic(m, report=rep, bias_second=False)
    onnx.checker.check_model(q)
    assert _ops(q) == ["DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Mul", "Add"]
    assert [r["node"] for r in rep["quantized"]] == ["/layer/dense/MatMul"]
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    assert "W" not in inits  # the fp32 weight is gone
    mmi = q.graph.node[1]
    assert len(mmi.input) == 3  # no b_zero_point: the weights are symmetric
    wq = inits[mmi.input[1]]
    assert wq.dtype == np.int8 and wq.shape == (48, 40)
    scale_mul = q.graph.node[3]
    ws = inits[scale_mul.input[1]]
    assert ws.shape == (40,)  # per output column
    x = rng.normal(size=(2, 5, 48)).astype(np.float32) * 2
    x[0, 0, 0] = 9  # one outlier widens the per-tensor range
    (y_mm, y), = [evaluate(q, ["mm", "y"], {"x": x})]
    want = x @ w
    # Exactly the reference arithmetic...
    np.testing.assert_allclose(y_mm, Q.quantized_matmul_reference(x, *Q.quantize_weight(w)), rtol=1e-6, atol=1e-6)
    # ...within the bound of the quantization error of fp32...
    bound = Q.error_bound(x, w, ws)
    assert (np.abs(y_mm - want) <= bound + 1e-5).all()
    record("int8 MatMul 48x40 vs fp32", "max abs", float(np.abs(y_mm - want).max()))
    # ...and the bias is added unchanged.
    np.testing.assert_allclose(y, y_mm + bias, rtol=1e-6, atol=1e-6)


def test_bias_add_operands_are_swapped_for_the_fusion():
    w = np.random.default_rng(3).normal(size=(32, 32)).astype(np.float32)
    bias = np.arange(32, dtype=np.float32)
    q = Q.quantize_dynamic(_linear_model(w, bias, bias_first=True))
    add = [n for n in q.graph.node if n.op_type == "Add"]
    assert len(add) == 1 and list(add[0].input) == ["mm", "bias"]
    x = np.random.default_rng(4).normal(size=(1, 3, 32)).astype(np.float32)
    y, mm = evaluate(q, ["y", "mm"], {"x": x})
    np.testing.assert_allclose(y, mm + bias, rtol=1e-6)


def test_per_tensor_option():
    w = np.random.default_rng(5).normal(size=(32, 24)).astype(np.float32)
    q = Q.quantize_dynamic(_linear_model(w), per_channel=False)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    scale_mul = [n for n in q.graph.node if n.op_type == "Mul"][0]
    assert inits[scale_mul.input[1]].shape == ()
    x = np.random.default_rng(6).normal(size=(2, 3, 32)).astype(np.float32)
    y, = evaluate(q, ["y"], {"x": x})
    ws = inits[scale_mul.input[1]]
    assert (np.abs(y - x @ w) <= Q.error_bound(x, w, np.full(24, ws)) + 1e-5).all()


def _gemm_model(w, c, trans_b, alpha=1.0, beta=1.0, c_const=True):
    inits = [numpy_helper.from_array(w, "B")]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, w.shape[1] if trans_b else w.shape[0]])]
    if c_const:
        inits.append(numpy_helper.from_array(c, "C"))
    else:
        inputs.append(helper.make_tensor_value_info("C", TensorProto.FLOAT, list(c.shape)))
    node = helper.make_node("Gemm", ["a", "B", "C"], ["y"], name="/pooler/dense/Gemm",
                            alpha=alpha, beta=beta, transB=int(trans_b))
    n_out = w.shape[0] if trans_b else w.shape[1]
    g = helper.make_graph([node], "t", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("trans_b,alpha,beta,c_const", [(True, 1.0, 1.0, True), (False, 0.5, 2.0, True),
                                                         (True, 1.5, 0.25, False)])
def test_gemm_rewrite(trans_b, alpha, beta, c_const):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(24, 40)).astype(np.float32) * 0.2  # [N, K] with transB, else [K, N]
    n_out = 24 if trans_b else 40
    c = rng.normal(size=(n_out,)).astype(np.float32)
    m = _gemm_model(w, c, trans_b, alpha, beta, c_const)
    q = Q.quantize_dynamic(m)
    onnx.checker.check_model(q)
    assert "Gemm" not in _ops(q) and "MatMulInteger" in _ops(q) and _ops(q)[-1] == "Add"
    a = rng.normal(size=(6, 40 if trans_b else 24)).astype(np.float32)
    feeds = {"a": a} if c_const else {"a": a, "C": c}
    want, = evaluate(m, ["y"], feeds)
    got, = evaluate(q, ["y"], feeds)
    wk = w.T if trans_b else w
    _, ws = Q.quantize_weight(wk)
    bound = Q.error_bound(a, wk, ws) * alpha
    assert (np.abs(got - want) <= bound + 1e-5).all()
    np.testing.assert_allclose(want, alpha * a @ wk + beta * c, rtol=1e-5, atol=1e-5)


def test_what_stays_fp32():
    """Activation × activation MatMuls, the embeddings, small layers and Gemm with transA are
    left as they are."""
    rng = np.random.default_rng(8)
    big, small = rng.normal(size=(32, 32)).astype(np.float32), rng.normal(size=(32, 2)).astype(np.float32)
    inits = [numpy_helper.from_array(big, "Wb"), numpy_helper.from_array(small, "Ws")]
    nodes = [
        helper.make_node("MatMul", ["x", "Wb"], ["e"], name="/uniter/img_embeddings/img_linear/MatMul"),
        helper.make_node("Transpose", ["e"], ["eT"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["e", "eT"], ["att"], name="/uniter/encoder/layer.0/attention/self/MatMul"),
        helper.make_node("MatMul", ["att", "e"], ["ctx"], name="/uniter/encoder/layer.0/attention/self/MatMul_1"),
        helper.make_node("MatMul", ["ctx", "Ws"], ["logits"], name="/itm_output/MatMul"),
        helper.make_node("Identity", ["Wb"], ["Wb_alias"]),
        helper.make_node("MatMul", ["ctx", "Wb_alias"], ["y"], name="/uniter/encoder/layer.0/output/dense/MatMul"),
    ]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, None, 2]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, 32])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rep = {}
    q = Q.quantize_dynamic(m, report=rep)
    onnx.checker.check_model(q)
    why = {k["node"]: k["why"] for k in rep["kept_fp32"]}
    assert why == {"/uniter/img_embeddings/img_linear/MatMul": "excluded by name",
                   "/uniter/encoder/layer.0/attention/self/MatMul": "second input is computed",
                   "/uniter/encoder/layer.0/attention/self/MatMul_1": "second input is computed",
                   "/itm_output/MatMul": "weight [32, 2] smaller than 16"}
    # The weight behind an Identity is found and quantized; the fp32 one stays (the embedding reads it).
    assert [r["node"] for r in rep["quantized"]] == ["/uniter/encoder/layer.0/output/dense/MatMul"]
    assert "Wb" in {i.name for i in q.graph.initializer}
    x = rng.normal(size=(1, 4, 32)).astype(np.float32)
    want = evaluate(m, ["logits", "y", "ctx"], {"x": x})
    got = evaluate(q, ["logits", "y", "ctx"], {"x": x})
    np.testing.assert_array_equal(got[0], want[0])  # everything before the quantized MatMul is fp32
    np.testing.assert_array_equal(got[2], want[2])
    _, ws = Q.quantize_weight(big)
    assert (np.abs(got[1] - want[1]) <= Q.error_bound(want[2], big, ws) + 1e-4).all()


def test_activations_are_quantized_once_and_weights_once():
    rng = np.random.default_rng(9)
    w = rng.normal(size=(32, 32)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], [f"y{i}"], name=f"/l/{i}/MatMul") for i in range(3)]
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [None, 32]) for i in range(3)]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 32])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    shared = Q.quantize_dynamic(m)
    assert _ops(shared).count("DynamicQuantizeLinear") == 1
    assert len(shared.graph.initializer) == 2  # one int8 weight and its scale
    apart = Q.quantize_dynamic(m, share_activations=False)
    assert _ops(apart).count("DynamicQuantizeLinear") == 3
    x = rng.normal(size=(5, 32)).astype(np.float32)
    a = evaluate(shared, ["y0", "y1", "y2"], {"x": x})
    b = evaluate(apart, ["y0", "y1", "y2"], {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_the_model_is_not_modified_and_opset_is_kept():
    m = _linear_model(np.ones((16, 16), np.float32))
    before = m.SerializeToString()
    q = Q.quantize_dynamic(m)
    assert m.SerializeToString() == before
    assert [o.version for o in q.opset_import if o.domain in ("", "ai.onnx")] == [17]


# ---------------------------------------------------------------------------------------------
# The fixture's encoder, node by node


def test_fixture_encoder_every_rewritten_matmul():
    """Each MatMul/Gemm the quantizer rewrites in the fixture encoder, fed a LayerNorm-like
    activation, gives its fp32 result within the quantization error bound; the rest of the graph
    is unchanged."""
    src = onnx.load(os.path.join(FIXTURE, "encoder.onnx"))
    rep = {}
    q = Q.quantize_dynamic(src, report=rep)
    onnx.checker.check_model(q)
    onnx.shape_inference.infer_shapes(q, strict_mode=True)
    names = [r["node"] for r in rep["quantized"]]
    # 2 layers × (Q, K, V, attention output, intermediate, output) and the pooler.
    assert len(names) == 13 and names[-1] == "/uniter/pooler/dense/Gemm"
    assert all("/encoder/layer." in n for n in names[:-1])
    kept = {k["node"]: k["why"] for k in rep["kept_fp32"]}
    assert kept["/uniter/img_embeddings/img_linear/MatMul"] == "excluded by name"
    assert kept["/itm_output/Gemm"].startswith("weight [32, 2]")
    assert sum(w == "second input is computed" for w in kept.values()) == 4  # Q·Kᵀ, P·V per layer
    # The nodes that are not MatMul/Gemm are all still there.
    other = lambda m: sorted(n.op_type for n in m.graph.node if n.op_type not in ("MatMul", "Gemm"))
    added = {"DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Add"}
    assert [t for t in other(q) if t not in added] == [t for t in other(src) if t not in added]
    assert other(q).count("MatMulInteger") == 13

    inits = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    by_name = {n.name: n for n in src.graph.node}
    rng = np.random.default_rng(10)
    worst = 0.0
    for r in rep["quantized"]:
        n = by_name[r["node"]]
        w = inits[r["weight"]]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        wk = w.T if attrs.get("transB", 0) else w
        K = wk.shape[0]
        x = rng.normal(size=(2, 9, K) if n.op_type == "MatMul" else (2, K)).astype(np.float32)
        want, = evaluate(src, [n.output[0]], {n.input[0]: x})
        got, = evaluate(q, [n.output[0]], {n.input[0]: x})
        assert got.shape == want.shape
        _, ws = Q.quantize_weight(wk)
        bound = Q.error_bound(x, wk, ws)
        assert (np.abs(got - want) <= bound + 1e-5).all(), r["node"]
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
    record("int8 fixture MatMuls vs fp32 (relative)", "max", worst)
    assert worst < 0.05


# ---------------------------------------------------------------------------------------------
# Bundles


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_quantize_bundle(tmp_path):
    out = tmp_path / "int8"
    m = Q.quantize_bundle(FIXTURE, str(out))
    assert m["precision"] == "int8"
    with open(out / "manifest.json") as f:
        written = json.load(f)
    assert written == m
    with open(os.path.join(FIXTURE, "manifest.json")) as f:
        orig = json.load(f)
    assert "precision" not in orig
    # Only the encoder graphs, their sha256, precision and provenance.quantization change.
    for role, spec in written["graphs"].items():
        assert spec["sha256"] == _sha(out / spec["file"]), role
        same = spec["sha256"] == orig["graphs"][role]["sha256"]
        assert same == (role not in Q.QUANTIZED_GRAPHS), role
        assert {k: v for k, v in spec.items() if k != "sha256"} == \
            {k: v for k, v in orig["graphs"][role].items() if k != "sha256"}
    rest = {k: v for k, v in written.items() if k not in ("precision", "graphs", "provenance")}
    assert rest == {k: v for k, v in orig.items() if k not in ("graphs", "provenance")}
    qp = written["provenance"].pop("quantization")
    assert written["provenance"] == orig["provenance"]
    assert qp["graphs"]["encoder"]["quantized_nodes"] == 13
    assert qp["graphs"]["encoder"]["fp32_sha256"] == orig["graphs"]["encoder"]["sha256"]
    assert sorted(os.listdir(out)) == sorted(os.listdir(FIXTURE))
    for f in os.listdir(FIXTURE):
        if not f.endswith(".onnx") or f[:-5] not in Q.QUANTIZED_GRAPHS:
            assert _sha(out / f) == _sha(os.path.join(FIXTURE, f)) or f == "manifest.json", f
    # The int8 weights make the graph smaller (the fixture is mostly embeddings).
    assert os.path.getsize(out / "encoder.onnx") < os.path.getsize(os.path.join(FIXTURE, "encoder.onnx"))
    # An int8 bundle is not quantized again; a non-empty destination is not overwritten.
    with pytest.raises(ValueError, match="precision"):
        Q.quantize_bundle(str(out), str(tmp_path / "again"))
    with pytest.raises(ValueError, match="not empty"):
        Q.quantize_bundle(FIXTURE, str(out))
    Q.quantize_bundle(FIXTURE, str(out), force=True)


def test_quantize_cli(tmp_path, capsys):
    Q.main([FIXTURE, str(tmp_path / "b"), "--per-tensor"])
    with open(tmp_path / "b" / "manifest.json") as f:
        m = json.load(f)
    assert m["precision"] == "int8"
    assert "per tensor" in m["provenance"]["quantization"]["weights"]
    assert "13 MatMul/Gemm quantized" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# End to end: the exporter's int8 bundle through ONNX Runtime vs PyTorch


def _fake_quant_linears(model, min_dim=Q.DEFAULT_MIN_DIM):
    """Makes the encoder layers' and the pooler's nn.Linear compute what the int8 graph computes,
    in float: the input quantized per tensor as DynamicQuantizeLinear, the weight per output
    channel. Returns a function that undoes it."""
    undo = []
    for root in (model.uniter.encoder, model.uniter.pooler):
        for mod in root.modules():
            if not isinstance(mod, torch.nn.Linear) or min(mod.weight.shape) < min_dim:
                continue
            q, s = Q.quantize_weight(mod.weight.detach().numpy().T)
            wq = torch.from_numpy((q.astype(np.float32) * s).T.copy())

            def fwd(x, mod=mod, wq=wq):
                xq, xs, xz = Q.dynamic_quantize_linear(x.detach().numpy())
                xd = torch.from_numpy((xq.astype(np.float32) - np.float32(xz)) * xs)
                return torch.nn.functional.linear(xd, wq, mod.bias)

            mod.forward = fwd
            undo.append(mod)

    def restore():
        for mod in undo:
            del mod.forward
    return restore


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    cfg = small_config(hidden_size=48, num_attention_heads=4, intermediate_size=96, img_dim=40)
    model = make_model(cfg, seed=31, std=0.1)
    d = tmp_path_factory.mktemp("int8")
    out = d / "bundle"
    manifest = write_bundle(model, str(out), **random_bundle_kwargs(cfg, d, "test-int8"),
                            provenance={"created_by": "models/tests/test_quantize.py"}, precision="int8")
    return {"model": model, "cfg": cfg, "dir": str(out), "manifest": manifest}


def test_export_int8_manifest(int8_bundle):
    m = int8_bundle["manifest"]
    assert m["precision"] == "int8"
    assert set(m["provenance"]["quantization"]["graphs"]) == {"encoder", "encoder_attention"}
    for role, spec in m["graphs"].items():
        path = os.path.join(int8_bundle["dir"], spec["file"])
        assert spec["sha256"] == _sha(path)
        ops = {n.op_type for n in onnx.load(path).graph.node}
        assert ("MatMulInteger" in ops) == (role in Q.QUANTIZED_GRAPHS), role


def test_export_refuses_unknown_precision(tmp_path):
    cfg = small_config()
    with pytest.raises(ValueError, match="precision"):
        write_bundle(make_model(cfg), str(tmp_path / "b"), name="x", vocab_path=os.devnull, region_labels=[],
                     lowercase=True, max_text_length=10, random_weights=True, provenance={}, precision="bf16")


def test_int8_bundle_onnxruntime_vs_pytorch(int8_bundle, uniter_bin, tmp_path):
    """ONNX Runtime's int8 encoder equals PyTorch computing the same quantization in float (up to
    float rounding, which can move an activation across a rounding boundary: one step), and is
    near the fp32 model."""
    model, cfg = int8_bundle["model"], int8_bundle["cfg"]
    pairs = make_pairs(cfg, [7, 4, 9], [5, 3, 6], seed=3)
    batch = pad_batch(pairs, cfg)
    ids, tmask, feat, loc, imask = batch
    inputs = {"input_ids": ids.numpy(), "text_mask": tmask.numpy(), "img_feat": feat.numpy(),
              "img_loc": loc.numpy(), "img_mask": imask.numpy()}
    got = run_graph(uniter_bin, int8_bundle["dir"], "encoder", inputs, str(tmp_path))
    with torch.no_grad():
        _, pooled, _ = model.uniter(*batch)
        fp32 = {"pooled": pooled.numpy(), "itm_logits": model.itm_output(pooled).numpy()}
        restore = _fake_quant_linears(model)
        try:
            _, pooled, _ = model.uniter(*batch)
        finally:
            restore()
        fake = {"pooled": pooled.numpy(), "itm_logits": model.itm_output(pooled).numpy()}
    for k in ("pooled", "itm_logits"):
        d_fake = float(np.abs(got[k] - fake[k]).max())
        d_fp32 = float(np.abs(got[k] - fp32[k]).max())
        record("int8 ONNX Runtime vs PyTorch fake-quant", k, d_fake)
        record("int8 ONNX Runtime vs PyTorch fp32", k, d_fp32)
        assert d_fake <= 1e-3, (k, d_fake)
        assert d_fp32 <= 0.05, (k, d_fp32)
