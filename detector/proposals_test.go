package detector

// Tests of Propose and RoIPool: hand-computed cases, a float64 brute-force reference on random
// inputs, and goldens from PyTorch (testdata/proposals-golden.json).
//
// The golden holds, for a tiny uniter.detector.Detector (torchvision RPN) and a tiny
// uniter.butd.BUTDDetector (detectron2 RPN: anchor offset 0.5 in one case, MinSize 12 in the
// other), the RPN head's raw outputs on random noise images (three of the five cases replace
// the head's outputs with synthetic ones that hit the scale clamp and push boxes out of the
// image; one of those clips to a 20000×30000 size, where the clamp shows), the spec and
// model.proposals(feat, image); and torchvision.ops.roi_pool on small random feature maps with
// random, degenerate, inverted, out-of-image, sub-cell and half-rounding boxes. It was made,
// from the repository root, with Debian's interpreter (python3-torch 1.13, python3-torchvision
// 0.14) running the script in the block comment below (between its BEGIN and END lines):
//
//	sed -n '/^# BEGIN proposals-golden/,/^# END proposals-golden/p' detector/proposals_test.go |
//		PYTHONPATH=models /usr/bin/python3 - > detector/testdata/proposals-golden.json

/*
# BEGIN proposals-golden
import json

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.ops import roi_pool

from uniter.butd import FEATURE_STRIDE, SCALE_CLAMP, BUTDConfig, BUTDDetector
from uniter.detector import Detector, DetectorConfig

torch.set_num_threads(1)


def f32(t):
    return [float("%.9g" % v) for v in np.asarray(t, dtype=np.float32).ravel()]


class FixedHead(nn.Module):
    """Stands in for an RPN head: returns the given (objectness, deltas)."""

    def __init__(self, obj, deltas, as_lists):
        super().__init__()
        self.out = ([obj], [deltas]) if as_lists else (obj, deltas)

    def forward(self, _):
        return self.out


def proposal_case(name, model, image, synth=None, clip_hw=None):
    """model.proposals on image's features; clip_hw, when given, replaces the image size that
    the proposals are clipped to (a large one makes the scale clamp visible)."""
    tv = isinstance(model, Detector)
    with torch.no_grad():
        feat = model.backbone(image)
        if tv:
            obj, deltas = model.rpn.head([feat])
            obj, deltas = obj[0], deltas[0]
        else:
            obj, deltas = model.proposal_generator.rpn_head(feat)
        if synth is not None:
            obj, deltas = synth(obj, deltas)
        fixed = FixedHead(obj, deltas, tv)
        if tv:
            real, model.rpn.head = model.rpn.head, fixed
        else:
            real, model.proposal_generator.rpn_head = model.proposal_generator.rpn_head, fixed
        size = image if clip_hw is None else torch.zeros(1, 1, 1, 1).expand(1, 3, *clip_hw)
        boxes = model.proposals(feat, size)
        if tv:
            model.rpn.head = real
            cfg = model.config
            spec = dict(stride=float(cfg.stride), anchor_offset=0.0,
                        cell_anchors=f32(model.cell_anchors),
                        box_weights=list(model.rpn.box_coder.weights),
                        scale_clamp=model.rpn.box_coder.bbox_xform_clip,
                        pre_nms_top_n=cfg.rpn_pre_nms_top_n_test,
                        post_nms_top_n=cfg.rpn_post_nms_top_n_test,
                        nms_iou=cfg.rpn_nms_thresh, min_size=None)
        else:
            model.proposal_generator.rpn_head = real
            cfg = model.config
            spec = dict(stride=float(FEATURE_STRIDE), anchor_offset=cfg.anchor_offset,
                        cell_anchors=f32(model.proposal_generator.anchor_generator.cell_anchors[0]),
                        box_weights=list(cfg.rpn_bbox_reg_weights), scale_clamp=SCALE_CLAMP,
                        pre_nms_top_n=cfg.pre_nms_topk_test, post_nms_top_n=cfg.post_nms_topk_test,
                        nms_iou=cfg.rpn_nms_thresh, min_size=cfg.rpn_min_size)
    # The order is only defined without ties among the scores that top-k compares.
    flat = obj.permute(0, 2, 3, 1).reshape(-1)
    assert len(set(flat.tolist())) == flat.numel(), name + ": tied objectness"
    print(name, tuple(feat.shape[-2:]), "anchors", flat.numel(), "proposals", boxes.shape[0])
    return dict(name=name, spec=spec, fh=int(feat.shape[-2]), fw=int(feat.shape[-1]),
                image_h=int(size.shape[-2]), image_w=int(size.shape[-1]),
                objectness=f32(obj), deltas=f32(deltas), boxes=f32(boxes))


def synthetic(seed):
    """Head outputs that exercise the scale clamp, boxes leaving the image and tiny boxes."""
    def make(obj, deltas):
        g = torch.Generator().manual_seed(seed)
        obj = torch.randn(obj.shape, generator=g) * 3
        deltas = torch.randn(deltas.shape, generator=g) * 1.5
        d = deltas.view(-1)
        pick = torch.randint(0, d.numel(), (d.numel() // 10,), generator=g)
        d[pick] = torch.tensor([6.0, -6.0, 4.2, -9.0, 12.0])[torch.arange(pick.numel()) % 5]
        return obj, deltas
    return make


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(11)
    cases = []
    tv = Detector(DetectorConfig(
        num_classes=11, num_attributes=0, feature_dim=16, backbone_channels=(8, 16, 16, 16, 16),
        backbone_strides=(2, 2, 2, 2, 1), anchor_sizes=(32, 64, 128), aspect_ratios=(0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=60, rpn_nms_thresh=0.7))
    tv = tv.init_weights(1).eval()
    img = torch.randn(1, 3, 80, 112, generator=g) * 50
    cases.append(proposal_case("torchvision-noise", tv, img))
    cases.append(proposal_case("torchvision-synthetic", tv, torch.randn(1, 3, 70, 100, generator=g) * 50,
                               synthetic(21)))
    cases.append(proposal_case("torchvision-synthetic-large-clip", tv,
                               torch.randn(1, 3, 48, 64, generator=g) * 50, synthetic(23), (20000, 30000)))
    small = dict(depth=50, width_per_group=8, stem_out_channels=8, res2_out_channels=32,
                 anchor_sizes=(16.0, 32.0), rpn_hidden_channels=16, pre_nms_topk_test=200,
                 post_nms_topk_test=20, pooler_resolution=6, num_classes=10, num_attrs=6)
    butd = BUTDDetector(BUTDConfig(**dict(small, anchor_offset=0.5))).eval().init_random(3)
    cases.append(proposal_case("butd-noise-offset", butd, torch.randn(1, 3, 80, 128, generator=g) * 50))
    butd = BUTDDetector(BUTDConfig(**dict(small, anchor_sizes=(16.0, 48.0), rpn_min_size=12.0,
                                          pre_nms_topk_test=150, post_nms_topk_test=40,
                                          rpn_nms_thresh=0.5))).eval().init_random(4)
    cases.append(proposal_case("butd-synthetic-minsize", butd, torch.randn(1, 3, 75, 120, generator=g) * 50,
                               synthetic(22)))

    pools = []
    feature = torch.randn(1, 3, 7, 9, generator=g)
    feature[0, 1] = -feature[0, 1].abs() - 1          # a channel with only negative values
    feature[0, 2, 2:5, 3:6] = 0.5                    # ties
    boxes = [[0, 0, 143, 111], [10, 12, 60, 70], [24, 40, 56, 72], [40, 8, 41, 9],
             [-8, -8, 24, 24], [-100, -60, -40, -20], [200, 150, 300, 190], [120, 90, 500, 400],
             [17, 17, 20, 21], [60, 60, 60, 60], [80, 50, 30, 20], [7.99, 8.0, 23.99, 24.0],
             [-8.0, 8.0, 40.0, 56.0], [130, 0, 150, 200]]
    rb = np.random.RandomState(5)
    for _ in range(10):
        x1, y1 = rb.uniform(-30, 150), rb.uniform(-30, 120)
        boxes.append([x1, y1, x1 + rb.uniform(0, 90), y1 + rb.uniform(0, 70)])
    for size, scale in ((4, 1.0 / 16), (3, 0.25), (7, 1.0 / 16)):
        b = torch.tensor(boxes, dtype=torch.float32)
        rois = torch.cat([torch.zeros(len(b), 1), b], dim=1)
        out = roi_pool(feature, rois, (size, size), scale)
        pools.append(dict(channels=3, fh=7, fw=9, feature=f32(feature), boxes=f32(b),
                          output_size=size, spatial_scale=scale, pooled=f32(out)))
    big = torch.randn(1, 2, 10, 12, generator=g)
    b = torch.tensor([[0, 0, 191, 159], [30, 20, 100, 90], [-40, -40, 60, 30], [170, 140, 400, 300]],
                     dtype=torch.float32)
    out = roi_pool(big, torch.cat([torch.zeros(len(b), 1), b], dim=1), (14, 14), 1.0 / 16)
    pools.append(dict(channels=2, fh=10, fw=12, feature=f32(big), boxes=f32(b), output_size=14,
                      spatial_scale=1.0 / 16, pooled=f32(out)))
    print(json.dumps({"generator": "detector/proposals_test.go, torch %s, torchvision %s" % (
        torch.__version__, torchvision.__version__), "proposals": cases, "roi_pool": pools},
        separators=(",", ":")), file=OUT)


if __name__ == "__main__":
    import sys
    OUT = sys.stdout
    sys.stdout = sys.stderr
    main()
# END proposals-golden
*/

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------- hand-computed cases

