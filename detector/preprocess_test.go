package detector

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
)

var butdSpec = PreprocessSpec{ChannelOrder: "BGR", PixelMeans: [3]float32{102.9801, 115.9465, 122.7717},
	PixelStd: [3]float32{1, 1, 1}, ShorterSide: 600, LongerSideMax: 1000}

func TestResizeScaleByHand(t *testing.T) {
	for _, tc := range []struct {
		w, h, short, long int
		scale             float64
		wr, hr            int
	}{
		{640, 480, 600, 1000, 1.25, 800, 600},            // shorter side rules
		{480, 640, 600, 1000, 1.25, 600, 800},            // portrait
		{1000, 200, 600, 1000, 1, 1000, 200},             // 600/200 = 3 → 3000 > 1000: capped at 1000/1000
		{2000, 500, 600, 1000, 0.5, 1000, 250},           // capped
		{600, 600, 600, 1000, 1, 600, 600},               // unchanged
		{5, 2, 5, 1000, 2.5, 13, 5},                      // 12.5 rounds half away from zero
		{1, 10000, 600, 1000, 0.1, 1, 1000},              // 0.1 px wide: at least 1
		{1333, 800, 600, 1000, 0.75, 1000, 600},          // round(999.75) = 1000: not over the cap
		{1335, 800, 600, 1000, 1000.0 / 1335, 1000, 599}, // round(1001.25) > 1000: capped
		{300, 200, 600, 0, 3, 900, 600},                  // no cap
	} {
		spec := PreprocessSpec{ShorterSide: tc.short, LongerSideMax: tc.long}
		scale, wr, hr := ResizeScale(tc.w, tc.h, spec)
		if math.Abs(scale-tc.scale) > 1e-12 || wr != tc.wr || hr != tc.hr {
			t.Errorf("%d×%d → %d/%d: got %v %d×%d, want %v %d×%d", tc.w, tc.h, tc.short, tc.long, scale, wr, hr, tc.scale, tc.wr, tc.hr)
		}
	}
	if s, wr, hr := ResizeScale(0, 5, butdSpec); s != 0 || wr != 0 || hr != 0 {
		t.Errorf("empty image: %v %d %d", s, wr, hr)
	}
}

type goldenImage struct {
	Width, Height int
	RGB           []uint8
	ResizedWidth  int `json:"resized_width"`
	ResizedHeight int `json:"resized_height"`
	CHW           []float32
	Scale         float64
	Spec          struct {
		ChannelOrder  string     `json:"channel_order"`
		PixelMeans    [3]float32 `json:"pixel_means"`
		PixelStd      [3]float32 `json:"pixel_std"`
		ShorterSide   int        `json:"shorter_side"`
		LongerSideMax int        `json:"longer_side_max"`
	}
}

func loadResizeGolden(t *testing.T) (resize, preprocess []goldenImage) {
	var g struct {
		Resize, Preprocess []goldenImage
	}
	loadJSON(t, "resize_golden.json", &g)
	return g.Resize, g.Preprocess
}

func maxAbsDiff(a, b []float32) float64 {
	worst := 0.0
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i])-float64(b[i])))
	}
	return worst
}

// The bilinear resize against torch.nn.functional.interpolate (testdata/make_resize_golden.py).
func TestResizeMatchesTorch(t *testing.T) {
	cases, _ := loadResizeGolden(t)
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	worst, same, total := 0.0, 0, 0
	for _, c := range cases {
		img := &Image{Width: c.Width, Height: c.Height, Pix: c.RGB}
		out := make([]float32, 3*c.ResizedWidth*c.ResizedHeight)
		resizeBilinear(out, img, channelSource("RGB"), c.ResizedWidth, c.ResizedHeight, [3]float32{}, [3]float32{1, 1, 1})
		if len(out) != len(c.CHW) {
			t.Fatalf("%d×%d → %d×%d: %d values, torch %d", c.Width, c.Height, c.ResizedWidth, c.ResizedHeight, len(out), len(c.CHW))
		}
		d := maxAbsDiff(out, c.CHW)
		worst = max(worst, d)
		if d > 1e-3 {
			t.Errorf("%d×%d → %d×%d: differs from torch by %g", c.Width, c.Height, c.ResizedWidth, c.ResizedHeight, d)
		}
		for i := range out {
			if out[i] == c.CHW[i] {
				same++
			}
		}
		total += len(out)
	}
	t.Logf("%d resize cases: largest difference from torch %g (on 0..255), %d of %d values bit-identical",
		len(cases), worst, same, total)
}

