"""Operator fusion and fp16 for the encoder graphs, for ONNX Runtime's CUDA provider, written with
the `onnx` package alone (like uniter.quantize).

`fuse(model)` rewrites, in a copy of an exported encoder graph:

  * each BERT self-attention block

        X ─MatMul+Add─▶ Q, K, V ─Reshape [0,0,N,D], Transpose─▶ heads
        Softmax(Q·Kᵀ / c + additive_mask) · V ─Transpose, Reshape [0,0,N·D]─▶ context

    into one `com.microsoft.Attention(X, W_qkv, b_qkv, mask_index)` (num_heads N, scale 1/c): the
    Q/K/V weights packed side by side into [hidden, 3·N·D]. The graph's additive mask is
    Unsqueeze(Unsqueeze((1 - Cast(M, float)) · f)) with M the [batch, seq] 0/1 mask (text_mask
    and img_mask concatenated) and f = -10000; Attention takes M itself (as int32, the "raw
    attention mask" format of shape [batch, total_sequence_length]) and adds mask_filter_value = f
    where M is 0, 0 where it is 1: the same scores for 0/1 masks. ONNX Runtime (1.2x) registers
    Attention on the CPU (float) and the CUDA (float, float16) providers. It returns no attention
    probabilities, so a block whose Softmax output is read elsewhere (encoder_attention's
    `attention` output) is left as it is; so is any Softmax that is not such a block (NLVR2's
    cross-attention and attention pooling).
  * GELU, x·0.5·(1 + erf(x/√2)) as exported (Div, Erf, Add, Mul, Mul), into `com.microsoft.Gelu`
    (CPU float; CUDA float, float16).
  * LayerNorm is already one `LayerNormalization` node at opset 17 (the export's opset); that is
    counted, not rewritten (ONNX Runtime's CUDA kernel takes float16 and accumulates in float32,
    stash_type 1).

`to_fp16(model)` converts the computation to float16: float32 initializers and Constant values
become float16 (clipped to ±65504), Casts to float become Casts to float16, and the graph's float32
inputs and outputs stay float32 behind Casts at the boundary, so that callers (the Go service)
feed and read float32 as before. Integer inputs (ids, masks) are untouched.

    python3 -m uniter.fuse BUNDLE_IN BUNDLE_OUT [--fp16]

copies a bundle, fuses its encoder graphs (encoder, encoder_attention, nlvr2), with --fp16 also
converts them to float16, updates their SHA-256s and sets `"precision": "fp32-fused"` (or
`"fp16"`) in the manifest, the rewrite's counts in provenance.fusion.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import os
import shutil
import sys
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .quantize import QUANTIZED_GRAPHS, _Names, copy_fp32_bundle, rewrite_graphs, set_precision, write_manifest

PRECISION_FUSED = "fp32-fused"
PRECISION_FP16 = "fp16"
FUSED_PRECISIONS = (PRECISION_FUSED, PRECISION_FP16)
MS_DOMAIN = "com.microsoft"
FP16_MAX = float(np.finfo(np.float16).max)


class _NoMatch(Exception):
    """A pattern did not match; the message says why (it goes to the report)."""


# ---------------------------------------------------------------------------------------------
# Graph access


class _View:
    """Producers, consumers and constant values of a graph (read-only; rebuilt after a rewrite)."""

    def __init__(self, graph: onnx.GraphProto):
        self.g = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.consumers: Dict[str, List[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def node(self, name: str, op: str) -> onnx.NodeProto:
        """The node of type `op` that produces `name`."""
        n = self.producer.get(name)
        if n is None or n.op_type != op or n.domain not in ("", "ai.onnx"):
            raise _NoMatch(f"{name} is not produced by {op}")
        return n

    def const(self, name: str) -> Optional[np.ndarray]:
        """The value of an initializer or a Constant node, through Identity nodes; else None."""
        for _ in range(16):
            if name in self.inits:
                return numpy_helper.to_array(self.inits[name])
            n = self.producer.get(name)
            if n is None:
                return None
            if n.op_type == "Constant":
                a = {x.name: x for x in n.attribute}
                return numpy_helper.to_array(a["value"].t) if "value" in a else None
            if n.op_type != "Identity":
                return None
            name = n.input[0]
        return None

    def scalar(self, name: str) -> float:
        v = self.const(name)
        if v is None or v.size != 1:
            raise _NoMatch(f"{name} is not a constant scalar")
        return float(v.reshape(()))

    def only_into(self, name: str, node: onnx.NodeProto):
        """`name` is read by `node` alone and is not a graph output (so it can be removed)."""
        if name in self.outputs:
            raise _NoMatch(f"{name} is a graph output")
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0] is not node:
            raise _NoMatch(f"{name} is read outside the pattern ({len(users)} readers)")

    def the_consumer(self, name: str, op: str) -> onnx.NodeProto:
        if name in self.outputs:
            raise _NoMatch(f"{name} is a graph output")
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op:
            raise _NoMatch(f"{name} is not read by one {op} alone")
        return users[0]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _other(node: onnx.NodeProto, name: str) -> str:
    """The other input of a binary node that reads `name`."""
    a, b = node.input
    return b if a == name else a


def _binary_const(v: _View, node: onnx.NodeProto) -> Tuple[str, float]:
    """(the computed input, the constant scalar) of a binary node with one constant scalar input."""
    for x, c in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        val = v.const(c)
        if val is not None and val.size == 1 and v.const(x) is None:
            return x, float(val.reshape(()))
    raise _NoMatch(f"{node.name}: no constant scalar operand")


# ---------------------------------------------------------------------------------------------
# Attention


def _heads(v: _View, name: str, perm: List[int]) -> Tuple[str, int, int, List[onnx.NodeProto]]:
    """Transpose(perm)(Reshape(x, [0|-1, 0|-1, N, D])) → (x, N, D, [reshape, transpose])."""
    t = v.node(name, "Transpose")
    if list(_attr(t, "perm", [])) != perm:
        raise _NoMatch(f"{t.name}: perm {list(_attr(t, 'perm', []))}, want {perm}")
    r = v.node(t.input[0], "Reshape")
    shape = v.const(r.input[1])
    if shape is None or shape.shape != (4,) or shape[2] <= 0 or shape[3] <= 0 \
            or any(s not in (0, -1) for s in shape[:2]) or _attr(r, "allowzero", 0):
        raise _NoMatch(f"{r.name}: shape {shape} is not [0, 0, heads, head_size]")
    v.only_into(r.output[0], t)
    return r.input[0], int(shape[2]), int(shape[3]), [r, t]


def _projection(v: _View, name: str) -> Tuple[str, np.ndarray, np.ndarray, List[onnx.NodeProto]]:
    """Add(bias, MatMul(X, W)) (either Add order) → (X, W [in, out], bias [out], [matmul, add])."""
    add = v.node(name, "Add")
    for mm_out, b_name in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        mm = v.producer.get(mm_out)
        bias = v.const(b_name)
        if mm is not None and mm.op_type == "MatMul" and bias is not None:
            w = v.const(mm.input[1])
            if w is None or w.ndim != 2 or bias.shape != (w.shape[1],) or v.const(mm.input[0]) is not None:
                raise _NoMatch(f"{mm.name}: weight or bias is not a constant [in, out], [out]")
            v.only_into(mm.output[0], add)
            return mm.input[0], w, bias, [mm, add]
    raise _NoMatch(f"{add.name} is not MatMul + constant bias")


def _raw_mask(v: _View, additive: str) -> Tuple[str, float]:
    """The additive mask Unsqueeze(Unsqueeze((1 - Cast(M, float)) · f, 1), 2) (or one Unsqueeze
    with axes [1, 2]) → (M, f): M the [batch, seq] mask, 1 kept and 0 masked."""
    axes: List[int] = []
    name = additive
    while len(axes) < 2:
        u = v.node(name, "Unsqueeze")
        a = _attr(u, "axes")
        if a is None:
            c = v.const(u.input[1]) if len(u.input) > 1 else None
            if c is None:
                raise _NoMatch(f"{u.name}: axes are not constant")
            a = c.reshape(-1).tolist()
        axes = [int(x) for x in a] + axes
        name = u.input[0]
    if axes != [1, 2]:
        raise _NoMatch(f"additive mask unsqueezed on axes {axes}, want [1, 2] ([batch, 1, 1, seq])")
    mul = v.node(name, "Mul")
    sub_out, fill = _binary_const(v, mul)
    sub = v.node(sub_out, "Sub")
    if v.const(sub.input[0]) is None or v.scalar(sub.input[0]) != 1.0:
        raise _NoMatch(f"{sub.name} is not 1 - mask")
    cast = v.node(sub.input[1], "Cast")
    if _attr(cast, "to") != TensorProto.FLOAT:
        raise _NoMatch(f"{cast.name} does not cast the mask to float")
    return cast.input[0], fill


def _match_attention(v: _View, softmax: onnx.NodeProto) -> dict:
    """The self-attention block around `softmax`, or _NoMatch."""
    if _attr(softmax, "axis", -1) not in (-1, 3):
        raise _NoMatch(f"{softmax.name}: axis {_attr(softmax, 'axis')}")
    masked = v.node(softmax.input[0], "Add")
    v.only_into(masked.output[0], softmax)
    for scaled_name in masked.input:
        s = v.producer.get(scaled_name)
        if s is not None and s.op_type in ("Div", "Mul"):
            break
    else:
        raise _NoMatch(f"{masked.name} does not add a mask to scaled scores")
    additive = _other(masked, scaled_name)
    qk_name, c = _binary_const(v, s)
    if s.op_type == "Div" and s.input[0] != qk_name:
        raise _NoMatch(f"{s.name} divides a constant by the scores")
    scale = 1.0 / c if s.op_type == "Div" else c
    v.only_into(s.output[0], masked)
    qk = v.node(qk_name, "MatMul")
    v.only_into(qk.output[0], s)
    q_x, n, d, q_nodes = _heads(v, qk.input[0], [0, 2, 1, 3])
    k_x, nk, dk, k_nodes = _heads(v, qk.input[1], [0, 2, 3, 1])
    v.only_into(qk.input[0], qk)
    v.only_into(qk.input[1], qk)
    readers = v.consumers.get(softmax.output[0], [])
    if softmax.output[0] in v.outputs or len(readers) != 1 or readers[0].op_type != "MatMul":
        raise _NoMatch("the attention probabilities are read outside the block (Attention "
                       "cannot return them)")
    ctx = readers[0]
    if ctx.input[0] != softmax.output[0]:
        raise _NoMatch(f"{ctx.name}: probabilities are not its first operand")
    v_x, nv, dv, v_nodes = _heads(v, ctx.input[1], [0, 2, 1, 3])
    v.only_into(ctx.input[1], ctx)
    if (n, d) != (nk, dk) or (n, d) != (nv, dv):
        raise _NoMatch(f"heads differ: Q {n}×{d}, K {nk}×{dk}, V {nv}×{dv}")
    back = v.the_consumer(ctx.output[0], "Transpose")
    if list(_attr(back, "perm", [])) != [0, 2, 1, 3]:
        raise _NoMatch(f"{back.name}: perm {list(_attr(back, 'perm', []))}")
    out = v.the_consumer(back.output[0], "Reshape")
    shape = v.const(out.input[1])
    if shape is None or shape.shape != (3,) or shape[2] not in (n * d, -1) \
            or any(s_ not in (0, -1) for s_ in shape[:2]) or list(shape).count(-1) > 1:
        raise _NoMatch(f"{out.name}: shape {shape} is not [0, 0, {n * d}]")
    for x, heads in ((q_x, q_nodes), (k_x, k_nodes), (v_x, v_nodes)):
        v.only_into(x, heads[0])
    projections = [_projection(v, x) for x in (q_x, k_x, v_x)]
    xs = {p[0] for p in projections}
    if len(xs) != 1:
        raise _NoMatch("Q, K and V are projected from different inputs (not self-attention)")
    for (_, w, _, _) in projections:
        if w.shape[1] != n * d:
            raise _NoMatch(f"projection width {w.shape[1]}, want {n * d}")
    mask, fill = _raw_mask(v, additive)
    nodes = [masked, s, qk, softmax, ctx, back, out] + q_nodes + k_nodes + v_nodes
    for p in projections:
        nodes += p[3]
    return {"x": xs.pop(), "heads": n, "head_size": d, "scale": scale, "mask": mask,
            "mask_filter_value": fill, "output": out.output[0], "anchor": out, "nodes": nodes,
            "weight": np.concatenate([p[1] for p in projections], axis=1).astype(np.float32),
            "bias": np.concatenate([p[2] for p in projections]).astype(np.float32),
            "name": os.path.dirname(softmax.name) or softmax.name}


def _fuse_attention(model: onnx.ModelProto, rep: dict):
    g = model.graph
    v = _View(g)
    names = _Names(g)
    replace: Dict[int, List[onnx.NodeProto]] = {}  # id(anchor node) → nodes emitted in its place
    drop = set()
    mask_casts: Dict[str, str] = {}
    new_inits = []
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        try:
            m = _match_attention(v, sm)
        except _NoMatch as e:
            rep["attention_unfused"].append({"node": sm.name, "why": str(e)})
            continue
        emitted = []
        if m["mask"] not in mask_casts:
            mask_casts[m["mask"]] = names(m["mask"] + "_int32")
            emitted.append(helper.make_node("Cast", [m["mask"]], [mask_casts[m["mask"]]],
                                            to=TensorProto.INT32, name=names(m["mask"] + "_CastInt32")))
        w, b = names(m["name"] + "/qkv_weight"), names(m["name"] + "/qkv_bias")
        new_inits += [numpy_helper.from_array(m["weight"], w), numpy_helper.from_array(m["bias"], b)]
        emitted.append(helper.make_node(
            "Attention", [m["x"], w, b, mask_casts[m["mask"]]], [m["output"]], domain=MS_DOMAIN,
            name=names(m["name"] + "/Attention"), num_heads=m["heads"], scale=m["scale"],
            mask_filter_value=m["mask_filter_value"]))
        drop.update(id(n) for n in m["nodes"])
        replace[id(m["anchor"])] = emitted
        rep["attention_fused"].append({"node": emitted[-1].name, "num_heads": m["heads"],
                                       "head_size": m["head_size"], "scale": m["scale"]})
    _rebuild(g, replace, drop)
    g.initializer.extend(new_inits)


# ---------------------------------------------------------------------------------------------
# GELU


def _match_gelu(v: _View, erf: onnx.NodeProto) -> dict:
    """erf(x/√2) (or erf(x·(1/√2))) → Add 1 → Mul x → Mul 0.5, operands in either order."""
    div = v.producer.get(erf.input[0])
    if div is None or div.op_type not in ("Div", "Mul"):
        raise _NoMatch(f"{erf.name}: input is not x/√2")
    x, c = _binary_const(v, div)
    if div.op_type == "Div" and (div.input[0] != x or abs(c - np.sqrt(2)) > 1e-4) or \
            div.op_type == "Mul" and abs(c - np.sqrt(0.5)) > 1e-4:
        raise _NoMatch(f"{div.name}: not x/√2")
    v.only_into(div.output[0], erf)
    add = v.the_consumer(erf.output[0], "Add")
    if _binary_const(v, add)[1] != 1.0:
        raise _NoMatch(f"{add.name}: not 1 + erf")
    mul = v.the_consumer(add.output[0], "Mul")
    if _other(mul, add.output[0]) != x:
        raise _NoMatch(f"{mul.name}: not x · (1 + erf)")
    half = v.the_consumer(mul.output[0], "Mul")
    if _binary_const(v, half)[1] != 0.5:
        raise _NoMatch(f"{half.name}: not · 0.5")
    return {"x": x, "output": half.output[0], "anchor": half, "nodes": [div, erf, add, mul, half],
            "name": os.path.dirname(erf.name) or erf.name}


def _fuse_gelu(model: onnx.ModelProto, rep: dict):
    g = model.graph
    v = _View(g)
    names = _Names(g)
    replace, drop = {}, set()
    for erf in [n for n in g.node if n.op_type == "Erf"]:
        try:
            m = _match_gelu(v, erf)
        except _NoMatch as e:
            rep["gelu_unfused"].append({"node": erf.name, "why": str(e)})
            continue
        node = helper.make_node("Gelu", [m["x"]], [m["output"]], domain=MS_DOMAIN,
                                name=names(m["name"] + "/Gelu"))
        drop.update(id(n) for n in m["nodes"])
        replace[id(m["anchor"])] = [node]
        rep["gelu_fused"].append(node.name)
    _rebuild(g, replace, drop)


# ---------------------------------------------------------------------------------------------
# The rewrite


def _rebuild(g: onnx.GraphProto, replace: Dict[int, List[onnx.NodeProto]], drop: set):
    """Replaces each anchor node by its emitted nodes (in its place, so that the order stays
    topological: an anchor is the last node of its pattern) and removes the dropped nodes."""
    out = []
    for n in g.node:
        if id(n) in replace:
            out += replace[id(n)]
        elif id(n) not in drop:
            out.append(n)
    del g.node[:]
    g.node.extend(out)


def _prune(g: onnx.GraphProto):
    """Removes nodes and initializers that nothing reads any more, and stale value_info."""
    while True:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        keep = [n for n in g.node if any(o in read for o in n.output)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    made = {o for n in g.node for o in n.output}
    vi = [x for x in g.value_info if x.name in made]
    del g.value_info[:]
    g.value_info.extend(vi)


def _ensure_ms_opset(model: onnx.ModelProto):
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def fuse(model: onnx.ModelProto, *, attention: bool = True, gelu: bool = True,
         report: Optional[dict] = None) -> onnx.ModelProto:
    """Returns a copy of `model` with its self-attention blocks fused into com.microsoft.Attention
    and its GELUs into com.microsoft.Gelu (see the module's docstring). `report`, when given, is
    filled with what was fused and why the rest was not."""
    model = copy.deepcopy(model)
    rep = {"attention_fused": [], "attention_unfused": [], "gelu_fused": [], "gelu_unfused": []}
    if attention:
        _fuse_attention(model, rep)
    if gelu:
        _fuse_gelu(model, rep)
    _prune(model.graph)
    if rep["attention_fused"] or rep["gelu_fused"]:
        _ensure_ms_opset(model)
    ops = [n.op_type for n in model.graph.node]
    rep["layer_norm"] = ops.count("LayerNormalization")
    # A LayerNorm spelled out (ReduceMean, Sub, Pow, ..., as before opset 17) would show here.
    rep["reduce_mean"] = ops.count("ReduceMean")
    if report is not None:
        report.update(rep)
    return model


# ---------------------------------------------------------------------------------------------
# fp16


def _fp16_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    a = numpy_helper.to_array(t)
    return numpy_helper.from_array(np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), t.name)


def to_fp16(model: onnx.ModelProto, report: Optional[dict] = None) -> onnx.ModelProto:
    """Returns a copy of `model` computing in float16 with its float32 inputs and outputs kept
    float32 (Cast at the boundary). Float32 initializers and Constant values become float16
    (clipped to the float16 range; `report["clipped"]` counts the clipped values), every Cast to
    float32 a Cast to float16. LayerNormalization keeps its float32 statistics (stash_type 1);
    com.microsoft.Attention and the CUDA Softmax accumulate in float32."""
    model = copy.deepcopy(model)
    g = model.graph
    names = _Names(g)
    clipped = 0
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            clipped += int((np.abs(numpy_helper.to_array(t)) > FP16_MAX).sum())
            g.initializer[i].CopyFrom(_fp16_tensor(t))
    for n in g.node:
        if n.op_type in ("Constant", "ConstantOfShape"):
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(_fp16_tensor(a.t))
        elif n.op_type == "Cast" and _attr(n, "to") == TensorProto.FLOAT:
            for a in n.attribute:
                if a.name == "to":
                    a.i = TensorProto.FLOAT16

    def rename(old: str, new: str):
        for n in g.node:
            for k, x in enumerate(n.input):
                if x == old:
                    n.input[k] = new
            for k, x in enumerate(n.output):
                if x == old:
                    n.output[k] = new

    head, tail = [], []
    for i in g.input:
        if i.type.tensor_type.elem_type == TensorProto.FLOAT:
            h = names(i.name + "_fp16")
            rename(i.name, h)
            head.append(helper.make_node("Cast", [i.name], [h], to=TensorProto.FLOAT16,
                                         name=names(i.name + "_CastFp16")))
    for o in g.output:
        if o.type.tensor_type.elem_type == TensorProto.FLOAT:
            h = names(o.name + "_fp16")
            rename(o.name, h)
            tail.append(helper.make_node("Cast", [h], [o.name], to=TensorProto.FLOAT,
                                         name=names(o.name + "_CastFp32")))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    # Intermediate types changed; ONNX Runtime infers them again.
    del g.value_info[:]
    if report is not None:
        report["clipped"] = clipped
    return model


# ---------------------------------------------------------------------------------------------
# Bundles


def fuse_file(src: str, dst: str, fp16: bool = False) -> dict:
    """Fuses (and with `fp16` converts) the ONNX file `src` into `dst`; returns the report."""
    report: dict = {}
    model = fuse(onnx.load(src), report=report)
    if fp16:
        model = to_fp16(model, report=report)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return report


def fuse_bundle_graphs(bundle_dir: str, manifest: dict, graphs: Iterable[str] = QUANTIZED_GRAPHS,
                       fp16: bool = False) -> dict:
    """Fuses the manifest's `graphs` (those present) in place in `bundle_dir` (and converts them
    to float16 with `fp16`), updates their sha256, sets manifest["precision"] to "fp16" or
    "fp32-fused" and provenance.fusion. Returns the manifest (also modified in place); the caller
    writes it."""
    def rewrite(path: str) -> dict:
        rep = fuse_file(path, path, fp16=fp16)
        rec = {"attention_fused": len(rep["attention_fused"]), "attention_unfused": rep["attention_unfused"],
               "gelu_fused": len(rep["gelu_fused"]), "layer_norm": rep["layer_norm"]}
        if fp16:
            rec["fp16_clipped_values"] = rep["clipped"]
        return rec
    if fp16 and "ot_in_graph" in manifest.get("provenance", {}):
        # to_fp16 would turn the appended transport's 50 iterations into float16 too (1.7e-4
        # from heads.Align at UNITER-base size, where the contract is 1e-5).
        raise ValueError("the bundle carries the transport in its graphs (provenance.ot_in_graph), "
                         "which float16 would put out of its 1e-5 parity: convert the bundle "
                         "without it, then append it (python3 -m uniter.fuse IN MID --fp16 && "
                         "python3 -m uniter.ot_graph MID OUT)")
    done = rewrite_graphs(bundle_dir, manifest, graphs, rewrite)
    set_precision(manifest, PRECISION_FP16 if fp16 else PRECISION_FUSED)
    manifest.setdefault("provenance", {})["fusion"] = {
        "method": "uniter.fuse" + (" (float16)" if fp16 else ""),
        "ops": "com.microsoft.Attention (raw 0/1 mask, int32), com.microsoft.Gelu, "
               "LayerNormalization (opset 17)",
        "float16": ("initializers and computation; graph inputs and outputs float32 (Cast at the "
                    "boundary)") if fp16 else "no",
        "graphs": done,
        "onnx_version": onnx.__version__,
        "fused": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return manifest


def fuse_bundle(src: str, dst: str, *, fp16: bool = False, force: bool = False,
                graphs: Iterable[str] = QUANTIZED_GRAPHS) -> dict:
    """Copies the fp32 bundle `src` to `dst`, fuses its encoder graphs (float16 with `fp16`) and
    writes the manifest. Returns the new manifest."""
    manifest = copy_fp32_bundle(src, dst, force, "fuse")
    try:
        fuse_bundle_graphs(dst, manifest, graphs, fp16=fp16)
    except BaseException:
        shutil.rmtree(dst)  # no half-rewritten bundle left behind
        raise
    manifest["provenance"]["fusion"]["source_bundle"] = manifest.get("name")
    write_manifest(dst, manifest)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python3 -m uniter.fuse",
        description="Copies an fp32 bundle and fuses its encoder graphs (encoder, encoder_attention, "
                    "nlvr2) for ONNX Runtime: self-attention into com.microsoft.Attention, GELU into "
                    "com.microsoft.Gelu. --fp16 also converts them to float16 (inputs and outputs "
                    "stay float32), for the CUDA provider. The manifest gets \"precision\": "
                    "\"fp32-fused\" or \"fp16\" and the graphs' new sha256.")
    ap.add_argument("bundle_in")
    ap.add_argument("bundle_out")
    ap.add_argument("--fp16", action="store_true", help="convert the fused graphs to float16")
    ap.add_argument("--graphs", default=",".join(QUANTIZED_GRAPHS),
                    help="graph roles to fuse (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="replace BUNDLE_OUT")
    args = ap.parse_args(argv)
    try:
        m = fuse_bundle(args.bundle_in, args.bundle_out, fp16=args.fp16, force=args.force,
                        graphs=[s for s in args.graphs.split(",") if s])
    except (ValueError, OSError) as e:
        sys.exit(f"uniter.fuse: {e}")
    for role, d in m["provenance"]["fusion"]["graphs"].items():
        left = "; ".join(f"{u['node']}: {u['why']}" for u in d["attention_unfused"]) or "none"
        print(f"{role}: {d['attention_fused']} attention fused, {d['gelu_fused']} GELU fused, "
              f"attention left unfused: {left}", file=sys.stderr)
    print(f"wrote {args.bundle_out} (precision {m['precision']})", file=sys.stderr)


if __name__ == "__main__":
    main()