func f32p(v float32) *float32 { return &v }

// handSpec has no clamp effect, unit weights and an NMS that never suppresses.
func handSpec(anchors ...Box) ProposalSpec {
	return ProposalSpec{Stride: 16, CellAnchors: anchors, BoxWeights: [4]float32{1, 1, 1, 1},
		ScaleClamp: float32(math.Log(1000.0 / 16)), PreNMSTopN: 1000, PostNMSTopN: 1000, NMSIoU: 1}
}

func mustPropose(t *testing.T, s ProposalSpec, obj, del []float32, fh, fw, h, w int) []Box {
	t.Helper()
	got, err := Propose(s, obj, del, fh, fw, h, w)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkBoxes(t *testing.T, what string, got, want []Box, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d boxes %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		for j := range 4 {
			if math.Abs(float64(got[i][j])-float64(want[i][j])) > tol {
				t.Fatalf("%s: box %d = %v, want %v", what, i, got[i], want[i])
			}
		}
	}
}

// A 1×2 map with 2 anchors and offset 0.5: anchors in (y, x, a) order, objectness[a][y][x],
// deltas[a*4+c][y][x], zero deltas giving the anchors back, clipped to the 40×20 image.
func TestProposeAnchorLayoutByHand(t *testing.T) {
	s := handSpec(Box{-8, -8, 8, 8}, Box{-20, -4, 20, 4})
	s.AnchorOffset = 0.5
	// Shifts (8, 8) at x = 0 and (24, 8) at x = 1. Anchors i = x*2 + a:
	//   i0 = [0 0 16 16], i1 = [−12 4 28 12], i2 = [16 0 32 16], i3 = [4 4 44 12].
	// objectness [a][y][x]: i0 = 3, i2 = 2, i1 = 1, i3 = 4 → order i3, i0, i2, i1.
	obj := []float32{3, 2, 1, 4}
	del := make([]float32, 16)
	got := mustPropose(t, s, obj, del, 1, 2, 20, 40)
	checkBoxes(t, "zero deltas", got, []Box{{4, 4, 40, 12}, {0, 0, 16, 16}, {16, 0, 32, 16}, {0, 4, 28, 12}}, 0)

	// dx = 0.5 for anchor a = 1 at x = 1 only (i3, width 40): shifted by 20 px, then clipped.
	del[(1*4+0)*2+1] = 0.5
	// dy = −0.25 for anchor a = 0 at x = 0 (i0, height 16): up by 4 px, clipped at 0.
	del[(0*4+1)*2+0] = -0.25
	got = mustPropose(t, s, obj, del, 1, 2, 20, 40)
	checkBoxes(t, "one delta each", got, []Box{{24, 4, 40, 12}, {0, 0, 16, 12}, {16, 0, 32, 16}, {0, 4, 28, 12}}, 0)

	// Without the offset (torchvision), the shifts are (0, 0) and (16, 0).
	s.AnchorOffset = 0
	got = mustPropose(t, s, obj, make([]float32, 16), 1, 2, 20, 40)
	checkBoxes(t, "no offset", got, []Box{{0, 0, 36, 4}, {0, 0, 8, 8}, {8, 0, 24, 8}, {0, 0, 20, 4}}, 0)

	// Rows: a 2×1 map, anchor 0 only; the second row's shift is (0, 16).
	s = handSpec(Box{0, 0, 10, 10})
	got = mustPropose(t, s, []float32{1, 2}, make([]float32, 8), 2, 1, 100, 100)
	checkBoxes(t, "rows", got, []Box{{0, 16, 10, 26}, {0, 0, 10, 10}}, 0)
}

