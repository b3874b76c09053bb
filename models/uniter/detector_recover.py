"""Rebuilds a uniter.detector.Detector from the single detector graph uniter.detector_export
wrote (for bundles whose PyTorch checkpoint is not at hand, such as the committed default one):
the DetectorConfig read from the graph (backbone convs, head sizes, the cell-anchor constant,
the RPN's top-n and NMS constants, RoiAlign's attributes), the weights from its initializers,
key-exact. recover_detector proves the result before returning it: the recovered model exported
again with the same exporter must give the same graph up to names (graph_difference), node by
node, every initializer and constant bit for bit; otherwise RecoveryError names the first
difference. The proposal stage's box regression weights are not in the graph (inference never
uses them) and come back as zeros (UNEXPORTED). uniter.detector_split's `bundle` command uses
it to split such a bundle's detector.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .detector import Detector, DetectorConfig
from .detector_export import export_detector


class RecoveryError(ValueError):
    """A single detector graph that cannot be turned back, provably exactly, into the
    uniter.detector.Detector it was exported from."""


# State-dict entries the single graph does not hold: the per-class box regression, which the
# exported forward never uses (the proposals are the boxes). The recovered model has zeros.
UNEXPORTED = ("roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias")
BUTD_HINT = ("it is a bottom-up-attention (BUTDDetector) graph, not a uniter.detector.Detector "
             "export; make its split form from the original weights with `python3 -m "
             "uniter.butd_export convert-butd WEIGHTS CONFIG ... --split` instead")
_BACKBONE_WEIGHT = re.compile(r"^backbone\.(\d+)\.weight$")
# Denominators tried for an aspect ratio, simplest first: decimals with one and two places
# before thirds and the like (a config says 1.33 more often than 4/3), three places last.
_RATIO_DENOMINATORS = (1, 2, 4, 5, 10, 20, 25, 50, 100, 3, 8, 6, 16, 12, 7, 9, 11, 200, 1000)


class _Graph:
    """Lookups over one ONNX graph: constants (Constant nodes and initializers), producers and
    consumers of tensors."""

    def __init__(self, m: onnx.ModelProto):
        g = m.graph
        self.nodes = list(g.node)
        self.inits = {t.name: t for t in g.initializer}
        self.consts: Dict[str, np.ndarray] = {}
        self.producer, self.consumers = {}, {}
        for n in self.nodes:
            for o in n.output:
                self.producer[o] = n
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.attribute:
                v = _constant_value(n)
                if v is not None:
                    self.consts[n.output[0]] = v

    def value(self, name: str) -> Optional[np.ndarray]:
        if name in self.consts:
            return self.consts[name]
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return None

    def ops(self, op: str) -> list:
        return [n for n in self.nodes if n.op_type == op and n.domain in ("", "ai.onnx")]


def _constant_value(node) -> Optional[np.ndarray]:
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name in ("value_float", "value_floats"):
        return np.asarray(onnx.helper.get_attribute_value(a), dtype=np.float32)
    if a.name in ("value_int", "value_ints"):
        return np.asarray(onnx.helper.get_attribute_value(a), dtype=np.int64)
    return None


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _one(g: _Graph, op: str, what: str):
    nodes = g.ops(op)
    if len(nodes) != 1:
        raise RecoveryError(f"expected one {op} node ({what}), found {len(nodes)}: not a "
                            "uniter.detector.Detector export")
    return nodes[0]


def _short_float(v) -> float:
    """The shortest decimal that rounds to float32 v (0.699999988079071 → 0.7): what a config
    said, given what the graph stores."""
    return float(str(np.float32(v)))


def _version_note(m: onnx.ModelProto) -> str:
    ours = getattr(torch.onnx, "producer_version", torch.__version__)
    theirs = m.producer_version
    if m.producer_name != "pytorch":
        return (f" (the graph was written by {m.producer_name or 'an unnamed producer'} "
                f"{theirs}, not by PyTorch's exporter)")
    if theirs and theirs != ours:
        return (f" — note: this graph was exported by torch {theirs} and the re-export uses "
                f"torch {ours}; the exporter's output differs between torch versions, so the "
                f"difference may be the torch version's, not the model's: run this with torch "
                f"{theirs}")
    return ""


def _inputs_back(g: _Graph, name: str, through: Sequence[str], depth: int = 8):
    """Nodes reachable backwards from tensor name through ops in ``through`` (data inputs)."""
    seen, frontier, out = set(), [name], []
    for _ in range(depth):
        nxt = []
        for t in frontier:
            n = g.producer.get(t)
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            out.append(n)
            if n.op_type in through:
                nxt.extend(x for x in n.input if x)
        frontier = nxt
    return out


def _pre_nms_top_n(g: _Graph) -> int:
    """TopK's k is min(pre_nms_top_n, #anchors) (torchvision's _topk_min under tracing):
    Reshape(ReduceMin(Concat(Constant [pre_nms_top_n], #anchors)))."""
    topk = _one(g, "TopK", "the RPN's pre-NMS top-k")
    found = []
    for n in _inputs_back(g, topk.input[1], ("Reshape", "Cast", "ReduceMin", "Min", "Unsqueeze",
                                              "Squeeze", "Identity")):
        if n.op_type == "Concat":
            for x in n.input:
                v = g.value(x)
                if v is not None and v.size == 1 and v.dtype.kind in "iu":
                    found.append(int(v.reshape(-1)[0]))
    if len(found) != 1:
        raise RecoveryError("cannot find the pre-NMS top-n: TopK's k is not min(Constant, "
                            f"#anchors) as torchvision's _topk_min exports it (found {found})")
    return found[0]


def _nms(g: _Graph) -> Tuple[float, int]:
    """(rpn_nms_thresh from NonMaxSuppression's iou_threshold input, rpn_post_nms_top_n_test
    from the Slice keep[:n] of the indices it selects)."""
    nms = _one(g, "NonMaxSuppression", "the RPN's NMS")
    if len(nms.input) < 4 or g.value(nms.input[3]) is None:
        raise RecoveryError("NonMaxSuppression has no constant iou_threshold input")
    iou = _short_float(g.value(nms.input[3]).reshape(-1)[0])
    frontier, slices = [nms.output[0]], []
    for _ in range(6):
        nxt = []
        for t in frontier:
            for n in g.consumers.get(t, []):
                if n.op_type == "Slice":
                    slices.append(n)
                elif n.op_type in ("Gather", "Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity"):
                    nxt.extend(n.output)
        frontier = nxt
        if slices:
            break
    ends = [g.value(n.input[2]) if len(n.input) > 2 else None for n in slices]
    starts = [g.value(n.input[1]) if len(n.input) > 1 else None for n in slices]
    if len(slices) != 1 or ends[0] is None or starts[0] is None or ends[0].size != 1 \
            or int(starts[0].reshape(-1)[0]) != 0:
        raise RecoveryError("cannot find the post-NMS top-n: NonMaxSuppression's selected "
                            "indices are not sliced [0:n] by one constant Slice")
    return iou, int(ends[0].reshape(-1)[0])


def _cell_anchor_constant(g: _Graph, num_anchors: int) -> np.ndarray:
    """The cell anchors [A, 4]: the float constant of A·4 values (shape [.., A, 4]) that an Add
    puts on the anchor grid."""
    found = {}
    for n in g.ops("Add"):
        for x in n.input:
            if x in g.inits and not x.startswith("onnx::") and "." in x:
                continue                                    # a weight, not a constant
            v = g.value(x)
            if v is not None and v.dtype.kind == "f" and v.size == 4 * num_anchors \
                    and v.ndim >= 2 and v.shape[-1] == 4 and v.shape[-2] == num_anchors:
                found[v.astype(np.float32).tobytes()] = v.reshape(num_anchors, 4).astype(np.float32)
    if len(found) != 1:
        raise RecoveryError(f"expected one cell-anchor constant ([1, {num_anchors}, 4] added to "
                            f"the anchor grid), found {len(found)}")
    return next(iter(found.values()))


def _torchvision_cells(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """torchvision's AnchorGenerator.generate_anchors in numpy float32 (the same IEEE
    operations: sqrt, 1 / h, products, / 2, round half to even), [R·S, 4], ratio-major."""
    s = np.asarray(sizes, dtype=np.float32)
    h = np.sqrt(np.asarray(ratios, dtype=np.float32))
    w = np.float32(1) / h
    ws, hs = (w[:, None] * s[None, :]).reshape(-1), (h[:, None] * s[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)).astype(np.float32)


def _known_anchor_values() -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    """The anchor sizes and aspect ratios of this repository's Detector configs (the defaults,
    the Shapes World trainer's, the test fixture's), tried first: the generator's rounding
    leaves a range of values that all give the same cells (any aspect ratio in about
    [1.313, 1.337] gives the Shapes World detector's), and the config's own value reads best."""
    cfgs = [DetectorConfig()]
    try:
        from .train_detector import default_config
        cfgs.append(default_config())
    except Exception:   # noqa: BLE001 - only a preference
        pass
    try:
        from .fixtures.detector import DETECTOR
        cfgs.append(DetectorConfig(**DETECTOR))
    except Exception:   # noqa: BLE001
        pass
    sizes, ratios = [], []
    for c in cfgs:
        sizes += [int(v) for v in c.anchor_sizes if int(v) not in sizes]
        ratios += [float(v) for v in c.aspect_ratios if float(v) not in ratios]
    return tuple(sizes), tuple(ratios)


def _ratio_candidates(est: float, tol: float, known: Sequence[float] = ()) -> List[float]:
    lo, hi = est * (1 - tol), est * (1 + tol)
    out = [float(v) for v in known if lo <= v <= hi]
    seen = set(out)
    for q in _RATIO_DENOMINATORS:
        cands = range(max(1, math.floor(lo * q)), math.ceil(hi * q) + 1)
        for p in sorted(cands, key=lambda p: abs(p / q - est)):
            v = p / q
            if lo <= v <= hi and v not in seen:
                seen.add(v)
                out.append(float(v))
    return out


def anchors_from_cells(cells: np.ndarray) -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    """(anchor_sizes, aspect_ratios) that torchvision's AnchorGenerator turns into cells
    [A, 4] exactly. The generator rounds, so several values can give the same cells (1.32,
    1.33 and 4/3 all do at sizes 32 … 96): the search tries this repository's configs' values
    first (_known_anchor_values), then integer sizes near sqrt(w·h) and the ratio with the
    shortest form (_RATIO_DENOMINATORS) near h / w. Whichever it picks, the cells, hence the
    graph, are the same. Raises RecoveryError when no (R ratios × S sizes) layout reproduces
    the cells."""
    cells = np.asarray(cells, dtype=np.float32).reshape(-1, 4)
    A = len(cells)
    if not (np.array_equal(cells[:, 0], -cells[:, 2]) and np.array_equal(cells[:, 1], -cells[:, 3])
            and (cells[:, 2:] > 0).all()):
        raise RecoveryError("the cell-anchor constant is not centred boxes as torchvision's "
                            "AnchorGenerator makes them")
    known_sizes, known_ratios = _known_anchor_values()
    for R in range(1, A + 1):
        if A % R:
            continue
        S = A // R
        T = cells.reshape(R, S, 4).astype(np.float64)
        W, H = 2 * T[..., 2], 2 * T[..., 3]
        est_s = np.exp(np.log(np.sqrt(W * H)).mean(axis=0))           # [S]
        big = int(np.argmax(est_s))
        est_r = H[:, big] / W[:, big]                                  # [R]
        tol = [min(0.5, 2 * (1 / W[i, big] + 1 / H[i, big]) + 1e-3) for i in range(R)]
        size_cands = [sorted(range(max(1, math.floor(e * 0.8) - 2), math.ceil(e * 1.2) + 3),
                             key=lambda c, e=e: (c not in known_sizes, abs(c - e))) for e in est_s]
        ratios = []
        for i in range(R):
            pick = None
            for r in _ratio_candidates(float(est_r[i]), tol[i], known_ratios):
                ok = all((_torchvision_cells(size_cands[j], [r]) == cells[i * S + j]).all(axis=1).any()
                         for j in range(S))
                if ok:
                    pick = r
                    break
            if pick is None:
                break
            ratios.append(pick)
        if len(ratios) != R:
            continue
        sizes = []
        for j in range(S):
            want = cells.reshape(R, S, 4)[:, j]
            fits = [c for c in size_cands[j]
                    if np.array_equal(_torchvision_cells([c], ratios), want)]
            if not fits:
                break
            sizes.append(fits[0])
        if len(sizes) != S:
            continue
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        again = AnchorGenerator((tuple(sizes),), (tuple(ratios),)).cell_anchors[0].numpy()
        if np.array_equal(again, cells):
            return tuple(int(v) for v in sizes), tuple(float(v) for v in ratios)
    raise RecoveryError("no anchor sizes and aspect ratios reproduce the graph's cell anchors "
                        f"{cells.tolist()} through torchvision's AnchorGenerator")


def recover_config(m: onnx.ModelProto) -> DetectorConfig:
    """The DetectorConfig of a single-graph Detector export (see recover_detector). The
    training-only fields are not in the graph and keep their defaults."""
    g = _Graph(m)
    names = set(g.inits)
    ops = {n.op_type for n in g.nodes}
    if "MaxRoiPool" in ops or any(k.startswith(("proposal_generator.", "roi_heads.res5.",
                                                "backbone.stem.", "backbone.res"))
                                  for k in names):
        raise RecoveryError(BUTD_HINT)
    if "BatchNormalization" in ops:
        raise RecoveryError("the graph has BatchNormalization nodes: only batch_norm=False "
                            "Detectors are recovered")
    need = ("rpn.head.cls_logits.weight", "roi_heads.box_head.fc6.weight",
            "roi_heads.box_predictor.cls_score.weight")
    if "RoiAlign" not in ops or any(k not in names for k in need):
        raise RecoveryError("not a uniter.detector.Detector export: it needs a RoiAlign node and "
                            f"the initializers {', '.join(need)}")

    def init(name):
        return numpy_helper.to_array(g.inits[name])

    # Backbone: conv 3×3 (padding 1, stride 1 or 2, bias) + ReLU per layer: backbone.{2k}.
    convs = g.ops("Conv")
    rpn_convs = {f"rpn.head.{k}.weight" for k in ("conv.0.0", "cls_logits", "bbox_pred")}
    for n in convs:
        w = n.input[1] if len(n.input) > 1 else ""
        if not (_BACKBONE_WEIGHT.match(w) or w in rpn_convs) or len(n.input) < 3 or not n.input[2]:
            raise RecoveryError(
                f"Conv node {n.name!r} has weight {w!r} and bias "
                f"{(n.input[2] if len(n.input) > 2 else '')!r}, not a state-dict initializer pair "
                "(backbone.N.weight / .bias, rpn.head.*): BatchNorm folded into the backbone convs "
                "at export (batch_norm=True)? Only batch_norm=False Detectors are recovered")
    bconvs = [n for n in convs if _BACKBONE_WEIGHT.match(n.input[1])]
    idx = [int(_BACKBONE_WEIGHT.match(n.input[1]).group(1)) for n in bconvs]
    if not bconvs or idx != list(range(0, 2 * len(bconvs), 2)):
        raise RecoveryError(f"backbone conv weights are backbone.{idx} in graph order, not "
                            "backbone.0, .2, .4, … (conv + ReLU per layer, batch_norm=False)")
    if bconvs[0].input[0] != m.graph.input[0].name:
        raise RecoveryError("the first backbone conv does not read the graph's image input")
    channels, strides, c_in = [], [], 3
    for n, k in zip(bconvs, idx):
        a = _attrs(n)
        w = init(n.input[1])
        st = list(a.get("strides", [1, 1]))
        if (list(a.get("kernel_shape", w.shape[2:])) != [3, 3] or list(a.get("pads", [])) != [1] * 4
                or a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1]
                or st[0] != st[1] or st[0] not in (1, 2) or w.shape[1:] != (c_in, 3, 3)
                or n.input[2] != f"backbone.{k}.bias"):
            raise RecoveryError(f"backbone conv backbone.{k} is not a 3×3 conv with padding 1, "
                                f"stride 1 or 2 and a bias on {c_in} channels: {a}, weight "
                                f"{list(w.shape)}")
        channels.append(int(w.shape[0]))
        strides.append(int(st[0]))
        c_in = int(w.shape[0])
    ch = c_in
    num_anchors = int(init("rpn.head.cls_logits.weight").shape[0])
    fc6 = init("roi_heads.box_head.fc6.weight")
    D = int(fc6.shape[0])
    C = int(init("roi_heads.box_predictor.cls_score.weight").shape[0])
    num_attr = int(init("attr_score.weight").shape[0]) if "attr_score.weight" in names else 0

    roi = _one(g, "RoiAlign", "the box head's RoI pooling")
    ra = _attrs(roi)
    pool = int(ra.get("output_height", 1))
    if int(ra.get("output_width", 1)) != pool:
        raise RecoveryError(f"RoiAlign output {ra.get('output_height')}×{ra.get('output_width')} "
                            "is not square")
    mode = ra.get("mode", b"avg")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "avg":
        raise RecoveryError(f"RoiAlign mode {mode!r}, a Detector averages")
    stride = 1
    for v in strides:
        stride *= v
    scale = np.float32(ra.get("spatial_scale", 1.0))
    if scale != np.float32(1.0 / stride):
        raise RecoveryError(f"RoiAlign spatial_scale {float(scale)} is not 1 / the backbone "
                            f"stride {stride}")
    if fc6.shape[1] != ch * pool * pool:
        raise RecoveryError(f"fc6 takes {fc6.shape[1]} inputs, not {ch}·{pool}² pooled values")

    sizes, ratios = anchors_from_cells(_cell_anchor_constant(g, num_anchors))
    if len(sizes) * len(ratios) != num_anchors:
        raise RecoveryError("the cell anchors do not match the RPN head's anchor count")
    pre = _pre_nms_top_n(g)
    iou, post = _nms(g)
    cfg = DetectorConfig(
        num_classes=C, num_attributes=num_attr, feature_dim=D,
        backbone_channels=tuple(channels), backbone_strides=tuple(strides), batch_norm=False,
        anchor_sizes=sizes, aspect_ratios=ratios, rpn_pre_nms_top_n_test=pre,
        rpn_post_nms_top_n_test=post, rpn_nms_thresh=iou, pool_size=pool,
        sampling_ratio=int(ra.get("sampling_ratio", 0)))
    try:
        cfg.validate()
    except ValueError as e:
        raise RecoveryError(f"the recovered config is not valid: {e}") from None
    return cfg


def _tensor_key(t) -> tuple:
    a = numpy_helper.to_array(t)
    return (t.data_type, tuple(t.dims), a.tobytes())


def _describe_array(a: np.ndarray) -> str:
    a = np.asarray(a)
    return f"{a.dtype}{list(a.shape)} {a.tolist() if a.size <= 8 else '…'}"


def _attr_key(a) -> tuple:
    A = onnx.AttributeProto
    if a.type == A.TENSOR:
        return ("tensor",) + _tensor_key(a.t)
    if a.type == A.TENSORS:
        return ("tensors",) + tuple(_tensor_key(t) for t in a.tensors)
    if a.type in (A.GRAPH, A.GRAPHS, A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTO, A.TYPE_PROTOS):
        return ("raw", a.SerializeToString(deterministic=True))
    v = onnx.helper.get_attribute_value(a)
    return (a.type, tuple(v) if isinstance(v, list) else v)


def _value_info_key(vi) -> tuple:
    t = vi.type.tensor_type
    dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim) if t.HasField("shape") else None
    return (vi.name, t.elem_type, dims)


def graph_difference(a: onnx.ModelProto, b: onnx.ModelProto) -> Optional[str]:
    """The first structural difference between two ONNX models, or None when they are the same
    up to tensor and node names: the same opsets, graph inputs and outputs (names, types,
    shapes), the same node sequence (op type, domain, attributes, with tensor attributes such
    as Constant values bit-identical), inputs wired to the same producers, and bit-identical
    initializers wherever an input is one. Nodes are compared in their stored order (an ONNX
    graph stores them topologically sorted). a is "the bundle's graph", b "the re-export"."""
    oa = sorted((o.domain or "", o.version) for o in a.opset_import)
    ob = sorted((o.domain or "", o.version) for o in b.opset_import)
    if oa != ob:
        return f"opset imports {oa} vs {ob}"
    ga, gb = a.graph, b.graph
    for what, xa, xb in (("input", ga.input, gb.input), ("output", ga.output, gb.output)):
        ka, kb = [_value_info_key(v) for v in xa], [_value_info_key(v) for v in xb]
        if ka != kb:
            return f"graph {what}s {ka} vs {kb}"
    inits_a = {t.name: t for t in ga.initializer}
    inits_b = {t.name: t for t in gb.initializer}
    mapping = {v.name: v.name for v in ga.input}
    mapped_b = set(mapping.values())
    na, nb = list(ga.node), list(gb.node)
    for i, (x, y) in enumerate(zip(na, nb)):
        where = f"node #{i} ({x.op_type} {x.name!r})"
        if (x.op_type, x.domain or "") != (y.op_type, y.domain or ""):
            return f"node #{i}: {x.op_type} {x.name!r} in the bundle's graph, {y.op_type} in the re-export"
        ax = {at.name: at for at in x.attribute}
        ay = {at.name: at for at in y.attribute}
        if sorted(ax) != sorted(ay):
            return f"{where}: attributes {sorted(ax)} vs {sorted(ay)}"
        for name in sorted(ax):
            if _attr_key(ax[name]) != _attr_key(ay[name]):
                if ax[name].type == onnx.AttributeProto.TENSOR:
                    return (f"{where}: attribute {name} differs: "
                            f"{_describe_array(numpy_helper.to_array(ax[name].t))} vs "
                            f"{_describe_array(numpy_helper.to_array(ay[name].t))}")
                return (f"{where}: attribute {name} differs: "
                        f"{onnx.helper.get_attribute_value(ax[name])!r} vs "
                        f"{onnx.helper.get_attribute_value(ay[name])!r}")
        if len(x.input) != len(y.input) or len(x.output) != len(y.output):
            return f"{where}: {len(x.input)} inputs / {len(x.output)} outputs vs {len(y.input)} / {len(y.output)}"
        for k, (s, t) in enumerate(zip(x.input, y.input)):
            if not s or not t:
                if s != t:
                    return f"{where}: input {k} is {s!r} vs {t!r}"
                continue
            if s in inits_a or t in inits_b:
                if s not in inits_a or t not in inits_b:
                    return f"{where}: input {k} is an initializer in only one graph ({s!r} vs {t!r})"
                if _tensor_key(inits_a[s]) != _tensor_key(inits_b[t]):
                    va, vb = numpy_helper.to_array(inits_a[s]), numpy_helper.to_array(inits_b[t])
                    how = ("values" if va.shape == vb.shape and va.dtype == vb.dtype
                           else f"{va.dtype}{list(va.shape)} vs {vb.dtype}{list(vb.shape)}")
                    return f"{where}: input {k}, initializer {s!r} differs from {t!r} ({how})"
                mapping.setdefault(s, t)
                continue
            if s not in mapping:
                return f"{where}: input {k} {s!r} is not produced before it (not topologically sorted)"
            if mapping[s] != t:
                return f"{where}: input {k} is wired to another tensor ({s!r} ↔ {t!r}, want {mapping[s]!r})"
        for s, t in zip(x.output, y.output):
            if bool(s) != bool(t):
                return f"{where}: output {s!r} vs {t!r}"
            if s:
                if s in mapping or t in mapped_b:
                    return f"{where}: output {s!r} is produced twice"
                mapping[s] = t
                mapped_b.add(t)
    if len(na) != len(nb):
        n = len(nb)
        if len(na) > n:
            return (f"the bundle's graph has {len(na)} nodes, the re-export {n}: the first extra "
                    f"is node #{n} ({na[n].op_type} {na[n].name!r})")
        return (f"the bundle's graph has {len(na)} nodes, the re-export {n}: missing node #{len(na)} "
                f"({nb[len(na)].op_type})")
    for o, p in zip(ga.output, gb.output):
        if mapping.get(o.name) != p.name:
            return f"graph output {o.name!r} is computed by another node than in the re-export"
    if len(inits_a) != len(inits_b):
        return f"{len(inits_a)} initializers vs {len(inits_b)}"
    return None


def recover_detector(onnx_path: str, verify: bool = True) -> Detector:
    """Rebuilds the uniter.detector.Detector that detector_export.write_detector exported to
    onnx_path: its DetectorConfig (recover_config: backbone channels and strides from the Conv
    nodes, classes / attributes / feature_dim from the head initializers, anchor sizes and
    aspect ratios from the cell-anchor constant, pre/post-NMS top-n and the NMS IoU from the
    TopK bound, NonMaxSuppression and its Slice, pool size, sampling ratio and scale from
    RoiAlign) and its weights, loaded key-exact from the initializers (named like the state
    dict); roi_heads.box_predictor.bbox_pred is not in the graph and is zero (UNEXPORTED).

    verify (default): export the recovered model with detector_export.export_detector and
    require the same graph up to names (graph_difference); RecoveryError naming the first
    difference otherwise. Returns the model in eval mode."""
    m = onnx.load(onnx_path)
    try:
        cfg = recover_config(m)
    except RecoveryError as e:
        if str(e) == BUTD_HINT:
            raise RecoveryError(f"{onnx_path}: {e}") from None
        raise RecoveryError(f"{onnx_path}: {e}{_version_note(m)}") from None
    g = _Graph(m)
    with torch.random.fork_rng(devices=[]):
        model = Detector(cfg)
    sd = model.state_dict()
    want = [k for k in sd if k not in UNEXPORTED]
    missing = [k for k in want if k not in g.inits]
    extra = [k for k in g.inits if k not in sd]
    if missing or extra:
        raise RecoveryError(f"{onnx_path}: the initializers are not the recovered Detector's state "
                            f"dict: missing {missing}, unexpected {extra}{_version_note(m)}")
    with torch.no_grad():
        for k in want:
            v = numpy_helper.to_array(g.inits[k])
            if v.dtype != np.float32 or tuple(v.shape) != tuple(sd[k].shape):
                raise RecoveryError(f"{onnx_path}: initializer {k} is {v.dtype}{list(v.shape)}, the "
                                    f"recovered Detector's {list(sd[k].shape)} float32")
            sd[k].copy_(torch.from_numpy(np.array(v, copy=True)))
        for k in UNEXPORTED:
            sd[k].zero_()
    model.eval()
    if verify:
        verify_recovery(onnx_path, model, m)
    return model


def verify_recovery(onnx_path: str, model: Detector, original: Optional[onnx.ModelProto] = None) -> None:
    """Exports model with detector_export.export_detector into a temporary folder and raises
    RecoveryError unless the graph equals onnx_path's up to names (graph_difference)."""
    from .detector_export import export_detector
    original = onnx.load(onnx_path) if original is None else original
    with tempfile.TemporaryDirectory(prefix="detector-recovery-") as d:
        path = os.path.join(d, "detector.onnx")
        export_detector(model, path)
        again = onnx.load(path)
    diff = graph_difference(original, again)
    if diff is not None:
        raise RecoveryError(f"{onnx_path}: re-exporting the recovered Detector does not give the same "
                            f"graph, so the recovery is not provably exact: {diff}"
                            f"{_version_note(original)}")
