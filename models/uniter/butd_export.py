"""Converts bottom-up-attention's Faster R-CNN, as the LXMERT demo's PyTorch port ships it
(``unc-nlp/frcnn-vg-finetuned``: pytorch_model.bin + config.yaml), into a bundle's detector
(docs/detector-contract.md). The network is uniter.butd.

    cd models
    python3 -m uniter.butd_export convert-butd pytorch_model.bin config.yaml \\
        --vocab objects_vocab.txt --attributes attributes_vocab.txt --into ../bundles/uniter-base
    python3 -m uniter.butd_export convert-butd pytorch_model.bin config.yaml \\
        --vocab objects_vocab.txt --attributes attributes_vocab.txt --out DIR

``--into BUNDLE`` adds the detector to an encoder bundle (uniter.export): detector.onnx,
attribute_labels.txt, the manifest's graphs.detector entry and "detector" section, and
provenance.detector; the bundle's region_labels.txt must already hold the detector's classes
(background first) and its feature_dim must be 2048. ``--out DIR`` writes the same files into a
folder of their own, with detector.json (graphs.detector, the detector section, provenance) in
place of a manifest, and region_labels.txt.

What is read:

* config.yaml, the port's (its sections at the top level or under MODEL, as detectron2 writes
  them): the network's shape (BUTDConfig.from_port_config), the proposals' test settings
  (RPN PRE/POST_NMS_TOPK_TEST, NMS_THRESH, PROPOSAL_GENERATOR.MIN_SIZE) and the preprocessing:
  INPUT.FORMAT (BGR), MODEL.PIXEL_MEAN / PIXEL_STD, INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST; the
  manifest's preprocess gets resize_rule "detectron2" (the port's ResizeShortestEdge and its
  per-axis box mapping). Parsed with PyYAML when it is installed, else with parse_yaml (the
  subset such configs use).
  INPUT.FORMAT is taken as the graph's channel order (the Caffe weights want BGR, with the BGR
  means). Beware: the port's own img_tensorize, given a file path, reads BGR with OpenCV, swaps
  to RGB and swaps back only for "RGB", so for files it feeds the opposite of INPUT.FORMAT (for
  URLs, read with PIL, it feeds what INPUT.FORMAT says); the bundle follows the config.
* objects_vocab.txt / attributes_vocab.txt (bottom-up-attention's, which the port's demo uses):
  one class a line in the port's index order, synonyms comma-separated: the first is the name,
  lower-cased (the port's load_labels). "__background__" / "__no_attribute__" become index 0.

Selection is bottom-up-attention's (NMS 0.3, confidence 0.2, 10 to 100 regions) unless the
flags say otherwise. A real checkpoint loads key-exact or is refused with every missing and
unexpected key named (uniter.butd.load_port_weights).

``--split`` writes the split detector instead of detector.onnx (uniter.detector_split):
detector_backbone.onnx (ResNet to res4 and the RPN head) and detector_heads.onnx (res5 and the
predictor, on RoIs max-pooled in Go), the manifest's graphs.detector_backbone / detector_heads
and a detector section with "proposals" (the proposal stage's settings) and no "boxes" output:
every node then runs on ONNX Runtime's CUDA provider (docs/detector-contract.md, "Split
detectors").

The ``fixture`` command is for tests (tests/butd_test.go): random weights in the full-size
layout saved as pytorch_model.bin, a port-style config.yaml, vocabularies, a small random
UNITER encoder bundle to add the detector to, synthetic images, and PyTorch goldens. With
``--split`` it also writes bundle-split/: that encoder bundle with the same weights converted as
a split detector (the single-graph twin is what ``convert-butd --into OUT/bundle`` makes).
"""
from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import sys
import time
from types import SimpleNamespace
from typing import List, Optional, Tuple

import torch

from .butd import BUTDConfig, BUTDDetector, load_port_weights
from .detector import BUTD_SELECTION
from .detector_export import (DETECTOR_OPSET, NO_ATTRIBUTE, _check, detector_io, detector_section,
                              export_detector_graph, with_detector_section)