// The decode formula on a hand-worked delta, with weights (10, 10, 5, 5) and the scale clamp.
func TestProposeDecodeByHand(t *testing.T) {
	s := handSpec(Box{100, 600, 116, 616}) // w = h = 16, centre (108, 608)
	s.BoxWeights = [4]float32{10, 10, 5, 5}
	ln2 := float32(math.Ln2)
	// dx = 5/10 = 0.5 → px = 8 + 108 = 116; dy = −10/10 → py = −16 + 608 = 592;
	// dw = 5·ln2/5 → pw = 32; dh = 100/5 = 20, clamped to log(62.5) → ph = 62.5·16 = 1000.
	del := []float32{5, -10, 5 * ln2, 100}
	got := mustPropose(t, s, []float32{0}, del, 1, 1, 2000, 1000)
	checkBoxes(t, "clamped", got, []Box{{100, 92, 132, 1092}}, 1e-3)
	// The clamp is from above only: dh = −ln 4 → ph = 4.
	del[3] = -5 * float32(math.Log(4))
	got = mustPropose(t, s, []float32{0}, del, 1, 1, 2000, 1000)
	checkBoxes(t, "not clamped", got, []Box{{100, 590, 132, 594}}, 1e-3)
	// A lower clamp bites: ScaleClamp 0 → pw = ph = 16 whatever the positive dw, dh.
	s.ScaleClamp = 0
	got = mustPropose(t, s, []float32{0}, []float32{0, 0, 50, 50}, 1, 1, 2000, 1000)
	checkBoxes(t, "clamp 0", got, []Box{{100, 600, 116, 616}}, 0)
	// Clipping to the image: a box over the right and bottom edges.
	s = handSpec(Box{-10, -10, 10, 10})
	got = mustPropose(t, s, []float32{0}, []float32{0.25, 0.25, 0, 0}, 1, 1, 12, 14)
	checkBoxes(t, "clipped", got, []Box{{0, 0, 14, 12}}, 0)
}

// Top-k: descending score, ties (±0 too) by lower index, NaN last; k = PreNMSTopN.
func TestProposeTopKTiesByHand(t *testing.T) {
	s := handSpec(Box{0, 0, 10, 10})
	s.Stride = 100 // disjoint boxes at x1 = 0, 100, …, 700
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	obj := []float32{2, 5, 5, nan, 5, -1, negZero, 0}
	del := make([]float32, 4*len(obj))
	x1s := func(bs []Box) []float32 {
		var r []float32
		for _, b := range bs {
			r = append(r, b[0])
		}
		return r
	}
	for _, c := range []struct {
		k    int
		want []float32
	}{
		{4, []float32{100, 200, 400, 0}},
		{1, []float32{100}},
		{6, []float32{100, 200, 400, 0, 600, 700}},
		{8, []float32{100, 200, 400, 0, 600, 700, 500, 300}},
		{100, []float32{100, 200, 400, 0, 600, 700, 500, 300}},
	} {
		s.PreNMSTopN = c.k
		got := x1s(mustPropose(t, s, obj, del, 1, 8, 20, 800))
		if !slices.Equal(got, c.want) {
			t.Errorf("k = %d: x1 %v, want %v", c.k, got, c.want)
		}
	}
	// Many ties and a k in the middle (the partial selection's territory).
	n := 500
	obj = make([]float32, n)
	for i := range obj {
		obj[i] = float32(i % 7)
	}
	s.Stride = 20
	s.PreNMSTopN = 150
	got := mustPropose(t, s, obj, make([]float32, 4*n), 1, n, 20, 20*n)
	var want []float32
	for v := 6; len(want) < 150; v-- {
		for i := range n {
			if i%7 == v && len(want) < 150 {
				want = append(want, float32(20*i))
			}
		}
	}
	if !slices.Equal(x1s(got), want) {
		t.Errorf("ties by lower index: x1 %v\nwant %v", x1s(got), want)
	}
}

// MinSize: width > m and height > m (strictly), nil keeps degenerate boxes, 0 drops them.
func TestProposeMinSizeByHand(t *testing.T) {
	s := handSpec(Box{0, 0, 4, 10}, Box{0, 0, 5, 10}, Box{0, 0, 6, 10}, Box{0, 0, 10, 5}, Box{0, 0, 10, 6})
	obj := []float32{5, 4, 3, 2, 1}
	del := make([]float32, 20)
	s.MinSize = f32p(5)
	got := mustPropose(t, s, obj, del, 1, 1, 50, 50)
	checkBoxes(t, "MinSize 5", got, []Box{{0, 0, 6, 10}, {0, 0, 10, 6}}, 0)
	// A box pushed out of the image is clipped to a zero-width box on the edge.
	s = handSpec(Box{0, 0, 10, 10}, Box{0, 0, 8, 8})
	del = []float32{10, 0, 0, 0, 0, 0, 0, 0}
	got = mustPropose(t, s, []float32{2, 1}, del, 1, 1, 50, 50)
	checkBoxes(t, "MinSize nil", got, []Box{{50, 0, 50, 10}, {0, 0, 8, 8}}, 0)
	s.MinSize = f32p(0)
	got = mustPropose(t, s, []float32{2, 1}, del, 1, 1, 50, 50)
	checkBoxes(t, "MinSize 0", got, []Box{{0, 0, 8, 8}}, 0)
	// NaN deltas: kept (NaN) without MinSize, dropped with it.
	del[0] = float32(math.NaN())
	got = mustPropose(t, s, []float32{2, 1}, del, 1, 1, 50, 50)
	checkBoxes(t, "NaN with MinSize 0", got, []Box{{0, 0, 8, 8}}, 0)
	s.MinSize = nil
	got = mustPropose(t, s, []float32{2, 1}, del, 1, 1, 50, 50)
	if len(got) != 2 || !math.IsNaN(float64(got[0][0])) || got[0][1] != 0 {
		t.Errorf("NaN box without MinSize: %v", got)
	}
	// Everything filtered: an empty result, no error.
	s.MinSize = f32p(100)
	if got = mustPropose(t, s, []float32{2, 1}, del, 1, 1, 50, 50); len(got) != 0 {
		t.Errorf("all filtered: %v", got)
	}
}

