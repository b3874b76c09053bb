"""The split detector export: two ONNX graphs whose every node ONNX Runtime's CUDA provider runs,
with the proposal bookkeeping between them done in Go (docs/detector-contract.md).

Why: the single detector graph (detector_export.py, butd_export.py) computes its proposals inside
the graph — Shape / Range / TopK / NonMaxSuppression / NonZero / ConstantOfShape / Expand — which
the CUDA provider places on the CPU (ONNX Runtime 1.29's plugin CUDA provider crashes on a graph
split across devices), and the bottom-up-attention graph's MaxRoiPool has no CUDA kernel at all.
The split export cuts the network where those start:

    detector_backbone.onnx   image [1, 3, height, width]
                             → feature_map [1, C, feature_height, feature_width]
                               objectness [1, A, feature_height, feature_width]     (raw logits)
                               anchor_deltas [1, 4A, feature_height, feature_width] (raw deltas)
    Go                       anchors, top-k, decoding, clipping (, min-size), NMS, post-NMS top-n
                             (``propose`` below is the reference); for BUTD also the RoI max
                             pooling (``roi_pool`` below)
    detector_heads.onnx      Detector (RoIAlign, which the CUDA provider has):
                               feature_map + rois [proposals, 5] (0, x1, y1, x2, y2 in input pixels)
                             BUTDDetector: pooled [proposals, C, S, S] (RoIPool at 1/16)
                             → class_probs, features(, attr_probs) as the single graph gives them

Go reads objectness[0, a, y, x] and anchor_deltas[0, a·4 + c, y, x]; anchor (y, x, a) (the
index (y·w + x)·A + a) is cell_anchors[a] + (sx, sy, sx, sy) with, in float32,
sx = float32(x)·float32(stride) + float32(anchor_offset·stride) (the offset product in float64,
rounded once), likewise sy. The manifest's detector section gains "proposals" (see
``export_split``), what ``proposal_spec`` returns plus the tensor names.

    PYTHONPATH=models python3 -m uniter.detector_split fixture --bundle testdata/bundles/tiny-random --out DIR

copies an encoder bundle and gives it the split export of the tiny fixture detector
(uniter.fixtures.detector.make_detector(seed)), keeping the rest of its detector section, so
that the single-graph bundle and its split twin can be compared on the same weights.

    PYTHONPATH=models python3 -m uniter.detector_split bundle IN OUT

does the same for any bundle whose detector.onnx was exported from a uniter.detector.Detector
(detector_export.write_detector), without its PyTorch checkpoint: ``recover_detector``
(uniter.detector_recover) rebuilds
the Detector from the graph (its DetectorConfig from the Conv / RoiAlign / TopK /
NonMaxSuppression nodes and constants, its weights from the initializers, which carry the
state-dict names), then proves the recovery exact by exporting the recovered model again with
detector_export.export_detector and requiring the same graph up to tensor and node names (same
ops, attributes, wiring, bit-identical initializers and constants). Only then is OUT written:
IN copied, the detector replaced by the split export of the recovered model, the rest of the
detector section (preprocess, selection, labels, attributes, description, domain) kept, and
provenance.detector_split recording what was done. Not in the single graph, hence not
recovered: the per-class box regression (roi_heads.box_predictor.bbox_pred, unused at
inference; zeros in the recovered model) and the training-only settings (DetectorConfig's
*_train, matcher fg/bg IoU thresholds, sample sizes and fractions: the defaults).
``cuda_problems(onnx_model)`` is the static placement check the split graphs pass and the single
graph fails.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from .detector import Detector, DetectorConfig
from .detector_export import DETECTOR_OPSET, export_detector_graph, with_detector_section
from .detector_recover import BUTD_HINT, recover_detector
from .export import _io, _sha256

BACKBONE = "detector_backbone"
HEADS = "detector_heads"
SPLIT_GRAPHS = (BACKBONE, HEADS)
FEATURE_MAP, OBJECTNESS, ANCHOR_DELTAS = "feature_map", "objectness", "anchor_deltas"
ROIS, POOLED = "rois", "pooled"
FMAP_DIMS = ["feature_height", "feature_width"]


def _is_butd(model) -> bool:
    from .butd import BUTDDetector
    return isinstance(model, BUTDDetector)


# ---------------------------------------------------------------------- what Go needs

def proposal_spec(model) -> dict:
    """Everything the Go stage needs to turn the RPN head's outputs into ``model.proposals()``.

    {"stride", "anchor_offset", "cell_anchors" [A][4] (float32 values; A in the RPN head's
    channel order), "box_weights" [wx, wy, ww, wh], "scale_clamp" (dw, dh clamped from above),
    "pre_nms_top_n", "post_nms_top_n", "nms_iou"} and, for a BUTDDetector only, "min_size"
    (its proposals() drops boxes whose width or height is not > min_size after clipping; the
    torchvision-built Detector keeps every box)."""
    if _is_butd(model):
        from .butd import FEATURE_STRIDE, SCALE_CLAMP
        cfg = model.config
        ag = model.proposal_generator.anchor_generator
        return {
            "stride": int(FEATURE_STRIDE),
            "anchor_offset": float(ag.offset),
            "cell_anchors": [[float(v) for v in row] for row in ag.cell_anchors[0].detach().float().tolist()],
            "box_weights": [float(v) for v in cfg.rpn_bbox_reg_weights],
            "scale_clamp": float(SCALE_CLAMP),
            "pre_nms_top_n": int(cfg.pre_nms_topk_test),
            "post_nms_top_n": int(cfg.post_nms_topk_test),
            "nms_iou": float(cfg.rpn_nms_thresh),
            "min_size": float(cfg.rpn_min_size),
        }
    if not isinstance(model, Detector):
        raise TypeError(f"proposal_spec: a Detector or BUTDDetector, not {type(model).__name__}")
    cfg = model.config
    coder = model.rpn.box_coder
    return {
        "stride": int(cfg.stride),
        "anchor_offset": 0.0,
        "cell_anchors": [[float(v) for v in row] for row in model.cell_anchors.detach().float().tolist()],
        "box_weights": [float(v) for v in coder.weights],
        "scale_clamp": float(coder.bbox_xform_clip),
        "pre_nms_top_n": int(cfg.rpn_pre_nms_top_n_test),
        "post_nms_top_n": int(cfg.rpn_post_nms_top_n_test),
        "nms_iou": float(cfg.rpn_nms_thresh),
    }


# ---------------------------------------------------------------------- the two graphs

class DetectorBackbone(nn.Module):
    """image → (feature_map, objectness, anchor_deltas): the backbone and the RPN head's raw
    conv outputs, for a Detector or a BUTDDetector."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.butd = _is_butd(model)

    def forward(self, image: Tensor):
        m = self.model
        feat = m.backbone(image)
        if self.butd:
            obj, deltas = m.proposal_generator.rpn_head(feat)
        else:
            objs, deltass = m.rpn.head([feat])
            obj, deltas = objs[0], deltass[0]
        return feat, obj, deltas


