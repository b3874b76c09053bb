package detector

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidSpec reports a preprocessing or selection spec that cannot be used.
var ErrInvalidSpec = errors.New("invalid detector spec")

// Resize rules: how the resized size is computed and how boxes map back to the original image
// (the manifest's detector.preprocess.resize_rule; docs/detector-contract.md, Preprocessing
// step 2 and Selection step 4).
const (
	// ResizeShorterSide is the default (an absent or empty rule): one scale for both axes,
	// capped when the rounded longer side would exceed the cap; boxes map back by / scale.
	ResizeShorterSide = "shorter_side"
	// ResizeDetectron2 is the LXMERT demo port's ResizeShortestEdge (detectron2's): the
	// shorter side becomes exactly ShorterSide, the longer one is capped on its unrounded
	// length, each side rounded by int(x + 0.5); boxes map back per axis by W/Wr and H/Hr.
	ResizeDetectron2 = "detectron2"
)

// PreprocessSpec is the manifest's detector.preprocess block (docs/detector-contract.md).
type PreprocessSpec struct {
	ChannelOrder  string     // "BGR" or "RGB": the order of the tensor's three channels
	PixelMeans    [3]float32 // subtracted per channel, in ChannelOrder
	PixelStd      [3]float32 // divided by per channel, in ChannelOrder
	ShorterSide   int        // target length of the shorter side (> 0)
	LongerSideMax int        // cap on the longer side; 0 = no cap
	ResizeRule    string     // ResizeShorterSide (also "") or ResizeDetectron2
	// MinInputSide is the smallest resized side the detector graph takes (0: any); Preprocess
	// refuses a smaller one with ErrImageTooSmall rather than run the graph on it.
	MinInputSide int
}

// ValidResizeRule reports whether rule names a resize rule ("" is the default,
// ResizeShorterSide).
func ValidResizeRule(rule string) bool {
	return rule == "" || rule == ResizeShorterSide || rule == ResizeDetectron2
}

// Rule is the resize rule in force: ResizeRule, with "" read as ResizeShorterSide.
func (s PreprocessSpec) Rule() string {
	if s.ResizeRule == "" {
		return ResizeShorterSide
	}
	return s.ResizeRule
}

// Validate reports a spec Preprocess cannot use.
func (s PreprocessSpec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: preprocess: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	if s.ChannelOrder != "BGR" && s.ChannelOrder != "RGB" {
		return bad("channel_order %q, want \"BGR\" or \"RGB\"", s.ChannelOrder)
	}
	if s.ShorterSide <= 0 {
		return bad("shorter_side %d, want > 0", s.ShorterSide)
	}
	if s.LongerSideMax < 0 {
		return bad("longer_side_max %d, want ≥ 0 (0 = no cap)", s.LongerSideMax)
	}
	if !ValidResizeRule(s.ResizeRule) {
		return bad("resize_rule %q, want %q (the default) or %q", s.ResizeRule, ResizeShorterSide, ResizeDetectron2)
	}
	if s.MinInputSide < 0 {
		return bad("min_input_side %d, want ≥ 0 (0 = any)", s.MinInputSide)
	}
	for c := 0; c < 3; c++ {
		if !Finite(s.PixelMeans[c]) {
			return bad("pixel_means[%d] is not finite", c)
		}
		if !Finite(s.PixelStd[c]) || s.PixelStd[c] == 0 {
			return bad("pixel_std[%d] = %v, want finite and non-zero", c, s.PixelStd[c])
		}
	}
	return nil
}

// ScaleInfo records how an image was resized for the detector.
type ScaleInfo struct {
	// Scale is the factor the resize rule computed before rounding: resized ≈ original · Scale.
	// Under ResizeShorterSide boxes map back by / Scale; under ResizeDetectron2 they map back per
	// axis (ToOriginal) and Scale only sizes min_box_size.
	Scale                       float64
	Rule                        string // the spec's ResizeRule ("" = ResizeShorterSide)
	Width, Height               int    // original (oriented) size
	ResizedWidth, ResizedHeight int    // the tensor's spatial size
}