// NMS: IoU exactly at the threshold keeps, just above suppresses; PostNMSTopN keeps the best.
func TestProposeNMSByHand(t *testing.T) {
	// IoU([0 0 10 10], [0 0 10 20]) = 100/200 = 0.5 exactly;
	// IoU([0 0 10 10], [0 0 10 19.5]) = 100/195 > 0.5.
	s := handSpec(Box{0, 0, 10, 10}, Box{0, 0, 10, 20}, Box{0, 0, 10, 19.5}, Box{30, 30, 40, 40})
	s.NMSIoU = 0.5
	obj := []float32{4, 3, 2, 1}
	del := make([]float32, 16)
	got := mustPropose(t, s, obj, del, 1, 1, 100, 100)
	// [0 0 10 20] survives the first box (IoU = 0.5) and then suppresses [0 0 10 19.5]
	// (IoU 195/200) which the first would have suppressed anyway.
	checkBoxes(t, "IoU 0.5", got, []Box{{0, 0, 10, 10}, {0, 0, 10, 20}, {30, 30, 40, 40}}, 0)
	s.NMSIoU = 0.49
	got = mustPropose(t, s, obj, del, 1, 1, 100, 100)
	checkBoxes(t, "IoU 0.49", got, []Box{{0, 0, 10, 10}, {30, 30, 40, 40}}, 0)
	// Reverse the scores: [30 30 40 40] first, then [0 0 10 19.5], which suppresses
	// [0 0 10 20] (IoU 0.975) and [0 0 10 10] (IoU 100/195 > 0.5).
	obj = []float32{1, 2, 3, 4}
	s.NMSIoU = 0.5
	got = mustPropose(t, s, obj, del, 1, 1, 100, 100)
	checkBoxes(t, "reversed", got, []Box{{30, 30, 40, 40}, {0, 0, 10, 19.5}}, 0)
	// Suppressed boxes do not suppress: [2 0 12 10] is suppressed by [0 0 10 10] (IoU 80/120)
	// and so cannot suppress [4 0 14 10] (IoU 80/120 with it, 60/140 with the first).
	s = handSpec(Box{4, 0, 14, 10}, Box{2, 0, 12, 10}, Box{0, 0, 10, 10})
	s.NMSIoU = 0.5
	got = mustPropose(t, s, []float32{1, 2, 3}, make([]float32, 12), 1, 1, 100, 100)
	checkBoxes(t, "chain", got, []Box{{0, 0, 10, 10}, {4, 0, 14, 10}}, 0)
	// Zero-area duplicates never suppress each other (IoU 0/0).
	s = handSpec(Box{5, 5, 5, 5}, Box{5, 5, 5, 5})
	s.NMSIoU = 0.1
	got = mustPropose(t, s, []float32{2, 1}, make([]float32, 8), 1, 1, 100, 100)
	checkBoxes(t, "points", got, []Box{{5, 5, 5, 5}, {5, 5, 5, 5}}, 0)

	// PostNMSTopN: five disjoint boxes, the best three.
	s = handSpec(Box{0, 0, 10, 10})
	s.Stride = 20
	s.PostNMSTopN = 3
	got = mustPropose(t, s, []float32{1, 5, 2, 4, 3}, make([]float32, 20), 1, 5, 10, 100)
	checkBoxes(t, "PostNMSTopN", got, []Box{{20, 0, 30, 10}, {60, 0, 70, 10}, {80, 0, 90, 10}}, 0)
	// PreNMSTopN is applied before NMS: the top 2 are duplicates, so one box is left, not the
	// third-ranked disjoint one.
	s = handSpec(Box{0, 0, 10, 10}, Box{0, 0, 10, 10}, Box{20, 20, 30, 30})
	s.NMSIoU = 0.7
	s.PreNMSTopN = 2
	got = mustPropose(t, s, []float32{2, 3, 1}, make([]float32, 12), 1, 1, 50, 50)
	checkBoxes(t, "PreNMSTopN", got, []Box{{0, 0, 10, 10}}, 0)
	s.PreNMSTopN = 3
	got = mustPropose(t, s, []float32{2, 3, 1}, make([]float32, 12), 1, 1, 50, 50)
	checkBoxes(t, "PreNMSTopN 3", got, []Box{{0, 0, 10, 10}, {20, 20, 30, 30}}, 0)
}

// ---------------------------------------------------------------------- brute-force reference

// refPropose restates the proposal stage in float64: the full anchor list, a stable full sort,
// and an O(n²) greedy NMS that marks the boxes each kept box suppresses.
func refPropose(s ProposalSpec, obj, del []float32, fh, fw, imgH, imgW int) [][4]float64 {
	A := len(s.CellAnchors)
	type cand struct {
		score      float32
		y, x, a    int
		box        [4]float64
		suppressed bool
	}
	var all []cand
	for y := 0; y < fh; y++ {
		for x := 0; x < fw; x++ {
			for a := 0; a < A; a++ {
				all = append(all, cand{score: obj[(a*fh+y)*fw+x], y: y, x: x, a: a})
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].score > all[j].score })
	all = all[:min(s.PreNMSTopN, len(all))]
	st, off := float64(s.Stride), float64(s.AnchorOffset)
	wt := s.BoxWeights
	var boxes []cand
	for _, c := range all {
		sx, sy := (float64(c.x)+off)*st, (float64(c.y)+off)*st
		ca := s.CellAnchors[c.a]
		x1, y1, x2, y2 := float64(ca[0])+sx, float64(ca[1])+sy, float64(ca[2])+sx, float64(ca[3])+sy
		d := func(k int) float64 { return float64(del[((c.a*4+k)*fh+c.y)*fw+c.x]) / float64(wt[k]) }
		w, h := x2-x1, y2-y1
		cx, cy := (x1+x2)/2, (y1+y2)/2
		pw := math.Exp(math.Min(d(2), float64(s.ScaleClamp))) * w
		ph := math.Exp(math.Min(d(3), float64(s.ScaleClamp))) * h
		px, py := cx+d(0)*w, cy+d(1)*h
		clip := func(v float64, lim int) float64 { return math.Min(math.Max(v, 0), float64(lim)) }
		c.box = [4]float64{clip(px-pw/2, imgW), clip(py-ph/2, imgH), clip(px+pw/2, imgW), clip(py+ph/2, imgH)}
		if s.MinSize != nil && !(c.box[2]-c.box[0] > float64(*s.MinSize) && c.box[3]-c.box[1] > float64(*s.MinSize)) {
			continue
		}
		boxes = append(boxes, c)
	}
	area := func(b [4]float64) float64 { return (b[2] - b[0]) * (b[3] - b[1]) }
	var kept [][4]float64
	for i := range boxes {
		if boxes[i].suppressed {
			continue
		}
		kept = append(kept, boxes[i].box)
		bi := boxes[i].box
		for j := i + 1; j < len(boxes); j++ {
			bj := boxes[j].box
			iw := math.Max(0, math.Min(bi[2], bj[2])-math.Max(bi[0], bj[0]))
			ih := math.Max(0, math.Min(bi[3], bj[3])-math.Max(bi[1], bj[1]))
			inter := iw * ih
			if inter/(area(bi)+area(bj)-inter) > float64(s.NMSIoU) {
				boxes[j].suppressed = true
			}
		}
	}
	return kept[:min(len(kept), s.PostNMSTopN)]
}

func TestProposeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 14))
	var kept, filtered, trials int
	for trial := range 60 {
		A := 1 + rng.IntN(9)
		fh, fw := 1+rng.IntN(12), 1+rng.IntN(14)
		s := ProposalSpec{
			Stride:      16,
			BoxWeights:  [4]float32{1, 1, 1, 1},
			ScaleClamp:  float32(math.Log(1000.0 / 16)),
			PreNMSTopN:  1 + rng.IntN(A*fh*fw+20),
			PostNMSTopN: 1 + rng.IntN(80),
			NMSIoU:      float32(0.3 + 0.6*rng.Float64()),
		}
		if trial%2 == 1 {
			s.AnchorOffset = 0.5
			s.BoxWeights = [4]float32{1 + 9*rng.Float32(), 1 + 9*rng.Float32(), 1 + 4*rng.Float32(), 1 + 4*rng.Float32()}
		}
		if trial%3 == 0 {
			s.MinSize = f32p(float32(20 * rng.Float64()))
		}
		for range A {
			w, h := 8+120*rng.Float64(), 8+120*rng.Float64()
			s.CellAnchors = append(s.CellAnchors, Box{float32(-w / 2), float32(-h / 2), float32(w / 2), float32(h / 2)})
		}
		n := A * fh * fw
		obj := make([]float32, n)
		for i := range obj {
			obj[i] = float32(rng.NormFloat64() * 3)
		}
		del := make([]float32, 4*n)
		for i := range del {
			del[i] = float32(rng.NormFloat64() * 0.7)
			if rng.IntN(20) == 0 {
				del[i] = float32(rng.NormFloat64() * 8) // beyond the clamp, or far out of the image
			}
		}
		imgH, imgW := fh*16-rng.IntN(16), fw*16-rng.IntN(16)
		got := mustPropose(t, s, obj, del, fh, fw, imgH, imgW)
		want := refPropose(s, obj, del, fh, fw, imgH, imgW)
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d proposals, reference %d", trial, len(got), len(want))
		}
		for i := range got {
			for j := range 4 {
				if d := math.Abs(float64(got[i][j]) - want[i][j]); d > 1e-4*math.Max(1, math.Abs(want[i][j])) {
					t.Fatalf("trial %d box %d: %v, reference %v", trial, i, got[i], want[i])
				}
			}
		}
		trials++
		kept += len(got)
		filtered += min(s.PreNMSTopN, n) - len(got)
	}
	t.Logf("%d trials, %d proposals kept, %d dropped by the size filter, NMS or PostNMSTopN", trials, kept, filtered)
	if kept < 500 || filtered < 500 {
		t.Errorf("the random cases exercise too little: %d kept, %d dropped", kept, filtered)
	}
}

