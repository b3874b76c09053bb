"""A small Faster R-CNN region detector built from torchvision parts (docs/detector-contract.md).

It plays the role of bottom-up-attention's ResNet-101 Faster R-CNN (whose region features UNITER
was trained on: Anderson et al., CVPR 2018) at a size that trains on a CPU: a plain conv backbone
at stride 16, torchvision's RPN, RoIAlign 7×7 and a two-layer box head whose output (D = the
encoder's feature_dim) is the region feature.

Module layout (names are what a trainer and the state dict see):

    backbone        Sequential of conv 3×3 (+ optional BatchNorm) + ReLU; strides multiply to 16
    rpn             torchvision RegionProposalNetwork: .anchor_generator (AnchorGenerator, one
                    feature map), .head (RPNHead), .box_coder (weights 1, 1, 1, 1)
    roi_heads       torchvision RoIHeads: .box_roi_pool (FixedScaleRoIAlign, 7×7, sampling 2,
                    aligned=False), .box_head (TwoMLPHead → D), .box_predictor
                    (FastRCNNPredictor: .cls_score D → C, .bbox_pred D → 4C)
    attr_score      Linear D → A (absent when num_attributes == 0)

Two entry points:

* ``forward(image)`` (eval, what is exported): image [1, 3, H, W] → (boxes, class_probs,
  features[, attr_probs]) per the contract. It does not call torchvision's RPN.forward: that
  clips with clip_boxes_to_image and computes anchor strides from Python ints, both of which
  bake the traced image size and proposal count into an ONNX graph. Instead it uses the same
  modules (head, cell anchors, box coder, NMS, RoIAlign, box head, predictor) with
  shape-as-tensor arithmetic, so H, W and the proposal count stay dynamic.
* ``losses(images, targets)`` (train mode): the standard Faster R-CNN losses from torchvision's
  own RPN and RoIHeads sampling (loss_objectness, loss_rpn_box_reg, loss_classifier,
  loss_box_reg) plus ``loss_attribute`` (cross-entropy of attr_score on the positive RoIs).
  ``images`` is a list of preprocessed [3, H, W] tensors (the contract's preprocessing: BGR,
  means subtracted); ``targets`` a list of dicts with "boxes" [G, 4] (x1 y1 x2 y2, pixels of the
  preprocessed image), "labels" [G] int64 in 1..C-1 and, with an attribute head, "attributes"
  [G] int64 in 0..A-1 (0 = no attribute; give -1 to leave a box's attribute out of the loss).
  A trainer does:

      model.train()
      loss = sum(model.losses(images, targets).values()); loss.backward(); opt.step()

  Images are padded (bottom/right, zeros = the mean colour) to a multiple of 32 by
  :func:`batch_images`, so torchvision's AnchorGenerator (stride = padded size // grid size)
  uses exactly the stride 16 that the exported graph uses, and RoIAlign uses the fixed scale
  1/16 in both paths (torchvision's MultiScaleRoIAlign would infer the scale from sizes).
  During training the RPN filters proposals the torchvision way (sigmoid scores, small-box
  removal); the exported path keeps degenerate boxes and ranks by logits (same order), which
  only matters for boxes the RoI heads would never be trained on anyway.

Also here: ``init_weights(seed)`` (deterministic random weights: fixtures, a training start),
the contract's preprocessing (``preprocess``, ``resized_size``) and a reference implementation
of its region selection (``select_regions``, ``nms_reference``) used by the golden generator.
Export (ONNX opset 13 + manifest) lives in detector_export.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.onnx.operators
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align


@dataclass
class DetectorConfig:
    num_classes: int = 11            # C, background at index 0
    num_attributes: int = 9          # A, index 0 = no attribute; 0 = no attribute head
    feature_dim: int = 64            # D, the box head width = the encoder's feature_dim
    backbone_channels: Tuple[int, ...] = (32, 64, 128, 128, 128, 128)
    backbone_strides: Tuple[int, ...] = (2, 2, 2, 2, 1, 1)   # product = feature stride (16)
    batch_norm: bool = False
    anchor_sizes: Tuple[int, ...] = (32, 64, 128, 256)
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)        # height / width
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    pool_size: int = 7
    sampling_ratio: int = 2
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25

    @property
    def stride(self) -> int:
        s = 1
        for v in self.backbone_strides:
            s *= v
        return s

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        d = dict(d)
        for k in ("backbone_channels", "backbone_strides", "anchor_sizes", "aspect_ratios"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def validate(self) -> None:
        if self.num_classes < 2:
            raise ValueError("num_classes counts the background: at least 2")
        if self.num_attributes == 1 or self.num_attributes < 0:
            raise ValueError("num_attributes: 0 (no attribute head) or ≥ 2 (index 0 = none)")
        if len(self.backbone_channels) != len(self.backbone_strides) or not self.backbone_channels:
            raise ValueError("backbone_channels and backbone_strides need one entry per layer")
        s = self.stride
        if s < 1 or s & (s - 1):
            raise ValueError(f"feature stride {s} is not a power of two")
        if any(v not in (1, 2) for v in self.backbone_strides):
            raise ValueError("backbone strides are 1 or 2 (3×3 convs, padding 1)")


class FixedScaleRoIAlign(nn.Module):
    """RoIAlign at a fixed spatial scale 1/stride, aligned=False (BUTD / Caffe convention; also
    the only convention that exports correctly at opset ≤ 15). Callable as RoIHeads'
    box_roi_pool (features dict, list of per-image boxes, image sizes)."""

    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)

    def pool(self, feature: Tensor, rois) -> Tensor:
        return roi_align(feature, rois, self.output_size, spatial_scale=self.spatial_scale,
                         sampling_ratio=self.sampling_ratio, aligned=False)

    def forward(self, features: Dict[str, Tensor], proposals: List[Tensor],
                image_shapes: List[Tuple[int, int]]) -> Tensor:
        return self.pool(features["0"], proposals)


def make_backbone(cfg: DetectorConfig) -> nn.Sequential:
    layers: List[nn.Module] = []
    c_in = 3
    for c_out, s in zip(cfg.backbone_channels, cfg.backbone_strides):
        layers.append(nn.Conv2d(c_in, c_out, 3, stride=s, padding=1, bias=not cfg.batch_norm))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
    seq = nn.Sequential(*layers)
    seq.out_channels = c_in  # what torchvision's heads expect of a backbone
    return seq


def batch_images(images: Sequence[Tensor], size_divisible: int = 32) -> ImageList:
    """Pads preprocessed [3, H, W] images (zeros, bottom/right) into one batch whose sides are
    multiples of size_divisible; keeps each image's own size for the RPN and RoI heads."""
    h = max(int(im.shape[-2]) for im in images)
    w = max(int(im.shape[-1]) for im in images)
    h = (h + size_divisible - 1) // size_divisible * size_divisible
    w = (w + size_divisible - 1) // size_divisible * size_divisible
    batch = images[0].new_zeros((len(images), 3, h, w))
    for i, im in enumerate(images):
        batch[i, :, : im.shape[-2], : im.shape[-1]].copy_(im)
    return ImageList(batch, [(int(im.shape[-2]), int(im.shape[-1])) for im in images])