class RoIAlignHeads(nn.Module):
    """Detector: (feature_map, rois) → class_probs, features(, attr_probs), the math of
    Detector.region_features and the softmaxes of Detector.forward."""

    def __init__(self, model: Detector):
        super().__init__()
        self.model = model

    def forward(self, feature_map: Tensor, rois: Tensor):
        m = self.model
        pooled = m.roi_heads.box_roi_pool.pool(feature_map, rois)
        x = m.roi_heads.box_head(pooled)
        outs = [F.softmax(m.roi_heads.box_predictor.cls_score(x), dim=1), x]
        if m.attr_score is not None:
            outs.append(F.softmax(m.attr_score(x), dim=1))
        return tuple(outs)


class PooledHeads(nn.Module):
    """BUTDDetector: pooled [P, C, S, S] (torchvision roi_pool of res4 at 1/16) → res5 → mean
    → class_probs, features, attr_probs as BUTDDetector.forward gives them (last_first)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pooled: Tensor):
        from .butd import last_first
        m = self.model
        x = m.roi_heads.res5(pooled).mean(dim=(2, 3))
        bp = m.roi_heads.box_predictor
        logits = bp.cls_score(x)
        outs = [last_first(F.softmax(logits, dim=1)), x]
        if m.config.attr:
            outs.append(last_first(F.softmax(bp.attribute_logits(x, logits), dim=1)))
        return tuple(outs)


def _dims(model) -> dict:
    """C (feature-map channels), A (anchors per cell), classes, D, attributes (0 = none)."""
    if _is_butd(model):
        cfg = model.config
        return {"channels": cfg.res4_channels, "anchors": cfg.num_anchors,
                "classes": cfg.num_class_outputs, "feature_dim": cfg.feature_dim,
                "attributes": cfg.num_attr_outputs, "pool": cfg.pooler_resolution}
    cfg = model.config
    return {"channels": model.backbone.out_channels, "anchors": int(model.cell_anchors.shape[0]),
            "classes": cfg.num_classes, "feature_dim": cfg.feature_dim,
            "attributes": cfg.num_attributes}


def split_io(model) -> Dict[str, Tuple[List[dict], List[dict]]]:
    """The declared (inputs, outputs) of both graphs, in the manifest's _io form."""
    d = _dims(model)
    fm = _io(FEATURE_MAP, "float32", [1, d["channels"]] + FMAP_DIMS)
    backbone = ([_io("image", "float32", [1, 3, "height", "width"])],
                [fm, _io(OBJECTNESS, "float32", [1, d["anchors"]] + FMAP_DIMS),
                 _io(ANCHOR_DELTAS, "float32", [1, 4 * d["anchors"]] + FMAP_DIMS)])
    if _is_butd(model):
        s = d["pool"]
        heads_in = [_io(POOLED, "float32", ["proposals", d["channels"], s, s])]
    else:
        heads_in = [fm, _io(ROIS, "float32", ["proposals", 5])]
    heads_out = [_io("class_probs", "float32", ["proposals", d["classes"]]),
                 _io("features", "float32", ["proposals", d["feature_dim"]])]
    if d["attributes"]:
        heads_out.append(_io("attr_probs", "float32", ["proposals", d["attributes"]]))
    return {BACKBONE: backbone, HEADS: (heads_in, heads_out)}


