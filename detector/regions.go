// Package detector turns images into UNITER's region inputs: decoding with limits, the
// detector graph's preprocessing, running the graph (through the Graph interface, which the
// serving pipeline fills with an ONNX Runtime session), bottom-up-attention region selection,
// the 7-d location feature, and the validation of regions callers bring themselves. It never
// imports the runtime or the API.
package detector

import (
	"errors"
	"fmt"
	"math"
)

// LocationDim is the size of UNITER's region location feature.
const LocationDim = 7

// ErrInvalidRegions reports region input that cannot be used (the message names the problem).
var ErrInvalidRegions = errors.New("invalid regions")

// Box is [x1, y1, x2, y2] in pixels of the original image.
type Box [4]float32

// Regions are an image's regions as a caller or the detector gives them.
type Regions struct {
	Width, Height int
	Boxes         []Box
	Features      [][]float32 // one row per box, of the bundle's feature dimension
}

// Prepared regions are validated and ready for the encoder: features flattened row-major
// (n × dim) and one 7-d location per box.
type Prepared struct {
	Width, Height int
	Boxes         []Box
	Features      []float32
	Locations     [][LocationDim]float32
	Dim           int
}

// Len is the number of regions.
func (p *Prepared) Len() int { return len(p.Boxes) }

// Location is UNITER's 7-d location of a box in a W×H image:
// [x1/W, y1/H, x2/W, y2/H, w/W, h/H, (w/W)·(h/H)].
func Location(b Box, width, height int) [LocationDim]float32 {
	W, H := float64(width), float64(height)
	x1, y1, x2, y2 := float64(b[0])/W, float64(b[1])/H, float64(b[2])/W, float64(b[3])/H
	w, h := x2-x1, y2-y1
	return [LocationDim]float32{float32(x1), float32(y1), float32(x2), float32(y2), float32(w), float32(h), float32(w * h)}
}

// Prepare validates r against the feature dimension and region limit and computes locations.
// The one rule for boxes, the same for every input: every coordinate is finite, x1 ≤ x2 and
// y1 ≤ y2 (an inverted box is refused), and the box lies inside the image, [0, W]×[0, H].
// Boxes of zero width or height (x1 == x2 or y1 == y2) are valid: the detector keeps such
// border slivers (docs/detector-contract.md, selection step 4) and a model trained with them
// reads them, so a detection's regions sent back as regions are accepted as they are.
func Prepare(r Regions, dim, maxRegions int) (*Prepared, error) {
	bad := func(format string, a ...any) (*Prepared, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRegions, fmt.Sprintf(format, a...))
	}
	if r.Width <= 0 || r.Height <= 0 {
		return bad("image width and height must be positive, got %d×%d", r.Width, r.Height)
	}
	n := len(r.Boxes)
	switch {
	case n == 0:
		return bad("no regions: at least one box with its features is needed")
	case n > maxRegions:
		return bad("%d regions, at most %d allowed", n, maxRegions)
	case len(r.Features) != n:
		return bad("%d boxes but %d feature rows", n, len(r.Features))
	}
	p := &Prepared{Width: r.Width, Height: r.Height, Boxes: r.Boxes, Dim: dim,
		Features: make([]float32, 0, n*dim), Locations: make([][LocationDim]float32, n)}
	W, H := float32(r.Width), float32(r.Height)
	for i, b := range r.Boxes {
		for _, v := range b {
			if !Finite(v) {
				return bad("box %d has a non-finite coordinate", i)
			}
		}
		if b[2] < b[0] || b[3] < b[1] {
			return bad("box %d %v is inverted: want x1 ≤ x2 and y1 ≤ y2 (zero width or height is allowed)", i, b)
		}
		if b[0] < 0 || b[1] < 0 || b[2] > W || b[3] > H {
			return bad("box %d %v lies outside the %d×%d image", i, b, r.Width, r.Height)
		}
		f := r.Features[i]
		if len(f) != dim {
			return bad("feature row %d has %d values, the model's feature dimension is %d", i, len(f), dim)
		}
		for j, v := range f {
			if !Finite(v) {
				return bad("feature row %d value %d is not finite", i, j)
			}
		}
		p.Features = append(p.Features, f...)
		p.Locations[i] = Location(b, r.Width, r.Height)
	}
	return p, nil
}

// Finite reports whether v is neither NaN nor infinite, as every box coordinate, location and
// feature value must be.
func Finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// Blanked keeps the regions' count and boxes but zeroes their features and locations: the
// encoder sees as many image positions carrying no information (the masked-word probe's
// "without the image").
func (p *Prepared) Blanked() *Prepared {
	return &Prepared{Width: p.Width, Height: p.Height, Boxes: p.Boxes, Dim: p.Dim,
		Features: make([]float32, len(p.Features)), Locations: make([][LocationDim]float32, len(p.Locations))}
}