class Detector(nn.Module):
    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.backbone = make_backbone(cfg)
        ch = self.backbone.out_channels
        anchor_gen = AnchorGenerator(sizes=(tuple(cfg.anchor_sizes),),
                                     aspect_ratios=(tuple(cfg.aspect_ratios),))
        rpn_head = RPNHead(ch, anchor_gen.num_anchors_per_location()[0])
        self.rpn = RegionProposalNetwork(
            anchor_gen, rpn_head, cfg.rpn_fg_iou_thresh, cfg.rpn_bg_iou_thresh,
            cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction,
            dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
            dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test),
            cfg.rpn_nms_thresh)
        pool = FixedScaleRoIAlign(cfg.pool_size, 1.0 / cfg.stride, cfg.sampling_ratio)
        self.roi_heads = RoIHeads(
            pool, TwoMLPHead(ch * cfg.pool_size ** 2, cfg.feature_dim),
            FastRCNNPredictor(cfg.feature_dim, cfg.num_classes),
            cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, cfg.box_batch_size_per_image,
            cfg.box_positive_fraction, None, 0.05, 0.5, 100)
        self.attr_score = (nn.Linear(cfg.feature_dim, cfg.num_attributes)
                           if cfg.num_attributes else None)
        # Anchors centred on a stride-16 grid: cell_anchors[0] is [num_anchors, 4], ordered
        # aspect-ratio-major, size-minor (torchvision's order, matching RPNHead's channels).
        self.register_buffer("cell_anchors", anchor_gen.cell_anchors[0].clone(), persistent=False)

    def init_weights(self, seed: int, input_scale: float = 64.0, logit_std: float = 0.5,
                     delta_std: float = 0.3) -> "Detector":
        """Deterministic random weights from seed (fixtures, and a training start): He-normal
        convs (the first one divided by input_scale, the spread of mean-subtracted pixels), so
        activations stay O(1) through the plain conv stack; RPN objectness and box deltas with
        spreads of about 1 and delta_std; class and attribute logits with spread about
        logit_std, so the probabilities differ visibly between proposals without saturating."""
        g = torch.Generator().manual_seed(seed)

        def normal_(t: Tensor, std: float) -> None:
            t.copy_(torch.randn(t.shape, generator=g) * std)

        with torch.no_grad():
            first = True
            for mod in self.backbone:
                if isinstance(mod, nn.Conv2d):
                    fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
                    normal_(mod.weight, (2.0 / fan_in) ** 0.5 / (input_scale if first else 1.0))
                    if mod.bias is not None:
                        normal_(mod.bias, 0.05)
                    first = False
            head = self.rpn.head
            for mod in head.modules():
                if isinstance(mod, nn.Conv2d):
                    fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
                    std = (2.0 / fan_in) ** 0.5
                    if mod is head.bbox_pred:
                        std *= delta_std
                    normal_(mod.weight, std)
                    normal_(mod.bias, 0.05)
            box_head = self.roi_heads.box_head
            for fc in (box_head.fc6, box_head.fc7):
                normal_(fc.weight, (2.0 / fc.in_features) ** 0.5)
                normal_(fc.bias, 0.05)
            heads = [self.roi_heads.box_predictor.cls_score, self.roi_heads.box_predictor.bbox_pred]
            if self.attr_score is not None:
                heads.append(self.attr_score)
            for fc in heads:
                normal_(fc.weight, logit_std / fc.in_features ** 0.5)
                normal_(fc.bias, 0.05)
        return self

    @property
    def output_names(self) -> List[str]:
        names = ["boxes", "class_probs", "features"]
        if self.attr_score is not None:
            names.append("attr_probs")
        return names

    # ------------------------------------------------------------------ inference (exported)

    def anchors(self, feat: Tensor) -> Tensor:
        """All anchors for feature map feat [1, C, h, w], ordered (y, x, anchor) like
        torchvision's AnchorGenerator, from traced shapes (dynamic under export)."""
        s = float(self.config.stride)
        fh, fw = feat.shape[-2], feat.shape[-1]
        sx = torch.arange(0, fw, dtype=torch.float32, device=feat.device) * s
        sy = torch.arange(0, fh, dtype=torch.float32, device=feat.device) * s
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        gx, gy = gx.reshape(-1), gy.reshape(-1)
        shifts = torch.stack((gx, gy, gx, gy), dim=1)
        return (shifts.view(-1, 1, 4) + self.cell_anchors.view(1, -1, 4)).reshape(-1, 4)

    def proposals(self, feat: Tensor, image: Tensor) -> Tensor:
        """RPN proposals [P, 4] in input pixels: top-k by objectness, decoded, clipped with
        min/max, NMS, post-NMS top-n."""
        cfg = self.config
        obj, deltas = self.rpn.head([feat])
        obj, deltas = obj[0], deltas[0]                       # [1, A, h, w], [1, 4A, h, w]
        na = self.cell_anchors.shape[0]
        obj = obj.permute(0, 2, 3, 1).reshape(-1)             # (y, x, a)
        deltas = deltas.view(1, na, 4, deltas.shape[-2], deltas.shape[-1])
        deltas = deltas.permute(0, 3, 4, 1, 2).reshape(-1, 4)
        anchors = self.anchors(feat)
        # k = min(#anchors, pre_nms_top_n) as a tensor under tracing (ONNX TopK needs k ≤ n).
        k = det_utils._topk_min(obj, cfg.rpn_pre_nms_top_n_test, 0)
        scores, idx = obj.topk(k, dim=0)
        boxes = self.rpn.box_coder.decode_single(deltas[idx], anchors[idx])
        # Clip with min/max against the traced image size: torchvision's clip_boxes_to_image
        # bakes the size and proposal count into the graph.
        hw = torch.onnx.operators.shape_as_tensor(image)[2:].to(boxes.dtype)   # [H, W]
        limit = torch.stack((hw[1], hw[0], hw[1], hw[0]))
        boxes = torch.min(boxes.clamp(min=0.0), limit)
        # NMS on logits (same order as sigmoid probs, but no saturation ties). No small-box
        # removal: every image of at least 1×1 then keeps P ≥ 1, and degenerate boxes are
        # handled by selection.
        keep = box_ops.nms(boxes, scores, cfg.rpn_nms_thresh)
        keep = keep[: cfg.rpn_post_nms_top_n_test]
        return boxes[keep]

    def region_features(self, feat: Tensor, boxes: Tensor) -> Tensor:
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        pooled = self.roi_heads.box_roi_pool.pool(feat, rois)
        return self.roi_heads.box_head(pooled)

    def forward(self, image: Tensor):
        """image [1, 3, H, W] (preprocessed) → boxes [P, 4], class_probs [P, C],
        features [P, D] (, attr_probs [P, A])."""
        feat = self.backbone(image)
        boxes = self.proposals(feat, image)
        x = self.region_features(feat, boxes)
        class_probs = F.softmax(self.roi_heads.box_predictor.cls_score(x), dim=1)
        outs = [boxes, class_probs, x]
        if self.attr_score is not None:
            outs.append(F.softmax(self.attr_score(x), dim=1))
        return tuple(outs)

    # ------------------------------------------------------------------ training

    def losses(self, images: Sequence[Tensor], targets: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Faster R-CNN training losses (see the module docstring). Needs train mode."""
        if not self.training:
            raise RuntimeError("Detector.losses needs model.train()")
        il = batch_images(images, max(32, self.config.stride))
        feats = {"0": self.backbone(il.tensors)}
        proposals, losses = self.rpn(il, feats, targets)
        rh = self.roi_heads
        proposals, matched_idxs, labels, reg_targets = rh.select_training_samples(proposals, targets)
        x = rh.box_head(rh.box_roi_pool(feats, proposals, il.image_sizes))
        class_logits, box_regression = rh.box_predictor(x)
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, reg_targets)
        losses.update(loss_classifier=loss_cls, loss_box_reg=loss_box)
        if self.attr_score is not None:
            attr_t = []
            for t, m, lab in zip(targets, matched_idxs, labels):
                a = t["attributes"][m.clamp(min=0)]
                attr_t.append(torch.where(lab > 0, a, torch.full_like(a, -1)))  # positives only
            attr_t = torch.cat(attr_t)
            if (attr_t >= 0).any():
                losses["loss_attribute"] = F.cross_entropy(self.attr_score(x), attr_t,
                                                           ignore_index=-1)
            else:
                losses["loss_attribute"] = self.attr_score(x).sum() * 0.0
        return losses


# ---------------------------------------------------------------------- preprocessing

BUTD_PREPROCESS = {
    "channel_order": "BGR",
    "pixel_means": [102.9801, 115.9465, 122.7717],
    "pixel_std": [1.0, 1.0, 1.0],
    "shorter_side": 600,
    "longer_side_max": 1000,
    "resize": "bilinear",
}
BUTD_SELECTION = {"nms_iou": 0.3, "min_confidence": 0.2, "min_boxes": 10, "max_boxes": 100}


def round_half_away(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


RESIZE_RULES = ("shorter_side", "detectron2")


def resize_rule(pre: dict) -> str:
    """The preprocess block's resize_rule: "shorter_side" when absent (the default)."""
    rule = pre.get("resize_rule") or "shorter_side"
    if rule not in RESIZE_RULES:
        raise ValueError(f"resize_rule {rule!r}: want one of {', '.join(RESIZE_RULES)}")
    return rule


def resized_size(w: int, h: int, pre: dict) -> Tuple[float, int, int]:
    """Contract step 2: (scale, Wr, Hr) under pre's resize_rule.

    "shorter_side" (the default): one scale, the cap tested on the rounded longer side, sides
    rounded half away from zero. "detectron2": the LXMERT demo port's ResizeShortestEdge
    (processing_image.py), operation for operation: the shorter side becomes exactly
    shorter_side, the longer one scale·long; if the larger of the two (unrounded) exceeds
    longer_side_max both are multiplied by longer_side_max / it; each side is int(x + 0.5).
    scale is then the factor before rounding (shorter_side / min(w, h), times the cap's factor).
    Both rules give each side at least 1 (the port would give 0 beyond 2000:1)."""
    if resize_rule(pre) == "detectron2":
        size, max_size = pre["shorter_side"], pre["longer_side_max"]
        scale = size * 1.0 / min(h, w)
        if h < w:
            newh, neww = size, scale * w
        else:
            newh, neww = scale * h, size
        if max_size > 0 and max(newh, neww) > max_size:   # 0: no cap, as in Go
            s2 = max_size * 1.0 / max(newh, neww)
            newh, neww, scale = newh * s2, neww * s2, scale * s2
        return scale, max(1, int(neww + 0.5)), max(1, int(newh + 0.5))
    scale = pre["shorter_side"] / min(w, h)
    if round_half_away(max(w, h) * scale) > pre["longer_side_max"]:
        scale = pre["longer_side_max"] / max(w, h)
    return scale, max(1, round_half_away(w * scale)), max(1, round_half_away(h * scale))


def load_rgb(path: str):
    """Decodes to 8-bit RGB (EXIF orientation applied); returns a PIL image."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im) if im.format == "JPEG" else im
        return im.convert("RGB")


def preprocess(rgb, pre: dict):
    """Contract preprocessing of an RGB PIL image or uint8 HWC array → (tensor [1, 3, Hr, Wr],
    scale, Wr, Hr)."""
    import numpy as np
    arr = np.asarray(rgb, dtype=np.uint8)
    h, w = arr.shape[:2]
    scale, wr, hr = resized_size(w, h, pre)
    x = torch.from_numpy(arr.astype(np.float32))              # H, W, 3 in 0..255
    order = {"RGB": [0, 1, 2], "BGR": [2, 1, 0]}[pre["channel_order"]]
    x = x[:, :, order].permute(2, 0, 1).unsqueeze(0).contiguous()
    if (wr, hr) != (w, h):
        x = F.interpolate(x, size=(hr, wr), mode="bilinear", align_corners=False)
    mean = torch.tensor(pre["pixel_means"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre["pixel_std"], dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(), scale, wr, hr


# ---------------------------------------------------------------------- selection (reference)

def location7(box: Sequence[float], w: float, h: float) -> List[float]:
    """UNITER's 7-d region location: [x1/W, y1/H, x2/W, y2/H, w/W, h/H, (w/W)·(h/H)]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = (x2 - x1) / w, (y2 - y1) / h
    return [x1 / w, y1 / h, x2 / w, y2 / h, bw, bh, bw * bh]


def nms_reference(boxes, scores, iou_thr: float):
    """Greedy NMS written from the contract, independent of torchvision: candidates in descending
    score order, ties by lower index; area (x2 − x1)(y2 − y1); suppress when IoU > iou_thr
    (IoU in float64; a zero union never suppresses, like torchvision's 0/0). Returns
    (kept indices in selection order, smallest |IoU − iou_thr| over the comparisons made, so a
    caller can tell whether float32/float64 rounding could flip a decision)."""
    import numpy as np
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores)
    n = len(b)
    order = sorted(range(n), key=lambda i: (-float(s[i]), i))
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(n, dtype=bool)
    keep, margin = [], float("inf")
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.array([j for j in order[pos + 1:] if not suppressed[j]], dtype=np.int64)
        if rest.size == 0:
            continue
        iw = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        margin = min(margin, float(np.abs(iou - iou_thr).min()))
        suppressed[rest[iou > iou_thr]] = True
    return keep, margin