// The partial selection behind top-k, against a full sort, on inputs that defeat naive pivots.
func TestSelectSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	for _, n := range []int{1, 2, 3, 17, 100, 1000, 5000} {
		patterns := map[string]func(i int) uint64{
			"random":   func(int) uint64 { return rng.Uint64() },
			"sorted":   func(i int) uint64 { return uint64(i) },
			"reversed": func(i int) uint64 { return uint64(n - i) },
			"organ":    func(i int) uint64 { return uint64(min(i, n-i)) },
			"few":      func(int) uint64 { return uint64(rng.IntN(3)) },
		}
		for name, gen := range patterns {
			keys := make([]uint64, n)
			for i := range keys {
				keys[i] = gen(i)
			}
			want := slices.Clone(keys)
			slices.Sort(want)
			for _, k := range []int{1, 2, n / 3, n / 2, n - 1, n} {
				if k < 1 || k > n {
					continue
				}
				got := slices.Clone(keys)
				selectSmallest(got, k)
				got = got[:k]
				slices.Sort(got)
				if !slices.Equal(got, want[:k]) {
					t.Fatalf("%s n = %d k = %d: the %d smallest differ", name, n, k, k)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------- PyTorch goldens

type proposalsGolden struct {
	Generator string
	Proposals []struct {
		Name string
		Spec struct {
			Stride       float32    `json:"stride"`
			AnchorOffset float32    `json:"anchor_offset"`
			CellAnchors  []float32  `json:"cell_anchors"`
			BoxWeights   [4]float32 `json:"box_weights"`
			ScaleClamp   float32    `json:"scale_clamp"`
			PreNMSTopN   int        `json:"pre_nms_top_n"`
			PostNMSTopN  int        `json:"post_nms_top_n"`
			NMSIoU       float32    `json:"nms_iou"`
			MinSize      *float32   `json:"min_size"`
		}
		FH         int `json:"fh"`
		FW         int `json:"fw"`
		ImageH     int `json:"image_h"`
		ImageW     int `json:"image_w"`
		Objectness []float32
		Deltas     []float32
		Boxes      []float32
	} `json:"proposals"`
	RoIPool []struct {
		Channels     int       `json:"channels"`
		FH           int       `json:"fh"`
		FW           int       `json:"fw"`
		Feature      []float32 `json:"feature"`
		Boxes        []float32 `json:"boxes"`
		OutputSize   int       `json:"output_size"`
		SpatialScale float32   `json:"spatial_scale"`
		Pooled       []float32 `json:"pooled"`
	} `json:"roi_pool"`
}

func TestProposeMatchesPyTorch(t *testing.T) {
	var g proposalsGolden
	loadJSON(t, "proposals-golden.json", &g)
	if len(g.Proposals) == 0 {
		t.Fatal("no proposal cases")
	}
	for _, c := range g.Proposals {
		s := ProposalSpec{
			Stride: c.Spec.Stride, AnchorOffset: c.Spec.AnchorOffset, CellAnchors: boxesFromFlat(c.Spec.CellAnchors),
			BoxWeights: c.Spec.BoxWeights, ScaleClamp: c.Spec.ScaleClamp, PreNMSTopN: c.Spec.PreNMSTopN,
			PostNMSTopN: c.Spec.PostNMSTopN, NMSIoU: c.Spec.NMSIoU, MinSize: c.Spec.MinSize,
		}
		got, err := Propose(s, c.Objectness, c.Deltas, c.FH, c.FW, c.ImageH, c.ImageW)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		want := boxesFromFlat(c.Boxes)
		if len(got) != len(want) {
			t.Fatalf("%s: %d proposals, PyTorch %d", c.Name, len(got), len(want))
		}
		maxDiff := 0.0
		for i := range got {
			for j := range 4 {
				d := math.Abs(float64(got[i][j]) - float64(want[i][j]))
				maxDiff = max(maxDiff, d)
				if d > 1e-3 {
					t.Fatalf("%s: proposal %d = %v, PyTorch %v", c.Name, i, got[i], want[i])
				}
			}
		}
		t.Logf("%s: %d anchors (%d×%d×%d), %d proposals as PyTorch's, max |Δ| %.2g px", c.Name,
			len(c.Objectness), len(s.CellAnchors), c.FH, c.FW, len(got), maxDiff)
	}
}

// ---------------------------------------------------------------------- RoIPool

func TestRoIPoolMatchesTorchvision(t *testing.T) {
	var g proposalsGolden
	loadJSON(t, "proposals-golden.json", &g)
	if len(g.RoIPool) == 0 {
		t.Fatal("no roi_pool cases")
	}
	for n, c := range g.RoIPool {
		got, err := pooled(c.Feature, c.Channels, c.FH, c.FW, boxesFromFlat(c.Boxes), c.OutputSize, c.SpatialScale)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.Pooled) {
			t.Fatalf("case %d: %d values, torchvision %d", n, len(got), len(c.Pooled))
		}
		zeros := 0
		for i := range got {
			if got[i] != c.Pooled[i] {
				S := c.OutputSize
				t.Fatalf("case %d: box %d channel %d bin (%d, %d) = %v, torchvision %v", n,
					i/(c.Channels*S*S), i/(S*S)%c.Channels, i/S%S, i%S, got[i], c.Pooled[i])
			}
			if got[i] == 0 {
				zeros++
			}
		}
		t.Logf("case %d: %d boxes, S = %d, scale %v: %d values (%d zero) identical", n, len(c.Boxes)/4,
			c.OutputSize, c.SpatialScale, len(got), zeros)
	}
}

func TestRoIPoolByHand(t *testing.T) {
	// One 4×4 channel holding 1..16 row by row, scale 1/16.
	feature := make([]float32, 16)
	for i := range feature {
		feature[i] = float32(i + 1)
	}
	at := func(y, x int) float32 { return float32(4*y + x + 1) }
	for _, c := range []struct {
		name string
		box  Box
		S    int
		want []float32
	}{
		// round(63/16) = 4: cells 0..4 (width 5, beyond the map), bins of 2.5:
		// [0, 3) and [2, 5) → [2, 4).
		{"whole", Box{0, 0, 63, 63}, 2, []float32{at(2, 2), at(2, 3), at(3, 2), at(3, 3)}},
		// 24/16 = 1.5 rounds (half away from zero) to 2; 8/16 = 0.5 to 1 (not to even 0).
		{"half up", Box{24, 24, 24, 24}, 1, []float32{at(2, 2)}},
		{"half to 1", Box{8, 8, 8, 8}, 1, []float32{at(1, 1)}},
		// −8/16 = −0.5 rounds to −1: outside the map, an empty bin.
		{"half down", Box{-8, -8, -8, -8}, 1, []float32{0}},
		// x: −1..1 (width 3), bins of 1.5: [−1, 1) → [0, 1) and [0, 2) → cells 0..1.
		{"partly outside", Box{-8, 0, 16, 0}, 2, []float32{at(0, 0), at(0, 1), at(0, 0), at(0, 1)}},
		// Inverted: end < start, forced to one cell at the start; 2×2 bins of 0.5:
		// [0, 1), [0, 1) for both — all four bins are cell (3, 1).
		{"inverted", Box{16, 48, 0, 32}, 2, []float32{at(3, 1), at(3, 1), at(3, 1), at(3, 1)}},
		// x 1..2, y 0..3, S = 3: x bins of 2/3 → [0, 1), [0, 2), [1, 2) + 1; y bins [0, 2),
		// [1, 3), [2, 4).
		{"3×3", Box{16, 0, 32, 48}, 3, []float32{
			at(1, 1), at(1, 2), at(1, 2),
			at(2, 1), at(2, 2), at(2, 2),
			at(3, 1), at(3, 2), at(3, 2)}},
		{"beyond", Box{100, 0, 200, 63}, 2, []float32{0, 0, 0, 0}},
	} {
		got, err := pooled(feature, 1, 4, 4, []Box{c.box}, c.S, 1.0/16)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}

	// Two channels, two boxes: [P, C, S, S] layout.
	two := append(slices.Clone(feature), make([]float32, 16)...)
	for i := range 16 {
		two[16+i] = -float32(i + 1)
	}
	got, err := pooled(two, 2, 4, 4, []Box{{24, 24, 24, 24}, {0, 0, 0, 0}}, 1, 1.0/16)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{at(2, 2), -at(2, 2), at(0, 0), -at(0, 0)}; !slices.Equal(got, want) {
		t.Errorf("layout: %v, want %v", got, want)
	}

	// NaN: a NaN value is skipped, a bin of NaN alone is −MaxFloat32, a NaN box pools to 0.
	nan := float32(math.NaN())
	f := []float32{nan, 1, nan, nan}
	got, err = pooled(f, 1, 2, 2, []Box{{0, 0, 16, 16}, {0, 16, 0, 16}, {0, 0, 16, 0}, {nan, 0, 1, 1}}, 1, 1.0/16)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, -math.MaxFloat32, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("NaN: %v, want %v", got, want)
	}
	// Without NaN (the integer-key path): −Inf alone gives −MaxFloat32 too; −0 < +0 is not a
	// maximum the kernel would change.
	inf := float32(math.Inf(1))
	f = []float32{-inf, -inf, -2, -1}
	got, err = pooled(f, 1, 2, 2, []Box{{0, 0, 16, 0}, {0, 0, 16, 16}, {0, 16, 0, 16}}, 1, 1.0/16)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{-math.MaxFloat32, -1, -2}; !slices.Equal(got, want) {
		t.Errorf("−Inf: %v, want %v", got, want)
	}

	// RoIPool overwrites every value of its buffer, empty bins included.
	dst := make([]float32, 3*4)
	for i := range dst {
		dst[i] = 99
	}
	if err := RoIPool(dst, feature, 1, 4, 4, []Box{{0, 0, 63, 63}, {100, 100, 200, 200}, {nan, 0, 1, 1}}, 2, 1.0/16); err != nil {
		t.Fatal(err)
	}
	if want := []float32{at(2, 2), at(2, 3), at(3, 2), at(3, 3), 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(dst, want) {
		t.Errorf("RoIPool: %v, want %v", dst, want)
	}
	if err := RoIPool(dst[1:], feature, 1, 4, 4, []Box{{0, 0, 63, 63}, {0, 0, 1, 1}, {0, 0, 1, 1}}, 2, 1.0/16); err == nil {
		t.Error("RoIPool accepted a short buffer")
	}

	// Huge coordinates are clamped, not overflowed: the box covers the whole map.
	got, err = pooled(feature, 1, 4, 4, []Box{{-1e30, -1e30, 1e30, 1e30}, {float32(math.Inf(-1)), 0, float32(math.Inf(1)), 63}}, 1, 1.0/16)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{16, 16}; !slices.Equal(got, want) {
		t.Errorf("huge: %v, want %v", got, want)
	}
}

// naiveRoIPool restates the kernel per output value, straight from Caffe's rules.
func naiveRoIPool(feature []float32, C, fh, fw int, boxes []Box, S int, scale float32) []float32 {
	out := make([]float32, len(boxes)*C*S*S)
	clip := func(v, hi int) int { return min(max(v, 0), hi) }
	for p, b := range boxes {
		x1 := int(math.Round(float64(b[0] * scale)))
		y1 := int(math.Round(float64(b[1] * scale)))
		x2 := int(math.Round(float64(b[2] * scale)))
		y2 := int(math.Round(float64(b[3] * scale)))
		bw := float32(max(x2-x1+1, 1)) / float32(S)
		bh := float32(max(y2-y1+1, 1)) / float32(S)
		for c := range C {
			for ph := range S {
				for pw := range S {
					hs := clip(int(math.Floor(float64(float32(ph)*bh)))+y1, fh)
					he := clip(int(math.Ceil(float64(float32(ph+1)*bh)))+y1, fh)
					ws := clip(int(math.Floor(float64(float32(pw)*bw)))+x1, fw)
					we := clip(int(math.Ceil(float64(float32(pw+1)*bw)))+x1, fw)
					var m float32
					if he > hs && we > ws {
						m = float32(math.Inf(-1))
						for h := hs; h < he; h++ {
							for w := ws; w < we; w++ {
								m = max(m, feature[(c*fh+h)*fw+w])
							}
						}
					}
					out[((p*C+c)*S+ph)*S+pw] = m
				}
			}
		}
	}
	return out
}

// Random boxes on a map large enough to run on several goroutines.
func TestRoIPoolMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	C, fh, fw, S := 40, 13, 17, 7
	feature := make([]float32, C*fh*fw)
	for i := range feature {
		feature[i] = float32(rng.NormFloat64())
	}
	boxes := make([]Box, 90)
	for i := range boxes {
		x1, y1 := float32(rng.Float64()*300-30), float32(rng.Float64()*240-30)
		boxes[i] = Box{x1, y1, x1 + float32(rng.Float64()*200), y1 + float32(rng.Float64()*160)}
	}
	boxes[0] = Box{0, 0, 0, 0}
	boxes[1] = Box{50, 50, 20, 10}
	got, err := pooled(feature, C, fh, fw, boxes, S, 1.0/16)
	if err != nil {
		t.Fatal(err)
	}
	if want := naiveRoIPool(feature, C, fh, fw, boxes, S, 1.0/16); !slices.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("value %d: %v, naive %v", i, got[i], want[i])
			}
		}
	}
	if got, err = pooled(feature, C, fh, fw, nil, S, 1.0/16); err != nil || len(got) != 0 {
		t.Errorf("no boxes: %v, %v", got, err)
	}
}