// ResizeScale computes the scale and resized size for a w×h image under spec.ResizeRule.
//
// ResizeShorterSide (the default): scale = ShorterSide / min(w, h); if round(max(w, h)·scale) >
// LongerSideMax then scale = LongerSideMax / max(w, h); wr = round(w·scale), hr = round(h·scale),
// rounding half away from zero.
//
// ResizeDetectron2 (the LXMERT port's ResizeShortestEdge, in float64 as Python computes it):
// scale = ShorterSide / min(w, h); the shorter side becomes ShorterSide and the longer one
// scale·max(w, h) (h < w: the height is the shorter one; a square takes the width as the
// shorter); if the larger of the two exceeds LongerSideMax (unrounded) both are multiplied by
// s2 = LongerSideMax / that larger one, and scale by s2; then each side is int(x + 0.5).
//
// Either way each side is at least 1, a ShorterSide ≤ 0 means scale 1 (before the cap) and a
// LongerSideMax ≤ 0 no cap; w and h must be positive (otherwise it returns 0, 0, 0).
func ResizeScale(w, h int, spec PreprocessSpec) (scale float64, wr, hr int) {
	if w <= 0 || h <= 0 {
		return 0, 0, 0
	}
	if spec.ResizeRule == ResizeDetectron2 {
		return resizeDetectron2(w, h, spec)
	}
	short, long := float64(min(w, h)), float64(max(w, h))
	scale = 1
	if spec.ShorterSide > 0 {
		scale = float64(spec.ShorterSide) / short
	}
	if spec.LongerSideMax > 0 && math.Round(long*scale) > float64(spec.LongerSideMax) {
		scale = float64(spec.LongerSideMax) / long
	}
	wr = max(1, int(math.Round(float64(w)*scale)))
	hr = max(1, int(math.Round(float64(h)*scale)))
	return scale, wr, hr
}

// resizeDetectron2 is ResizeShortestEdge.__call__ of the port (processing_image.py) operation
// for operation. The explicit float64 conversions keep each product rounded on its own (Go may
// otherwise fuse a multiply and the + 0.5 into one FMA on some CPUs).
func resizeDetectron2(w, h int, spec PreprocessSpec) (scale float64, wr, hr int) {
	size := float64(spec.ShorterSide)
	if spec.ShorterSide <= 0 {
		size = float64(min(w, h)) // scale 1
	}
	scale = size / float64(min(w, h))
	var newh, neww float64
	if h < w {
		newh, neww = size, float64(scale*float64(w))
	} else {
		newh, neww = float64(scale*float64(h)), size
	}
	if m := float64(spec.LongerSideMax); spec.LongerSideMax > 0 && max(newh, neww) > m {
		s2 := m / max(newh, neww)
		newh, neww = float64(newh*s2), float64(neww*s2)
		scale = float64(scale * s2)
	}
	return scale, max(1, int(neww+0.5)), max(1, int(newh+0.5))
}

// Preprocess turns img into the detector's input tensor [1, 3, Hr, Wr] (returned flat, CHW,
// row-major) per the contract: 0..255 float32 values in ChannelOrder, resized bilinearly
// exactly as torch.nn.functional.interpolate(mode="bilinear", align_corners=False) (no
// antialiasing; skipped when the size is unchanged), then (v − mean[c]) / std[c].
func Preprocess(img *Image, spec PreprocessSpec) ([]float32, ScaleInfo, error) {
	if err := spec.Validate(); err != nil {
		return nil, ScaleInfo{}, err
	}
	if img == nil || img.Width <= 0 || img.Height <= 0 || len(img.Pix) != 3*img.Width*img.Height {
		return nil, ScaleInfo{}, fmt.Errorf("%w: preprocess needs a non-empty packed RGB image", ErrNotImage)
	}
	scale, wr, hr := ResizeScale(img.Width, img.Height, spec)
	if min(wr, hr) < spec.MinInputSide {
		return nil, ScaleInfo{}, fmt.Errorf("%w: %d×%d px resizes to %d×%d for the detector, which needs at least %d px "+
			"on each side (detector.preprocess.min_input_side); crop or pad it to a less elongated shape",
			ErrImageTooSmall, img.Width, img.Height, wr, hr, spec.MinInputSide)
	}
	info := ScaleInfo{Scale: scale, Rule: spec.ResizeRule, Width: img.Width, Height: img.Height, ResizedWidth: wr, ResizedHeight: hr}
	out := make([]float32, 3*wr*hr)
	resizeBilinear(out, img, channelSource(spec.ChannelOrder), wr, hr, spec.PixelMeans, spec.PixelStd)
	return out, info, nil
}

// channelSource gives, for each tensor channel, its byte within a packed RGB pixel.
func channelSource(order string) [3]int {
	if order == "BGR" {
		return [3]int{2, 1, 0}
	}
	return [3]int{0, 1, 2}
}

