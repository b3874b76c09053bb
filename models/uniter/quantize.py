"""Dynamic int8 quantization of the encoder graphs, written with the `onnx` package alone (the
ONNX Runtime Python tools are not needed).

Every MatMul, and every Gemm, whose second input is a constant rank-2 weight (an initializer,
possibly behind Identity nodes) becomes

    X ──DynamicQuantizeLinear──▶ X_q (uint8), X_scale, X_zero_point        (per tensor, at run time)
    W  ──offline──▶ W_q int8 [K, N], W_scale [N]   symmetric (zero point 0), per output column
    MatMulInteger(X_q, W_q, X_zero_point) ──Cast float──▶ Mul(·, Mul(X_scale, W_scale)) ──▶ Y

so that Y ≈ X @ W. W's zero point is 0, so MatMulInteger gets no b_zero_point input and the
per-column scale is applied after it, in the float Mul: per-channel quantization without a
per-column zero point. The bias Add that follows a MatMul is kept (a Gemm's C becomes such an
Add). This is the node pattern ONNX Runtime's CPU provider fuses into MatMulIntegerToFloat (with
the bias when it is the Add's second input) and DynamicQuantizeMatMul (when the
DynamicQuantizeLinear feeds only that MatMul).

Left in fp32: the embeddings (nodes whose name contains "embeddings"), any MatMul whose second
input is computed (the attention's Q·Kᵀ and P·V), LayerNorm, softmax, and small layers with
fewer than `min_dim` rows or columns (the ITM/rank/VE heads, pos_linear): they cost nothing and
their outputs are what the tasks read.

    python3 -m uniter.quantize BUNDLE_IN BUNDLE_OUT

copies a bundle and quantizes its encoder graphs (encoder, encoder_attention, nlvr2), updates
their SHA-256s and sets `"precision": "int8"` in the manifest. `quantize_dynamic` is the graph
rewrite; `quantize_weight` and `dynamic_quantize_linear` are the arithmetic in numpy (the tests
check the rewritten graphs against them).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import shutil
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Bundle precisions: "int8" is this module's; "fp32-fused" and "fp16" are uniter.fuse's
# (com.microsoft.Attention/Gelu, and float16 computation for the CUDA provider).
PRECISIONS = ("fp32", "int8", "fp32-fused", "fp16")
# Bundle graphs that run the transformer; the detector and the MLM/MRC heads stay fp32.
QUANTIZED_GRAPHS = ("encoder", "encoder_attention", "nlvr2")
DEFAULT_EXCLUDE = ("embeddings",)
DEFAULT_MIN_DIM = 16


# ---------------------------------------------------------------------------------------------
# The arithmetic (numpy references of what the graph computes)


def quantize_weight(w: np.ndarray, per_channel: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of a [K, N] weight: returns (q int8 [K, N], scale float32),
    scale [N] per output column or a scalar; q = clip(round(w / scale), -127, 127), so w ≈ q·scale
    with an error of at most scale/2 per element. An all-zero column gets scale 1."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"weight of rank {w.ndim}, want 2")
    amax = np.abs(w).max(axis=0) if per_channel else np.abs(w).max()
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def dynamic_quantize_linear(x: np.ndarray) -> Tuple[np.ndarray, np.float32, np.uint8]:
    """ONNX DynamicQuantizeLinear: uint8, per tensor, the range always holding 0.
    Returns (y uint8, y_scale float32, y_zero_point uint8)."""
    x = np.asarray(x, dtype=np.float32)
    lo = min(0.0, float(x.min())) if x.size else 0.0
    hi = max(0.0, float(x.max())) if x.size else 0.0
    scale = np.float32((hi - lo) / 255.0)
    if scale == 0:
        return np.zeros(x.shape, np.uint8), scale, np.uint8(0)
    zp = np.uint8(np.clip(np.rint(np.float32(0 - lo) / scale), 0, 255))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, scale, zp


def quantized_matmul_reference(x: np.ndarray, q: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """What the rewritten nodes compute for X @ W: dequantized int32 product of the uint8
    activation and the int8 weight."""
    xq, xs, xz = dynamic_quantize_linear(x)
    acc = np.matmul(xq.astype(np.int32) - np.int32(xz), q.astype(np.int32))
    return acc.astype(np.float32) * (xs * w_scale).astype(np.float32)


def error_bound(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """A bound, per output element, on |X@W - quantized(X)@quantized(W)|: the activation is off by
    at most X_scale/2 per element and the weight by W_scale/2, so the product is off by at most
    X_scale/2 · Σ_k |W_kn| + W_scale_n/2 · Σ_k |X̂_k| (+ float32 rounding)."""
    x = np.asarray(x, np.float32)
    xq, xs, xz = dynamic_quantize_linear(x)
    xhat = (xq.astype(np.float32) - np.float32(xz)) * xs
    return (xs / 2) * np.abs(w).sum(axis=0) + np.abs(xhat).sum(axis=-1, keepdims=True) * (w_scale / 2)


# ---------------------------------------------------------------------------------------------
# The graph rewrite


class _Names:
    """Fresh tensor and node names that do not clash with the graph's."""

    def __init__(self, graph: onnx.GraphProto):
        self.used = {i.name for i in graph.initializer} | {i.name for i in graph.input} | \
            {o.name for o in graph.output} | {n.name for n in graph.node} | \
            {o for n in graph.node for o in n.output}

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def _constant_weight(graph: onnx.GraphProto, name: str, inits: Dict[str, onnx.TensorProto],
                     producers: Dict[str, onnx.NodeProto]) -> Optional[Tuple[str, np.ndarray]]:
    """(source initializer name, value) when `name` is an initializer or an Identity chain of one."""
    seen = 0
    while name not in inits:
        n = producers.get(name)
        if n is None or n.op_type != "Identity" or seen > 16:
            return None
        name, seen = n.input[0], seen + 1
    return name, numpy_helper.to_array(inits[name])