from .export import _sha256

BACKGROUND = "__background__"
DESCRIPTION = ("bottom-up-attention Faster R-CNN (ResNet-{depth} C4, Visual Genome: {classes} "
               "classes, {attrs}), converted from the LXMERT demo's PyTorch port")


# ---------------------------------------------------------------------- config.yaml

class YAMLSubsetError(ValueError):
    pass


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?$")
_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _scalar(text: str):
    """A plain or quoted YAML scalar, resolved the way PyYAML's YAML 1.1 resolver does for the
    forms configs use (ints, floats with a dot, .inf/.nan, booleans incl. yes/no/on/off, null)."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == "'":
        return t[1:-1].replace("''", "'")
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return ast.literal_eval(t)
    if t in ("", "~") or t.lower() == "null":
        return None
    if t.lower() in _BOOLS and t in (t.lower(), t.upper(), t.capitalize()):
        return _BOOLS[t.lower()]
    if _INT.match(t):
        return int(t.replace("_", ""))
    if _FLOAT.match(t) and any(c.isdigit() for c in t):
        return float(t.replace("_", ""))
    if t.lower() in (".inf", "+.inf", "-.inf", ".nan"):
        return float(t.lower().replace(".", ""))
    return t


def _split_flow(body: str) -> List[str]:
    parts, depth, quote, cur = [], 0, "", []
    for ch in body:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def parse_yaml(text: str):
    """A YAML subset, enough for detectron2-style config files when PyYAML is missing: block
    mappings and sequences by indentation (a sequence may sit at its key's indentation; items
    may nest, "- - 0.5"), flow sequences [a, [b, c]], plain and quoted scalars, comments,
    anchors (&a) and aliases (*a), and tags (ignored: !!python/tuple gives a list). Anything
    else (flow mappings, block scalars | and >, several documents) raises YAMLSubsetError."""
    lines: List[List] = []   # [indent, content]
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YAMLSubsetError(f"line {n}: tab indentation")
        s = _strip_comment(raw).rstrip()
        if not s.strip() or s.strip() in ("---", "..."):
            if s.strip() == "---" and lines:
                raise YAMLSubsetError(f"line {n}: several documents")
            continue
        lines.append([len(s) - len(s.lstrip()), s.strip(), n])
    anchors = {}
    pos = [0]

    def value_of(text: str, n: int, indent: int):
        """Inline value text after "key:" or "- " (may be empty: a block follows)."""
        anchor = None
        t = text
        while t and t[0] in "&!":
            head, _, t = t.partition(" ")
            if head[0] == "&":
                anchor = head[1:]
            t = t.strip()
        if t.startswith("*"):
            if t[1:] not in anchors:
                raise YAMLSubsetError(f"line {n}: unknown alias {t}")
            v = anchors[t[1:]]
        elif t == "":
            nxt = lines[pos[0]] if pos[0] < len(lines) else None
            if nxt and (nxt[0] > indent or (nxt[0] == indent and is_item(nxt[1]))):
                v = block(nxt[0])
            else:
                v = None
        elif t.startswith("["):
            if not t.endswith("]"):
                raise YAMLSubsetError(f"line {n}: a flow sequence on one line only")
            v = flow(t, n)
        elif t.startswith("{") or t[0] in "|>":
            raise YAMLSubsetError(f"line {n}: {t[0]!r} is outside the supported YAML subset")
        else:
            v = _scalar(t)
        if anchor:
            anchors[anchor] = v
        return v

    def flow(t: str, n: int):
        body = t[1:-1]
        out = []
        for part in _split_flow(body):
            p = part.strip()
            out.append(flow(p, n) if p.startswith("[") else _scalar(p))
        return out

    def is_item(content: str) -> bool:
        return content == "-" or content.startswith("- ")

    def block(indent: int):
        if is_item(lines[pos[0]][1]):
            out = []
            while pos[0] < len(lines) and lines[pos[0]][0] == indent and is_item(lines[pos[0]][1]):
                line = lines[pos[0]]
                rest = line[1][1:].lstrip()
                if rest and (is_item(rest) or _key_split(rest) is not None):
                    # "- - x" / "- key: v": the item is a block starting at rest's column
                    line[0], line[1] = indent + (len(line[1]) - len(rest)), rest
                    out.append(block(line[0]))
                else:
                    pos[0] += 1
                    out.append(value_of(rest, line[2], indent))
            return out
        out = {}
        while pos[0] < len(lines) and lines[pos[0]][0] == indent and not is_item(lines[pos[0]][1]):
            ind, content, n = lines[pos[0]]
            kv = _key_split(content)
            if kv is None:
                raise YAMLSubsetError(f"line {n}: expected 'key: value', got {content!r}")
            pos[0] += 1
            out[kv[0]] = value_of(kv[1], n, indent)
        return out

    if not lines:
        return None
    result = block(lines[0][0])
    if pos[0] != len(lines):
        raise YAMLSubsetError(f"line {lines[pos[0]][2]}: unexpected indentation")
    return result


def _key_split(content: str) -> Optional[Tuple[str, str]]:
    m = re.match(r"^('(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|[^'\"\[\]{}#&*!|>%@`][^:#]*?)\s*:(?:\s+(.*))?$",
                 content)
    if not m:
        return None
    key = _scalar(m.group(1))
    return str(key) if not isinstance(key, str) else key, (m.group(2) or "").strip()


def read_config_yaml(path: str):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        return parse_yaml(text)

    class Loader(yaml.SafeLoader):   # what the port's yaml.load accepts, minus object building
        pass
    Loader.add_constructor("tag:yaml.org,2002:python/tuple",
                           lambda loader, node: loader.construct_sequence(node))
    return yaml.load(text, Loader=Loader)


# ---------------------------------------------------------------------- vocabularies

def read_vocab(path: str, count: int, what: str) -> List[str]:
    """bottom-up-attention's vocabulary file: `count` lines, synonyms comma-separated (the first,
    lower-cased, is the name)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.split(",")[0].lower().strip() for line in lines]
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(f"{path}: empty {what} name on line {empty[0]}")
    if len(names) != count:
        raise ValueError(f"{path}: {len(names)} {what} names, the checkpoint's config has {count}")
    return names


