package detector

import (
	"errors"
	"math"
	"math/rand"
	"slices"
	"sort"
	"testing"
)

var butdSelection = SelectionSpec{NMSIoU: 0.3, MinConfidence: 0.2, MinBoxes: 10, MaxBoxes: 100, Background: 0}

// naiveSelect is the contract's selection written out as plainly as possible: per class, a
// from-scratch greedy NMS (own IoU, own sort), then a stable sort and the thresholds.
func naiveSelect(boxes []Box, probs []float32, C int, spec SelectionSpec) ([]int, []float32) {
	P := len(boxes)
	conf := make([]float32, P)
	for c := 0; c < C; c++ {
		if c == spec.Background {
			continue
		}
		order := make([]int, P)
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return probs[order[a]*C+c] > probs[order[b]*C+c] })
		dead := make([]bool, P)
		for k, i := range order {
			if dead[i] {
				continue
			}
			if s := probs[i*C+c]; s > conf[i] {
				conf[i] = s
			}
			for _, j := range order[k+1:] {
				a, b := boxes[i], boxes[j]
				iw := float32(math.Max(0, float64(min(a[2], b[2])-max(a[0], b[0]))))
				ih := float32(math.Max(0, float64(min(a[3], b[3])-max(a[1], b[1]))))
				inter := float32(iw * ih)
				areaA := float32((a[2] - a[0]) * (a[3] - a[1]))
				areaB := float32((b[2] - b[0]) * (b[3] - b[1]))
				if float64(inter/float32(areaA+areaB-inter)) > float64(spec.NMSIoU) {
					dead[j] = true
				}
			}
		}
	}
	order := make([]int, P)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return conf[order[a]] > conf[order[b]] })
	n := 0
	for _, i := range order {
		if conf[i] >= spec.MinConfidence {
			n++
		}
	}
	if n < spec.MinBoxes {
		n = min(spec.MinBoxes, P)
	}
	n = min(n, spec.MaxBoxes)
	out := make([]float32, n)
	for k := range out {
		out[k] = conf[order[k]]
	}
	return order[:n], out
}

// randomDetections makes P proposals in an 800×600 image with softmax class probabilities;
// sharp controls how peaked they are. Some boxes are duplicated or degenerate and some rows
// tie.
func randomDetections(rng *rand.Rand, P, C int, sharp float64) ([]Box, []float32) {
	boxes := make([]Box, P)
	for i := range boxes {
		x, y := rng.Float32()*700, rng.Float32()*500
		boxes[i] = Box{x, y, min(x+rng.Float32()*300, 800), min(y+rng.Float32()*300, 600)}
	}
	probs := make([]float32, P*C)
	for i := 0; i < P; i++ {
		row := probs[i*C : (i+1)*C]
		sum := 0.0
		for c := range row {
			v := math.Exp(rng.NormFloat64() * sharp)
			row[c] = float32(v)
			sum += v
		}
		for c := range row {
			row[c] = float32(float64(row[c]) / sum)
		}
	}
	if P >= 8 {
		boxes[1] = boxes[0]
		boxes[2][2] = boxes[2][0] // zero width
		boxes[3] = Box{10, 10, 10, 10}
		copy(probs[5*C:6*C], probs[4*C:5*C]) // tie in every class
	}
	return boxes, probs
}

func TestSelectMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	for n := 0; n < 200; n++ {
		P, C := 1+rng.Intn(120), 2+rng.Intn(12)
		boxes, probs := randomDetections(rng, P, C, []float64{0.3, 2, 5}[n%3])
		spec := SelectionSpec{NMSIoU: []float32{0, 0.3, 0.5, 0.7, 1}[rng.Intn(5)], MinConfidence: rng.Float32() * 0.8,
			MinBoxes: rng.Intn(20), Background: rng.Intn(C+1) - 1}
		spec.MaxBoxes = spec.MinBoxes + 1 + rng.Intn(60)
		idx, conf, err := Select(boxes, probs, C, spec)
		if err != nil {
			t.Fatal(err)
		}
		wantIdx, wantConf := naiveSelect(boxes, probs, C, spec)
		if !slices.Equal(idx, wantIdx) || !slices.Equal(conf, wantConf) {
			t.Fatalf("P=%d C=%d %+v:\n got %v %v\nwant %v %v", P, C, spec, idx, conf, wantIdx, wantConf)
		}
	}
}