// The whole contract preprocessing against its independent Python implementation.
func TestPreprocessMatchesTorch(t *testing.T) {
	_, cases := loadResizeGolden(t)
	worst := 0.0
	for _, c := range cases {
		spec := PreprocessSpec{ChannelOrder: c.Spec.ChannelOrder, PixelMeans: c.Spec.PixelMeans, PixelStd: c.Spec.PixelStd,
			ShorterSide: c.Spec.ShorterSide, LongerSideMax: c.Spec.LongerSideMax}
		tensor, info, err := Preprocess(&Image{Width: c.Width, Height: c.Height, Pix: c.RGB}, spec)
		if err != nil {
			t.Fatal(err)
		}
		want := ScaleInfo{Scale: c.Scale, Width: c.Width, Height: c.Height, ResizedWidth: c.ResizedWidth, ResizedHeight: c.ResizedHeight}
		if info != want {
			t.Fatalf("%d×%d %+v: got %+v, want %+v", c.Width, c.Height, spec, info, want)
		}
		d := maxAbsDiff(tensor, c.CHW)
		worst = max(worst, d)
		if len(tensor) != len(c.CHW) || d > 1e-3 {
			t.Errorf("%d×%d → %d×%d: %d values (torch %d), largest difference %g", c.Width, c.Height, c.ResizedWidth, c.ResizedHeight, len(tensor), len(c.CHW), d)
		}
	}
	t.Logf("%d preprocess cases: largest difference from torch %g", len(cases), worst)
}

// naiveResize is the bilinear formula written out per output value in float64, straight from
// the contract (half-pixel centres, clamp at 0, neighbours clamped at the edge).
func naiveResize(img *Image, ch, wr, hr int) []float64 {
	out := make([]float64, wr*hr)
	src := func(d, in, out int) (int, int, float64) {
		s := (float64(d)+0.5)*float64(in)/float64(out) - 0.5
		s = max(s, 0)
		i0 := min(int(math.Floor(s)), in-1)
		i1 := min(i0+1, in-1)
		return i0, i1, min(s-float64(i0), 1)
	}
	px := func(x, y int) float64 { return float64(img.Pix[3*(y*img.Width+x)+ch]) }
	for y := 0; y < hr; y++ {
		y0, y1, ly := src(y, img.Height, hr)
		for x := 0; x < wr; x++ {
			x0, x1, lx := src(x, img.Width, wr)
			top := px(x0, y0)*(1-lx) + px(x1, y0)*lx
			bot := px(x0, y1)*(1-lx) + px(x1, y1)*lx
			out[y*wr+x] = top*(1-ly) + bot*ly
		}
	}
	return out
}

// Many more sizes than the golden file holds, against the float64 formula.
func TestPreprocessMatchesFormula(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	worst := 0.0
	for n := 0; n < 60; n++ {
		w, h := 1+rng.Intn(40), 1+rng.Intn(40)
		img := &Image{Width: w, Height: h, Pix: make([]uint8, 3*w*h)}
		for i := range img.Pix {
			img.Pix[i] = uint8(rng.Intn(256))
		}
		spec := butdSpec
		spec.ShorterSide = 1 + rng.Intn(50)
		spec.LongerSideMax = rng.Intn(3) * (spec.ShorterSide + rng.Intn(30)) // sometimes 0 = none
		tensor, info, err := Preprocess(img, spec)
		if err != nil {
			t.Fatal(err)
		}
		wr, hr := info.ResizedWidth, info.ResizedHeight
		for c := 0; c < 3; c++ { // tensor channel c is BGR: source byte 2−c
			ref := naiveResize(img, 2-c, wr, hr)
			for i, v := range ref {
				d := math.Abs(float64(tensor[c*wr*hr+i]) - (v - float64(spec.PixelMeans[c])))
				worst = max(worst, d)
				if d > 1e-3 {
					t.Fatalf("%d×%d → %d×%d channel %d value %d: got %v, formula %v", w, h, wr, hr, c, i, tensor[c*wr*hr+i], v-float64(spec.PixelMeans[c]))
				}
			}
		}
	}
	t.Logf("largest difference from the float64 formula %g", worst)
}