def quantize_dynamic(model: onnx.ModelProto, *, per_channel: bool = True,
                     exclude: Sequence[str] = DEFAULT_EXCLUDE, min_dim: int = DEFAULT_MIN_DIM,
                     share_activations: bool = True, bias_second: bool = True,
                     report: Optional[dict] = None) -> onnx.ModelProto:
    """Returns a copy of `model` with every eligible MatMul/Gemm rewritten to dynamic int8 (see the
    module's docstring). `exclude`: node-name substrings left in fp32. `min_dim`: weights with
    fewer rows or columns stay fp32. `share_activations`: one DynamicQuantizeLinear per activation
    tensor (the Q, K and V projections read the same one); otherwise one per MatMul.
    `bias_second`: a bias Add(bias, Y) after a rewritten MatMul becomes Add(Y, bias), the same sum
    in the operand order ONNX Runtime folds into MatMulIntegerToFloat. `report`, when given, is
    filled with the rewritten and the skipped nodes."""
    model = copy.deepcopy(model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_inputs = {i.name for i in g.input}
    names = _Names(g)
    rep = {"quantized": [], "kept_fp32": [], "per_channel": per_channel}

    qweights: Dict[Tuple[str, bool, float], Tuple[str, str]] = {}  # (source, transposed, alpha) → (W_q, W_scale)
    qacts: Dict[str, Tuple[str, str, str]] = {}  # activation → (X_q, X_scale, X_zero_point)
    new_inits: List[onnx.TensorProto] = []
    out_nodes: List[onnx.NodeProto] = []
    swapped_adds = set()

    def keep(n, why):
        rep["kept_fp32"].append({"node": n.name or n.output[0], "op": n.op_type, "why": why})
        out_nodes.append(n)

    for n in g.node:
        if n.op_type not in ("MatMul", "Gemm"):
            out_nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        const = _constant_weight(g, n.input[1], inits, producers)
        if const is None:
            keep(n, "second input is computed")
            continue
        src, w = const
        if n.input[0] in inits or n.input[0] not in producers and n.input[0] not in graph_inputs:
            keep(n, "first input is a constant")
            continue
        if any(s in (n.name or "") for s in exclude):
            keep(n, "excluded by name")
            continue
        if w.ndim != 2 or w.dtype != np.float32:
            keep(n, f"weight is {w.dtype} of rank {w.ndim}")
            continue
        if n.op_type == "Gemm" and attrs.get("transA", 0):
            keep(n, "Gemm with transA")
            continue
        trans = bool(n.op_type == "Gemm" and attrs.get("transB", 0))
        alpha = float(attrs.get("alpha", 1.0)) if n.op_type == "Gemm" else 1.0
        wk = w.T if trans else w
        if min(wk.shape) < min_dim:
            keep(n, f"weight {list(wk.shape)} smaller than {min_dim}")
            continue

        base = n.name or n.output[0]
        key = (src, trans, alpha)
        if key not in qweights:
            q, scale = quantize_weight(wk, per_channel)
            scale = (scale * np.float32(alpha)).astype(np.float32)
            qn, sn = names(src + "_quantized"), names(src + "_scale")
            new_inits += [numpy_helper.from_array(np.ascontiguousarray(q), qn),
                          numpy_helper.from_array(scale, sn)]
            qweights[key] = (qn, sn)
        qw, ws = qweights[key]

        x = n.input[0]
        if share_activations and x in qacts:
            xq, xs, xz = qacts[x]
        else:
            stem = x if share_activations else base
            xq, xs, xz = names(stem + "_quantized"), names(stem + "_scale"), names(stem + "_zero_point")
            out_nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz],
                                              name=names(stem + "_DynamicQuantizeLinear")))
            if share_activations:
                qacts[x] = (xq, xs, xz)
        acc, accf, scale_out = names(base + "_int32"), names(base + "_float"), names(base + "_scale")
        y = n.output[0]
        bias = n.input[2] if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2] else None
        y_mm = names(base + "_matmul") if bias else y
        out_nodes += [
            helper.make_node("MatMulInteger", [xq, qw, xz], [acc], name=names(base + "_MatMulInteger")),
            helper.make_node("Cast", [acc], [accf], to=TensorProto.FLOAT, name=names(base + "_Cast")),
            helper.make_node("Mul", [xs, ws], [scale_out], name=names(base + "_ScaleMul")),
            helper.make_node("Mul", [accf, scale_out], [y_mm], name=names(base + "_Mul")),
        ]
        if bias:
            beta = float(attrs.get("beta", 1.0))
            if beta != 1.0:
                bconst = _constant_weight(g, bias, inits, producers)
                if bconst is not None:
                    bias_name = names(bias + "_beta")
                    new_inits.append(numpy_helper.from_array(
                        (bconst[1] * np.float32(beta)).astype(np.float32), bias_name))
                else:
                    beta_name, bias_name = names(base + "_beta"), names(base + "_scaled_bias")
                    new_inits.append(numpy_helper.from_array(np.array(beta, np.float32), beta_name))
                    out_nodes.append(helper.make_node("Mul", [bias, beta_name], [bias_name],
                                                      name=names(base + "_BetaMul")))
                bias = bias_name
            out_nodes.append(helper.make_node("Add", [y_mm, bias], [y], name=names(base + "_BiasAdd")))
        elif bias_second:
            for c in consumers.get(y, []):
                if c.op_type == "Add" and len(c.input) == 2 and c.input[1] == y and c.input[0] != y \
                        and _constant_weight(g, c.input[0], inits, producers) is not None:
                    swapped_adds.add(id(c))
        rep["quantized"].append({"node": base, "op": n.op_type, "weight": src,
                                 "shape": list(wk.shape)})

    for c in g.node:
        if id(c) in swapped_adds:
            c.input[0], c.input[1] = c.input[1], c.input[0]
    del g.node[:]
    g.node.extend(out_nodes)
    g.initializer.extend(new_inits)
    # Drop the fp32 weights nothing reads any more.
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    kept = [i for i in g.initializer if i.name in read]
    del g.initializer[:]
    g.initializer.extend(kept)
    _ensure_opset(model, 11)
    if report is not None:
        report.update(rep)
    return model


