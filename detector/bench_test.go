package detector

import (
	"image"
	"image/color"
	"math"
	"math/rand"
	"testing"
)

// photoLike is a w×h picture with gradients, texture and noise, so JPEG has real work to do.
func photoLike(w, h int) *image.NRGBA {
	rng := rand.New(rand.NewSource(2))
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := rng.Intn(24) - 12
			c := func(v float64) uint8 { return uint8(min(max(v+float64(n), 0), 255)) }
			m.SetNRGBA(x, y, color.NRGBA{
				c(128 + 100*math.Sin(float64(x)/37)*math.Cos(float64(y)/53)),
				c(float64(y) * 255 / float64(h)),
				c(float64(x) * 255 / float64(w)), 255})
		}
	}
	return m
}

// A 640×480 JPEG (quality 90, 4:2:0) decoded and preprocessed to the BUTD spec (shorter
// side 600: an 800×600 tensor).
func BenchmarkDecodePreprocess640x480(b *testing.B) {
	data := encodeJPEG(b, photoLike(640, 480), 90)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		img, err := Decode(data, DecodeLimits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Preprocess(img, butdSpec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode640x480(b *testing.B) {
	data := encodeJPEG(b, photoLike(640, 480), 90)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, DecodeLimits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreprocess640x480(b *testing.B) {
	img := FromImage(photoLike(640, 480))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Preprocess(img, butdSpec); err != nil {
			b.Fatal(err)
		}
	}
}

// Selection over a real detector's output size: P=300 proposals, C=1601 classes (Visual
// Genome's 1600 + background), BUTD's spec.
func BenchmarkSelect300x1601(b *testing.B) {
	boxes, probs := randomDetections(rand.New(rand.NewSource(4)), 300, 1601, 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Select(boxes, probs, 1601, butdSelection); err != nil {
			b.Fatal(err)
		}
	}
}

// The same selection by the plain per-class reference, for comparison.
func BenchmarkSelectNaive300x1601(b *testing.B) {
	boxes, probs := randomDetections(rand.New(rand.NewSource(4)), 300, 1601, 3)
	for b.Loop() {
		naiveSelect(boxes, probs, 1601, butdSelection)
	}
}