def proposals_section(model) -> dict:
    """The manifest's detector.proposals: tensor names, proposal_spec and how RoIs are pooled."""
    sec = {"heads_graph": HEADS, "feature_map": FEATURE_MAP, "objectness": OBJECTNESS,
           "anchor_deltas": ANCHOR_DELTAS, **proposal_spec(model)}
    if _is_butd(model):
        from .butd import FEATURE_STRIDE
        sec["roi_pool"] = {"input": POOLED, "output_size": int(model.config.pooler_resolution),
                           "spatial_scale": 1.0 / FEATURE_STRIDE}
    else:
        sec["rois"] = ROIS
    return sec


def export_split(model, out_dir: str, example_hw: Tuple[int, int] = (96, 128)) -> dict:
    """Writes detector_backbone.onnx and detector_heads.onnx into out_dir at DETECTOR_OPSET
    (dynamic image size, feature-map size and proposal count); returns
    {"graphs": {name: {"file", "sha256", "inputs", "outputs"}}, "proposals": SECTION}."""
    butd = _is_butd(model)
    if not butd:
        if not isinstance(model, Detector):
            raise TypeError(f"export_split: a Detector or BUTDDetector, not {type(model).__name__}")
        if model.roi_heads.box_roi_pool.sampling_ratio < 0:
            raise ValueError("ONNX RoiAlign has no negative sampling_ratio")
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    io = split_io(model)
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, *example_hw, generator=g) * 50
    backbone = DetectorBackbone(model).eval()
    bpath = os.path.join(out_dir, BACKBONE + ".onnx")
    export_detector_graph(backbone, (image,), bpath, *io[BACKBONE])
    hpath = os.path.join(out_dir, HEADS + ".onnx")
    if butd:
        s = model.config.pooler_resolution
        # Three proposals: the tracer runs res5 (about 3 GMAC a proposal at full size) once.
        pooled = torch.rand(3, model.config.res4_channels, s, s, generator=g)
        export_detector_graph(PooledHeads(model), (pooled,), hpath, *io[HEADS])
    else:
        with torch.no_grad():
            feat = backbone(image)[0]
        h, w = example_hw
        rois = torch.tensor([[0.0, 4.0, 8.0, 0.5 * w, 0.6 * h], [0.0, 30.0, 20.0, w - 3.0, h - 1.0],
                             [0.0, 0.0, 0.0, float(w), float(h)]])
        export_detector_graph(RoIAlignHeads(model), (feat, rois), hpath, *io[HEADS])
    graphs = {}
    for name, path in ((BACKBONE, bpath), (HEADS, hpath)):
        inputs, outputs = io[name]
        graphs[name] = {"file": os.path.basename(path), "sha256": _sha256(path),
                        "inputs": inputs, "outputs": outputs}
    return {"graphs": graphs, "proposals": proposals_section(model)}