def _ensure_opset(model: onnx.ModelProto, version: int):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            if o.version < version:
                o.version = version
            return
    model.opset_import.append(helper.make_opsetid("", version))


def quantize_file(src: str, dst: str, **kw) -> dict:
    """Quantizes the ONNX file `src` into `dst`; returns the rewrite's report."""
    report: dict = {}
    model = quantize_dynamic(onnx.load(src), report=report, **kw)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return report


# ---------------------------------------------------------------------------------------------
# Bundles


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rewrite_graphs(bundle_dir: str, manifest: dict, graphs: Iterable[str], rewrite) -> Dict[str, dict]:
    """Runs rewrite(path) → record in place on each of the manifest's `graphs` present in
    `bundle_dir` and updates their sha256; returns {role: record with the fp32 file's sha256}."""
    done = {}
    for role in graphs:
        spec = manifest["graphs"].get(role)
        if spec is None:
            continue
        path = os.path.join(bundle_dir, spec["file"])
        before = spec.get("sha256") or _sha256(path)
        rec = rewrite(path)
        spec["sha256"] = _sha256(path)
        done[role] = {"fp32_sha256": before, **rec}
    if not done:
        raise ValueError(f"no graph of {list(graphs)} in the bundle")
    return done


def set_precision(manifest: dict, precision: str) -> None:
    """Sets manifest["precision"], placed after "random_weights" (where the Go Manifest declares it)."""
    items = [(k, v) for k, v in manifest.items() if k != "precision"]
    manifest.clear()
    for k, v in items:
        manifest[k] = v
        if k == "random_weights":
            manifest["precision"] = precision
    manifest.setdefault("precision", precision)


