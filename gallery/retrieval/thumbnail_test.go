package retrieval

import (
	"bytes"
	"image/jpeg"
	"testing"

	"github.com/uniter-serve/uniter/detector"
)

// TestThumbnail scales a two-colour image (left half red, right half blue, 1-pixel vertical
// stripes of black and white in the middle third) and checks the size and the colours: the
// stripes must average to grey, not alias to black or white.
func TestThumbnail(t *testing.T) {
	for _, c := range []struct{ w, h, size, wantW, wantH int }{
		{600, 300, 256, 256, 128},
		{300, 600, 256, 128, 256},
		{100, 60, 256, 100, 60}, // never scaled up
		{1000, 3, 256, 256, 1},  // at least one pixel
	} {
		img := &detector.Image{Width: c.w, Height: c.h, Pix: make([]uint8, 3*c.w*c.h)}
		for y := range c.h {
			for x := range c.w {
				p := img.Pix[3*(y*c.w+x):]
				switch {
				case x >= c.w/3 && x < 2*c.w/3:
					v := uint8(255 * (x % 2))
					p[0], p[1], p[2] = v, v, v
				case x < c.w/2:
					p[0], p[1], p[2] = 220, 20, 20
				default:
					p[0], p[1], p[2] = 20, 20, 220
				}
			}
		}
		raw, err := Thumbnail(img, c.size)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jpeg.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%dx%d: thumbnail is no JPEG: %v", c.w, c.h, err)
		}
		b := got.Bounds()
		if b.Dx() != c.wantW || b.Dy() != c.wantH {
			t.Fatalf("%dx%d → got %dx%d, want %dx%d", c.w, c.h, b.Dx(), b.Dy(), c.wantW, c.wantH)
		}
		// Independent expectation: integrate the source over each probe's footprint.
		y := b.Dy() / 2
		for _, x := range []int{b.Dx() / 8, b.Dx() / 2, b.Dx() * 7 / 8} {
			want := footprintMean(img, x, y, b.Dx(), b.Dy())
			r, g, bb, _ := got.At(x, y).RGBA()
			if d := absDiff(r>>8, want[0]) + absDiff(g>>8, want[1]) + absDiff(bb>>8, want[2]); d > 24 {
				t.Errorf("%dx%d: pixel (%d,%d) = %d,%d,%d, want about %v", c.w, c.h, x, y, r>>8, g>>8, bb>>8, want)
			}
		}
	}
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// footprintMean is the mean colour of the source area thumbnail pixel (x, y) of a w×h
// thumbnail covers, by direct 2-D integration.
func footprintMean(img *detector.Image, x, y, w, h int) [3]uint32 {
	sx, sy := float64(img.Width)/float64(w), float64(img.Height)/float64(h)
	x0, x1, y0, y1 := float64(x)*sx, float64(x+1)*sx, float64(y)*sy, float64(y+1)*sy
	var sum [3]float64
	var area float64
	for py := int(y0); float64(py) < y1 && py < img.Height; py++ {
		for px := int(x0); float64(px) < x1 && px < img.Width; px++ {
			a := (min(x1, float64(px+1)) - max(x0, float64(px))) * (min(y1, float64(py+1)) - max(y0, float64(py)))
			r, g, b := img.RGB(px, py)
			sum[0] += a * float64(r)
			sum[1] += a * float64(g)
			sum[2] += a * float64(b)
			area += a
		}
	}
	return [3]uint32{uint32(sum[0]/area + 0.5), uint32(sum[1]/area + 0.5), uint32(sum[2]/area + 0.5)}
}
