package detector

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestLocationHandComputed(t *testing.T) {
	// 640×480 image, box (64, 48)–(320, 240): w = 256 px = 0.4 W, h = 192 px = 0.4 H.
	got := Location(Box{64, 48, 320, 240}, 640, 480)
	want := [7]float32{0.1, 0.1, 0.5, 0.5, 0.4, 0.4, 0.16}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("location[%d]: got %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	// Whole image: area 1; non-square image keeps x and y apart.
	got = Location(Box{0, 0, 300, 500}, 300, 500)
	if got != [7]float32{0, 0, 1, 1, 1, 1, 1} {
		t.Fatalf("whole image: got %v", got)
	}
	got = Location(Box{0, 0, 150, 100}, 300, 500)
	if got != [7]float32{0, 0, 0.5, 0.2, 0.5, 0.2, 0.1} {
		t.Fatalf("x/y order: got %v, want [0 0 0.5 0.2 0.5 0.2 0.1]", got)
	}
}

func TestPrepareErrors(t *testing.T) {
	row := func(n int) []float32 { return make([]float32, n) }
	cases := []struct {
		name string
		r    Regions
		want string
	}{
		{"zero size", Regions{Width: 0, Height: 10}, "width and height"},
		{"no boxes", Regions{Width: 10, Height: 10}, "no regions"},
		{"too many", Regions{Width: 10, Height: 10, Boxes: make([]Box, 4), Features: [][]float32{row(3), row(3), row(3), row(3)}}, "at most 3"},
		{"rows mismatch", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 1, 1}}}, "1 boxes but 0 feature rows"},
		{"outside", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 11, 5}}, Features: [][]float32{row(3)}}, "outside"},
		{"negative", Regions{Width: 10, Height: 10, Boxes: []Box{{-1, 0, 5, 5}}, Features: [][]float32{row(3)}}, "outside"},
		{"inverted x", Regions{Width: 10, Height: 10, Boxes: []Box{{6, 0, 5, 5}}, Features: [][]float32{row(3)}}, "box 0 [6 0 5 5] is inverted"},
		{"inverted y", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 5, 5}, {0, 5, 5, 4.5}}, Features: [][]float32{row(3), row(3)}}, "box 1 [0 5 5 4.5] is inverted"},
		{"inverted outside", Regions{Width: 10, Height: 10, Boxes: []Box{{12, 0, 11, 5}}, Features: [][]float32{row(3)}}, "inverted"},
		{"zero width outside", Regions{Width: 10, Height: 10, Boxes: []Box{{10.5, 0, 10.5, 5}}, Features: [][]float32{row(3)}}, "box 0 [10.5 0 10.5 5] lies outside the 10×10 image"},
		{"zero height above", Regions{Width: 10, Height: 10, Boxes: []Box{{0, -1, 5, -1}}, Features: [][]float32{row(3)}}, "outside"},
		{"nan box", Regions{Width: 10, Height: 10, Boxes: []Box{{float32(math.NaN()), 0, 5, 5}}, Features: [][]float32{row(3)}}, "non-finite"},
		{"nan x2", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, float32(math.NaN()), 5}}, Features: [][]float32{row(3)}}, "box 0 has a non-finite"},
		{"inf y2", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 5, float32(math.Inf(1))}}, Features: [][]float32{row(3)}}, "non-finite"},
		{"-inf x1", Regions{Width: 10, Height: 10, Boxes: []Box{{float32(math.Inf(-1)), 0, 5, 5}}, Features: [][]float32{row(3)}}, "non-finite"},
		{"dim", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 5, 5}}, Features: [][]float32{row(2)}}, "feature dimension is 3"},
		{"inf feature", Regions{Width: 10, Height: 10, Boxes: []Box{{0, 0, 5, 5}}, Features: [][]float32{{0, float32(math.Inf(1)), 0}}}, "not finite"},
	}
	for _, c := range cases {
		_, err := Prepare(c.r, 3, 3)
		if !errors.Is(err, ErrInvalidRegions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrInvalidRegions containing %q", c.name, err, c.want)
		}
	}
}

func TestPrepareFlattens(t *testing.T) {
	p, err := Prepare(Regions{Width: 100, Height: 50, Boxes: []Box{{0, 0, 100, 50}, {10, 5, 20, 25}},
		Features: [][]float32{{1, 2}, {3, 4}}}, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Features; len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Fatalf("features: got %v, want [1 2 3 4]", got)
	}
	if p.Len() != 2 || p.Locations[1] != Location(Box{10, 5, 20, 25}, 100, 50) {
		t.Fatalf("locations: got %v", p.Locations)
	}
}

// TestPrepareZeroAreaBoxes: boxes of zero width or height, anywhere inside the image (the
// detector's border slivers included), are valid and get the location of the same formula:
// w or h 0 and area 0.
func TestPrepareZeroAreaBoxes(t *testing.T) {
	const W, H = 281, 253
	boxes := []Box{
		{281, 0, 281, 120},        // zero width on the right border (what the default detector keeps)
		{0, 40.5, 0, 200},         // zero width on the left border
		{10, 253, 200, 253},       // zero height on the bottom border
		{30, 0, 90, 0},            // zero height on the top border
		{50.25, 60, 50.25, 60},    // a point inside
		{0, 0, 281, 253},          // the whole image
		{12.5, 7.25, 99.75, 99.5}, // an ordinary box
	}
	feats := make([][]float32, len(boxes))
	for i := range feats {
		feats[i] = []float32{float32(i), 1}
	}
	p, err := Prepare(Regions{Width: W, Height: H, Boxes: boxes, Features: feats}, 2, 10)
	if err != nil {
		t.Fatalf("zero-width and zero-height boxes refused: %v", err)
	}
	for i, b := range boxes {
		if got, want := p.Locations[i], Location(b, W, H); got != want {
			t.Errorf("box %d %v: location %v, want %v", i, b, got, want)
		}
		l := p.Locations[i]
		if (b[2] == b[0]) != (l[4] == 0) || (b[3] == b[1]) != (l[5] == 0) {
			t.Errorf("box %d %v: location %v, want w/W = 0 exactly when x1 = x2 and h/H = 0 exactly when y1 = y2", i, b, l)
		}
		if (b[2] == b[0] || b[3] == b[1]) && l[6] != 0 {
			t.Errorf("box %d %v: area %v, want 0", i, b, l[6])
		}
	}
	if p.Len() != len(boxes) || p.Features[2*4] != 4 {
		t.Fatalf("prepared %d regions, features %v", p.Len(), p.Features)
	}
}