def quantize_bundle_graphs(bundle_dir: str, manifest: dict, graphs: Iterable[str] = QUANTIZED_GRAPHS,
                           **kw) -> dict:
    """Quantizes the manifest's `graphs` (those present) in place in `bundle_dir`, updates their
    sha256 and sets manifest["precision"] = "int8" and provenance.quantization. Returns the
    manifest (also modified in place); the caller writes it."""
    def rewrite(path: str) -> dict:
        rep = quantize_file(path, path, **kw)
        return {"quantized_nodes": len(rep["quantized"]),
                "fp32_nodes": [k["node"] for k in rep["kept_fp32"] if k["why"] != "second input is computed"]}
    done = rewrite_graphs(bundle_dir, manifest, graphs, rewrite)
    set_precision(manifest, "int8")
    prov = manifest.setdefault("provenance", {})
    prov["quantization"] = {
        "method": "dynamic int8 (uniter.quantize)",
        "weights": "int8 symmetric, " + ("per output channel" if kw.get("per_channel", True) else "per tensor"),
        "activations": "uint8 asymmetric per tensor, at run time (DynamicQuantizeLinear)",
        "ops": "MatMulInteger, Cast, Mul",
        "graphs": done,
        "onnx_version": onnx.__version__,
        "quantized": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return manifest


def quantize_bundle(src: str, dst: str, *, force: bool = False, **kw) -> dict:
    """Copies the bundle `src` to `dst` (everything in it), quantizes its encoder graphs and writes
    the manifest with precision int8. Returns the new manifest."""
    manifest = copy_fp32_bundle(src, dst, force, "quantize")
    quantize_bundle_graphs(dst, manifest, **kw)
    manifest["provenance"]["quantization"]["source_bundle"] = manifest.get("name")
    write_manifest(dst, manifest)
    return manifest


def copy_fp32_bundle(src: str, dst: str, force: bool, verb: str) -> dict:
    """Copies the fp32 bundle `src` to a new (or, with `force`, replaced) folder `dst` for a graph
    rewrite and returns its manifest, with a provenance section; `verb` names the rewrite in the
    error for a bundle of another precision."""
    with open(os.path.join(src, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("precision", "fp32") != "fp32":
        raise ValueError(f"{src} has precision {manifest['precision']!r}; {verb} an fp32 bundle")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("BUNDLE_OUT must differ from BUNDLE_IN")
    if os.path.exists(dst):
        if not force and os.listdir(dst):
            raise ValueError(f"{dst} exists and is not empty (--force replaces it)")
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    manifest.setdefault("provenance", {})
    return manifest


def write_manifest(bundle: str, manifest: dict) -> None:
    with open(os.path.join(bundle, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python3 -m uniter.quantize",
        description="Copies an fp32 bundle and quantizes its encoder graphs (encoder, "
                    "encoder_attention, nlvr2) to dynamic int8: MatMulInteger with int8 weights, "
                    "per output channel, and uint8 activations quantized at run time. The manifest "
                    "gets \"precision\": \"int8\" and the graphs' new sha256.")
    ap.add_argument("bundle_in")
    ap.add_argument("bundle_out")
    ap.add_argument("--per-tensor", action="store_true", help="one weight scale per matrix")
    ap.add_argument("--graphs", default=",".join(QUANTIZED_GRAPHS),
                    help="graph roles to quantize (default: %(default)s)")
    ap.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE),
                    help="node-name substrings kept in fp32 (default: %(default)s)")
    ap.add_argument("--min-dim", type=int, default=DEFAULT_MIN_DIM,
                    help="weights with fewer rows or columns stay fp32 (default: %(default)s)")
    ap.add_argument("--no-share-activations", action="store_true",
                    help="one DynamicQuantizeLinear per MatMul instead of per activation tensor")
    ap.add_argument("--force", action="store_true", help="replace BUNDLE_OUT")
    args = ap.parse_args(argv)
    try:
        m = quantize_bundle(args.bundle_in, args.bundle_out, force=args.force,
                            graphs=[s for s in args.graphs.split(",") if s],
                            per_channel=not args.per_tensor,
                            exclude=tuple(s for s in args.exclude.split(",") if s),
                            min_dim=args.min_dim, share_activations=not args.no_share_activations)
    except (ValueError, OSError) as e:
        sys.exit(f"uniter.quantize: {e}")
    for role, d in m["provenance"]["quantization"]["graphs"].items():
        print(f"{role}: {d['quantized_nodes']} MatMul/Gemm quantized, fp32 kept: "
              f"{', '.join(d['fp32_nodes']) or 'none'}", file=sys.stderr)
    print(f"wrote {args.bundle_out}", file=sys.stderr)


if __name__ == "__main__":
    main()
