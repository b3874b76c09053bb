"""bottom-up-attention's Faster R-CNN as the LXMERT demo's PyTorch port has it
(``unc-nlp/frcnn-vg-finetuned``: pytorch_model.bin + config.yaml; code in transformers'
examples/research_projects/lxmert/modeling_frcnn.py), rebuilt so that its state dict loads
key-exact and the network exports to one ONNX graph with the detector contract
(docs/detector-contract.md).

The network (detectron2's C4 layout, the port's defaults in parentheses; BUTDConfig reads them
from the port's config.yaml):

    backbone            ResNet (101) up to res4, stride 16: stem conv 7×7/2 + Caffe max pool
                        (3×3/2, no padding, ceil mode: MODEL.MAX_POOL), res2..res4 bottleneck
                        stages, stride in the first 1×1 conv (STRIDE_IN_1X1), frozen batch norm
    proposal_generator  RPN on res4: conv 3×3 → HIDDEN_CHANNELS (512), ReLU, 1×1 objectness
                        (one logit per anchor) and 1×1 deltas; cell anchors are a stored tensor
                        (anchor_generator.cell_anchors.0), laid on the stride-16 grid at OFFSET
    roi_heads           RoIPool (max, POOLER_RESOLUTION 14, scale 1/16) on res4 → res5 (3
                        blocks; RES5HALVE false: stride 1 and dilation 2, so 14×14 stays 14×14)
                        → mean over the 14×14 cells = the 2048-d region feature
    box_predictor       cls_score 2048 → 1601, bbox_pred 2048 → 6400, and the attribute head:
                        cls_embedding(argmax of cls_score) [256] concatenated to the feature →
                        fc_attr 2304 → 512, ReLU → attr_score 512 → 401

Graph semantics, and where they follow the port:

* Proposals as the port's find_top_rpn_proposals: anchors decoded with weights RPN.BBOX_REG_WEIGHTS
  and dw/dh clamped at log(1000/16) (detectron2's Box2BoxTransform, no +1), top
  PRE_NMS_TOPK_TEST (6000) by objectness logit, clipped to the image with min/max, boxes whose
  width or height is not above PROPOSAL_GENERATOR.MIN_SIZE (0) dropped, NMS at RPN.NMS_THRESH
  (0.7), the first POST_NMS_TOPK_TEST (300) kept, in descending objectness order. That filter
  means an image whose every proposal is empty gives P = 0 (the port returns nothing then too).
* ``boxes`` are those proposals, not class-regressed. The port's own output applies bbox_pred per
  class and keeps the box of each region's top class (do_nms); bottom-up-attention's feature
  extractor (generate_tsv.py) and UNITER's features use the RPN boxes the features were pooled
  from, which is what the contract asks for. bbox_pred is loaded (the state dict has it) but not
  exported.
* The port keeps detectron2's class order: foreground classes 0..1599 (objects_vocab.txt line by
  line), background LAST (its do_nms drops scores[:, -1]); attributes 0..399
  (attributes_vocab.txt), "no attribute" last (its _predict_attrs drops attr[:, -1]). The graph
  takes the softmax over all 1601 (401) logits and moves the last column to the front, so that
  background / __no_attribute__ are index 0 as the contract says. The port itself renormalises
  its attribute softmax over the 400 real attributes; the graph does not (row i of attr_probs
  over 1..400, divided by their sum, is the port's).
* The attribute head embeds argmax(cls_score) over all 1601 logits, background included, as the
  port does (ONNX ArgMax, first index on ties, like torch).
* Both input sides must be at least 3 px (the Caffe max pool after the stride-2 stem needs 2),
  as in the port; with shorter side 600 / longer at most 1000 only images more elongated than
  about 400:1 get below that.
* RoIPool exports as ONNX MaxRoiPool. ONNX Runtime starts a non-empty bin at FLT_MIN (1.2e-38)
  rather than torchvision's -FLT_MAX; res4 is a ReLU output (≥ 0), so the two differ by at most
  1.2e-38 on an all-zero bin.

Entry points: ``BUTDDetector(cfg)`` with ``forward(image)`` (image [1, 3, H, W] preprocessed →
boxes, class_probs, features, attr_probs), ``load_port_weights(model, state_dict_or_path)``
(strict; missing and unexpected keys named), ``BUTDConfig.from_port_config(dict)``, and
``init_random(seed)``: deterministic random weights for the full-size layout (tests).
Export and the convert-butd command are in butd_export.py.
"""
from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import List, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.onnx.operators
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_pool

