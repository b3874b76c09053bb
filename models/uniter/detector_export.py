"""Exports a Detector (detector.py) into an existing model bundle, per docs/detector-contract.md:

    detector.onnx           image [1, 3, height, width] → boxes, class_probs, features(, attr_probs)
    attribute_labels.txt    A attribute names, index 0 = __no_attribute__ (with an attribute head)
    manifest.json           gains graphs.detector (file, sha256, declared I/O) and the top-level
                            "detector" section; everything else in it is kept as it was

write_detector(..., split=True) writes the split form instead (uniter.detector_split:
detector_backbone.onnx + detector_heads.onnx with the proposal stage in Go, for ONNX Runtime's
CUDA provider; docs/detector-contract.md, "Split detectors").

The bundle must already hold the encoder (write_bundle in export.py): the detector shares
region_labels.txt with the MRC head (C = model.label_dim) and its features feed the encoder
(D = model.feature_dim), and both are checked here.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import List, Optional, Sequence, Tuple

import torch

from .detector import BUTD_PREPROCESS, BUTD_SELECTION, RESIZE_RULES, Detector, DetectorConfig
from .export import TRACER, _dynamic_axes, _io, _sha256

# Opset 13, not the encoder's 17: torchvision 0.14 registers its RoIAlign symbolic for opset 11
# and emits a RoiAlign node without coordinate_transformation_mode. Up to opset 15 RoiAlign has
# no such attribute and means aligned=False (BUTD's convention, which ONNX Runtime implements);
# from opset 16 the very same node defaults to "half_pixel", and ONNX Runtime silently shifts
# every RoI by half a feature cell (boxes off by tens of pixels). Everything else the graph
# needs (TopK with a tensor k, NonMaxSuppression, Softmax over one axis) exists at 13.
DETECTOR_OPSET = 13
NO_ATTRIBUTE = "__no_attribute__"


def detector_io(cfg: DetectorConfig) -> Tuple[List[dict], List[dict]]:
    inputs = [_io("image", "float32", [1, 3, "height", "width"])]
    outputs = [_io("boxes", "float32", ["proposals", 4]),
               _io("class_probs", "float32", ["proposals", cfg.num_classes]),
               _io("features", "float32", ["proposals", cfg.feature_dim])]
    if cfg.num_attributes:
        outputs.append(_io("attr_probs", "float32", ["proposals", cfg.num_attributes]))
    return inputs, outputs


def export_detector(model: Detector, path: str, example_hw: Tuple[int, int] = (96, 128)):
    """Writes the detector graph at DETECTOR_OPSET with dynamic height/width and proposal count;
    returns (inputs, outputs) as the manifest declares them."""
    pool = model.roi_heads.box_roi_pool
    if pool.sampling_ratio < 0:
        raise ValueError("ONNX RoiAlign has no negative sampling_ratio")
    inputs, outputs = detector_io(model.config)
    g = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, *example_hw, generator=g) * 50
    export_detector_graph(model, (example,), path, inputs, outputs)
    return inputs, outputs


def export_detector_graph(module: torch.nn.Module, args: tuple, path: str, inputs, outputs) -> None:
    """torch.onnx.export of a detector graph (whole, or a split one's half) at DETECTOR_OPSET
    with the tracer, the declared names and their symbolic dims dynamic."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Known harmless export noise: torchvision's RoI ops assert on traced shapes, _topk_min
        # and BoxCoder make real constants, and the exporter cannot type prim::Constant nodes it
        # folds anyway.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "The shape inference of prim::Constant")
        torch.onnx.export(module, args, path, opset_version=DETECTOR_OPSET,
                          input_names=[i["name"] for i in inputs],
                          output_names=[o["name"] for o in outputs],
                          dynamic_axes=_dynamic_axes(inputs + outputs),
                          do_constant_folding=True, **TRACER)


def with_detector_section(manifest: dict, sec: dict) -> dict:
    """manifest with its "detector" section set to sec, placed right after "graphs" (the other
    keys keep their order); a new dict."""
    out = {}
    for k, v in manifest.items():
        if k == "detector":
            continue
        out[k] = v
        if k == "graphs":
            out["detector"] = sec
    out.setdefault("detector", sec)
    return out


def detector_section(model: Detector, preprocess: dict, selection: dict,
                     with_attributes: bool) -> dict:
    outputs = {"boxes": "boxes", "class_probs": "class_probs", "features": "features"}
    if with_attributes:
        outputs["attribute_probs"] = "attr_probs"
    sec = {
        "graph": "detector",
        "input": "image",
        "outputs": outputs,
        "preprocess": {
            "channel_order": preprocess["channel_order"],
            "pixel_means": [float(v) for v in preprocess["pixel_means"]],
            "pixel_std": [float(v) for v in preprocess["pixel_std"]],
            "shorter_side": int(preprocess["shorter_side"]),
            "longer_side_max": int(preprocess["longer_side_max"]),
            "resize": preprocess["resize"],
        },
        "background_index": 0,
        "labels": "region_labels.txt",
    }
    if preprocess.get("resize_rule"):  # absent means "shorter_side", the default
        sec["preprocess"]["resize_rule"] = preprocess["resize_rule"]
    if preprocess.get("min_input_side"):  # absent means 0: any resized size
        sec["preprocess"]["min_input_side"] = int(preprocess["min_input_side"])
    if with_attributes:
        sec["attributes"] = "attribute_labels.txt"
    sec["selection"] = {"nms_iou": float(selection["nms_iou"]),
                        "min_confidence": float(selection["min_confidence"]),
                        "min_boxes": int(selection["min_boxes"]),
                        "max_boxes": int(selection["max_boxes"])}
    if selection.get("min_box_size", 0):  # absent means 0: keep every proposal
        sec["selection"]["min_box_size"] = float(selection["min_box_size"])
    return sec


def _check(preprocess: dict, selection: dict) -> None:
    if set(preprocess) - {"resize_rule", "min_input_side"} != set(BUTD_PREPROCESS):
        raise ValueError(f"preprocess keys {sorted(preprocess)}, want {sorted(BUTD_PREPROCESS)} "
                         "and optionally resize_rule and min_input_side")
    if not 0 <= preprocess.get("min_input_side", 0) <= preprocess["shorter_side"]:
        raise ValueError("min_input_side must be in [0, shorter_side]")
    if preprocess.get("resize_rule", "shorter_side") not in RESIZE_RULES:
        raise ValueError(f"resize_rule {preprocess['resize_rule']!r}: want one of {', '.join(RESIZE_RULES)}")
    if preprocess["channel_order"] not in ("RGB", "BGR"):
        raise ValueError("channel_order is RGB or BGR")
    if preprocess["resize"] != "bilinear":
        raise ValueError("resize: only bilinear is defined")
    if len(preprocess["pixel_means"]) != 3 or len(preprocess["pixel_std"]) != 3:
        raise ValueError("pixel_means and pixel_std have 3 entries")
    if any(v <= 0 for v in preprocess["pixel_std"]):
        raise ValueError("pixel_std must be positive")
    if not 0 < preprocess["shorter_side"] <= preprocess["longer_side_max"]:
        raise ValueError("need 0 < shorter_side ≤ longer_side_max")
    if set(selection) - {"min_box_size"} != set(BUTD_SELECTION):
        raise ValueError(f"selection keys {sorted(selection)}, want {sorted(BUTD_SELECTION)} "
                         "and optionally min_box_size")
    if not 0 <= selection.get("min_box_size", 0) < float("inf"):
        raise ValueError("min_box_size is a finite size >= 0 (original-image pixels)")
    if not 0 <= selection["nms_iou"] <= 1 or not 0 <= selection["min_confidence"] <= 1:
        raise ValueError("nms_iou and min_confidence are in [0, 1]")
    if not 0 <= selection["min_boxes"] <= selection["max_boxes"] or selection["max_boxes"] < 1:
        raise ValueError("need 0 ≤ min_boxes ≤ max_boxes, max_boxes ≥ 1")


def write_detector(model: Detector, bundle_dir: str, preprocess: Optional[dict] = None,
                   selection: Optional[dict] = None, labels: Optional[Sequence[str]] = None,
                   attributes: Optional[Sequence[str]] = None, split: bool = False) -> dict:
    """Exports model into bundle_dir (which already has manifest.json and region_labels.txt);
    returns the updated manifest.

    split: write the split export instead of detector.onnx (uniter.detector_split):
    detector_backbone.onnx and detector_heads.onnx, graphs.detector_backbone / detector_heads,
    and the detector section with graph "detector_backbone", no "boxes" output and a
    "proposals" section for the Go proposal stage; a stale detector.onnx and graphs.detector
    are removed. Without split, a stale split export is removed likewise.

    preprocess / selection default to BUTD's (600/1000, 0.3/0.2/10/100). labels, when given,
    must equal region_labels.txt (C names, background first). attributes: A names with
    attributes[0] == "__no_attribute__", required exactly when the model has an attribute head.
    """
    preprocess = dict(BUTD_PREPROCESS if preprocess is None else preprocess)
    selection = dict(BUTD_SELECTION if selection is None else selection)
    _check(preprocess, selection)
    cfg = model.config
    mpath = os.path.join(bundle_dir, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    dims = manifest["model"]
    if cfg.num_classes != dims["label_dim"]:
        raise ValueError(f"detector has {cfg.num_classes} classes, bundle label_dim is "
                         f"{dims['label_dim']}")
    if cfg.feature_dim != dims["feature_dim"]:
        raise ValueError(f"detector features are {cfg.feature_dim}-d, bundle feature_dim is "
                         f"{dims['feature_dim']}")
    if manifest.get("regions", {}).get("background_index", 0) != 0:
        raise ValueError("the detector's background is class 0")
    with open(os.path.join(bundle_dir, "region_labels.txt"), encoding="utf-8") as f:
        have = f.read().splitlines()
    if len(have) != cfg.num_classes:
        raise ValueError(f"region_labels.txt has {len(have)} lines, detector {cfg.num_classes}")
    if labels is not None and list(labels) != have:
        raise ValueError("labels differ from the bundle's region_labels.txt")
    with_attr = cfg.num_attributes > 0
    if with_attr:
        if attributes is None or len(attributes) != cfg.num_attributes:
            raise ValueError(f"need {cfg.num_attributes} attribute names")
        if attributes[0] != NO_ATTRIBUTE:
            raise ValueError(f"attribute 0 must be {NO_ATTRIBUTE!r}")
        if any(not a or "\n" in a for a in attributes):
            raise ValueError("attribute names are non-empty single lines")
    elif attributes:
        raise ValueError("attributes given for a detector without an attribute head")

    from . import detector_split
    if split:
        result = detector_split.export_split(model, bundle_dir)
    else:
        detector_split.remove_split(manifest, bundle_dir)
        path = os.path.join(bundle_dir, "detector.onnx")
        inputs, outputs = export_detector(model, path)
    apath = os.path.join(bundle_dir, "attribute_labels.txt")
    if with_attr:
        with open(apath, "w", encoding="utf-8") as f:
            f.write("\n".join(attributes) + "\n")
    elif os.path.exists(apath):
        os.remove(apath)
    sec = detector_section(model, preprocess, selection, with_attr)
    if split:
        manifest = detector_split.install_split(manifest, bundle_dir, result, sec)
    else:
        manifest["graphs"]["detector"] = {"file": "detector.onnx", "sha256": _sha256(path),
                                          "inputs": inputs, "outputs": outputs}
        manifest = with_detector_section(manifest, sec)
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
