package shapes

import (
	"image"
	"math"
	"math/rand/v2"
	"slices"
)

// outline is a shape as a simple polygon in unit coordinates (y down, within [-1, 1]²), scaled
// by the object's r and centred on (cx, cy) when drawn.
type outline struct {
	pts    [][2]float64
	bounds [4]float64 // min x, min y, max x, max y of pts
}

var outlines = map[string]outline{}

func init() {
	regular := func(n int, r, phase float64) [][2]float64 {
		pts := make([][2]float64, n)
		for i := range pts {
			a := phase + 2*math.Pi*float64(i)/float64(n)
			pts[i] = [2]float64{r * math.Cos(a), r * math.Sin(a)}
		}
		return pts
	}
	star := make([][2]float64, 10)
	for i := range star {
		r := 1.0
		if i%2 == 1 {
			r = 0.42
		}
		a := -math.Pi/2 + math.Pi*float64(i)/5
		star[i] = [2]float64{r * math.Cos(a), r * math.Sin(a)}
	}
	heart := make([][2]float64, 64)
	for i := range heart {
		t := 2 * math.Pi * float64(i) / float64(len(heart))
		x := 16 * math.Pow(math.Sin(t), 3)
		y := 13*math.Cos(t) - 5*math.Cos(2*t) - 2*math.Cos(3*t) - math.Cos(4*t)
		heart[i] = [2]float64{x / 17, -(y + 2.5) / 15.5}
	}
	const a = 0.32 // half width of the cross's arms
	shapes := map[string][][2]float64{
		"circle":   regular(96, 1, 0),
		"square":   {{-0.82, -0.82}, {0.82, -0.82}, {0.82, 0.82}, {-0.82, 0.82}},
		"triangle": {{0, -0.92}, {1, 0.82}, {-1, 0.82}},
		"star":     star,
		"diamond":  {{0, -1}, {0.72, 0}, {0, 1}, {-0.72, 0}},
		"cross": {{-a, -0.9}, {a, -0.9}, {a, -a}, {0.9, -a}, {0.9, a}, {a, a}, {a, 0.9}, {-a, 0.9},
			{-a, a}, {-0.9, a}, {-0.9, -a}, {-a, -a}},
		"heart":   heart,
		"hexagon": regular(6, 1, 0),
	}
	for name, pts := range shapes {
		b := [4]float64{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}
		for _, p := range pts {
			b = [4]float64{min(b[0], p[0]), min(b[1], p[1]), max(b[2], p[0]), max(b[3], p[1])}
		}
		outlines[name] = outline{pts: pts, bounds: b}
	}
}

// Supersampling: ss×ss samples per pixel, so coverage runs from 0 to ss².
const (
	ss      = 4
	fullCov = ss * ss
	// A pixel belongs to an object's box when at least half of its samples are inside.
	boxCov = fullCov / 2
)

// mask is the coverage of one object over a rectangle of pixels.
type mask struct {
	x0, y0, w, h int
	cov          []uint8 // 0..fullCov, row-major
}

// objectMask rasterises an object's outline by scanline filling ss sub-rows per pixel row,
// clipped to a w×h image.
func objectMask(o Object, w, h int) mask {
	ol := outlines[o.Shape]
	pts := make([][2]float64, len(ol.pts))
	for i, p := range ol.pts {
		pts[i] = [2]float64{o.cx + p[0]*o.r, o.cy + p[1]*o.r}
	}
	gb := geomBox(o)
	x0, y0 := max(0, int(math.Floor(gb[0]))), max(0, int(math.Floor(gb[1])))
	x1, y1 := min(w, int(math.Ceil(gb[2]))+1), min(h, int(math.Ceil(gb[3]))+1)
	m := mask{x0: x0, y0: y0, w: max(0, x1-x0), h: max(0, y1-y0)}
	m.cov = make([]uint8, m.w*m.h)
	xs := make([]float64, 0, 8)
	for py := y0; py < y1; py++ {
		row := m.cov[(py-y0)*m.w : (py-y0+1)*m.w]
		for k := range ss {
			sy := float64(py) + (float64(k)+0.5)/ss
			xs = xs[:0]
			for i, p := range pts {
				q := pts[(i+1)%len(pts)]
				if (p[1] <= sy) != (q[1] <= sy) {
					xs = append(xs, p[0]+(sy-p[1])*(q[0]-p[0])/(q[1]-p[1]))
				}
			}
			slices.Sort(xs)
			for j := 0; j+1 < len(xs); j += 2 {
				// Samples at x = (i+0.5)/ss with xs[j] <= x < xs[j+1].
				i0 := max(int(math.Ceil(xs[j]*ss-0.5)), x0*ss)
				i1 := min(int(math.Ceil(xs[j+1]*ss-0.5)), x1*ss)
				if i0 >= i1 {
					continue
				}
				// Partial pixels at the ends, whole ones (ss samples) in between.
				p0, p1 := i0/ss, (i1-1)/ss
				if p0 == p1 {
					row[p0-x0] += uint8(i1 - i0)
					continue
				}
				row[p0-x0] += uint8((p0+1)*ss - i0)
				for px := p0 + 1; px < p1; px++ {
					row[px-x0] += ss
				}
				row[p1-x0] += uint8(i1 - p1*ss)
			}
		}
	}
	return m
}