# ---------------------------------------------------------------------- manifest plumbing

def split_detector_section(sec: dict, proposals: dict) -> dict:
    """A single-graph detector section made split: graph = detector_backbone, outputs without
    "boxes" (Go computes them), "proposals" right after "outputs"; the other keys kept in
    order."""
    out = {}
    for k, v in sec.items():
        if k == "proposals":
            continue
        if k == "graph":
            v = BACKBONE
        elif k == "outputs":
            v = {o: n for o, n in v.items() if o != "boxes"}
        out[k] = v
        if k == "outputs":
            out["proposals"] = proposals
    out.setdefault("proposals", proposals)
    return out


def install_split(manifest: dict, bundle_dir: str, result: dict, section: dict) -> dict:
    """Puts export_split's result into a loaded manifest: removes graphs.detector and
    detector.onnx, adds graphs.detector_backbone / detector_heads and the split detector
    section (made from section, a single-graph one) right after "graphs". Returns the new
    manifest (not written)."""
    stale = os.path.join(bundle_dir, "detector.onnx")
    if os.path.exists(stale):
        os.remove(stale)
    graphs = {k: v for k, v in manifest.get("graphs", {}).items()
              if k != "detector" and k not in SPLIT_GRAPHS}
    graphs.update(result["graphs"])
    manifest = dict(manifest, graphs=graphs)
    return with_detector_section(manifest, split_detector_section(section, result["proposals"]))


def remove_split(manifest: dict, bundle_dir: str) -> None:
    """Drops a stale split export (files and graph entries) before a single-graph one."""
    for name in SPLIT_GRAPHS:
        manifest.get("graphs", {}).pop(name, None)
        path = os.path.join(bundle_dir, name + ".onnx")
        if os.path.exists(path):
            os.remove(path)
    if isinstance(manifest.get("detector"), dict):
        manifest["detector"].pop("proposals", None)


# ---------------------------------------------------------------------- placement check

# Ops the CUDA provider places on the CPU, has no kernel for, or that carry subgraphs.
CUDA_DENY = {
    "Shape": "a shape computation (the CUDA provider runs it on the CPU)",
    "Size": "a shape computation (the CUDA provider runs it on the CPU)",
    "NonZero": "data-dependent output size (computed on the CPU)",
    "TopK": "proposal top-k (K is a CPU input; the proposal stage belongs in Go)",
    "NonMaxSuppression": "NMS has no CUDA kernel",
    "MaxRoiPool": "MaxRoiPool has no CUDA kernel",
    "Range": "Range's inputs are CPU inputs (a shape computation)",
    "ConstantOfShape": "its shape input is read on the CPU",
    "Expand": "its shape input is read on the CPU",
    "Where": "proposal bookkeeping (a Where on shape tensors runs on the CPU)",
    "Loop": "control flow (a subgraph)",
    "If": "control flow (a subgraph)",
    "Scan": "control flow (a subgraph)",
    "Tile": "its repeats input is read on the CPU",
    "ReduceMin": "proposal clipping against the image size belongs in Go",
    "Min": "proposal clipping against the image size belongs in Go",
}
# Ops the split graphs emit, each with a CUDA kernel at opset 13.
CUDA_ALLOW = frozenset({
    "Conv", "Relu", "MaxPool", "Add", "Sub", "Mul", "Div", "Gemm", "MatMul", "Flatten", "Softmax",
    "Gather", "Cast", "Squeeze", "Unsqueeze", "Concat", "Slice", "Reshape", "Transpose",
    "ReduceMean", "RoiAlign", "ArgMax", "Identity", "Constant", "BatchNormalization", "Sigmoid",
    "Clip", "Exp", "AveragePool",
})
# Inputs the CUDA provider reads on the CPU: they must be initializers or Constant outputs.
SHAPE_INPUTS = {
    "Reshape": {1: "shape"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Clip": {1: "min", 2: "max"},
    "Expand": {1: "shape"},
    "Tile": {1: "repeats"},
    "Pad": {1: "pads", 2: "constant_value"},
    "Resize": {1: "roi", 2: "scales", 3: "sizes"},
    "Upsample": {1: "scales"},
    "TopK": {1: "K"},
    "ReduceSum": {1: "axes"},
    "Split": {1: "split"},
    "OneHot": {1: "depth"},
    "ConstantOfShape": {0: "input"},
    "Range": {0: "start", 1: "limit", 2: "delta"},
}


def cuda_problems(model_proto) -> List[str]:
    """Static check that every node of an ONNX model (a ModelProto or a path) could run on ONNX
    Runtime's CUDA provider under strict placement: no op from CUDA_DENY, only ops from
    CUDA_ALLOW (default domain), and every shape-like input (SHAPE_INPUTS: Reshape's shape,
    Slice's starts/ends/axes/steps, Squeeze/Unsqueeze axes, Clip min/max, …) an initializer or
    a Constant node's output. Returns one line per problem naming the node and why; empty when
    the graph passes."""
    m = onnx.load(model_proto) if isinstance(model_proto, (str, os.PathLike)) else model_proto
    g = m.graph
    const = {i.name for i in g.initializer}
    const.update(o for n in g.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                 for o in n.output)
    problems = []
    for i, n in enumerate(g.node):
        who = f"node {n.name or '#' + str(i)} ({n.op_type})"
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{who}: op of domain {n.domain!r}, not the default ONNX domain")
            continue
        if n.op_type in CUDA_DENY:
            problems.append(f"{who}: {CUDA_DENY[n.op_type]}")
        elif n.op_type not in CUDA_ALLOW:
            problems.append(f"{who}: {n.op_type} is not on the list of ops checked to run on CUDA")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in n.attribute) and n.op_type not in CUDA_DENY:
            problems.append(f"{who}: carries a subgraph")
        for idx, what in SHAPE_INPUTS.get(n.op_type, {}).items():
            if idx < len(n.input) and n.input[idx] and n.input[idx] not in const:
                problems.append(f"{who}: input {idx} ({what}) {n.input[idx]!r} is computed in the "
                                "graph; the CUDA provider reads it on the CPU (needs an initializer "
                                "or a Constant)")
    return problems