// linearTaps are torch's source indices and weights for one axis of a bilinear resize
// (upsample_bilinear2d on CPU, align_corners=False, output size given): ratio = in/out in
// float32; src = ratio·(dst + 0.5) − 0.5 evaluated in float64 and clamped at 0;
// i0 = ⌊src⌋, i1 = min(i0 + 1, in − 1); w1 = float32(clamp(src − i0, 0, 1)), w0 = 1 − w1 in
// float32. (Keeping src in float64 until the weight is taken matters: rounding src to float32
// first moves some weights by up to 2⁻²², ~1e-4 on 0..255 values.) An axis whose size does
// not change copies: i0 = i1 = dst, w0 = 1, w1 = 0.
func linearTaps(in, out int) (i0, i1 []int, w0, w1 []float32) {
	i0, i1 = make([]int, out), make([]int, out)
	w0, w1 = make([]float32, out), make([]float32, out)
	if in == out {
		for d := range i0 {
			i0[d], i1[d], w0[d] = d, d, 1
		}
		return
	}
	ratio := float64(float32(in) / float32(out))
	for d := 0; d < out; d++ {
		src := max(ratio*(float64(d)+0.5)-0.5, 0)
		k := min(int(src), in-1)
		l := float32(min(max(src-float64(k), 0), 1))
		i0[d], w1[d], w0[d] = k, l, 1-l
		i1[d] = min(k+1, in-1)
	}
	return
}

// resizeBilinear writes the resized, normalised CHW tensor into out (3·hr·wr values).
// Like torch it interpolates along the width first, then blends two such rows along the
// height, in float32: t = p0·wx0 + p1·wx1, v = t0·wy0 + t1·wy1, each as a fused multiply-add
// (p0·wx0 added to the rounded p1·wx1) — what torch's AVX2 kernel compiles to, so most values
// are bit-identical to PyTorch here (a plain multiply-then-add build differs by ≤ 2 ulps).
// Horizontal passes of the two source rows in use are cached, so each source row is
// interpolated once.
func resizeBilinear(out []float32, img *Image, srcCh [3]int, wr, hr int, mean, std [3]float32) {
	W, H := img.Width, img.Height
	plane := wr * hr
	if wr == W && hr == H { // the contract skips resizing
		for i := 0; i < plane; i++ {
			p := img.Pix[3*i : 3*i+3 : 3*i+3]
			for c := 0; c < 3; c++ {
				out[c*plane+i] = (float32(p[srcCh[c]]) - mean[c]) / std[c]
			}
		}
		return
	}
	x0, x1, wx0, wx1 := linearTaps(W, wr)
	y0, y1, wy0, wy1 := linearTaps(H, hr)

	// Two cached horizontal passes, each 3 planar rows of wr values.
	var rowOf [2]int
	var rows [2][]float32
	buf := make([]float32, 6*wr)
	rows[0], rows[1] = buf[:3*wr], buf[3*wr:]
	rowOf[0], rowOf[1] = -1, -1
	horizontal := func(sy int, dst []float32) {
		src := img.Pix[3*W*sy : 3*W*(sy+1)]
		d0, d1, d2 := dst[:wr], dst[wr:2*wr], dst[2*wr:3*wr]
		s0, s1, s2 := srcCh[0], srcCh[1], srcCh[2]
		for x := 0; x < wr; x++ {
			a, b := src[3*x0[x]:3*x0[x]+3], src[3*x1[x]:3*x1[x]+3]
			u, v := wx0[x], wx1[x]
			d0[x] = fma32(float32(a[s0]), u, float32(b[s0])*v)
			d1[x] = fma32(float32(a[s1]), u, float32(b[s1])*v)
			d2[x] = fma32(float32(a[s2]), u, float32(b[s2])*v)
		}
	}
	get := func(sy, keep int) []float32 {
		for s := 0; s < 2; s++ {
			if rowOf[s] == sy {
				return rows[s]
			}
		}
		s := 0
		if rowOf[0] == keep {
			s = 1
		}
		horizontal(sy, rows[s])
		rowOf[s] = sy
		return rows[s]
	}
	for y := 0; y < hr; y++ {
		r0 := get(y0[y], y1[y])
		r1 := get(y1[y], y0[y])
		u, v := wy0[y], wy1[y]
		for c := 0; c < 3; c++ {
			o := out[c*plane+y*wr : c*plane+(y+1)*wr]
			a, b := r0[c*wr:(c+1)*wr], r1[c*wr:(c+1)*wr]
			a, b = a[:len(o)], b[:len(o)]
			m, s := mean[c], std[c]
			if s == 1 { // x/1 == x exactly: skip the division (BUTD's std is 1)
				for x := range o {
					o[x] = fma32(a[x], u, b[x]*v) - m
				}
				continue
			}
			for x := range o {
				o[x] = (fma32(a[x], u, b[x]*v) - m) / s
			}
		}
	}
}

// fma32 is a·b + c for float32 operands the way a fused multiply-add computes it: the product
// is exact in float64 (24 + 24 bits), so the float64 sum is math.FMA's result whether or not
// the compiler fuses it; it is then rounded to float32 (in rare ties this second rounding can
// differ from a float32 FMA by one ulp).
func fma32(a, b, c float32) float32 { return float32(float64(a)*float64(b) + float64(c)) }