// box is the tight box of the pixels at least half covered: [x1, y1, x2, y2), x2 and y2 exclusive.
func (m mask) box() [4]float64 {
	bx0, by0, bx1, by1 := math.MaxInt, math.MaxInt, -1, -1
	for y := range m.h {
		for x := range m.w {
			if m.cov[y*m.w+x] >= boxCov {
				bx0, by0, bx1, by1 = min(bx0, x), min(by0, y), max(bx1, x), max(by1, y)
			}
		}
	}
	if bx1 < 0 {
		return [4]float64{}
	}
	return [4]float64{float64(m.x0 + bx0), float64(m.y0 + by0), float64(m.x0 + bx1 + 1), float64(m.y0 + by1 + 1)}
}

// Render draws a generated scene: the background, then each object blended by its coverage.
// It needs the drawing geometry that only generated scenes carry (not scenes read from JSON).
func Render(s Scene) *image.RGBA {
	img := RenderBackground(s.Background, s.Width, s.Height)
	for _, o := range s.Objects {
		m := objectMask(o, s.Width, s.Height)
		for y := range m.h {
			for x := range m.w {
				c := int(m.cov[y*m.w+x])
				if c == 0 {
					continue
				}
				p := img.PixOffset(m.x0+x, m.y0+y)
				for ch := range 3 {
					img.Pix[p+ch] = uint8((int(img.Pix[p+ch])*(fullCov-c) + int(o.RGB[ch])*c + fullCov/2) / fullCov)
				}
			}
		}
	}
	return img
}

// RenderBackground draws a background texture on a w×h image; it is a pure function of its
// arguments.
func RenderBackground(b Background, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(uint64(b.Seed), 0x5348415045)) // noise lattice, then grain
	th := b.Angle * math.Pi / 180
	cos, sin := math.Cos(th), math.Sin(th)
	var mix func(x, y int) float64
	switch b.Kind {
	case "stripes":
		p := math.Max(b.Period, 2)
		mix = func(x, y int) float64 {
			u := (float64(x)*cos + float64(y)*sin) / p
			v := 0.5 + 0.5*math.Sin(2*math.Pi*u)
			return math.Max(0, math.Min(1, (v-0.5)*3+0.5)) // soft-edged bands
		}
	case "checks":
		p := int(math.Max(b.Period, 2))
		mix = func(x, y int) float64 { return float64((x/p + y/p) & 1) }
	case "noise":
		p := math.Max(b.Period, 2)
		gw, gh := int(float64(w)/p)+2, int(float64(h)/p)+2
		lattice := make([]float64, gw*gh)
		for i := range lattice {
			lattice[i] = rng.Float64()
		}
		smooth := func(t float64) float64 { return t * t * (3 - 2*t) }
		mix = func(x, y int) float64 {
			fx, fy := float64(x)/p, float64(y)/p
			ix, iy := int(fx), int(fy)
			tx, ty := smooth(fx-float64(ix)), smooth(fy-float64(iy))
			a := lattice[iy*gw+ix]*(1-tx) + lattice[iy*gw+ix+1]*tx
			c := lattice[(iy+1)*gw+ix]*(1-tx) + lattice[(iy+1)*gw+ix+1]*tx
			return a*(1-ty) + c*ty
		}
	default: // gradient
		span := math.Abs(float64(w)*cos) + math.Abs(float64(h)*sin)
		mix = func(x, y int) float64 {
			u := ((float64(x)-float64(w)/2)*cos + (float64(y)-float64(h)/2)*sin) / span
			return math.Max(0, math.Min(1, u+0.5))
		}
	}
	c0, c1 := b.Colors[0], b.Colors[1]
	for y := range h {
		for x := range w {
			t := mix(x, y)
			g := 0
			if b.Grain > 0 {
				g = rng.IntN(2*b.Grain+1) - b.Grain
			}
			p := img.PixOffset(x, y)
			for ch := range 3 {
				v := float64(c0[ch])*(1-t) + float64(c1[ch])*t
				img.Pix[p+ch] = clamp8(int(math.Round(v)) + g)
			}
			img.Pix[p+3] = 255
		}
	}
	return img
}