FEATURE_STRIDE = 16                     # C4: stem 4 × res3 2 × res4 2
RES_BLOCKS = {50: (3, 4, 6), 101: (3, 4, 23), 152: (3, 8, 36)}  # res2, res3, res4
SCALE_CLAMP = math.log(1000.0 / 16)     # detectron2's Box2BoxTransform default


@dataclass
class BUTDConfig:
    """The port's settings that shape the network or its test-time proposals (``from_port_config``
    maps the config.yaml keys). The defaults are bottom-up-attention's VG model as
    py-bottom-up-attention configures it (faster_rcnn_R_101_C4_attr_caffemaxpool.yaml: anchor
    sizes 64..512, RPN hidden 512, RoIPool, RES5HALVE false, 1600 classes, 400 attributes) on
    detectron2's C4 defaults, test top-n as the port's demo (6000 / 300)."""
    depth: int = 101
    num_groups: int = 1
    width_per_group: int = 64
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    stride_in_1x1: bool = True
    max_pool: bool = True                # MODEL.MAX_POOL: Caffe's max pool (no pad, ceil mode)
    anchor_sizes: Tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    rpn_hidden_channels: int = 512       # PROPOSAL_GENERATOR.HIDDEN_CHANNELS; -1 = res4's 1024
    rpn_bbox_reg_weights: Tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    rpn_nms_thresh: float = 0.7
    pre_nms_topk_test: int = 6000
    post_nms_topk_test: int = 300
    rpn_min_size: float = 0.0            # PROPOSAL_GENERATOR.MIN_SIZE
    pooler_resolution: int = 14
    res5_halve: bool = False
    num_classes: int = 1600              # ROI_HEADS.NUM_CLASSES: foreground only
    cls_agnostic_bbox_reg: bool = False
    attr: bool = True
    num_attrs: int = 400

    @property
    def res4_channels(self) -> int:
        return self.res2_out_channels * 4

    @property
    def feature_dim(self) -> int:       # res5's output = the region feature
        return self.res2_out_channels * 8

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.aspect_ratios)

    @property
    def num_class_outputs(self) -> int:  # C of the contract, background included
        return self.num_classes + 1

    @property
    def num_attr_outputs(self) -> int:   # A of the contract (0 without the attribute head)
        return self.num_attrs + 1 if self.attr else 0

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.depth not in RES_BLOCKS:
            raise ValueError(f"RESNETS.DEPTH {self.depth}: want one of {sorted(RES_BLOCKS)}")
        if self.num_classes < 1 or (self.attr and self.num_attrs < 1):
            raise ValueError("need at least one class (and one attribute with ATTR)")
        if not self.anchor_sizes or not self.aspect_ratios:
            raise ValueError("ANCHOR_GENERATOR needs sizes and aspect ratios")
        if not 0.0 <= self.anchor_offset < 1.0:
            raise ValueError(f"ANCHOR_GENERATOR.OFFSET {self.anchor_offset}: want [0, 1)")
        if len(self.rpn_bbox_reg_weights) != 4:
            raise ValueError("RPN.BBOX_REG_WEIGHTS has 4 entries")
        if self.pre_nms_topk_test < 1 or self.post_nms_topk_test < 1:
            raise ValueError("RPN pre/post NMS top-k must be positive")

    # ------------------------------------------------------------------ config.yaml

    @classmethod
    def from_port_config(cls, cfg: Mapping) -> Tuple["BUTDConfig", dict]:
        """Reads the port's config.yaml (already parsed into nested dicts). Each section is
        looked up at the top level (the port's layout: cfg.RPN, cfg.RESNETS, …) and then under
        MODEL (detectron2's). Returns (config, preprocess) where preprocess holds the input
        settings: channel_order, pixel_means, pixel_std, shorter_side, longer_side_max, and
        resize_rule "detectron2" (the port's resize and box mapping); and lists under
        "defaults" the keys the file did not have (their default was used)."""
        defaults: List[str] = []
        base = cls()

        def get(section: str, key: str, default):
            for where in (cfg, _ci_get(cfg, "MODEL", {})):
                sec = where if section == "" else _ci_get(where, section, None)
                if isinstance(sec, Mapping):
                    v = _ci_get(sec, key, None)
                    if v is not None:
                        return v
            defaults.append(f"{section + '.' if section else ''}{key}")
            return default

        def first_level(v, what: str):
            # detectron2 gives one list per feature map: [[64, 128, 256, 512]]
            if isinstance(v, (list, tuple)) and v and isinstance(v[0], (list, tuple)):
                if len(v) != 1:
                    raise ValueError(f"{what}: {len(v)} feature maps, the C4 model has one")
                v = v[0]
            return tuple(float(x) for x in v)

        out_features = get("RESNETS", "OUT_FEATURES", ["res4"])
        if [str(f) for f in out_features] != ["res4"]:
            raise ValueError(f"RESNETS.OUT_FEATURES {out_features}: only the C4 model (res4) is supported")
        for section in ("RPN", "ROI_HEADS"):
            feats = get(section, "IN_FEATURES", ["res4"])
            if [str(f) for f in feats] != ["res4"]:
                raise ValueError(f"{section}.IN_FEATURES {feats}: only res4 is supported")
        norm = str(get("RESNETS", "NORM", "BN"))
        if norm not in ("BN", "FrozenBN", "nnSyncBN", "SyncBN"):
            raise ValueError(f"RESNETS.NORM {norm!r}: only batch norm (frozen at inference) is supported")
        c = cls(
            depth=int(get("RESNETS", "DEPTH", base.depth)),
            num_groups=int(get("RESNETS", "NUM_GROUPS", base.num_groups)),
            width_per_group=int(get("RESNETS", "WIDTH_PER_GROUP", base.width_per_group)),
            stem_out_channels=int(get("RESNETS", "STEM_OUT_CHANNELS", base.stem_out_channels)),
            res2_out_channels=int(get("RESNETS", "RES2_OUT_CHANNELS", base.res2_out_channels)),
            stride_in_1x1=_bool(get("RESNETS", "STRIDE_IN_1X1", base.stride_in_1x1)),
            max_pool=_bool(get("", "MAX_POOL", base.max_pool)),
            anchor_sizes=first_level(get("ANCHOR_GENERATOR", "SIZES", base.anchor_sizes),
                                     "ANCHOR_GENERATOR.SIZES"),
            aspect_ratios=first_level(get("ANCHOR_GENERATOR", "ASPECT_RATIOS", base.aspect_ratios),
                                      "ANCHOR_GENERATOR.ASPECT_RATIOS"),
            anchor_offset=float(get("ANCHOR_GENERATOR", "OFFSET", base.anchor_offset)),
            rpn_hidden_channels=int(get("PROPOSAL_GENERATOR", "HIDDEN_CHANNELS",
                                        base.rpn_hidden_channels)),
            rpn_bbox_reg_weights=tuple(float(x) for x in get("RPN", "BBOX_REG_WEIGHTS",
                                                             base.rpn_bbox_reg_weights)),
            rpn_nms_thresh=float(get("RPN", "NMS_THRESH", base.rpn_nms_thresh)),
            pre_nms_topk_test=int(get("RPN", "PRE_NMS_TOPK_TEST", base.pre_nms_topk_test)),
            post_nms_topk_test=int(get("RPN", "POST_NMS_TOPK_TEST", base.post_nms_topk_test)),
            rpn_min_size=float(get("PROPOSAL_GENERATOR", "MIN_SIZE", base.rpn_min_size)),
            pooler_resolution=int(get("ROI_BOX_HEAD", "POOLER_RESOLUTION", base.pooler_resolution)),
            res5_halve=_bool(get("ROI_BOX_HEAD", "RES5HALVE", base.res5_halve)),
            num_classes=int(get("ROI_HEADS", "NUM_CLASSES", base.num_classes)),
            cls_agnostic_bbox_reg=_bool(get("ROI_BOX_HEAD", "CLS_AGNOSTIC_BBOX_REG",
                                           base.cls_agnostic_bbox_reg)),
            attr=_bool(get("ROI_BOX_HEAD", "ATTR", base.attr)),
            num_attrs=int(get("ROI_BOX_HEAD", "NUM_ATTRS", base.num_attrs)),
        )
        c.validate()
        fmt = str(get("INPUT", "FORMAT", "BGR")).upper()
        if fmt not in ("BGR", "RGB"):
            raise ValueError(f"INPUT.FORMAT {fmt!r}: want BGR or RGB")
        min_size = get("INPUT", "MIN_SIZE_TEST", 600)
        if isinstance(min_size, (list, tuple)):   # detectron2 allows a list; test uses one
            if len(set(min_size)) != 1:
                raise ValueError(f"INPUT.MIN_SIZE_TEST {min_size}: one size at test time")
            min_size = min_size[0]
        pre = {
            "channel_order": fmt,
            "pixel_means": [float(v) for v in get("", "PIXEL_MEAN", [102.9801, 115.9465, 122.7717])],
            "pixel_std": [float(v) for v in get("", "PIXEL_STD", [1.0, 1.0, 1.0])],
            "shorter_side": int(min_size),
            "longer_side_max": int(get("INPUT", "MAX_SIZE_TEST", 1000)),
            "resize": "bilinear",
            # The port's ResizeShortestEdge and its per-axis box mapping (processing_image.py).
            "resize_rule": "detectron2",
            "defaults": defaults,
        }
        return c, pre


