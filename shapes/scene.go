package shapes

import (
	"math"
	"math/rand/v2"
)

// Image and object geometry of generated scenes.
const (
	MinSide   = 160 // image sides are in [MinSide, MaxSide]
	MaxSide   = 320
	MinAspect = 0.6 // width/height is in [MinAspect, MaxAspect]
	MaxAspect = 1.8
	MinObjs   = 2 // objects per scene
	MaxObjs   = 6

	// Object extents (the shape's outer diameter) as fractions of the image's shorter side.
	smallMin, smallMax = 0.13, 0.15
	largeMin, largeMax = 0.23, 0.27
	edgeGap            = 2 // px between a shape and the image border, at least
	objGap             = 3 // px between the outlines' bounding boxes of two shapes, at least
	colorJitter        = 12
)

// Object is one shape of a scene. Box is the tight pixel box of the drawn shape:
// [x1, y1, x2, y2] with x1 the first and x2−1 the last column holding a pixel at least half
// covered by the shape (rows likewise), so x2−x1 is its width in pixels. Center is the box centre.
// Only Box, Shape, Color and Size matter to the LFs: a scene built from detections (boxes and
// predicted attributes) can be evaluated like a generated one.
type Object struct {
	Box    [4]float64 `json:"box"`
	Shape  string     `json:"shape"`
	Color  string     `json:"color"`
	Size   string     `json:"size"`
	Center [2]float64 `json:"center"`
	RGB    [3]uint8   `json:"rgb"` // the fill colour: the colour's base RGB with a small jitter

	// Drawing geometry of generated objects: centre of the outline and its scale (half the
	// outer diameter), in pixels. Scenes read back from JSON do not have it.
	cx, cy, r float64
}

func (o Object) center() (x, y float64) { return (o.Box[0] + o.Box[2]) / 2, (o.Box[1] + o.Box[3]) / 2 }

// Background is the textured backdrop of a scene: a blend of two muted colours.
type Background struct {
	Kind   string      `json:"kind"`   // gradient, stripes, checks or noise
	Colors [2][3]uint8 `json:"colors"` // the two muted colours
	Angle  float64     `json:"angle"`  // degrees: direction of the gradient or the stripes' normal
	Period float64     `json:"period"` // pixels: stripe period, check cell or noise cell
	Grain  int         `json:"grain"`  // per-pixel noise amplitude (±) in colour levels
	Seed   uint32      `json:"seed"`   // seeds the noise and the grain
}

// Background kinds.
var backgroundKinds = []string{"gradient", "stripes", "checks", "noise"}

// Scene is an image's content: its size, background and objects. The LFs only use Width, Height
// and the objects' Box, Shape, Color and Size.
type Scene struct {
	Width      int        `json:"width"`
	Height     int        `json:"height"`
	Background Background `json:"background"`
	Objects    []Object   `json:"objects"`
}

// newScene lays out a random scene: size, background, objects with their boxes.
func newScene(rng *rand.Rand) Scene {
	w, h := sampleImageSize(rng)
	s := Scene{Width: w, Height: h, Background: sampleBackground(rng)}
	n := MinObjs + rng.IntN(MaxObjs-MinObjs+1)
	objs := make([]Object, n)
	for i := range objs {
		o := &objs[i]
		o.Shape = pickAttr(rng, shapeNames, objs[:i], func(o Object) string { return o.Shape }, 0.3)
		o.Color = pickAttr(rng, colorNames, objs[:i], func(o Object) string { return o.Color }, 0.25)
		o.Size = sizeNames[rng.IntN(len(sizeNames))]
		base := baseRGB[o.Color]
		for c := range 3 {
			o.RGB[c] = clamp8(int(base[c]) + rng.IntN(2*colorJitter+1) - colorJitter)
		}
		lo, hi := smallMin, smallMax
		if o.Size == SizeLarge {
			lo, hi = largeMin, largeMax
		}
		o.r = float64(min(w, h)) * (lo + (hi-lo)*rng.Float64()) / 2
	}
	s.Objects = place(rng, objs, w, h)
	for i := range s.Objects {
		o := &s.Objects[i]
		m := objectMask(*o, w, h)
		o.Box = m.box()
		o.Center = [2]float64{(o.Box[0] + o.Box[2]) / 2, (o.Box[1] + o.Box[3]) / 2}
	}
	return s
}

// sampleImageSize draws a width and a height in [MinSide, MaxSide] with an aspect ratio in
// [MinAspect, MaxAspect].
func sampleImageSize(rng *rand.Rand) (w, h int) {
	for {
		w, h = MinSide+rng.IntN(MaxSide-MinSide+1), MinSide+rng.IntN(MaxSide-MinSide+1)
		if a := float64(w) / float64(h); a >= MinAspect && a <= MaxAspect {
			return w, h
		}
	}
}

// pickAttr draws an attribute value: with probability reuse the value of an earlier object
// (so that scenes hold several objects of a kind, for counts and for referring expressions that
// need more than the shape), else a uniform one.
func pickAttr(rng *rand.Rand, values []string, earlier []Object, get func(Object) string, reuse float64) string {
	if len(earlier) > 0 && rng.Float64() < reuse {
		return get(earlier[rng.IntN(len(earlier))])
	}
	return values[rng.IntN(len(values))]
}