def to_original(boxes, *, scale: float, width: int, height: int, resize_rule: str = "shorter_side",
                resized=None):
    """Contract selection step 4's box mapping: boxes [N, 4] in resized-image pixels → float64
    [N, 4] in original-image pixels, clamped to [0, W]×[0, H]. "shorter_side": / scale in
    float64. "detectron2" (resized = (Wr, Hr) required): the port's _scale_box, x ·
    float32(W / Wr) and y · float32(H / Hr) multiplied in float32 (its scales_yx is a float32
    tensor)."""
    import numpy as np
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if resize_rule == "detectron2":
        if resized is None:
            raise ValueError("the detectron2 rule maps boxes by the resized size: give resized=(Wr, Hr)")
        wr, hr = resized
        orig = b.copy()
        orig[:, 0::2] *= np.float32(width / wr)
        orig[:, 1::2] *= np.float32(height / hr)
        orig = orig.astype(np.float64)
    elif resize_rule == "shorter_side":
        orig = b.astype(np.float64) / scale
    else:
        raise ValueError(f"resize_rule {resize_rule!r}: want one of {', '.join(RESIZE_RULES)}")
    orig[:, 0::2] = np.clip(np.nan_to_num(orig[:, 0::2], nan=0.0), 0, width)
    orig[:, 1::2] = np.clip(np.nan_to_num(orig[:, 1::2], nan=0.0), 0, height)
    return orig