func TestPreprocessUnchangedSizeAndChannels(t *testing.T) {
	img := &Image{Width: 2, Height: 1, Pix: []uint8{10, 20, 30, 40, 50, 60}}
	spec := PreprocessSpec{ChannelOrder: "BGR", PixelMeans: [3]float32{1, 2, 3}, PixelStd: [3]float32{1, 2, 4}, ShorterSide: 1}
	tensor, info, err := Preprocess(img, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.ResizedWidth != 2 || info.ResizedHeight != 1 || info.Scale != 1 {
		t.Fatalf("info %+v", info)
	}
	// B plane (30, 60) − 1; G plane (20, 50) − 2, /2; R plane (10, 40) − 3, /4.
	want := []float32{29, 59, 9, 24, 1.75, 9.25}
	for i := range want {
		if tensor[i] != want[i] {
			t.Fatalf("tensor %v, want %v", tensor, want)
		}
	}
	spec.ChannelOrder = "RGB"
	tensor, _, _ = Preprocess(img, spec)
	if want := []float32{9, 39, 9, 24, 6.75, 14.25}; tensor[0] != want[0] || tensor[5] != want[5] {
		t.Fatalf("RGB tensor %v, want %v", tensor, want)
	}
}

func TestPreprocessErrors(t *testing.T) {
	img := &Image{Width: 2, Height: 2, Pix: make([]uint8, 12)}
	for _, mutate := range []func(*PreprocessSpec){
		func(s *PreprocessSpec) { s.ChannelOrder = "bgr" },
		func(s *PreprocessSpec) { s.ShorterSide = 0 },
		func(s *PreprocessSpec) { s.LongerSideMax = -1 },
		func(s *PreprocessSpec) { s.PixelStd[1] = 0 },
		func(s *PreprocessSpec) { s.PixelMeans[2] = float32(math.NaN()) },
		func(s *PreprocessSpec) { s.PixelStd[0] = float32(math.Inf(1)) },
		func(s *PreprocessSpec) { s.ResizeRule = "Detectron2" },
		func(s *PreprocessSpec) { s.MinInputSide = -1 },
	} {
		spec := butdSpec
		mutate(&spec)
		if _, _, err := Preprocess(img, spec); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%+v: got %v", spec, err)
		}
	}
	for _, bad := range []*Image{nil, {}, {Width: 2, Height: 2, Pix: make([]uint8, 11)}} {
		if _, _, err := Preprocess(bad, butdSpec); !errors.Is(err, ErrNotImage) {
			t.Errorf("image %+v: got %v", bad, err)
		}
	}
}

// TestPreprocessMinInputSide: a side resized below MinInputSide is refused, naming both sizes;
// at the bound, and without one, the image is preprocessed.
func TestPreprocessMinInputSide(t *testing.T) {
	spec := butdSpec // 600 / 1000, detectron2: 3000×1 → 1000×0.33 → 1000×1; 1000×16 stays
	spec.MinInputSide = 16
	for _, tc := range []struct {
		w, h int
		ok   bool
	}{{3000, 1, false}, {1, 3000, false}, {5000, 77, false}, {1000, 16, true}, {16, 1000, true}, {1, 1, true}} {
		img := &Image{Width: tc.w, Height: tc.h, Pix: make([]uint8, 3*tc.w*tc.h)}
		_, info, err := Preprocess(img, spec)
		if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, ErrImageTooSmall) || !strings.Contains(err.Error(), fmt.Sprintf("%d×%d", tc.w, tc.h)))) {
			t.Errorf("%d×%d: %v (resized %d×%d), want ok=%v or ErrImageTooSmall naming the size", tc.w, tc.h, err,
				info.ResizedWidth, info.ResizedHeight, tc.ok)
		}
		spec0 := spec
		spec0.MinInputSide = 0
		if _, _, err := Preprocess(img, spec0); err != nil {
			t.Errorf("%d×%d without a minimum: %v", tc.w, tc.h, err)
		}
	}
}