# ---------------------------------------------------------------------- the Go stage (reference)

def anchors_np(spec: dict, fh: int, fw: int) -> np.ndarray:
    """Anchors [fh·fw·A, 4] float32 ordered (y, x, a), with the models' float32 arithmetic."""
    s = np.float32(spec["stride"])
    off = np.float32(float(spec["anchor_offset"]) * float(spec["stride"]))
    sx = np.arange(fw, dtype=np.float32) * s + off
    sy = np.arange(fh, dtype=np.float32) * s + off
    cell = np.asarray(spec["cell_anchors"], dtype=np.float32).reshape(-1, 4)
    gy, gx = np.meshgrid(sy, sx, indexing="ij")
    shifts = np.stack([gx, gy, gx, gy], axis=-1).reshape(-1, 1, 4)
    return (shifts + cell[None]).reshape(-1, 4).astype(np.float32)


def nms_f32(boxes: np.ndarray, iou: float) -> List[int]:
    """Greedy NMS over boxes already in candidate order, torchvision's CPU kernel arithmetic:
    areas (x2 − x1)(y2 − y1) and IoU inter / (areaA + areaB − inter) in float32, suppress when
    float64(IoU) > iou (a 0/0 IoU is NaN and suppresses nothing)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    n = len(b)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    zero = np.float32(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            j = np.arange(i + 1, n)
            j = j[~suppressed[j]]
            if j.size == 0:
                continue
            w = np.maximum(zero, np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]))
            h = np.maximum(zero, np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]))
            inter = w * h
            ovr = inter / (areas[i] + areas[j] - inter)
            suppressed[j[ovr.astype(np.float64) > float(iou)]] = True
    return keep


def propose(spec: dict, objectness, deltas, image_h: int, image_w: int) -> np.ndarray:
    """The Go stage, in numpy: the RPN head outputs (objectness [1, A, h, w] or [A, h, w],
    deltas [1, 4A, h, w] or [4A, h, w]) of an image_h × image_w input → proposals [P, 4] float32
    in input pixels, as model.proposals() computes them (see the module docstring)."""
    obj = np.asarray(objectness, dtype=np.float32)
    d = np.asarray(deltas, dtype=np.float32)
    obj = obj.reshape(obj.shape[-3:])
    A, fh, fw = obj.shape
    d = d.reshape(A, 4, fh, fw)
    scores = obj.transpose(1, 2, 0).reshape(-1)                   # (y, x, a)
    d = d.transpose(2, 3, 0, 1).reshape(-1, 4)
    anchors = anchors_np(spec, fh, fw)
    n = scores.shape[0]
    k = min(int(spec["pre_nms_top_n"]), n)
    order = np.argsort(-scores, kind="stable")[:k]                 # ties: lower index first
    a, d = anchors[order], d[order]
    wx, wy, ww, wh = (np.float32(v) for v in spec["box_weights"])
    clamp = np.float32(spec["scale_clamp"])
    half = np.float32(0.5)
    widths = a[:, 2] - a[:, 0]
    heights = a[:, 3] - a[:, 1]
    ctr_x = a[:, 0] + half * widths
    ctr_y = a[:, 1] + half * heights
    dx, dy = d[:, 0] / wx, d[:, 1] / wy
    dw = np.minimum(d[:, 2] / ww, clamp)
    dh = np.minimum(d[:, 3] / wh, clamp)
    px, py = dx * widths + ctr_x, dy * heights + ctr_y
    # exp in float64, rounded once to float32 (Go: float32(math.Exp(float64(d)))): closer to
    # torch's float32 exp than numpy's float32 exp, which is off by an ulp or more far more often.
    with np.errstate(over="ignore"):
        ew = np.exp(dw.astype(np.float64)).astype(np.float32)
        eh = np.exp(dh.astype(np.float64)).astype(np.float32)
    pw, ph = ew * widths, eh * heights
    boxes = np.stack([px - half * pw, py - half * ph, px + half * pw, py + half * ph], axis=1)
    limit = np.array([image_w, image_h, image_w, image_h], dtype=np.float32)
    boxes = np.minimum(np.maximum(boxes, np.float32(0)), limit).astype(np.float32)
    if "min_size" in spec:
        m = np.float32(spec["min_size"])
        big = ((boxes[:, 2] - boxes[:, 0]) > m) & ((boxes[:, 3] - boxes[:, 1]) > m)
        boxes = boxes[big]
    keep = nms_f32(boxes, spec["nms_iou"])[: int(spec["post_nms_top_n"])]
    return boxes[keep].reshape(-1, 4)


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def roi_pool(feature_map, boxes, output_size: int, spatial_scale: float) -> np.ndarray:
    """Caffe / torchvision RoIPool (max), written independently: feature_map [C, h, w] (or
    [1, C, h, w]), boxes [P, 4] (x1, y1, x2, y2 in input pixels) → [P, C, S, S] float32.

    Per box: start/end = round-half-away-from-zero(float32(coordinate · spatial_scale)); RoI
    size max(end − start + 1, 1); bin size float32(size) / S; bin p spans
    floor(float32(p)·bin) .. ceil(float32(p + 1)·bin) (float32 products), offset by the start
    and clipped to [0, h] / [0, w]; an empty bin is 0, else the maximum over it."""
    f = np.asarray(feature_map, dtype=np.float32)
    f = f.reshape(f.shape[-3:])
    C, h, w = f.shape
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    S = int(output_size)
    scale = np.float32(spatial_scale)
    out = np.zeros((len(b), C, S, S), dtype=np.float32)
    s32 = np.float32(S)
    for p, box in enumerate(b):
        x1, y1, x2, y2 = (_round_half_away(float(np.float32(v) * scale)) for v in box)
        bin_h = np.float32(max(y2 - y1 + 1, 1)) / s32
        bin_w = np.float32(max(x2 - x1 + 1, 1)) / s32
        for ph in range(S):
            hs = min(max(int(math.floor(np.float32(ph) * bin_h)) + y1, 0), h)
            he = min(max(int(math.ceil(np.float32(ph + 1) * bin_h)) + y1, 0), h)
            for pw in range(S):
                ws = min(max(int(math.floor(np.float32(pw) * bin_w)) + x1, 0), w)
                we = min(max(int(math.ceil(np.float32(pw + 1) * bin_w)) + x1, 0), w)
                if he > hs and we > ws:
                    out[p, :, ph, pw] = f[:, hs:he, ws:we].max(axis=(1, 2))
    return out


# ---------------------------------------------------------------------- writing a split copy

def _write_split_copy(bundle: str, out: str, model: Detector, provenance: dict,
                      default_section=None) -> Tuple[dict, dict]:
    """Copies bundle to out (without its single-graph and split detector files) and gives the
    copy the split export of model: graphs.detector_backbone / detector_heads, the detector
    section made split from the bundle's own (or default_section(out, model) when the bundle
    has none), provenance.detector_split = provenance plus "exported". Returns (manifest
    written, export_split's result)."""
    src_manifest = os.path.join(bundle, "manifest.json")
    with open(src_manifest) as f:
        manifest = json.load(f)
    sec = manifest.get("detector")
    single_file = None
    if isinstance(sec, dict) and sec.get("graph") in manifest.get("graphs", {}):
        single_file = manifest["graphs"][sec["graph"]].get("file")
    cfg = model.config
    dims = manifest["model"]
    if cfg.num_classes != dims["label_dim"] or cfg.feature_dim != dims["feature_dim"]:
        raise ValueError(f"the detector has {cfg.num_classes} classes and {cfg.feature_dim}-d "
                         f"features, the bundle label_dim {dims['label_dim']} and feature_dim "
                         f"{dims['feature_dim']}")
    if sec is None and default_section is None:
        raise ValueError(f"{bundle}: the manifest has no detector section")
    skip = {"detector.onnx", *(g + ".onnx" for g in SPLIT_GRAPHS)}
    if single_file:
        skip.add(single_file)
    shutil.copytree(bundle, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*sorted(skip)))
    if sec is None:
        sec = default_section(out, model)
    elif sec.get("graph") not in (None, "detector"):   # install_split drops graphs.detector
        manifest["graphs"].pop(sec["graph"], None)
    result = export_split(model, out)
    manifest = install_split(manifest, out, result, sec)
    manifest.setdefault("provenance", {})["detector_split"] = {
        **provenance,
        "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest, result


# ---------------------------------------------------------------------- the bundle command

def split_bundle(bundle: str, out: str, log=print) -> dict:
    """The bundle command: recovers bundle's single-graph Detector (recover_detector, verified
    exact), then writes out: bundle copied, its detector replaced by the split export of the
    recovered model. Refuses (ValueError, nothing written) when out exists and is not empty,
    when the bundle has no detector or a split one already, and when its detector.onnx is not
    a uniter.detector.Detector export. Returns the manifest written."""
    src_manifest = os.path.join(bundle, "manifest.json")
    if not os.path.exists(src_manifest):
        raise ValueError(f"{bundle}: no manifest.json")
    if os.path.abspath(bundle) == os.path.abspath(out):
        raise ValueError("OUT must differ from IN (the bundle is copied)")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"{out} exists and is not empty: give a new or empty folder")
    with open(src_manifest) as f:
        manifest = json.load(f)
    sec = manifest.get("detector")
    graphs = manifest.get("graphs", {})
    if isinstance(sec, dict) and ("proposals" in sec or any(g in graphs for g in SPLIT_GRAPHS)):
        raise ValueError(f"{bundle}: its detector is split already (graphs "
                         f"{', '.join(g for g in SPLIT_GRAPHS if g in graphs)})")
    if not isinstance(sec, dict) or sec.get("graph") not in graphs:
        raise ValueError(f"{bundle}: no detector (the manifest has no detector section naming one "
                         "of its graphs)")
    single = os.path.join(bundle, graphs[sec["graph"]]["file"])
    if not os.path.exists(single):
        raise ValueError(f"{single}: missing")
    recorded = graphs[sec["graph"]].get("sha256")
    digest = _sha256(single)
    if recorded and recorded != digest:
        raise ValueError(f"{single}: sha256 {digest} is not the manifest's {recorded}")
    prov_det = manifest.get("provenance", {}).get("detector")
    if isinstance(prov_det, dict) and "butd_export" in str(prov_det.get("converted_by", "")):
        raise ValueError(f"{single}: {BUTD_HINT}")
    model = recover_detector(single)          # proves itself exact, or raises
    provenance = {
        "created_by": "python3 -m uniter.detector_split bundle",
        "from": manifest.get("name"),
        "single_graph_sha256": digest,
        "recovered_config": json.loads(json.dumps(model.config.to_dict())),   # tuples → lists
        "torch_version": torch.__version__,
    }
    written, result = _write_split_copy(bundle, out, model, provenance)
    log(f"wrote {out}: {', '.join(g['file'] for g in result['graphs'].values())} (the split "
        f"export of {single}'s Detector, recovered and checked exact)")
    return written