def _bool(v) -> bool:
    """A config flag: YAML gives a bool; a quoted "False" must not read as true."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise ValueError(f"{v!r} is not a boolean")
        return low in ("true", "yes", "on", "1")
    return bool(v)


def _ci_get(d: Mapping, key: str, default):
    """d[key] with the key matched case-insensitively (the port's Config upper-cases too)."""
    if not isinstance(d, Mapping):
        return default
    if key in d:
        return d[key]
    low = key.lower()
    for k, v in d.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


# ---------------------------------------------------------------------- layers

class FrozenBN(nn.Module):
    """Batch norm with fixed statistics: y = (x − running_mean) / √(running_var + eps) · weight
    + bias. State: weight, bias, running_mean, running_var (the port's BatchNorm2d also saves
    num_batches_tracked, a training counter: load_port_weights accepts and drops it)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its batch norm (key prefix ``<name>.norm``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=False)
        self.norm = FrozenBN(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_mid: int, stride: int, groups: int,
                 stride_in_1x1: bool, dilation: int = 1):
        super().__init__()
        self.shortcut = ConvNorm(c_in, c_out, 1, stride=stride) if c_in != c_out else None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(c_in, c_mid, 1, stride=s1)
        self.conv2 = ConvNorm(c_mid, c_mid, 3, stride=s3, padding=dilation, dilation=dilation,
                              groups=groups)
        self.conv3 = ConvNorm(c_mid, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        short = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + short)


def make_stage(n: int, first_stride: int, c_in: int, c_out: int, c_mid: int,
               cfg: BUTDConfig) -> nn.Sequential:
    blocks = []
    for i in range(n):
        blocks.append(Bottleneck(c_in, c_out, c_mid, first_stride if i == 0 else 1,
                                 cfg.num_groups, cfg.stride_in_1x1))
        c_in = c_out
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        self.conv1 = ConvNorm(3, cfg.stem_out_channels, 7, stride=2, padding=3)
        self.caffe_maxpool = cfg.max_pool

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class Backbone(nn.Module):
    """stem → res2 → res3 → res4 (the port's build_backbone with OUT_FEATURES [res4])."""

    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        self.stem = Stem(cfg)
        n2, n3, n4 = RES_BLOCKS[cfg.depth]
        mid = cfg.num_groups * cfg.width_per_group
        c_in, c_out = cfg.stem_out_channels, cfg.res2_out_channels
        for name, n, stride in (("res2", n2, 1), ("res3", n3, 2), ("res4", n4, 2)):
            self.add_module(name, make_stage(n, stride, c_in, c_out, mid, cfg))
            c_in, c_out, mid = c_out, c_out * 2, mid * 2

    def forward(self, x: Tensor) -> Tensor:
        return self.res4(self.res3(self.res2(self.stem(x))))


class AnchorGenerator(nn.Module):
    """Holds the cell anchors as the checkpoint does (``cell_anchors.0``, [A, 4], centred on 0,
    order size-major then aspect ratio: the port's generate_cell_anchors)."""

    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        self.cell_anchors = nn.ParameterList([nn.Parameter(cell_anchors(cfg), requires_grad=False)])
        self.offset = cfg.anchor_offset

    def grid(self, feat: Tensor) -> Tensor:
        """All anchors for feature map feat [1, C, h, w], ordered (y, x, anchor), from traced
        shapes (dynamic under export)."""
        s = float(FEATURE_STRIDE)
        fh, fw = feat.shape[-2], feat.shape[-1]
        sx = torch.arange(0, fw, dtype=torch.float32, device=feat.device) * s + self.offset * s
        sy = torch.arange(0, fh, dtype=torch.float32, device=feat.device) * s + self.offset * s
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        gx, gy = gx.reshape(-1), gy.reshape(-1)
        shifts = torch.stack((gx, gy, gx, gy), dim=1)
        base = self.cell_anchors[0]
        return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)


def cell_anchors(cfg: BUTDConfig) -> Tensor:
    rows = []
    for size in cfg.anchor_sizes:
        area = float(size) ** 2.0
        for ratio in cfg.aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(rows, dtype=torch.float32)


class RPNHead(nn.Module):
    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        c = cfg.res4_channels
        hid = c if cfg.rpn_hidden_channels == -1 else cfg.rpn_hidden_channels
        self.conv = nn.Conv2d(c, hid, 3, padding=1)
        self.objectness_logits = nn.Conv2d(hid, cfg.num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(hid, cfg.num_anchors * 4, 1)

    def forward(self, feat: Tensor) -> Tuple[Tensor, Tensor]:
        t = F.relu(self.conv(feat))
        return self.objectness_logits(t), self.anchor_deltas(t)


class ProposalGenerator(nn.Module):
    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        self.anchor_generator = AnchorGenerator(cfg)
        self.rpn_head = RPNHead(cfg)


class BoxPredictor(nn.Module):
    """The port's FastRCNNOutputLayers (with its attribute head)."""

    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        d = cfg.feature_dim
        self.cls_score = nn.Linear(d, cfg.num_classes + 1)
        self.bbox_pred = nn.Linear(d, (1 if cfg.cls_agnostic_bbox_reg else cfg.num_classes) * 4)
        if cfg.attr:
            self.cls_embedding = nn.Embedding(cfg.num_classes + 1, d // 8)
            self.fc_attr = nn.Linear(d + d // 8, d // 4)
            self.attr_score = nn.Linear(d // 4, cfg.num_attrs + 1)

    def attribute_logits(self, x: Tensor, class_logits: Tensor) -> Tensor:
        emb = self.cls_embedding(class_logits.argmax(dim=1))
        return self.attr_score(F.relu(self.fc_attr(torch.cat([x, emb], dim=1))))


class ROIHeads(nn.Module):
    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        d = cfg.feature_dim
        mid = cfg.num_groups * cfg.width_per_group * 8
        self.res5 = make_stage(3, 2, d // 2, d, mid, cfg)
        if not cfg.res5_halve:
            # The port's VG change: res5 keeps res4's resolution (conv1 and shortcut of block 0
            # at stride 1), every conv2 dilated by 2 (padding 2). Like the port, a stride on
            # conv2 (STRIDE_IN_1X1 false) is left as it is.
            self.res5[0].conv1.stride = (1, 1)
            self.res5[0].shortcut.stride = (1, 1)
            for block in self.res5:
                block.conv2.padding = (2, 2)
                block.conv2.dilation = (2, 2)
        self.box_predictor = BoxPredictor(cfg)
        self.resolution = cfg.pooler_resolution


# ---------------------------------------------------------------------- the detector

class BUTDDetector(nn.Module):
    def __init__(self, cfg: BUTDConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.proposal_generator = ProposalGenerator(cfg)
        self.roi_heads = ROIHeads(cfg)

    @property
    def output_names(self) -> List[str]:
        names = ["boxes", "class_probs", "features"]
        if self.config.attr:
            names.append("attr_probs")
        return names

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """The port's Box2BoxTransform.apply_deltas for one box per row, op for op."""
        wx, wy, ww, wh = self.config.rpn_bbox_reg_weights
        widths = anchors[:, 2] - anchors[:, 0]
        heights = anchors[:, 3] - anchors[:, 1]
        ctr_x = anchors[:, 0] + 0.5 * widths
        ctr_y = anchors[:, 1] + 0.5 * heights
        dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
        dw = torch.clamp(deltas[:, 2] / ww, max=SCALE_CLAMP)
        dh = torch.clamp(deltas[:, 3] / wh, max=SCALE_CLAMP)
        px, py = dx * widths + ctr_x, dy * heights + ctr_y
        pw, ph = torch.exp(dw) * widths, torch.exp(dh) * heights
        return torch.stack((px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph), dim=1)

    def proposals(self, feat: Tensor, image: Tensor, with_scores: bool = False):
        """RPN proposals [P, 4] in input pixels (see the module docstring); with_scores, also
        their objectness logits [P] (diagnostics, not exported)."""
        cfg = self.config
        pg = self.proposal_generator
        obj, deltas = pg.rpn_head(feat)                         # [1, A, h, w], [1, 4A, h, w]
        na = cfg.num_anchors
        obj = obj.permute(0, 2, 3, 1).reshape(-1)               # (y, x, a)
        deltas = deltas.reshape(na, 4, -1).permute(2, 0, 1).reshape(-1, 4)
        anchors = pg.anchor_generator.grid(feat)
        # k = min(#anchors, pre_nms_topk) as a tensor under tracing (ONNX TopK needs k ≤ n).
        k = det_utils._topk_min(obj, cfg.pre_nms_topk_test, 0)
        scores, idx = obj.topk(k, dim=0)
        boxes = self.decode(deltas[idx], anchors[idx])
        # Clip with min/max against the traced image size (not clip_boxes_to_image, which
        # bakes the size into the graph).
        hw = torch.onnx.operators.shape_as_tensor(image)[2:].to(boxes.dtype)   # [H, W]
        limit = torch.stack((hw[1], hw[0], hw[1], hw[0]))
        boxes = torch.min(boxes.clamp(min=0.0), limit)
        m = cfg.rpn_min_size
        big = torch.nonzero((boxes[:, 2] - boxes[:, 0] > m) & (boxes[:, 3] - boxes[:, 1] > m)).reshape(-1)
        boxes, scores = boxes[big], scores[big]
        keep = box_ops.nms(boxes, scores, cfg.rpn_nms_thresh)[: cfg.post_nms_topk_test]
        return (boxes[keep], scores[keep]) if with_scores else boxes[keep]

    def region_features(self, feat: Tensor, boxes: Tensor) -> Tensor:
        rh = self.roi_heads
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        pooled = roi_pool(feat, rois, (rh.resolution, rh.resolution), 1.0 / FEATURE_STRIDE)
        return rh.res5(pooled).mean(dim=(2, 3))

    def forward(self, image: Tensor, with_scores: bool = False):
        """image [1, 3, H, W] (preprocessed) → boxes [P, 4], class_probs [P, C],
        features [P, D], attr_probs [P, A] (C, A with background / no-attribute at 0); with
        with_scores (diagnostics, not exported), the proposals' objectness logits [P] last."""
        feat = self.backbone(image)
        boxes, scores = self.proposals(feat, image, with_scores=True)
        x = self.region_features(feat, boxes)
        bp = self.roi_heads.box_predictor
        logits = bp.cls_score(x)
        outs = [boxes, last_first(F.softmax(logits, dim=1)), x]
        if self.config.attr:
            outs.append(last_first(F.softmax(bp.attribute_logits(x, logits), dim=1)))
        if with_scores:
            outs.append(scores)
        return tuple(outs)

    # ------------------------------------------------------------------ random weights

    def init_random(self, seed: int, input_scale: float = 128.0, residual_scale: float = 0.1,
                    objectness_std: float = 2.0, delta_std: float = 0.2,
                    class_logit_std: float = 4.0, attr_logit_std: float = 3.0) -> "BUTDDetector":
        """Deterministic random weights for every tensor of the layout (tests; seconds).

        Convolutions are He-normal (the stem's divided by input_scale, the spread of mean-
        subtracted pixels), and every batch norm gets non-trivial statistics chosen so that it
        computes g·x + b with g = 1 (residual_scale on each block's last conv, so the 23 res4
        blocks do not blow the activations up) and a small b: activations stay O(1). RPN
        objectness logits spread by about objectness_std (well-separated scores: the top-k and
        NMS order are not decided by float noise), box deltas by delta_std; class and attribute
        logits by class_logit_std / attr_logit_std, so probabilities are peaked (a region's top
        class often clears the 0.2 selection threshold) without saturating. Cell anchors are the
        port's for the configured sizes and ratios."""
        g = torch.Generator().manual_seed(seed)

        def normal(shape, std: float) -> Tensor:
            return torch.randn(tuple(shape), generator=g) * std

        def uniform(shape, lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(tuple(shape), generator=g)

        def conv_norm(m: ConvNorm, gain: float, scale: float = 1.0) -> None:
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(normal(m.weight.shape, math.sqrt(2.0 / fan_in) / scale))
            n = m.norm
            c = n.weight.shape[0]
            var = uniform((c,), 0.5, 2.0)
            mean = normal((c,), 0.1)
            n.running_var.copy_(var)
            n.running_mean.copy_(mean)
            n.weight.copy_(gain * torch.sqrt(var + n.eps))   # (x − mean)·gain + mean·gain + b
            n.bias.copy_(gain * mean + normal((c,), 0.02))

        def linear(m: nn.Linear, out_std: float, in_rms: float) -> None:
            m.weight.copy_(normal(m.weight.shape, out_std / (in_rms * math.sqrt(m.in_features))))
            m.bias.copy_(normal(m.bias.shape, 0.05 * out_std))

        with torch.no_grad():
            conv_norm(self.backbone.stem.conv1, 1.0, input_scale)
            blocks = [b for stage in (self.backbone.res2, self.backbone.res3, self.backbone.res4,
                                      self.roi_heads.res5) for b in stage]
            for b in blocks:
                if b.shortcut is not None:
                    conv_norm(b.shortcut, 1.0)
                conv_norm(b.conv1, 1.0)
                conv_norm(b.conv2, 1.0)
                conv_norm(b.conv3, residual_scale)
            head = self.proposal_generator.rpn_head
            fan = head.conv.in_channels * 9
            head.conv.weight.copy_(normal(head.conv.weight.shape, math.sqrt(2.0 / fan)))
            head.conv.bias.copy_(normal(head.conv.bias.shape, 0.05))
            hid = head.conv.out_channels
            # The hidden ReLU output has an RMS of about the res4 activations' (~1).
            for conv, std in ((head.objectness_logits, objectness_std),
                              (head.anchor_deltas, delta_std)):
                conv.weight.copy_(normal(conv.weight.shape, std / math.sqrt(hid)))
                conv.bias.copy_(normal(conv.bias.shape, 0.1 * std))
            self.proposal_generator.anchor_generator.cell_anchors[0].copy_(cell_anchors(self.config))
            bp = self.roi_heads.box_predictor
            linear(bp.cls_score, class_logit_std, 1.0)
            linear(bp.bbox_pred, 0.1, 1.0)
            if self.config.attr:
                bp.cls_embedding.weight.copy_(normal(bp.cls_embedding.weight.shape, 1.0))
                linear(bp.fc_attr, math.sqrt(2.0), 1.0)
                linear(bp.attr_score, attr_logit_std, 1.0)
        return self


def last_first(p: Tensor) -> Tensor:
    """Moves the last column to the front: the port's background / no-attribute column to
    index 0."""
    return torch.cat([p[:, -1:], p[:, :-1]], dim=1)


# ---------------------------------------------------------------------- loading

# BatchNorm2d's step counter: the port (NORM "BN") saves it, inference never reads it.
BN_COUNTER = "num_batches_tracked"


class StateDictMismatch(ValueError):
    """The checkpoint's keys or shapes differ from the port's layout."""

    def __init__(self, missing: Sequence[str], unexpected: Sequence[str],
                 shapes: Sequence[str] = ()):
        self.missing, self.unexpected, self.shapes = list(missing), list(unexpected), list(shapes)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys: {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys: {', '.join(self.unexpected)}")
        if self.shapes:
            parts.append(f"{len(self.shapes)} shape mismatches: {'; '.join(self.shapes)}")
        super().__init__("the state dict is not the port's layout: " + "; ".join(parts))


def read_state_dict(path: str) -> "OrderedDict[str, Tensor]":
    """pytorch_model.bin (torch.save of a flat state dict, zip or legacy format) → tensors."""
    kw = {"weights_only": True} if "weights_only" in inspect.signature(torch.load).parameters else {}
    sd = torch.load(path, map_location="cpu", **kw)
    if isinstance(sd, Mapping) and "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]                    # a detectron2-style {"model": …} wrapper
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: not a state dict ({type(sd).__name__})")
    return OrderedDict(sd)


def load_port_weights(model: BUTDDetector,
                      state: Union[str, Mapping[str, Tensor]]) -> dict:
    """Loads the port's state dict (a path to pytorch_model.bin, or the dict) key-exact.

    Like the port's from_pretrained, keys with "gamma" / "beta" are renamed to weight / bias.
    BatchNorm2d's ``<norm>.num_batches_tracked`` counters are accepted where a norm of the
    layout sits, and dropped. Anything else missing or unexpected, or a shape that differs,
    raises StateDictMismatch naming every such key. Returns a report: the keys renamed and the
    counters dropped."""
    sd = read_state_dict(state) if isinstance(state, str) else OrderedDict(state)
    renamed = {}
    for k in list(sd):
        new = k.replace("gamma", "weight") if "gamma" in k else k
        new = new.replace("beta", "bias") if "beta" in new else new
        if new != k:
            renamed[k] = new
            sd[new] = sd.pop(k)
    want = model.state_dict()
    norms = {k[: -len(".running_mean")] for k in want if k.endswith(".norm.running_mean")}
    dropped = [k for k in sd if k.endswith("." + BN_COUNTER)
               and k[: -len(BN_COUNTER) - 1] in norms]
    for k in dropped:
        del sd[k]
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)}, layout {tuple(want[k].shape)}"
              for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or shapes:
        raise StateDictMismatch(missing, unexpected, shapes)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True)
    return {"renamed": renamed, "dropped_bn_counters": len(dropped)}