// TestResizeDetectron2ByHand: the detectron2 rule against a table worked out from the LXMERT
// port's ResizeShortestEdge (processing_image.py): scale = size/min(h, w); the shorter side is
// size, the longer scale·long; if the larger (unrounded) exceeds max_size both are multiplied by
// max_size/larger; each side is int(x + 0.5). The scales are the Python float64 values.
func TestResizeDetectron2ByHand(t *testing.T) {
	for _, tc := range []struct {
		w, h, short, long int
		scale             float64
		wr, hr            int
		shorterSide       [2]int // the default rule's size, where it differs
	}{
		{640, 480, 600, 1000, 1.25, 800, 600, [2]int{}},                     // shorter side rules
		{480, 640, 600, 1000, 1.25, 600, 800, [2]int{}},                     // portrait
		{600, 600, 600, 1000, 1, 600, 600, [2]int{}},                        // unchanged (square)
		{2000, 500, 600, 1000, 0.5, 1000, 250, [2]int{}},                    // capped
		{1000, 200, 600, 1000, 1, 1000, 200, [2]int{}},                      // capped back to scale 1
		{1333, 800, 600, 1000, 0.75, 1000, 600, [2]int{}},                   // 999.75: not over the cap
		{1335, 800, 600, 1000, 0.7490636704119851, 1000, 599, [2]int{}},     // capped
		{16, 9, 600, 1000, 62.5, 1000, 562, [2]int{1000, 563}},              // 562.4999…: the .5 tie goes down
		{9, 16, 600, 1000, 62.5, 562, 1000, [2]int{563, 1000}},              // the same, portrait
		{19, 304, 600, 1000, 3.289473684210526, 63, 1000, [2]int{62, 1000}}, // 62.5000…1 goes up
		{304, 19, 600, 1000, 3.289473684210526, 1000, 63, [2]int{1000, 62}},
		{400, 97, 600, 1000, 2.5, 1000, 242, [2]int{1000, 243}},          // the BUTD fixture's "tie" image
		{1999, 1199, 600, 1000, 0.5002501250625313, 1000, 600, [2]int{}}, // 1000.33 > 1000 unrounded: capped
		{1199, 1999, 600, 1000, 0.5002501250625313, 600, 1000, [2]int{}},
		{5, 2, 5, 1000, 2.5, 13, 5, [2]int{}},                         // 12.5 + 0.5 → 13
		{101, 50, 25, 1000, 0.5, 51, 25, [2]int{}},                    // 50.5 → 51
		{7, 3, 4, 5, 0.7142857142857144, 5, 2, [2]int{}},              // capped, 2.1428… → 2
		{300, 200, 600, 0, 3, 900, 600, [2]int{}},                     // no cap
		{1, 10000, 600, 1000, 0.09999999999999999, 1, 1000, [2]int{}}, // int(0.6) = 0 in the port: at least 1 here
	} {
		spec := PreprocessSpec{ShorterSide: tc.short, LongerSideMax: tc.long, ResizeRule: ResizeDetectron2}
		scale, wr, hr := ResizeScale(tc.w, tc.h, spec)
		if scale != tc.scale || wr != tc.wr || hr != tc.hr {
			t.Errorf("%d×%d → %d/%d: got %v %d×%d, want %v %d×%d", tc.w, tc.h, tc.short, tc.long, scale, wr, hr, tc.scale, tc.wr, tc.hr)
		}
		spec.ResizeRule = ""
		_, wr2, hr2 := ResizeScale(tc.w, tc.h, spec)
		want := tc.shorterSide
		if want == [2]int{} {
			want = [2]int{tc.wr, tc.hr}
		}
		if [2]int{wr2, hr2} != want {
			t.Errorf("%d×%d → %d/%d under shorter_side: %d×%d, want %v", tc.w, tc.h, tc.short, tc.long, wr2, hr2, want)
		}
	}
	// 1999×1199: same size under both rules, but the default rule tests the cap on the rounded
	// longer side (1000 ≤ 1000) and keeps 600/1199.
	if s, _, _ := ResizeScale(1999, 1199, butdSpec); s != 600.0/1199 {
		t.Errorf("1999×1199 under shorter_side: scale %v, want 600/1199", s)
	}
	if s, wr, hr := ResizeScale(0, 5, PreprocessSpec{ShorterSide: 600, ResizeRule: ResizeDetectron2}); s != 0 || wr != 0 || hr != 0 {
		t.Errorf("empty image: %v %d %d", s, wr, hr)
	}
}

