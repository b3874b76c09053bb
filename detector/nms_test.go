package detector

import (
	"slices"
	"testing"
)

func boxesFromFlat(v []float32) []Box {
	b := make([]Box, len(v)/4)
	for i := range b {
		copy(b[i][:], v[4*i:4*i+4])
	}
	return b
}

// nms against torchvision.ops.nms (testdata/make_nms_golden.py): random boxes, ties,
// duplicates and zero-area boxes, thresholds 0 to 1.
func TestNMSMatchesTorchvision(t *testing.T) {
	var g struct {
		Cases []struct {
			Boxes, Scores []float32
			IoU           float64
			Keep          []int
		}
	}
	loadJSON(t, "nms_golden.json", &g)
	if len(g.Cases) == 0 {
		t.Fatal("no golden cases")
	}
	kept := 0
	for n, c := range g.Cases {
		got := nms(boxesFromFlat(c.Boxes), c.Scores, float32(c.IoU))
		if !slices.Equal(got, c.Keep) {
			t.Errorf("case %d (%d boxes, IoU %v): got %v\ntorchvision %v", n, len(c.Scores), c.IoU, got, c.Keep)
		}
		kept += len(got)
	}
	t.Logf("%d cases, %d kept boxes, all identical to torchvision", len(g.Cases), kept)
}

func TestNMSByHand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		boxes  []Box
		scores []float32
		iou    float32
		want   []int
	}{
		{"empty", nil, nil, 0.5, []int{}},
		{"identical boxes: higher score wins", []Box{{0, 0, 10, 10}, {0, 0, 10, 10}}, []float32{0.2, 0.9}, 0.5, []int{1}},
		{"identical boxes, equal scores: lower index wins", []Box{{0, 0, 10, 10}, {0, 0, 10, 10}, {0, 0, 10, 10}}, []float32{0.5, 0.5, 0.5}, 0.5, []int{0}},
		{"equal scores keep index order", []Box{{0, 0, 1, 1}, {5, 5, 6, 6}, {9, 9, 10, 10}}, []float32{0.5, 0.5, 0.5}, 0.5, []int{0, 1, 2}},
		{"disjoint: all kept by score", []Box{{0, 0, 1, 1}, {2, 2, 3, 3}, {4, 4, 5, 5}}, []float32{0.1, 0.3, 0.2}, 0.1, []int{1, 2, 0}},
		{"touching edges do not overlap", []Box{{0, 0, 1, 1}, {1, 0, 2, 1}}, []float32{0.9, 0.8}, 0, []int{0, 1}},
		// Nested: IoU = 25/100 = 0.25.
		{"nested, IoU 0.25 > 0.2", []Box{{0, 0, 10, 10}, {0, 0, 5, 5}}, []float32{0.9, 0.8}, 0.2, []int{0}},
		{"nested, IoU 0.25 < 0.3", []Box{{0, 0, 10, 10}, {0, 0, 5, 5}}, []float32{0.9, 0.8}, 0.3, []int{0, 1}},
		// IoU exactly 0.5 (intersection 2, union 4): suppressed only when strictly greater.
		{"IoU equal to the threshold is kept", []Box{{0, 0, 3, 1}, {1, 0, 4, 1}}, []float32{0.9, 0.8}, 0.5, []int{0, 1}},
		{"IoU just above the threshold", []Box{{0, 0, 3, 1}, {1, 0, 4, 1}}, []float32{0.9, 0.8}, 0.4999, []int{0}},
		{"threshold 1 keeps identical boxes", []Box{{0, 0, 3, 1}, {0, 0, 3, 1}}, []float32{0.9, 0.8}, 1, []int{0, 1}},
		// Zero-area boxes: IoU 0/0 is NaN and never suppresses, even for identical ones.
		{"zero-area boxes never suppress", []Box{{5, 5, 5, 9}, {5, 5, 5, 9}, {3, 3, 3, 3}}, []float32{0.9, 0.8, 0.7}, 0, []int{0, 1, 2}},
		{"a zero-area box inside a real one", []Box{{0, 0, 10, 10}, {2, 2, 2, 8}}, []float32{0.9, 0.8}, 0, []int{0, 1}},
		// Greedy: A suppresses B, so C (overlapping only B) survives.
		{"chain", []Box{{0, 0, 10, 10}, {5, 0, 15, 10}, {10, 0, 20, 10}}, []float32{0.9, 0.8, 0.7}, 0.3, []int{0, 2}},
		{"suppressed boxes do not suppress", []Box{{0, 0, 10, 10}, {5, 0, 15, 10}, {10, 0, 20, 10}}, []float32{0.8, 0.9, 0.7}, 0.3, []int{1}},
	} {
		got := nms(tc.boxes, tc.scores, tc.iou)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// nms is torchvision.ops.nms built on the primitives Select uses (iouAbove, orderByScore), so
// that the goldens below check those primitives against torchvision: greedy non-maximum suppression over boxes [x1, y1, x2, y2] in
// descending score order (ties: lower index first; NaN scores last). A box is dropped when its
// IoU with an already kept box is strictly greater than iou (torchvision convention: area
// without +1, see iouAbove). It returns the kept indices in that order. The threshold is
// compared as float64(iou); to reproduce torchvision with a Python float threshold t, pass
// float32(t) there too. It panics if len(scores) != len(boxes).
func nms(boxes []Box, scores []float32, iou float32) []int {
	n := len(boxes)
	if len(scores) != n {
		panic("nms: len(scores) != len(boxes)")
	}
	areas := make([]float32, n)
	for i := range areas {
		areas[i] = boxArea(boxes[i])
	}
	order := orderByScore(n, func(i int) float32 { return scores[i] })
	thr := float64(iou)
	suppressed := make([]bool, n)
	keep := make([]int, 0, n)
	for k, i := range order {
		if suppressed[i] {
			continue
		}
		keep = append(keep, i)
		for _, j := range order[k+1:] {
			if !suppressed[j] && iouAbove(boxes[i], boxes[j], areas[i], areas[j], thr) {
				suppressed[j] = true
			}
		}
	}
	return keep
}