func TestRoIs(t *testing.T) {
	got := RoIs([]Box{{1, 2, 3, 4}, {5, 6, 7, 8}})
	if want := []float32{0, 1, 2, 3, 4, 0, 5, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("RoIs: %v, want %v", got, want)
	}
	if got := RoIs(nil); len(got) != 0 {
		t.Errorf("RoIs(nil): %v", got)
	}
}

// ---------------------------------------------------------------------- errors

func TestProposalSpecValidate(t *testing.T) {
	good := handSpec(Box{-8, -8, 8, 8})
	good.MinSize = f32p(0)
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		field string
		edit  func(*ProposalSpec)
	}{
		{"CellAnchors", func(s *ProposalSpec) { s.CellAnchors = nil }},
		{"CellAnchors", func(s *ProposalSpec) { s.CellAnchors = []Box{{0, 0, nan, 1}} }},
		{"CellAnchors", func(s *ProposalSpec) { s.CellAnchors = []Box{{0, 0, 1, 1}, {0, -inf, 1, 1}} }},
		{"Stride", func(s *ProposalSpec) { s.Stride = 0 }},
		{"Stride", func(s *ProposalSpec) { s.Stride = -16 }},
		{"Stride", func(s *ProposalSpec) { s.Stride = inf }},
		{"AnchorOffset", func(s *ProposalSpec) { s.AnchorOffset = nan }},
		{"AnchorOffset", func(s *ProposalSpec) { s.AnchorOffset = -0.5 }},
		{"AnchorOffset", func(s *ProposalSpec) { s.AnchorOffset = 1 }},
		{"BoxWeights[0]", func(s *ProposalSpec) { s.BoxWeights[0] = 0 }},
		{"BoxWeights[2]", func(s *ProposalSpec) { s.BoxWeights[2] = -1 }},
		{"BoxWeights[3]", func(s *ProposalSpec) { s.BoxWeights[3] = nan }},
		{"ScaleClamp", func(s *ProposalSpec) { s.ScaleClamp = nan }},
		{"ScaleClamp", func(s *ProposalSpec) { s.ScaleClamp = inf }},
		{"PreNMSTopN", func(s *ProposalSpec) { s.PreNMSTopN = 0 }},
		{"PostNMSTopN", func(s *ProposalSpec) { s.PostNMSTopN = -1 }},
		{"NMSIoU", func(s *ProposalSpec) { s.NMSIoU = 0 }},
		{"NMSIoU", func(s *ProposalSpec) { s.NMSIoU = 1.01 }},
		{"NMSIoU", func(s *ProposalSpec) { s.NMSIoU = nan }},
		{"MinSize", func(s *ProposalSpec) { s.MinSize = f32p(-1) }},
		{"MinSize", func(s *ProposalSpec) { s.MinSize = f32p(nan) }},
	} {
		s := good
		s.CellAnchors = slices.Clone(good.CellAnchors)
		c.edit(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("bad %s: %v", c.field, err)
			continue
		}
		if _, err := Propose(s, []float32{1}, make([]float32, 4*len(s.CellAnchors)), 1, 1, 10, 10); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("Propose with bad %s: %v", c.field, err)
		}
	}
}