// TestResizeRulesMatchPython: both rules against the Python golden side (uniter.detector
// resized_size, testdata/make_resize_rule_golden.py): the listed cases exactly (the .5 ties,
// sizes where the cap test goes the other way, random sizes and specs), and every size in
// 1..2000 × 1..2000 at 600 / 1000 through a digest of (wr, hr, scale).
func TestResizeRulesMatchPython(t *testing.T) {
	var g struct {
		Range          int
		Digests        map[string]string
		DifferingSizes int `json:"differing_sizes"`
		Cases          map[string][][7]float64
	}
	loadJSON(t, "resize_rule_golden.json", &g)
	for _, rule := range []string{ResizeShorterSide, ResizeDetectron2} {
		cases := g.Cases[rule]
		if len(cases) < g.DifferingSizes || g.DifferingSizes < 700 {
			t.Fatalf("%s: %d cases, %d differing sizes", rule, len(cases), g.DifferingSizes)
		}
		for _, c := range cases {
			w, h := int(c[0]), int(c[1])
			spec := PreprocessSpec{ShorterSide: int(c[2]), LongerSideMax: int(c[3]), ResizeRule: rule}
			scale, wr, hr := ResizeScale(w, h, spec)
			if scale != c[4] || wr != int(c[5]) || hr != int(c[6]) {
				t.Errorf("%s %d×%d → %d/%d: got %v %d×%d, Python %v %d×%d", rule, w, h, spec.ShorterSide, spec.LongerSideMax,
					scale, wr, hr, c[4], int(c[5]), int(c[6]))
			}
		}
		sum := sha256.New()
		spec := butdSpec
		spec.ResizeRule = rule
		row := make([]byte, 0, 16*g.Range)
		for w := 1; w <= g.Range; w++ {
			row = row[:0]
			for h := 1; h <= g.Range; h++ {
				scale, wr, hr := ResizeScale(w, h, spec)
				row = binary.LittleEndian.AppendUint32(row, uint32(wr))
				row = binary.LittleEndian.AppendUint32(row, uint32(hr))
				row = binary.LittleEndian.AppendUint64(row, math.Float64bits(scale))
			}
			sum.Write(row)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != g.Digests[rule] {
			t.Errorf("%s over 1..%d²: digest %s, Python %s", rule, g.Range, got, g.Digests[rule])
		}
	}
	// The two rules differ, exactly on the listed sizes.
	n := 0
	for i, c := range g.Cases[ResizeDetectron2][:g.DifferingSizes] {
		if o := g.Cases[ResizeShorterSide][i]; o[0] != c[0] || o[1] != c[1] || (o[5] == c[5] && o[6] == c[6]) {
			t.Fatalf("case %d: %v vs %v", i, o, c)
		}
		n++
	}
	t.Logf("%d sizes in 1..%d² differ by a pixel between the rules; %d cases per rule", n, g.Range, len(g.Cases[ResizeDetectron2]))
}

func TestPreprocessDetectron2(t *testing.T) {
	img := &Image{Width: 16, Height: 9, Pix: make([]uint8, 3*16*9)}
	spec := butdSpec
	spec.ResizeRule = ResizeDetectron2
	tensor, info, err := Preprocess(img, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := ScaleInfo{Scale: 62.5, Rule: ResizeDetectron2, Width: 16, Height: 9, ResizedWidth: 1000, ResizedHeight: 562}
	if info != want || len(tensor) != 3*1000*562 {
		t.Fatalf("info %+v (%d values), want %+v", info, len(tensor), want)
	}
	spec.ResizeRule = "caffe"
	if _, _, err := Preprocess(img, spec); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), `"caffe"`) {
		t.Fatalf("unknown rule: %v", err)
	}
}