// Select against its independent Python implementation over torchvision.ops.nms
// (testdata/make_select_golden.py).
func TestSelectMatchesTorchvisionGolden(t *testing.T) {
	var g struct {
		Cases []struct {
			Boxes, Probs []float32
			Classes      int
			Spec         struct {
				NMSIoU        float32 `json:"nms_iou"`
				MinConfidence float32 `json:"min_confidence"`
				MinBoxes      int     `json:"min_boxes"`
				MaxBoxes      int     `json:"max_boxes"`
				Background    int
				MinSide       float32 `json:"min_side"`
			}
			Idx  []int
			Conf []float32
		}
	}
	loadJSON(t, "select_golden.json", &g)
	if len(g.Cases) == 0 {
		t.Fatal("no golden cases")
	}
	for n, c := range g.Cases {
		spec := SelectionSpec{NMSIoU: c.Spec.NMSIoU, MinConfidence: c.Spec.MinConfidence,
			MinBoxes: c.Spec.MinBoxes, MaxBoxes: c.Spec.MaxBoxes, Background: c.Spec.Background, MinSide: c.Spec.MinSide}
		idx, conf, err := Select(boxesFromFlat(c.Boxes), c.Probs, c.Classes, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(idx, c.Idx) || !slices.Equal(conf, c.Conf) {
			t.Errorf("case %d (P=%d C=%d %+v):\n got %v %v\nwant %v %v", n, len(c.Boxes)/4, c.Classes, spec, idx, conf, c.Idx, c.Conf)
		}
	}
	if c := g.Cases[len(g.Cases)-2]; c.Spec.MinSide == 0 || slices.Contains(c.Idx, 2) || slices.Contains(c.Idx, 8) || !slices.Contains(c.Idx, 9) {
		t.Errorf("the min_side case should drop proposals 2 (zero width) and 8 (1.5 wide) and keep 9 (2 wide): %v", c.Idx)
	}
	t.Logf("%d cases identical to the torchvision-based reference", len(g.Cases))
}

// probsRows builds a P×C matrix from rows.
func probsRows(rows ...[]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

func TestSelectByHand(t *testing.T) {
	far := func(i int) Box { f := float32(i * 20); return Box{f, 0, f + 10, 10} } // disjoint boxes
	spec := func(min, max int, conf float32) SelectionSpec {
		return SelectionSpec{NMSIoU: 0.3, MinConfidence: conf, MinBoxes: min, MaxBoxes: max, Background: 0}
	}
	for _, tc := range []struct {
		name     string
		boxes    []Box
		probs    []float32
		spec     SelectionSpec
		wantIdx  []int
		wantConf []float32
	}{
		{"fewer than min_boxes above the threshold: top min_boxes by confidence",
			[]Box{far(0), far(1), far(2), far(3), far(4)},
			probsRows([]float32{0.9, 0.1}, []float32{0.7, 0.3}, []float32{0.1, 0.9}, []float32{0.8, 0.2}, []float32{0.6, 0.4}),
			spec(3, 10, 0.5), []int{2, 4, 1}, []float32{0.9, 0.4, 0.3}},
		{"more than max_boxes: the first max_boxes",
			[]Box{far(0), far(1), far(2), far(3)},
			probsRows([]float32{0, 0.6}, []float32{0, 0.9}, []float32{0, 0.7}, []float32{0, 0.8}),
			spec(1, 2, 0.2), []int{1, 3}, []float32{0.9, 0.8}},
		{"P < min_boxes: all P",
			[]Box{far(0), far(1)},
			probsRows([]float32{0.9, 0.05}, []float32{0.8, 0.1}),
			spec(10, 100, 0.2), []int{1, 0}, []float32{0.1, 0.05}},
		{"ties: lower proposal index first",
			[]Box{far(0), far(1), far(2)},
			probsRows([]float32{0, 0.5}, []float32{0, 0.7}, []float32{0, 0.5}),
			spec(0, 10, 0.1), []int{1, 0, 2}, []float32{0.7, 0.5, 0.5}},
		{"degenerate boxes are kept and scored",
			[]Box{{5, 5, 5, 5}, {5, 5, 5, 5}, {0, 0, 10, 0}},
			probsRows([]float32{0, 0.6}, []float32{0, 0.5}, []float32{0, 0.4}),
			spec(0, 10, 0.1), []int{0, 1, 2}, []float32{0.6, 0.5, 0.4}},
		// Boxes 0 and 1 overlap (IoU 1/3 > 0.3). Class 1 ranks 0 first and suppresses 1; class 2
		// ranks 1 first and keeps it: proposal 1's confidence is its class-2 score, not its
		// (higher) class-1 score. Proposal 0 is suppressed in class 2, so class 2 does not
		// raise it.
		{"a class's NMS suppresses a box another class keeps",
			[]Box{{0, 0, 10, 10}, {5, 0, 15, 10}},
			probsRows([]float32{0.1, 0.6, 0.3}, []float32{0.05, 0.55, 0.4}),
			spec(0, 10, 0), []int{0, 1}, []float32{0.6, 0.4}},
		{"suppressed in its only class: confidence 0",
			[]Box{{0, 0, 10, 10}, {5, 0, 15, 10}},
			probsRows([]float32{0.2, 0.8}, []float32{0.3, 0.7}),
			spec(0, 10, 0), []int{0, 1}, []float32{0.8, 0}},
		{"background column ignored (here column 2)",
			[]Box{far(0), far(1)},
			probsRows([]float32{0.1, 0.05, 0.85}, []float32{0.3, 0.2, 0.5}),
			SelectionSpec{NMSIoU: 0.3, MinConfidence: 0.2, MinBoxes: 0, MaxBoxes: 10, Background: 2}, []int{1}, []float32{0.3}},
		{"no background (−1): every column counts",
			[]Box{far(0)},
			probsRows([]float32{0.9, 0.1}),
			SelectionSpec{NMSIoU: 0.3, MinConfidence: 0.2, MinBoxes: 0, MaxBoxes: 10, Background: -1}, []int{0}, []float32{0.9}},
		{"NaN probabilities never raise a confidence",
			[]Box{far(0), far(1)},
			probsRows([]float32{0, float32(math.NaN())}, []float32{0, 0.5}),
			spec(0, 10, 0.1), []int{1}, []float32{0.5}},
		{"no proposals", nil, nil, butdSelection, []int{}, []float32{}},
	} {
		C := 2
		if len(tc.boxes) > 0 {
			C = len(tc.probs) / len(tc.boxes)
		}
		idx, conf, err := Select(tc.boxes, tc.probs, C, tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(idx, tc.wantIdx) || !slices.Equal(conf, tc.wantConf) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, idx, conf, tc.wantIdx, tc.wantConf)
		}
	}
}

func TestSelectErrors(t *testing.T) {
	boxes := []Box{{0, 0, 1, 1}, {1, 1, 2, 2}}
	probs := make([]float32, 6)
	for _, tc := range []struct {
		probs []float32
		C     int
		mut   func(*SelectionSpec)
	}{
		{probs[:5], 3, nil},
		{probs, 0, nil},
		{probs, 3, func(s *SelectionSpec) { s.Background = 3 }},
		{probs, 3, func(s *SelectionSpec) { s.Background = -2 }},
		{probs, 3, func(s *SelectionSpec) { s.NMSIoU = float32(math.NaN()) }},
		{probs, 3, func(s *SelectionSpec) { s.MinConfidence = float32(math.NaN()) }},
		{probs, 3, func(s *SelectionSpec) { s.MinBoxes = -1 }},
		{probs, 3, func(s *SelectionSpec) { s.MaxBoxes = 0; s.MinBoxes = 0 }},
		{probs, 3, func(s *SelectionSpec) { s.MaxBoxes = 5 }}, // < min_boxes 10
		{probs, 3, func(s *SelectionSpec) { s.MinSide = -1 }},
		{probs, 3, func(s *SelectionSpec) { s.MinSide = float32(math.NaN()) }},
		{probs, 3, func(s *SelectionSpec) { s.MinSide = float32(math.Inf(1)) }},
		{probs[:5], 3, func(s *SelectionSpec) { s.MinSide = 2 }},
	} {
		spec := butdSelection
		if tc.mut != nil {
			tc.mut(&spec)
		}
		want := ErrInvalidSpec
		if len(tc.probs) != 6 {
			want = ErrInvalidOutputs
		}
		if _, _, err := Select(boxes, tc.probs, tc.C, spec); !errors.Is(err, want) {
			t.Errorf("C=%d %d probs %+v: got %v, want %v", tc.C, len(tc.probs), spec, err, want)
		}
	}
}

func TestMapRegions(t *testing.T) {
	info := ScaleInfo{Scale: 1.25, Width: 640, Height: 480, ResizedWidth: 800, ResizedHeight: 600}
	boxes := []Box{
		{100, 50, 900, 700},   // → (80, 40, 720, 560): clamped to (80, 40, 640, 480)
		{0, 0, 800, 600},      // the whole image
		{-5, 10, 10, 10},      // negative x clamped to 0; zero height stays degenerate
		{125, 62.5, 250, 125}, // → (100, 50, 200, 100)
	}
	regions := MapRegions(boxes, []int{0, 3, 2, 1}, []float32{0.9, 0.8, 0.7, 0.6}, info)
	want := []Region{
		{Proposal: 0, Box: Box{80, 40, 640, 480}, Confidence: 0.9},
		{Proposal: 3, Box: Box{100, 50, 200, 100}, Confidence: 0.8},
		{Proposal: 2, Box: Box{0, 8, 8, 8}, Confidence: 0.7},
		{Proposal: 1, Box: Box{0, 0, 640, 480}, Confidence: 0.6},
	}
	for k, r := range regions {
		w := want[k]
		if r.Proposal != w.Proposal || r.Box != w.Box || r.Confidence != w.Confidence {
			t.Fatalf("region %d: got %+v, want %+v", k, r, w)
		}
		if r.Location != Location(w.Box, 640, 480) {
			t.Fatalf("region %d: location %v", k, r.Location)
		}
	}
	// Locations by hand: (100,50,200,100) in 640×480.
	if got, wantLoc := regions[1].Location, [7]float32{0.15625, 50.0 / 480, 0.3125, 100.0 / 480, 0.15625, 50.0 / 480, 0.15625 * 50 / 480}; maxAbsDiff(got[:], wantLoc[:]) > 1e-7 {
		t.Fatalf("location %v, want %v", got, wantLoc)
	}
	if got := regions[2].Location; got[5] != 0 || got[6] != 0 {
		t.Fatalf("degenerate box location %v: want zero height and area", got)
	}
	if b := ToOriginal(Box{float32(math.NaN()), 1e9, -1e9, 1}, info); b != (Box{0, 480, 0, 0.8}) {
		t.Fatalf("NaN/huge: %v", b)
	}
}

func TestGatherRows(t *testing.T) {
	m := []float32{0, 1, 10, 11, 20, 21, 30, 31}
	if got := GatherRows(m, 2, []int{3, 0, 3}); !slices.Equal(got, []float32{30, 31, 0, 1, 30, 31}) {
		t.Fatalf("got %v", got)
	}
	if got := GatherRows(m, 2, nil); len(got) != 0 {
		t.Fatalf("empty: %v", got)
	}
}

// TestToOriginalDetectron2: under the detectron2 rule boxes map back per axis as the port's
// _scale_box does, x · float32(W/Wr) and y · float32(H/Hr) in float32 (values worked out with
// numpy float32), then clamped; the 7-d location follows the mapped box. One scale (the default
// rule) maps the same boxes elsewhere: 16×9 → 1000×562 is not one scale.
func TestToOriginalDetectron2(t *testing.T) {
	info := ScaleInfo{Scale: 62.5, Rule: ResizeDetectron2, Width: 16, Height: 9, ResizedWidth: 1000, ResizedHeight: 562}
	boxes := []Box{
		{500, 281, 1000, 562},           // the lower right quarter: exactly (8, 4.5, 16, 9)
		{0, 0, 1000.5, 600},             // beyond the resized image: clamped to (16, 9)
		{123.4, 55.5, 777.7, 321.1},     // float32 products
		{float32(math.NaN()), -3, 0, 0}, // NaN and negative → 0
	}
	want := []Box{
		{8, 4.5, 16, 9},
		{0, 0, 16, 9},
		{1.9744001626968384, 0.8887900710105896, 12.443201065063477, 5.1421709060668945},
		{0, 0, 0, 0},
	}
	regions := MapRegions(boxes, []int{0, 1, 2, 3}, []float32{0.9, 0.8, 0.7, 0.6}, info)
	for k, r := range regions {
		if r.Box != want[k] || r.Location != Location(want[k], 16, 9) {
			t.Errorf("box %v: got %v (location %v), want %v", boxes[k], r.Box, r.Location, want[k])
		}
	}
	if got := regions[0].Location; got != [LocationDim]float32{0.5, 0.5, 1, 1, 0.5, 0.5, 0.25} {
		t.Errorf("lower right quarter: location %v", got)
	}
	info.Rule = ""
	if got, one := ToOriginal(boxes[0], info), (Box{8, 4.496, 16, 8.992}); got != one {
		t.Errorf("one scale: %v, want %v", got, one)
	}
	info.Rule = ResizeShorterSide
	if got := ToOriginal(boxes[0], info); got != (Box{8, 4.496, 16, 8.992}) {
		t.Errorf("shorter_side named: %v", got)
	}
}