# ---------------------------------------------------------------------- the fixture command

def _initializers(path: str) -> List[np.ndarray]:
    m = onnx.load(path)
    return [numpy_helper.to_array(t) for t in m.graph.initializer]


def same_weights(onnx_path: str, model: Detector) -> bool:
    """Whether the single-graph detector.onnx at onnx_path holds model's backbone conv weights
    (the check that a split twin is made from the bundle's own weights)."""
    inits = _initializers(onnx_path)
    for mod in model.backbone:
        if isinstance(mod, nn.Conv2d):
            w = mod.weight.detach().numpy()
            if not any(a.shape == w.shape and np.array_equal(a, w) for a in inits):
                return False
    return True


def make_split_fixture(bundle: str, out: str, seed: int, log=print) -> dict:
    """The fixture command: copies bundle to out and replaces its detector with the split export
    of uniter.fixtures.detector.make_detector(seed); returns the manifest written."""
    from .detector_export import detector_section
    from .fixtures import detector as fixture

    src_manifest = os.path.join(bundle, "manifest.json")
    if not os.path.exists(src_manifest):
        raise ValueError(f"{bundle}: no manifest.json")
    if os.path.abspath(bundle) == os.path.abspath(out):
        raise ValueError("--out must differ from --bundle (the bundle is copied)")
    model = fixture.make_detector(seed)
    single = os.path.join(bundle, "detector.onnx")
    if os.path.exists(single) and not same_weights(single, model):
        raise ValueError(f"{single} was not made by make_detector({seed}): give the --seed it was "
                         "made with (testdata/golden/detector-tiny-random.json records it)")

    def default_section(out_dir, model):   # an encoder bundle without a detector
        cfg = model.config
        if cfg.num_attributes:
            with open(os.path.join(out_dir, "attribute_labels.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(fixture.ATTRIBUTES) + "\n")
        return detector_section(model, fixture.PREPROCESS, fixture.SELECTION, cfg.num_attributes > 0)

    provenance = {
        "created_by": "python3 -m uniter.detector_split fixture",
        "detector": f"uniter.fixtures.detector.make_detector({seed})",
        "seed": seed,
        "from_bundle": os.path.normpath(bundle),
        "single_graph_sha256": _sha256(single) if os.path.exists(single) else None,
        "opset": DETECTOR_OPSET,
        "torch_version": torch.__version__,
    }
    manifest, result = _write_split_copy(bundle, out, model, provenance, default_section)
    log(f"wrote {out}: {', '.join(g['file'] for g in result['graphs'].values())} "
        f"(the split twin of {bundle}'s detector, seed {seed})")
    return manifest


def _default_seed() -> int:
    """The seed of the committed tiny-random detector (its golden records it), else 1234."""
    here = os.path.dirname(os.path.abspath(__file__))
    golden = os.path.join(here, "..", "..", "testdata", "golden", "detector-tiny-random.json")
    try:
        with open(golden) as f:
            return int(json.load(f)["seed"])
    except (OSError, ValueError, KeyError):
        return 1234


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.detector_split", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    fx = sub.add_parser("fixture", help="copy an encoder bundle with the tiny fixture detector, "
                                        "exported split")
    fx.add_argument("--bundle", required=True, help="the bundle to copy (testdata/bundles/tiny-random)")
    fx.add_argument("--out", required=True, help="where the split twin goes")
    fx.add_argument("--seed", type=int, default=None,
                    help="make_detector's seed (default: the committed fixture's, from "
                         "testdata/golden/detector-tiny-random.json)")
    bd = sub.add_parser("bundle", help="copy a bundle whose detector.onnx is a "
                                       "uniter.detector.Detector export, with that detector "
                                       "recovered from the graph (checked exact) and exported split")
    bd.add_argument("IN", help="the bundle to copy (not modified)")
    bd.add_argument("OUT", help="where the split copy goes (new or empty)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if args.command == "bundle":
            split_bundle(args.IN, args.OUT, log=log)
        else:
            seed = _default_seed() if args.seed is None else args.seed
            make_split_fixture(args.bundle, args.out, seed, log=log)
    except (ValueError, OSError) as e:
        sys.exit(f"uniter.detector_split: {e}")


if __name__ == "__main__":
    main()