# ---------------------------------------------------------------------- export

def butd_io(cfg: BUTDConfig):
    shape = SimpleNamespace(num_classes=cfg.num_class_outputs, feature_dim=cfg.feature_dim,
                            num_attributes=cfg.num_attr_outputs)
    return detector_io(shape)


def export_butd(model: BUTDDetector, path: str, example_hw: Tuple[int, int] = (32, 48)):
    """Writes the graph at DETECTOR_OPSET (MaxRoiPool, TopK with a tensor k, NonMaxSuppression)
    with dynamic height/width and proposal count; returns the declared (inputs, outputs).

    The tracer runs the network once: a small example (a 2×3 res4 map, a handful of proposals)
    keeps that to seconds, since res5 costs about 3 GMAC per proposal."""
    inputs, outputs = butd_io(model.config)
    g = torch.Generator().manual_seed(0)
    example = torch.randn(1, 3, *example_hw, generator=g) * 50
    export_detector_graph(model, (example,), path, inputs, outputs)
    return inputs, outputs


def _file_digest(path: str) -> dict:
    return {"file": os.path.basename(path), "sha256": _sha256(path)}


BUTD_MIN_INPUT_SIDE = 16


def convert_butd(weights: str, config: str, vocab: str, attributes: Optional[str], *,
                 out: Optional[str] = None, into: Optional[str] = None,
                 selection: Optional[dict] = None, description: Optional[str] = None,
                 split: bool = False, log=print) -> dict:
    """The convert-butd command (module docstring). Returns the detector section written.

    split: the split export (uniter.detector_split) instead of detector.onnx:
    detector_backbone.onnx (backbone + RPN head) and detector_heads.onnx (res5 and the
    predictor on RoIs max-pooled in Go), the section's "proposals" and no "boxes" output."""
    if (out is None) == (into is None):
        raise ValueError("give exactly one of out (a folder of its own) and into (a bundle)")
    selection = dict(BUTD_SELECTION if selection is None else selection)
    cfg, pre = BUTDConfig.from_port_config(read_config_yaml(config))
    # The backbone's stride: a resized side below it has less than one feature cell, and below
    # 3 px the graph fails in ONNX Runtime (an error, or SIGFPE that ends the process); the
    # service answers such an image 400 (image_too_small) instead of running it.
    pre["min_input_side"] = BUTD_MIN_INPUT_SIDE
    defaulted = pre.pop("defaults")
    if defaulted:
        log(f"convert-butd: {config} lacks {', '.join(defaulted)}: the port's defaults are used")
    _check(pre, selection)
    objects = [BACKGROUND] + read_vocab(vocab, cfg.num_classes, "object")
    attrs = None
    if cfg.attr:
        if attributes is None:
            raise ValueError("the config has the attribute head (ROI_BOX_HEAD.ATTR): give --attributes")
        attrs = [NO_ATTRIBUTE] + read_vocab(attributes, cfg.num_attrs, "attribute")
    elif attributes is not None:
        raise ValueError("--attributes given, but the config has no attribute head")

    target = into if into is not None else out
    manifest = None
    if into is not None:
        with open(os.path.join(into, "manifest.json")) as f:
            manifest = json.load(f)
        dims = manifest["model"]
        if dims["feature_dim"] != cfg.feature_dim:
            raise ValueError(f"the bundle reads {dims['feature_dim']}-d features, the detector "
                             f"gives {cfg.feature_dim}-d ones")
        if dims["label_dim"] != len(objects):
            raise ValueError(f"the bundle has label_dim {dims['label_dim']}, the detector "
                             f"{len(objects)} classes")
        with open(os.path.join(into, manifest["regions"]["labels"]), encoding="utf-8") as f:
            have = f.read().splitlines()
        diff = [i for i, (a, b) in enumerate(zip(have, objects)) if a != b]
        if len(have) != len(objects) or diff:
            i = diff[0] if diff else min(len(have), len(objects))
            raise ValueError(f"the bundle's region labels differ from the detector's classes "
                             f"(first at line {i + 1}: {have[i] if i < len(have) else None!r} "
                             f"vs {objects[i] if i < len(objects) else None!r})")
    else:
        os.makedirs(out, exist_ok=True)

    model = BUTDDetector(cfg).eval()
    start = time.time()
    report = load_port_weights(model, weights)
    log(f"convert-butd: loaded {weights} key-exact ({report['dropped_bn_counters']} batch-norm "
        f"counters dropped{', renamed ' + str(report['renamed']) if report['renamed'] else ''}) "
        f"in {time.time() - start:.1f}s")
    from . import detector_split
    start = time.time()
    if split:
        result = detector_split.export_split(model, target)
        graphs = result["graphs"]
        for g in graphs.values():
            p = os.path.join(target, g["file"])
            log(f"convert-butd: wrote {p} ({os.path.getsize(p) / 1e6:.0f} MB)")
        log(f"convert-butd: split export in {time.time() - start:.1f}s")
    else:
        path = os.path.join(target, "detector.onnx")
        inputs, outputs = export_butd(model, path)
        log(f"convert-butd: wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB) in {time.time() - start:.1f}s")
        graphs = {"detector": {"file": "detector.onnx", "sha256": _sha256(path), "inputs": inputs,
                               "outputs": outputs}}
    sec = detector_section(model, pre, selection, cfg.attr)
    sec = {"description": description or DESCRIPTION.format(
        depth=cfg.depth, classes=cfg.num_classes,
        attrs=f"{cfg.num_attrs} attributes" if cfg.attr else "no attribute head"), **sec}
    if attrs:
        with open(os.path.join(target, "attribute_labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(attrs) + "\n")
    prov = {"converted_by": "python3 -m uniter.butd_export convert-butd",
            "source": "bottom-up-attention Faster R-CNN, LXMERT demo PyTorch port (modeling_frcnn.py)",
            "weights": _file_digest(weights), "config": _file_digest(config),
            "vocab": _file_digest(vocab),
            "opset": DETECTOR_OPSET, "torch_version": torch.__version__,
            "port_config": cfg.to_dict(), "config_defaults": defaulted,
            "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if attributes:
        prov["attributes"] = _file_digest(attributes)
    if split:
        prov["split"] = True
        sec = detector_split.split_detector_section(sec, result["proposals"])
        stale = os.path.join(target, "detector.onnx")
        if os.path.exists(stale):
            os.remove(stale)
    if into is None:
        if not split:
            detector_split.remove_split({}, out)
        with open(os.path.join(out, "region_labels.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(objects) + "\n")
        with open(os.path.join(out, "detector.json"), "w") as f:
            json.dump({"graphs": graphs, "detector": sec, "provenance": prov}, f, indent=2)
            f.write("\n")
        return sec
    manifest["graphs"].pop("detector", None)
    if split:
        for name in detector_split.SPLIT_GRAPHS:
            manifest["graphs"].pop(name, None)
    else:
        detector_split.remove_split(manifest, into)
    manifest["graphs"].update(graphs)
    merged = with_detector_section(manifest, sec)
    merged.setdefault("provenance", {})["detector"] = prov
    if not attrs and os.path.exists(os.path.join(into, "attribute_labels.txt")):
        os.remove(os.path.join(into, "attribute_labels.txt"))
    with open(os.path.join(into, "manifest.json"), "w") as f:
        json.dump(merged, f, indent=2)
        f.write("\n")
    return sec


# ---------------------------------------------------------------------- test fixture

# (name, width, height). "tie" takes the capped branch of the port's resize on a .5 tie: 97 ·
# 1000/400 = 242.5, which the port's float arithmetic makes 242.4999… → 242 (the default
# shorter_side rule rounds it to 243).
FIXTURE_IMAGES = [("wide", 640, 480), ("tall", 480, 800), ("strip", 1000, 300), ("tie", 400, 97)]


def port_config_yaml(cfg: BUTDConfig, min_size: int, max_size: int) -> str:
    """A config.yaml in the port's layout (sections at the top level, as its Config reads them)
    for cfg; lists in the block style PyYAML dumps (nested "- - 64")."""
    def block_list(values, indent):
        pad = " " * indent
        return "\n".join(f"{pad}- {v}" for v in values)
    sizes = "\n".join(["  SIZES:", "  - - " + str(cfg.anchor_sizes[0])]
                      + [f"    - {v}" for v in cfg.anchor_sizes[1:]])
    return f"""# bottom-up-attention Faster R-CNN, the LXMERT demo's port: a test fixture's config
MODEL:
  DEVICE: cpu
  MAX_POOL: {cfg.max_pool}
  PIXEL_MEAN: [102.9801, 115.9465, 122.7717]
  PIXEL_STD: [1.0, 1.0, 1.0]
  LOAD_PROPOSALS: false
ANCHOR_GENERATOR:
  ASPECT_RATIOS: [[{', '.join(str(r) for r in cfg.aspect_ratios)}]]
  OFFSET: {cfg.anchor_offset}
{sizes}
BACKBONE:
  FREEZE_AT: 2
RESNETS:
  DEPTH: {cfg.depth}
  NORM: BN
  NUM_GROUPS: {cfg.num_groups}
  OUT_FEATURES:
  - res4
  RES2_OUT_CHANNELS: {cfg.res2_out_channels}
  RES5_DILATION: 1
  STEM_OUT_CHANNELS: {cfg.stem_out_channels}
  STRIDE_IN_1X1: {str(cfg.stride_in_1x1).lower()}
  WIDTH_PER_GROUP: {cfg.width_per_group}
PROPOSAL_GENERATOR:
  HIDDEN_CHANNELS: {cfg.rpn_hidden_channels}
  MIN_SIZE: {int(cfg.rpn_min_size)}
RPN:
  BBOX_REG_WEIGHTS: &id001
{block_list(cfg.rpn_bbox_reg_weights, 2)}
  IN_FEATURES: ['res4']
  NMS_THRESH: {cfg.rpn_nms_thresh}
  POST_NMS_TOPK_TEST: {cfg.post_nms_topk_test}
  POST_NMS_TOPK_TRAIN: 2000
  PRE_NMS_TOPK_TEST: {cfg.pre_nms_topk_test}
  PRE_NMS_TOPK_TRAIN: 12000
ROI_BOX_HEAD:
  ATTR: {cfg.attr}
  BBOX_REG_WEIGHTS: [10.0, 10.0, 5.0, 5.0]
  CLS_AGNOSTIC_BBOX_REG: {cfg.cls_agnostic_bbox_reg}
  NUM_ATTRS: {cfg.num_attrs}
  POOLER_RESOLUTION: {cfg.pooler_resolution}
  POOLER_SAMPLING_RATIO: 0
  POOLER_TYPE: ROIPool
  RES5HALVE: {cfg.res5_halve}
ROI_HEADS:
  IN_FEATURES: [res4]
  NMS_THRESH_TEST: 0.3
  NUM_CLASSES: {cfg.num_classes}
  SCORE_THRESH_TEST: 0.2
INPUT:
  FORMAT: "BGR"
  MAX_SIZE_TEST: {max_size}
  MIN_SIZE_TEST: {min_size}
MAX_DETECTIONS: 36
MIN_DETECTIONS: 36
PAD_VALUE: 0.0
SIZE_DIVISIBILITY: 0
"""


def fixture_vocab(n: int, stem: str, seed: int) -> List[str]:
    """n vocabulary lines in bottom-up-attention's format (some with synonyms)."""
    return [f"{stem}{i}" + (f",{stem}{i}-synonym" if (i * 7 + seed) % 5 == 0 else "")
            for i in range(n)]


def draw_fixture_image(w: int, h: int, seed: int):
    """A deterministic synthetic picture: a smooth colour field with shapes on it."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(xx / rng.uniform(20, 90) + c) * np.cos(yy / rng.uniform(20, 90))
                     for c in range(3)], axis=-1)
    base += rng.normal(0, 12, size=base.shape)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(8):
        x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
        x2, y2 = x1 + rng.uniform(10, w * 0.4), y1 + rng.uniform(10, h * 0.4)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.uniform() < 0.5 else d.rectangle)([x1, y1, x2, y2], fill=col)
    return im


def make_fixture(out: str, seed: int, post_nms_topk: int, min_size: int, max_size: int,
                 log=print) -> dict:
    """Writes, under out: port/{pytorch_model.bin, config.yaml, objects_vocab.txt,
    attributes_vocab.txt} (random full-size weights), bundle/ (a tiny random UNITER encoder
    with feature_dim 2048 and the detector's 1601 region labels, to convert into), images/*.png
    and golden/ (golden.json + float32 little-endian tensors, each {"file", "shape"}): per image
    the sizes and scale, the preprocessed tensor (uniter.detector.preprocess), the graph's four
    outputs computed by PyTorch, and the regions selected from them by
    uniter.detector.select_regions with bottom-up-attention's selection: "selected" (proposal
    indices in selection order), "selected_boxes" (original-image pixels), "branch",
    "num_above_threshold", "iou_margin"; and "min_objectness_gap", "duplicate_rois": ties
    that float noise could order either way."""
    import numpy as np
    from .detector import load_rgb, preprocess, select_regions
    from .export import write_bundle
    from .fixtures.tiny_random import make_vocab
    from .model import UniterConfig, UniterForPretraining

    t0 = time.time()
    cfg = BUTDConfig(post_nms_topk_test=post_nms_topk)
    model = BUTDDetector(cfg).eval().init_random(seed)
    port = os.path.join(out, "port")
    os.makedirs(port, exist_ok=True)
    weights = os.path.join(port, "pytorch_model.bin")
    torch.save(model.state_dict(), weights)
    with open(os.path.join(port, "config.yaml"), "w") as f:
        f.write(port_config_yaml(cfg, min_size, max_size))
    objects = fixture_vocab(cfg.num_classes, "object", seed)
    attrs = fixture_vocab(cfg.num_attrs, "attribute", seed)
    for name, lines in (("objects_vocab.txt", objects), ("attributes_vocab.txt", attrs)):
        with open(os.path.join(port, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    log(f"fixture: random weights and port files in {time.time() - t0:.1f}s")

    t0 = time.time()
    labels = [BACKGROUND] + [o.split(",")[0] for o in objects]
    vocab = make_vocab()
    vpath = os.path.join(out, "vocab.txt")
    with open(vpath, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    ucfg = UniterConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        img_dim=cfg.feature_dim, img_label_dim=len(labels))
    uniter = UniterForPretraining(ucfg).init_weights(seed).eval()
    write_bundle(uniter, os.path.join(out, "bundle"), name="butd-fixture", vocab_path=vpath,
                 region_labels=labels, lowercase=True, max_text_length=32, random_weights=True,
                 description="Random-weight UNITER encoder for the converted detector's parity test.",
                 provenance={"created_by": "python3 -m uniter.butd_export fixture", "seed": seed},
                 graphs=["encoder"])
    log(f"fixture: encoder bundle in {time.time() - t0:.1f}s")

    _, pre = BUTDConfig.from_port_config(read_config_yaml(os.path.join(port, "config.yaml")))
    pre.pop("defaults")
    gdir = os.path.join(out, "golden")
    os.makedirs(gdir, exist_ok=True)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)

    def blob(name: str, a) -> dict:
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        a.tofile(os.path.join(gdir, name))
        return {"file": name, "shape": list(a.shape)}

    golden = {"seed": seed, "preprocess": pre, "selection": BUTD_SELECTION,
              "port_config": cfg.to_dict(), "images": []}
    for i, (name, w, h) in enumerate(FIXTURE_IMAGES):
        t0 = time.time()
        rel = f"images/{name}.png"
        draw_fixture_image(w, h, seed * 100 + i).save(os.path.join(out, rel))
        x, scale, wr, hr = preprocess(load_rgb(os.path.join(out, rel)), pre)
        with torch.no_grad():
            boxes, probs, feats, attr, scores = (t.numpy() for t in model(x, with_scores=True))
        sel = select_regions(boxes, probs, feats, attr, scale=scale, width=w, height=h,
                             selection=BUTD_SELECTION, resize_rule=pre["resize_rule"],
                             resized=(wr, hr))
        golden["images"].append({
            "file": rel, "width": w, "height": h, "scale": scale,
            "resized_width": wr, "resized_height": hr,
            "input": blob(f"{name}-input.f32", x.numpy()),
            "boxes": blob(f"{name}-boxes.f32", boxes),
            "class_probs": blob(f"{name}-class_probs.f32", probs),
            "features": blob(f"{name}-features.f32", feats),
            "attr_probs": blob(f"{name}-attr_probs.f32", attr),
            "selected": sel["indices"],
            "selected_boxes": blob(f"{name}-selected_boxes.f32", np.asarray(sel["boxes"]).reshape(-1, 4)),
            "branch": sel["branch"],
            "num_above_threshold": sel["num_above_threshold"],
            "iou_margin": sel["iou_margin"],
            # Ties that float noise can order either way (so parity would break): the smallest
            # gap between the proposals' objectness logits, and proposals whose RoI rounds to
            # an earlier one's 16-px cells (RoIPool gives both the very same feature).
            "min_objectness_gap": float(np.diff(-scores).min()) if len(scores) > 1 else None,
            "duplicate_rois": len(boxes) - len(np.unique(np.floor(boxes / 16 + 0.5), axis=0)),
        })
        rec = golden["images"][-1]
        log(f"fixture: {name} {w}x{h} → {wr}x{hr}, {len(boxes)} proposals, "
            f"{len(sel['indices'])} regions ({sel['branch']}), objectness gap "
            f"{rec['min_objectness_gap']:.2g}, {rec['duplicate_rois']} duplicate RoIs, IoU margin "
            f"{sel['iou_margin']:.2g} in {time.time() - t0:.1f}s")
    with open(os.path.join(gdir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    return golden


SPLIT_BUNDLE = "bundle-split"


def make_split_twin(out: str, bundle: str = "bundle", log=print) -> str:
    """fixture --split: copies OUT/bundle (the encoder bundle, before any detector is converted
    into it) to OUT/bundle-split and converts OUT/port's weights into the copy as a split
    detector (convert_butd(split=True)), so that the single-graph bundle (convert-butd --into
    OUT/bundle) and its split twin hold the same weights. Returns the twin's path."""
    import shutil
    src, dst = os.path.join(out, bundle), os.path.join(out, SPLIT_BUNDLE)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
        "detector.onnx", "detector_backbone.onnx", "detector_heads.onnx"))
    port = os.path.join(out, "port")
    start = time.time()
    convert_butd(os.path.join(port, "pytorch_model.bin"), os.path.join(port, "config.yaml"),
                 os.path.join(port, "objects_vocab.txt"), os.path.join(port, "attributes_vocab.txt"),
                 into=dst, split=True, log=log)
    log(f"fixture: split twin in {dst} in {time.time() - start:.1f}s")
    return dst


# ---------------------------------------------------------------------- command line

def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.butd_export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert-butd", help="the port's pytorch_model.bin + config.yaml → detector")
    c.add_argument("weights", help="the port's pytorch_model.bin")
    c.add_argument("config", help="the port's config.yaml")
    c.add_argument("--vocab", required=True, help="objects_vocab.txt (one class a line)")
    c.add_argument("--attributes", help="attributes_vocab.txt (with the attribute head)")
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", help="an encoder bundle to add the detector to")
    where.add_argument("--out", help="a folder for the detector alone (detector.json, no manifest)")
    c.add_argument("--nms-iou", type=float, default=BUTD_SELECTION["nms_iou"])
    c.add_argument("--min-confidence", type=float, default=BUTD_SELECTION["min_confidence"])
    c.add_argument("--min-boxes", type=int, default=BUTD_SELECTION["min_boxes"])
    c.add_argument("--max-boxes", type=int, default=BUTD_SELECTION["max_boxes"])
    c.add_argument("--min-box-size", type=float, default=0.0,
                   help="selection.min_box_size, original-image pixels (default: none)")
    c.add_argument("--description", help="the manifest's detector.description")
    c.add_argument("--split", action="store_true",
                   help="write the split detector (detector_backbone.onnx + detector_heads.onnx, "
                        "proposals and RoI pooling in Go: uniter.detector_split) for the CUDA provider")
    fx = sub.add_parser("fixture", help="tests: random full-size port files, bundle, goldens")
    fx.add_argument("--out", required=True)
    fx.add_argument("--seed", type=int, default=1)
    fx.add_argument("--post-nms-topk", type=int, default=300)
    fx.add_argument("--min-size", type=int, default=600)
    fx.add_argument("--max-size", type=int, default=1000)
    fx.add_argument("--threads", type=int, default=2)
    fx.add_argument("--split", action="store_true",
                    help="also write OUT/bundle-split: the encoder bundle with the same weights "
                         "converted as a split detector (convert-butd --split)")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)

    try:
        if args.command == "convert-butd":
            torch.set_num_threads(2)
            sel = {"nms_iou": args.nms_iou, "min_confidence": args.min_confidence,
                   "min_boxes": args.min_boxes, "max_boxes": args.max_boxes}
            if args.min_box_size:
                sel["min_box_size"] = args.min_box_size
            convert_butd(args.weights, args.config, args.vocab, args.attributes, out=args.out,
                         into=args.into, selection=sel, description=args.description,
                         split=args.split, log=log)
        else:
            torch.set_num_threads(args.threads)
            make_fixture(args.out, args.seed, args.post_nms_topk, args.min_size, args.max_size,
                         log=log)
            if args.split:
                make_split_twin(args.out, log=log)
    except (ValueError, OSError) as e:
        sys.exit(f"uniter.butd_export: {e}")


if __name__ == "__main__":
    main()
