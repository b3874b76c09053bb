package retrieval

import (
	"bytes"
	"image"
	"image/jpeg"

	"github.com/uniter-serve/uniter/detector"
)

// ThumbnailQuality is the JPEG quality of thumbnails.
const ThumbnailQuality = 85

// Thumbnail scales img down (never up) to fit a size×size square, keeping its aspect ratio,
// by averaging the source pixels each thumbnail pixel covers (a box filter: no aliasing on
// textures and stripes), and encodes it as JPEG.
func Thumbnail(img *detector.Image, size int) ([]byte, error) {
	w, h := img.Width, img.Height
	if size > 0 && (w > size || h > size) {
		if w >= h {
			w, h = size, max(1, (img.Height*size+img.Width/2)/img.Width)
		} else {
			w, h = max(1, (img.Width*size+img.Height/2)/img.Height), size
		}
	}
	// Separable area averaging: each output pixel is the mean of the source area it covers,
	// fractional source pixels at its edges weighted by the fraction covered.
	cols := areaWeights(img.Width, w)
	rows := areaWeights(img.Height, h)
	tmp := make([]float32, 3*w*img.Height) // horizontal pass: img.Height rows of w pixels
	for y := range img.Height {
		src := img.Pix[3*y*img.Width : 3*(y+1)*img.Width]
		dst := tmp[3*y*w : 3*(y+1)*w]
		for x, taps := range cols {
			var r, g, b float32
			for _, t := range taps {
				p := src[3*t.index:]
				r += t.weight * float32(p[0])
				g += t.weight * float32(p[1])
				b += t.weight * float32(p[2])
			}
			dst[3*x], dst[3*x+1], dst[3*x+2] = r, g, b
		}
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y, taps := range rows {
		for x := range w {
			var r, g, b float32
			for _, t := range taps {
				p := tmp[3*(t.index*w+x):]
				r += t.weight * p[0]
				g += t.weight * p[1]
				b += t.weight * p[2]
			}
			o := out.PixOffset(x, y)
			out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = clamp8(r), clamp8(g), clamp8(b), 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: ThumbnailQuality}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type tap struct {
	index  int
	weight float32
}

// areaWeights gives, for each of n output cells over src input cells, the input cells it
// covers and the fraction of the output cell each one fills (the weights sum to 1).
func areaWeights(src, n int) [][]tap {
	out := make([][]tap, n)
	scale := float64(src) / float64(n)
	for i := range out {
		lo, hi := float64(i)*scale, float64(i+1)*scale
		for j := int(lo); j < src && float64(j) < hi; j++ {
			cover := min(hi, float64(j+1)) - max(lo, float64(j))
			if cover > 0 {
				out[i] = append(out[i], tap{j, float32(cover / scale)})
			}
		}
	}
	return out
}

func clamp8(v float32) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}
