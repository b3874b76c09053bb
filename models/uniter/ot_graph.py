"""Word-region optimal transport (UNITER's IPOT, models/uniter/ot.py) as ONNX nodes appended to
the encoder graphs, batched over pairs, so that the transport runs where the encoder runs (on a
GPU with the CUDA provider) instead of pair by pair in Go (heads.Align).

The appended nodes read the encoder's own tensors: `hidden` [B, T+N, H] and the masks
`text_mask` [B, T], `img_mask` [B, N] (int64, 1 on real positions), and add two outputs:

    ot_distance  [batch]                   float32   Σ_ij C_ij P_ij per pair
    ot_plan      [batch, text, regions]    float32   the plan P, tokens × regions; 0 on padding

computed as heads.Align computes them (heads/ot.go), in float32:

* cost C = 1 − cos(t_i, r_j), each vector divided by max(‖x‖, 1e-5) (heads.NormEps);
* kernel K = exp(−C/β), β = 0.5; plan T = 1; σ = 1/M on the real tokens;
* 50 outer iterations, each Q = K ⊙ T, then (1 inner step) δ = 1/(N·Qᵀσ), σ = 1/(M·Qδ),
  T = diag(σ) Q diag(δ); M and N are each pair's own token and region counts (the masks' sums).

Padding: K is zeroed outside a pair's real block and Q carries 1 there instead (Q = K ⊙ T + P,
P = 1 − text_mask ⊗ img_mask), so that every column and row sum stays positive, while δ and σ
are written as (mask/N)/(Qᵀσ) and (mask/M)/(Qδ): 0 on padded regions and tokens. Padded rows
and columns therefore get exactly zero mass and enter neither sum, and no padding value (the
encoder's hidden states at padded positions) reaches a real entry. A pair's outputs depend on
its own rows only, whatever the batch's padding.

The graph has no shape arithmetic (no Shape node; ONNX Runtime's CUDA provider would run it on
the CPU and strict placement refuses that): the text and region blocks of the [B, S, S] cosine
matrix are picked with GatherElements at indices computed from the masks' values (CumSum), as
uniter.tasks.region_scores does. The iterations are unrolled (9 nodes each, no Loop) and use
elementwise products and ReduceSum, not MatMul, so that TF32 matrix products, where enabled,
do not touch them; the one MatMul is the cosine matrix (TF32 would change it: the Go side falls
back to heads.Align when the CUDA provider runs with TF32). Every op is one the CUDA provider
implements for its types (float32 and int64).

    python3 -m uniter.ot_graph BUNDLE_IN BUNDLE_OUT

copies a bundle and appends the transport to its encoder graphs (`encoder`, and
`encoder_attention` when present), declares the outputs in the manifest, updates the SHA-256s
and records the settings in `provenance.ot_in_graph`. `python3 -m uniter.export --ot-in-graph`
does the same at export. `run_numpy` evaluates the appended nodes in numpy float32 (Python has
no ONNX Runtime here): the tests compare it with ot.py's float64 IPOT.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ot.py's settings (DEFAULT_BETA, DEFAULT_ITERATIONS, NORM_EPS; the tests check they agree),
# repeated here so that this module needs only onnx and numpy, not torch.
DEFAULT_BETA = 0.5
DEFAULT_ITERATIONS = 50
NORM_EPS = 1e-5

OUT_DISTANCE = "ot_distance"
OUT_PLAN = "ot_plan"
OT_OUTPUTS = (OUT_DISTANCE, OUT_PLAN)
# The encoder graphs the transport is appended to (when the bundle has them).
OT_GRAPHS = ("encoder", "encoder_attention")
PREFIX = "ot/"


def ot_settings(beta: float = DEFAULT_BETA, iterations: int = DEFAULT_ITERATIONS,
                inner_iterations: int = 1) -> dict:
    """What `provenance.ot_in_graph` records; the Go side checks it against heads.Align's."""
    return {"beta": beta, "iterations": iterations, "inner_iterations": inner_iterations,
            "norm_eps": NORM_EPS, "dtype": "float32", "outputs": list(OT_OUTPUTS)}


def output_specs() -> List[dict]:
    """The manifest declarations of the two outputs."""
    return [{"name": OUT_DISTANCE, "dtype": "float32", "shape": ["batch"]},
            {"name": OUT_PLAN, "dtype": "float32", "shape": ["batch", "text", "regions"]}]