// place gives each object a centre by rejection sampling: fully inside the image and apart from
// the others. Large objects go first. After repeated failures the whole layout starts again, and
// as a last resort objects that do not fit are dropped (never below MinObjs).
func place(rng *rand.Rand, objs []Object, w, h int) []Object {
	order := make([]int, len(objs))
	for i := range order {
		order[i] = i
	}
	// Stable: larger first, ties in index order.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && objs[order[j]].r > objs[order[j-1]].r; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	var placed []int
	for range 20 {
		placed = placed[:0]
		for _, i := range order {
			if tryPlace(rng, objs, placed, i, w, h) {
				placed = append(placed, i)
			}
		}
		if len(placed) == len(objs) {
			return objs
		}
	}
	if len(placed) < MinObjs { // cannot happen with the sizes above; keep the smallest ones
		placed = placed[:0]
		for k := len(order) - 1; k >= 0 && len(placed) < MinObjs; k-- {
			if tryPlace(rng, objs, placed, order[k], w, h) {
				placed = append(placed, order[k])
			}
		}
	}
	keep := make([]bool, len(objs))
	for _, i := range placed {
		keep[i] = true
	}
	var out []Object
	for i, o := range objs {
		if keep[i] {
			out = append(out, o)
		}
	}
	return out
}

func tryPlace(rng *rand.Rand, objs []Object, placed []int, i, w, h int) bool {
	o := &objs[i]
	ext := outlines[o.Shape].bounds
	lo := [2]float64{edgeGap - ext[0]*o.r, edgeGap - ext[1]*o.r}
	hi := [2]float64{float64(w-edgeGap) - ext[2]*o.r, float64(h-edgeGap) - ext[3]*o.r}
	if hi[0] <= lo[0] || hi[1] <= lo[1] {
		return false
	}
	for range 200 {
		o.cx = lo[0] + (hi[0]-lo[0])*rng.Float64()
		o.cy = lo[1] + (hi[1]-lo[1])*rng.Float64()
		ok := true
		for _, j := range placed {
			if overlaps(geomBox(*o), geomBox(objs[j]), objGap) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// geomBox is the bounding box of an object's outline in pixels.
func geomBox(o Object) [4]float64 {
	b := outlines[o.Shape].bounds
	return [4]float64{o.cx + b[0]*o.r, o.cy + b[1]*o.r, o.cx + b[2]*o.r, o.cy + b[3]*o.r}
}

// overlaps reports whether two boxes come closer than gap.
func overlaps(a, b [4]float64, gap float64) bool {
	return a[0] < b[2]+gap && b[0] < a[2]+gap && a[1] < b[3]+gap && b[1] < a[3]+gap
}

// sampleBackground draws a texture and two muted colours, neither close to any object colour.
func sampleBackground(rng *rand.Rand) Background {
	bg := Background{Kind: backgroundKinds[rng.IntN(len(backgroundKinds))]}
	hue := rng.Float64() * 360
	l0 := 0.32 + 0.38*rng.Float64()
	for k := range 2 {
		for {
			h := math.Mod(hue+float64(k)*(rng.Float64()*80-40)+360, 360)
			sat := 0.04 + 0.16*rng.Float64()
			l := l0
			if k == 1 { // the second colour differs in lightness so the texture shows
				d := 0.08 + 0.12*rng.Float64()
				if l0+d > 0.72 || (l0-d >= 0.3 && rng.IntN(2) == 0) {
					d = -d
				}
				l = l0 + d
			}
			c := hsl(h, sat, l)
			if minObjectColorDist(c) >= minBackgroundDist {
				bg.Colors[k] = c
				break
			}
		}
	}
	switch bg.Kind {
	case "gradient":
		bg.Period = 0
	case "stripes":
		bg.Period = float64(8 + rng.IntN(25))
	case "checks":
		bg.Period = float64(10 + rng.IntN(23))
	case "noise":
		bg.Period = float64(12 + rng.IntN(37))
	}
	if bg.Kind != "checks" {
		bg.Angle = float64(rng.IntN(180))
	}
	bg.Grain = rng.IntN(4)
	bg.Seed = rng.Uint32()
	return bg
}

// minBackgroundDist is the least RGB distance between a background colour and an object colour.
const minBackgroundDist = 80

func minObjectColorDist(c [3]uint8) float64 {
	best := math.Inf(1)
	for _, name := range colorNames {
		best = min(best, rgbDist(c, baseRGB[name]))
	}
	return best
}

func rgbDist(a, b [3]uint8) float64 {
	var s float64
	for i := range 3 {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// hsl converts hue (degrees), saturation and lightness (0..1) to RGB.
func hsl(h, s, l float64) [3]uint8 {
	c := (1 - math.Abs(2*l-1)) * s
	hp := h / 60
	x := c * (1 - math.Abs(math.Mod(hp, 2)-1))
	var r, g, b float64
	switch {
	case hp < 1:
		r, g = c, x
	case hp < 2:
		r, g = x, c
	case hp < 3:
		g, b = c, x
	case hp < 4:
		g, b = x, c
	case hp < 5:
		r, b = x, c
	default:
		r, b = c, x
	}
	m := l - c/2
	return [3]uint8{clamp8(int(math.Round((r + m) * 255))), clamp8(int(math.Round((g + m) * 255))),
		clamp8(int(math.Round((b + m) * 255)))}
}

func clamp8(v int) uint8 { return uint8(max(0, min(255, v))) }