func TestProposeErrors(t *testing.T) {
	s := handSpec(Box{-8, -8, 8, 8}, Box{-16, -16, 16, 16})
	obj, del := make([]float32, 2*3*4), make([]float32, 8*3*4)
	if _, err := Propose(s, obj, del, 3, 4, 48, 64); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name                   string
		obj, del               []float32
		fh, fw, imageH, imageW int
		outputs                bool
	}{
		{"short objectness", obj[1:], del, 3, 4, 48, 64, true},
		{"long objectness", append(slices.Clone(obj), 0), del, 3, 4, 48, 64, true},
		{"short deltas", obj, del[4:], 3, 4, 48, 64, true},
		{"objectness for 1 anchor", obj[:12], del, 3, 4, 48, 64, true},
		{"transposed map", obj, del, 4, 4, 48, 64, true},
		{"zero height", nil, nil, 0, 4, 48, 64, true},
		{"negative width", obj, del, 3, -4, 48, 64, true},
		{"huge map", obj, del, 1 << 20, 1 << 20, 48, 64, true},
		{"zero image height", obj, del, 3, 4, 0, 64, false},
		{"negative image width", obj, del, 3, 4, 48, -1, false},
	} {
		_, err := Propose(s, c.obj, c.del, c.fh, c.fw, c.imageH, c.imageW)
		if err == nil || c.outputs != errors.Is(err, ErrInvalidOutputs) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestRoIPoolErrors(t *testing.T) {
	f := make([]float32, 2*3*4)
	b := []Box{{0, 0, 10, 10}}
	for _, c := range []struct {
		name         string
		f            []float32
		C, fh, fw, S int
		scale        float32
		want         error
	}{
		{"short feature", f[1:], 2, 3, 4, 2, 1, ErrInvalidOutputs},
		{"zero channels", f, 0, 3, 4, 2, 1, ErrInvalidOutputs},
		{"zero height", f, 2, 0, 4, 2, 1, ErrInvalidOutputs},
		{"negative width", f, 2, 3, -4, 2, 1, ErrInvalidOutputs},
		{"huge map", f, 1 << 20, 1 << 20, 4, 2, 1, ErrInvalidOutputs},
		{"output size 0", f, 2, 3, 4, 0, 1, ErrInvalidSpec},
		{"scale 0", f, 2, 3, 4, 2, 0, ErrInvalidSpec},
		{"scale NaN", f, 2, 3, 4, 2, float32(math.NaN()), ErrInvalidSpec},
	} {
		if err := RoIPool(nil, c.f, c.C, c.fh, c.fw, b, c.S, c.scale); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// ---------------------------------------------------------------------- benchmarks

// bottom-up-attention at 600×1000: 15 anchors on a 38×63 map, k = 6000, 300 kept.
func BenchmarkPropose(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := ProposalSpec{Stride: 16, BoxWeights: [4]float32{1, 1, 1, 1}, ScaleClamp: float32(math.Log(1000.0 / 16)),
		PreNMSTopN: 6000, PostNMSTopN: 300, NMSIoU: 0.7, MinSize: f32p(0)}
	for _, size := range []float64{32, 64, 128, 256, 512} {
		for _, ratio := range []float64{0.5, 1, 2} {
			w := math.Sqrt(size * size / ratio)
			h := ratio * w
			s.CellAnchors = append(s.CellAnchors, Box{float32(-w / 2), float32(-h / 2), float32(w / 2), float32(h / 2)})
		}
	}
	A, fh, fw := len(s.CellAnchors), 38, 63
	obj := make([]float32, A*fh*fw)
	for i := range obj {
		obj[i] = float32(rng.NormFloat64() * 2)
	}
	del := make([]float32, 4*len(obj))
	for i := range del {
		del[i] = float32(rng.NormFloat64() * 0.2)
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		got, err := Propose(s, obj, del, fh, fw, 600, 1000)
		if err != nil {
			b.Fatal(err)
		}
		n = len(got)
	}
	b.ReportMetric(float64(n), "proposals")
}

// bottom-up-attention's region pooling: C = 1024 on a 38×63 map, 300 boxes, 14×14.
func BenchmarkRoIPool(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	C, fh, fw := 1024, 38, 63
	feature := make([]float32, C*fh*fw)
	for i := range feature {
		feature[i] = float32(rng.NormFloat64())
	}
	boxes := make([]Box, 300)
	for i := range boxes {
		w, h := 16+rng.Float64()*500, 16+rng.Float64()*400
		x1, y1 := rng.Float64()*(1000-w), rng.Float64()*(600-h)
		boxes[i] = Box{float32(x1), float32(y1), float32(x1 + w), float32(y1 + h)}
	}
	dst := make([]float32, len(boxes)*C*14*14) // reused, as the pipeline's buffer pool does
	b.ReportAllocs()
	for b.Loop() {
		if err := RoIPool(dst, feature, C, fh, fw, boxes, 14, 1.0/16); err != nil {
			b.Fatal(err)
		}
	}
}

// pooled is RoIPool into a new buffer.
func pooled(feature []float32, channels, fh, fw int, boxes []Box, S int, scale float32) ([]float32, error) {
	out := make([]float32, len(boxes)*channels*S*S)
	return out, RoIPool(out, feature, channels, fh, fw, boxes, S, scale)
}