def ot_nodes(hidden: str = "hidden", text_mask: str = "text_mask", img_mask: str = "img_mask",
             beta: float = DEFAULT_BETA, iterations: int = DEFAULT_ITERATIONS,
             inner_iterations: int = 1, prefix: str = PREFIX):
    """The IPOT nodes and their constant initializers: (nodes, initializers). They read `hidden`
    [B, T+N, H] float32 and the int64 masks [B, T], [B, N], and write OUT_DISTANCE and OUT_PLAN."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if iterations < 1 or inner_iterations < 1:
        raise ValueError(f"iterations and inner_iterations must be >= 1, got {iterations}, "
                         f"{inner_iterations}")
    nodes: List[onnx.NodeProto] = []
    inits: List[onnx.TensorProto] = []
    count = [0]

    def const(name, value, dtype):
        full = prefix + name
        inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), full))
        return full

    def node(op, inputs, out=None, **attrs):
        count[0] += 1
        out = prefix + (out or f"{op.lower()}_{count[0]}")
        nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    i0, i1 = const("i64_0", 0, np.int64), const("i64_1", 1, np.int64)
    f1 = const("f32_1", 1.0, np.float32)
    eps = const("norm_eps", NORM_EPS, np.float32)
    neg_inv_beta = const("neg_inv_beta", -1.0 / beta, np.float32)
    ax_m1, ax1, ax2 = (const(f"axes_{n}", [v], np.int64) for n, v in
                       (("last", -1), ("1", 1), ("2", 2)))
    ax12 = const("axes_1_2", [1, 2], np.int64)
    scalar1 = const("axis_1", 1, np.int64)

    # Cosine matrix of all positions, then its tokens × regions block.
    sq = node("Mul", [hidden, hidden], "hidden_sq")
    norm = node("Sqrt", [node("ReduceSum", [sq, ax_m1], "hidden_sq_sum", keepdims=1)], "hidden_norm")
    unit = node("Div", [hidden, node("Max", [norm, eps], "hidden_norm_floor")], "hidden_unit")
    cos_all = node("MatMul", [unit, node("Transpose", [unit], "hidden_unit_t", perm=[0, 2, 1])],
                   "cos_all")                                                   # [B, S, S]
    ones_t = node("Add", [node("Mul", [text_mask, i0], "zeros_t"), i1], "ones_t")   # [B, T]
    ones_n = node("Add", [node("Mul", [img_mask, i0], "zeros_n"), i1], "ones_n")    # [B, N]
    pos_t = node("CumSum", [ones_t, scalar1], "pos_t")                              # 1..T
    pos_n = node("CumSum", [ones_n, scalar1], "pos_n")                              # 1..N
    t_len = node("Cast", [node("ReduceSum", [node("Cast", [ones_t], "ones_t_f", to=TensorProto.FLOAT),
                                             ax1], "t_len_f", keepdims=1)],
                 "t_len", to=TensorProto.INT64)                                      # [B, 1] = T
    rows = node("Sub", [pos_t, i1], "rows")                                         # 0..T-1
    cols = node("Add", [pos_n, node("Sub", [t_len, i1], "t_len_m1")], "cols")       # T..T+N-1
    zeros_s = node("Mul", [node("Concat", [text_mask, img_mask], "mask_s", axis=1), i0], "zeros_s")
    row_idx = node("Add", [node("Unsqueeze", [rows, ax2], "rows_col"),
                           node("Unsqueeze", [zeros_s, ax1], "zeros_s_row")], "row_idx")  # [B, T, S]
    col_idx = node("Add", [node("Unsqueeze", [cols, ax1], "cols_row"),
                           node("Unsqueeze", [node("Mul", [text_mask, i0], "zeros_t2"), ax2],
                                "zeros_t_col")], "col_idx")                          # [B, T, N]
    cos_rows = node("GatherElements", [cos_all, row_idx], "cos_rows", axis=1)       # [B, T, S]
    cos = node("GatherElements", [cos_rows, col_idx], "cos", axis=2)                # [B, T, N]
    cost = node("Sub", [f1, cos], "cost")

    # Masks, counts and the kernel.
    tm = node("Unsqueeze", [node("Cast", [text_mask], "tm", to=TensorProto.FLOAT), ax2], "tm_col")
    im = node("Unsqueeze", [node("Cast", [img_mask], "im", to=TensorProto.FLOAT), ax1], "im_row")
    joint = node("Mul", [tm, im], "joint")                                          # [B, T, N]
    pad = node("Sub", [f1, joint], "pad")
    m = node("Max", [node("ReduceSum", [tm, ax1], "m_sum", keepdims=1), f1], "m")   # [B, 1, 1]
    n = node("Max", [node("ReduceSum", [im, ax2], "n_sum", keepdims=1), f1], "n")
    inv_m = node("Div", [tm, m], "inv_m")                                           # [B, T, 1]
    inv_n = node("Div", [im, n], "inv_n")                                           # [B, 1, N]
    kernel = node("Mul", [node("Exp", [node("Mul", [cost, neg_inv_beta], "cost_scaled")], "kernel_all"),
                          joint], "kernel")

    # IPOT, unrolled.
    q = node("Add", [kernel, pad], "q_1")                     # T = 1: Q = K (and 1 on padding)
    sigma = inv_m
    plan = None
    for it in range(1, iterations + 1):
        for k in range(inner_iterations):
            s = f"{it}_{k}" if inner_iterations > 1 else f"{it}"
            a = node("ReduceSum", [node("Mul", [q, sigma], f"q_sigma_{s}"), ax1], f"a_{s}", keepdims=1)
            delta = node("Div", [inv_n, a], f"delta_{s}")                               # [B, 1, N]
            qd = node("Mul", [q, delta], f"q_delta_{s}")
            b = node("ReduceSum", [qd, ax2], f"b_{s}", keepdims=1)                       # [B, T, 1]
            sigma = node("Div", [inv_m, b], f"sigma_{s}")
        if it == iterations:
            plan = node("Mul", [qd, sigma], "plan")
            break
        t = node("Mul", [qd, sigma], f"t_{it}")
        q = node("Add", [node("Mul", [t, kernel], f"kt_{it}"), pad], f"q_{it + 1}")
    nodes.append(helper.make_node("Identity", [plan], [OUT_PLAN], name=prefix + OUT_PLAN))
    nodes.append(helper.make_node("ReduceSum", [node("Mul", [cost, plan], "cost_plan"), ax12],
                                  [OUT_DISTANCE], name=prefix + OUT_DISTANCE, keepdims=0))
    return nodes, inits


def _value_infos():
    return [helper.make_tensor_value_info(OUT_DISTANCE, TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info(OUT_PLAN, TensorProto.FLOAT, ["batch", "text", "regions"])]


def append_ot(model: onnx.ModelProto, **settings) -> onnx.ModelProto:
    """Appends the transport to an encoder graph (in place; returned for chaining). Its outputs
    go before `attention` when the graph has it (attention stays last), else at the end."""
    g = model.graph
    names = [o.name for o in g.output]
    if any(o in names for o in OT_OUTPUTS):
        raise ValueError(f"the graph already has {', '.join(o for o in OT_OUTPUTS if o in names)}")
    inputs = {i.name for i in g.input}
    for need in ("text_mask", "img_mask"):
        if need not in inputs:
            raise ValueError(f"the graph has no input {need!r}: not an encoder graph")
    if "hidden" not in names:
        raise ValueError("the graph has no output 'hidden': not an encoder graph")
    nodes, inits = ot_nodes(**settings)
    g.node.extend(nodes)
    g.initializer.extend(inits)
    outs = list(g.output)
    at = names.index("attention") if "attention" in names else len(outs)
    outs[at:at] = _value_infos()
    del g.output[:]
    g.output.extend(outs)
    onnx.checker.check_model(model)
    return model


def ot_model(**settings) -> onnx.ModelProto:
    """The transport alone: inputs hidden [B, S, H], text_mask [B, T], img_mask [B, N] → the two
    outputs. The same nodes as append_ot adds, for tests."""
    nodes, inits = ot_nodes(**settings)
    g = helper.make_graph(
        nodes, "ipot",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", "hidden_size"]),
         helper.make_tensor_value_info("text_mask", TensorProto.INT64, ["batch", "text"]),
         helper.make_tensor_value_info("img_mask", TensorProto.INT64, ["batch", "regions"])],
        _value_infos(), inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------------
# Bundles


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_ot_to_bundle_graphs(bundle_dir: str, manifest: dict, graphs: Sequence[str] = OT_GRAPHS,
                            **settings) -> List[str]:
    """Appends the transport to the bundle's encoder graphs (those of `graphs` it has), rewrites
    the files, and updates `manifest` (outputs, sha256, provenance.ot_in_graph); the caller writes
    manifest.json. Returns the roles changed."""
    done = []
    for role in graphs:
        spec = manifest["graphs"].get(role)
        if spec is None:
            continue
        path = os.path.join(bundle_dir, spec["file"])
        model = append_ot(onnx.load(path), **settings)
        onnx.save(model, path)
        outs = [o for o in spec["outputs"] if o["name"] != "attention"]
        outs += output_specs() + [o for o in spec["outputs"] if o["name"] == "attention"]
        spec["outputs"] = outs
        spec["sha256"] = _sha256(path)
        done.append(role)
    if "encoder" not in done:
        raise ValueError("the bundle has no encoder graph")
    manifest.setdefault("provenance", {})["ot_in_graph"] = dict(ot_settings(**settings), graphs=done)
    return done


def add_ot_to_bundle(src: str, dst: str, *, force: bool = False, **settings) -> dict:
    """Copies bundle `src` to `dst` and appends the transport to its encoder graphs; returns the
    new manifest. `dst` must not exist unless `force`."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("the output folder must differ from the input")
    if os.path.exists(dst):
        if not force:
            raise ValueError(f"{dst} exists (use --force to replace it)")
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    with open(os.path.join(dst, "manifest.json")) as f:
        manifest = json.load(f)
    add_ot_to_bundle_graphs(dst, manifest, **settings)
    with open(os.path.join(dst, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# A numpy evaluator of the appended nodes (float32, op by op as ONNX defines them)


def _axes(node, inputs):
    return tuple(int(a) for a in inputs[1]) if len(inputs) > 1 else None


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _gather_elements(data, idx, axis):
    return np.take_along_axis(data, idx, axis=axis)


_OPS = {
    "Mul": lambda n, x: x[0] * x[1],
    "Add": lambda n, x: x[0] + x[1],
    "Sub": lambda n, x: x[0] - x[1],
    "Div": lambda n, x: x[0] / x[1],
    "Max": lambda n, x: np.maximum(x[0], x[1]),
    "Sqrt": lambda n, x: np.sqrt(x[0]),
    "Exp": lambda n, x: np.exp(x[0]),
    "MatMul": lambda n, x: np.matmul(x[0], x[1]),
    "Identity": lambda n, x: x[0],
    "Transpose": lambda n, x: np.transpose(x[0], _attr(n, "perm")),
    "Cast": lambda n, x: x[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[_attr(n, "to")]),
    "CumSum": lambda n, x: np.cumsum(x[0], axis=int(x[1]), dtype=x[0].dtype),
    "GatherElements": lambda n, x: _gather_elements(x[0], x[1], _attr(n, "axis", 0)),
    "Unsqueeze": lambda n, x: np.expand_dims(x[0], _axes(n, x)),
    "Concat": lambda n, x: np.concatenate(x, axis=_attr(n, "axis")),
    "ReduceSum": lambda n, x: np.sum(x[0], axis=_axes(n, x), keepdims=bool(_attr(n, "keepdims", 1)),
                                     dtype=x[0].dtype),
}


def run_numpy(model: onnx.ModelProto, feeds: Dict[str, np.ndarray],
              outputs: Sequence[str] = OT_OUTPUTS) -> List[np.ndarray]:
    """Evaluates the nodes of `model` that `outputs` need, in numpy, for the ops the transport
    uses (the encoder's own nodes are not supported: feed `hidden`)."""
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update(feeds)
    producer = {o: n for n in model.graph.node for o in n.output}
    order, seen = [], set()

    def visit(name):
        if name in env or name in seen:
            return
        n = producer.get(name)
        if n is None:
            raise KeyError(f"{name!r} is neither fed nor produced")
        seen.add(name)
        for i in n.input:
            visit(i)
        order.append(n)

    for o in outputs:
        visit(o)
    for n in order:
        if n.op_type not in _OPS:
            raise NotImplementedError(f"run_numpy: op {n.op_type} ({n.name})")
        out = _OPS[n.op_type](n, [env[i] for i in n.input])
        env[n.output[0]] = np.asarray(out)
        if env[n.output[0]].dtype == np.float64:
            raise TypeError(f"{n.name}: float64 result (the graph is float32)")
    return [env[o] for o in outputs]


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python3 -m uniter.ot_graph",
        description="Copies a bundle and appends UNITER's word-region optimal transport (IPOT, "
                    "β 0.5, 50 iterations) to its encoder graphs: outputs ot_distance [batch] and "
                    "ot_plan [batch, text, regions], which the Go service then reads instead of "
                    "computing heads.Align per pair.")
    ap.add_argument("src", help="bundle folder to read")
    ap.add_argument("dst", help="bundle folder to write (a copy)")
    ap.add_argument("--force", action="store_true", help="replace dst if it exists")
    args = ap.parse_args(argv)
    try:
        m = add_ot_to_bundle(args.src, args.dst, force=args.force)
    except ValueError as e:
        sys.exit(f"uniter.ot_graph: {e}")
    print(f"wrote {args.dst}: transport appended to {', '.join(m['provenance']['ot_in_graph']['graphs'])}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
