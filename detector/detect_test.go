package detector

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// fakeGraph answers every image with fixed proposals, in the graph's input pixels.
type fakeGraph struct {
	out           Outputs
	height, width int // of the last call
}

func (g *fakeGraph) Run(_ context.Context, pixels []float32, height, width int) (Outputs, error) {
	if len(pixels) != 3*height*width {
		return Outputs{}, errors.New("pixels do not match the size")
	}
	g.height, g.width = height, width
	return g.out, nil
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A 100×50 image goes to the graph at 200×100 (shorter side 100): boxes come back halved,
// selection keeps the confident proposals by NMS, and MaxRegions cuts after selection.
func TestDetect(t *testing.T) {
	const C, D = 3, 2
	g := &fakeGraph{out: Outputs{
		Boxes: []float32{
			0, 0, 100, 100, // class 1, 0.9
			2, 2, 100, 100, // overlaps the first: suppressed for class 1, conf 0
			100, 0, 200, 100, // class 2, 0.8
			0, 0, 1, 100, // 1 px wide: dropped by MinBoxSize 1 (2 px in the graph's pixels)
		},
		ClassProbs: []float32{0.05, 0.9, 0.05, 0.1, 0.85, 0.05, 0.1, 0.1, 0.8, 0, 0.95, 0.05},
		Features:   []float32{1, 1, 2, 2, 3, 3, 4, 4},
		AttrProbs:  []float32{1, 0, 0, 1, 1, 0, 0, 1},
	}}
	d := &Detector{Graph: g, Preprocess: PreprocessSpec{ChannelOrder: "RGB", PixelStd: [3]float32{1, 1, 1}, ShorterSide: 100},
		Selection:  SelectionSpec{NMSIoU: 0.3, MinConfidence: 0.2, MinBoxes: 1, MaxBoxes: 10},
		MinBoxSize: 1.5, MaxRegions: 10, ClassDim: C, FeatureDim: D, AttrDim: 2}
	det, err := d.Detect(context.Background(), pngBytes(t, 100, 50))
	if err != nil {
		t.Fatal(err)
	}
	if g.width != 200 || g.height != 100 {
		t.Fatalf("graph input %d×%d, want 200×100", g.width, g.height)
	}
	if det.Width != 100 || det.Height != 50 || det.Scale != 2 || det.Proposals != 4 || det.Format != "png" {
		t.Fatalf("got %d×%d scale %v, %d proposals, %s; want 100×50, 2, 4, png", det.Width, det.Height, det.Scale, det.Proposals, det.Format)
	}
	if len(det.Regions) != 2 || det.Regions[0].Proposal != 0 || det.Regions[1].Proposal != 2 {
		t.Fatalf("regions %+v, want proposals 0 and 2", det.Regions)
	}
	if b := det.Regions[1].Box; b != (Box{50, 0, 100, 50}) {
		t.Errorf("region 1 box %v, want [50 0 100 50] in original pixels", b)
	}
	if f := det.Prepared.Features; len(f) != 4 || f[0] != 1 || f[2] != 3 {
		t.Errorf("features %v, want rows of proposals 0 and 2", f)
	}
	if a := det.AttrProbs; len(a) != 4 || a[0] != 1 || a[2] != 1 {
		t.Errorf("attribute rows %v, want those of proposals 0 and 2", a)
	}
	if det.Prepared.Locations[1] != Location(det.Regions[1].Box, 100, 50) {
		t.Errorf("location %v, want the 7-d location of the region's box", det.Prepared.Locations[1])
	}

	d.MaxRegions = 1
	if det, err = d.Detect(context.Background(), pngBytes(t, 100, 50)); err != nil || len(det.Regions) != 1 {
		t.Errorf("MaxRegions 1: got %v regions, err %v", len(det.Regions), err)
	}

	g.out = Outputs{}
	if _, err := d.Detect(context.Background(), pngBytes(t, 100, 50)); !errors.Is(err, ErrNoProposals) {
		t.Errorf("no proposals: got %v, want ErrNoProposals", err)
	}
	g.out = Outputs{Boxes: []float32{0, 0, 1, 1}, ClassProbs: []float32{1, 0}, Features: []float32{1, 1}}
	if _, err := d.Detect(context.Background(), pngBytes(t, 100, 50)); !errors.Is(err, ErrInvalidOutputs) {
		t.Errorf("outputs of the wrong shape: got %v, want ErrInvalidOutputs", err)
	}
	if _, err := d.Detect(context.Background(), []byte("not an image")); !errors.Is(err, ErrNotImage) {
		t.Errorf("text bytes: got %v, want ErrNotImage", err)
	}
}

// Under the detectron2 rule a 16×9 image goes to the graph at 1000×562 (the port's size; the
// default rule would give 1000×563) and boxes come back per axis: the resized image's lower
// right quarter is the original's.
func TestDetectDetectron2(t *testing.T) {
	g := &fakeGraph{out: Outputs{
		Boxes:      []float32{500, 281, 1000, 562, 0, 0, 1000, 562},
		ClassProbs: []float32{0.1, 0.9, 0.5, 0.5},
		Features:   []float32{1, 2},
	}}
	d := &Detector{Graph: g, Preprocess: PreprocessSpec{ChannelOrder: "BGR", PixelStd: [3]float32{1, 1, 1},
		ShorterSide: 600, LongerSideMax: 1000, ResizeRule: ResizeDetectron2},
		Selection:  SelectionSpec{NMSIoU: 0.3, MinConfidence: 0.2, MinBoxes: 1, MaxBoxes: 10},
		MaxRegions: 10, ClassDim: 2, FeatureDim: 1}
	det, err := d.Detect(context.Background(), pngBytes(t, 16, 9))
	if err != nil {
		t.Fatal(err)
	}
	if g.width != 1000 || g.height != 562 || det.Scale != 62.5 {
		t.Fatalf("graph input %d×%d, scale %v; want 1000×562, 62.5", g.width, g.height, det.Scale)
	}
	want := []Box{{8, 4.5, 16, 9}, {0, 0, 16, 9}}
	if len(det.Regions) != 2 {
		t.Fatalf("regions %+v", det.Regions)
	}
	for k, r := range det.Regions {
		if r.Box != want[k] || det.Prepared.Boxes[k] != want[k] || det.Prepared.Locations[k] != Location(want[k], 16, 9) {
			t.Errorf("region %d: box %v, prepared %v %v; want %v", k, r.Box, det.Prepared.Boxes[k], det.Prepared.Locations[k], want[k])
		}
	}
}