def select_regions(boxes, class_probs, features=None, attr_probs=None, *, scale: float,
                   width: int, height: int, selection: dict, background_index: int = 0,
                   resize_rule: str = "shorter_side", resized=None) -> dict:
    """The contract's selection (docs/detector-contract.md, "Selection"), in plain Python/numpy.
    boxes are in resized-image pixels; returns columnar results plus diagnostics. With
    ``selection["min_box_size"]`` (original-image pixels, absent = 0) proposals narrower or lower
    than min_box_size * scale (float32, the Go arithmetic) are dropped first: they neither
    suppress nor count, and their proposal confidence stays 0. The kept boxes map back to the
    original image by :func:`to_original` under resize_rule ("detectron2" needs resized =
    (Wr, Hr))."""
    import numpy as np
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(class_probs, dtype=np.float32)
    P, C = s.shape
    side = np.float32(selection.get("min_box_size", 0)) * np.float32(scale)
    cand = np.flatnonzero((b[:, 2] - b[:, 0] >= side) & (b[:, 3] - b[:, 1] >= side)) if side > 0 \
        else np.arange(P)
    conf = np.zeros(P, dtype=np.float32)
    margin = float("inf")
    for c in range(C):
        if c == background_index:
            continue
        keep, m = nms_reference(b[cand], s[cand, c], selection["nms_iou"])
        margin = min(margin, m)
        for k in keep:
            i = cand[k]
            conf[i] = max(conf[i], s[i, c])
    order = sorted((int(i) for i in cand), key=lambda i: (-float(conf[i]), i))
    above = int((conf[cand] >= selection["min_confidence"]).sum())
    n, branch = above, "threshold"
    if n < selection["min_boxes"]:
        n, branch = min(selection["min_boxes"], len(cand)), "min_boxes"
    if n > selection["max_boxes"]:
        n, branch = selection["max_boxes"], "max_boxes"
    idx = order[:n]
    orig = to_original(b[idx], scale=scale, width=width, height=height, resize_rule=resize_rule,
                       resized=resized)
    out = {
        "indices": [int(i) for i in idx],
        "boxes": orig.tolist(),
        "confidences": conf[idx],
        "soft_labels": s[idx],
        "locations": [location7(bx, width, height) for bx in orig.tolist()],
        "proposal_confidences": conf,
        "branch": branch,
        "num_above_threshold": above,
        "iou_margin": margin,
    }
    if features is not None:
        out["features"] = np.asarray(features, dtype=np.float32)[idx]
    if attr_probs is not None:
        out["attribute_probs"] = np.asarray(attr_probs, dtype=np.float32)[idx]
    return out
