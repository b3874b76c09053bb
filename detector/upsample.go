package detector

import "image"

// libjpeg-compatible colour conversion for JPEG's YCbCr planes.
//
// Go's image/jpeg returns the chroma planes at their coded (subsampled) resolution and
// image.YCbCr.At replicates each chroma sample over 2×2 (4:2:0) pixels. libjpeg(-turbo) — what
// PIL and OpenCV decode with, so what the Python side of the contract sees — interpolates
// instead ("fancy upsampling", on by default): each output chroma sample is 3/4 of the nearer
// and 1/4 of the farther coded sample in each subsampled direction, with libjpeg's exact
// rounding. Then it converts YCbCr to RGB with its own fixed-point tables. Doing both the
// libjpeg way here leaves only the IDCT (Go's differs from libjpeg's islow by ±1–2 levels) as
// a difference, instead of up to ~30 levels at colour edges.

// jpegToRGB converts a decoded JPEG's YCbCr planes to packed RGB into dst.
func jpegToRGB(dst []uint8, m *image.YCbCr) {
	r := m.Rect
	w, h := r.Dx(), r.Dy()
	var hf, vf int // subsampling factors
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hf, vf = 1, 1
	case image.YCbCrSubsampleRatio422:
		hf, vf = 2, 1
	case image.YCbCrSubsampleRatio420:
		hf, vf = 2, 2
	case image.YCbCrSubsampleRatio440:
		hf, vf = 1, 2
	default: // 4:1:1, 4:1:0: libjpeg replicates too
		ycbcrToRGB(dst, m)
		return
	}
	if r.Min.X%hf != 0 || r.Min.Y%vf != 0 { // a sub-image off the chroma grid (never decoded)
		ycbcrToRGB(dst, m)
		return
	}
	cw, ch := (w+hf-1)/hf, (h+vf-1)/vf // coded chroma size of the image area
	// libjpeg interpolates horizontally only when the coded width exceeds 2 (4:2:0 and 4:2:2
	// then replicate in both directions); 4:4:0 always interpolates vertically.
	fancy := hf == 1 || cw > 2
	c0 := m.COffset(r.Min.X, r.Min.Y)
	cb := make([]uint8, w)
	cr := make([]uint8, w)
	for y := 0; y < h; y++ {
		// The coded chroma row nearest to output row y and the next nearest (edges replicate).
		near, far := y/vf, y/vf
		if vf == 2 {
			if y%2 == 0 {
				far = max(near-1, 0)
			} else {
				far = min(near+1, ch-1)
			}
		}
		n0, f0 := c0+near*m.CStride, c0+far*m.CStride
		switch {
		case hf == 1 && vf == 1:
			copy(cb, m.Cb[n0:n0+w])
			copy(cr, m.Cr[n0:n0+w])
		case !fancy:
			replicateH2(cb, m.Cb[n0:n0+cw])
			replicateH2(cr, m.Cr[n0:n0+cw])
		case vf == 2 && hf == 2:
			fancyH2V2(cb, m.Cb[n0:n0+cw], m.Cb[f0:f0+cw])
			fancyH2V2(cr, m.Cr[n0:n0+cw], m.Cr[f0:f0+cw])
		case hf == 2:
			fancyH2V1(cb, m.Cb[n0:n0+cw])
			fancyH2V1(cr, m.Cr[n0:n0+cw])
		default: // 4:4:0
			bias := int32(1)
			if y%2 == 1 {
				bias = 2
			}
			fancyH1V2(cb, m.Cb[n0:n0+w], m.Cb[f0:f0+w], bias)
			fancyH1V2(cr, m.Cr[n0:n0+w], m.Cr[f0:f0+w], bias)
		}
		yrow := m.Y[m.YOffset(r.Min.X, r.Min.Y+y):]
		out := dst[3*w*y : 3*w*(y+1)]
		for x := 0; x < w; x++ {
			out[3*x], out[3*x+1], out[3*x+2] = libjpegYCCToRGB(yrow[x], cb[x], cr[x])
		}
	}
}

// fancyH2V2 is libjpeg-turbo's h2v2_fancy_upsample for one output row: near is the nearest
// coded chroma row, far the next nearest; dst has room for len(dst) ≤ 2·len(near) samples.
func fancyH2V2(dst, near, far []uint8) {
	n := len(near)
	col := func(i int) int32 { return int32(near[i])*3 + int32(far[i]) }
	put := func(i int, v int32) {
		if i < len(dst) {
			dst[i] = uint8(v)
		}
	}
	this, next := col(0), col(1)
	put(0, (this*4+8)>>4)
	put(1, (this*3+next+7)>>4)
	last := this
	this = next
	for i := 1; i < n-1; i++ {
		next = col(i + 1)
		put(2*i, (this*3+last+8)>>4)
		put(2*i+1, (this*3+next+7)>>4)
		last, this = this, next
	}
	put(2*n-2, (this*3+last+8)>>4)
	put(2*n-1, (this*4+7)>>4)
}

// fancyH2V1 is libjpeg-turbo's h2v1_fancy_upsample (4:2:2).
func fancyH2V1(dst, in []uint8) {
	n := len(in)
	put := func(i int, v int32) {
		if i < len(dst) {
			dst[i] = uint8(v)
		}
	}
	put(0, int32(in[0]))
	put(1, (int32(in[0])*3+int32(in[1])+2)>>2)
	for i := 1; i < n-1; i++ {
		v := int32(in[i]) * 3
		put(2*i, (v+int32(in[i-1])+1)>>2)
		put(2*i+1, (v+int32(in[i+1])+2)>>2)
	}
	put(2*n-2, (int32(in[n-1])*3+int32(in[n-2])+1)>>2)
	put(2*n-1, int32(in[n-1]))
}

// fancyH1V2 is libjpeg-turbo's h1v2_fancy_upsample (4:4:0): bias 1 for the upper output row
// of a pair, 2 for the lower.
func fancyH1V2(dst, near, far []uint8, bias int32) {
	for i := range dst {
		dst[i] = uint8((int32(near[i])*3 + int32(far[i]) + bias) >> 2)
	}
}

func replicateH2(dst, in []uint8) {
	for i := range dst {
		dst[i] = in[i/2]
	}
}

// libjpegYCCToRGB is libjpeg's ycc_rgb_convert (jdcolor.c): 16-bit fixed-point tables with
// rounding, arithmetic shifts, clamped to 0..255.
func libjpegYCCToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	const half = 1 << 15
	yy := int32(y)
	b1 := int32(cb) - 128
	r1 := int32(cr) - 128
	r := yy + (91881*r1+half)>>16
	g := yy + (-22554*b1-46802*r1+half)>>16
	b := yy + (116130*b1+half)>>16
	return clamp255(r), clamp255(g), clamp255(b)
}

func clamp255(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// fromWebP converts a decoded WebP the way libwebp (PIL's decoder) does. Lossy (VP8) pictures
// come back from x/image/webp as image.YCbCr / image.NYCbCrA (4:2:0) holding limited-range
// BT.601 samples, which Go's YCbCr conversion would read as full-range JPEG samples
// (golang/go#40173: colours ~10 levels off, contrast compressed). libwebp's default output
// path interpolates chroma ("fancy upsampling", 9/3/3/1 weights with its rounding) and
// converts with its own fixed-point arithmetic; both are reproduced here. Lossless (VP8L)
// pictures are NRGBA and go through FromImage. Alpha is dropped (colours are not
// premultiplied in WebP).
func fromWebP(m image.Image) *Image {
	var p *image.YCbCr
	switch m := m.(type) {
	case *image.YCbCr:
		p = m
	case *image.NYCbCrA:
		p = &m.YCbCr
	default:
		return FromImage(m)
	}
	r := p.Rect
	w, h := r.Dx(), r.Dy()
	out := &Image{Width: w, Height: h, Pix: make([]uint8, 3*w*h), Orientation: 1}
	if p.SubsampleRatio != image.YCbCrSubsampleRatio420 || r.Min.X%2 != 0 || r.Min.Y%2 != 0 {
		for y := 0; y < h; y++ { // not what the VP8 decoder returns; replicate chroma
			for x := 0; x < w; x++ {
				ci := p.COffset(r.Min.X+x, r.Min.Y+y)
				o := out.Pix[3*(y*w+x):]
				o[0], o[1], o[2] = vp8YUVToRGB(int(p.Y[p.YOffset(r.Min.X+x, r.Min.Y+y)]), int(p.Cb[ci]), int(p.Cr[ci]))
			}
		}
		return out
	}
	cw, ch := (w+1)/2, (h+1)/2
	c0 := p.COffset(r.Min.X, r.Min.Y)
	u := make([]uint8, w)
	v := make([]uint8, w)
	for y := 0; y < h; y++ {
		near := y / 2 // as libwebp's EmitFancyRGB pairs rows; edges replicate
		far := min(near+1, ch-1)
		if y%2 == 0 {
			far = max(near-1, 0)
		}
		n0, f0 := c0+near*p.CStride, c0+far*p.CStride
		webpFancy(u, p.Cb[n0:n0+cw], p.Cb[f0:f0+cw])
		webpFancy(v, p.Cr[n0:n0+cw], p.Cr[f0:f0+cw])
		yrow := p.Y[p.YOffset(r.Min.X, r.Min.Y+y):]
		o := out.Pix[3*w*y : 3*w*(y+1)]
		for x := 0; x < w; x++ {
			o[3*x], o[3*x+1], o[3*x+2] = vp8YUVToRGB(int(yrow[x]), int(u[x]), int(v[x]))
		}
	}
	return out
}

// webpFancy is one channel of libwebp's UpsampleRgbLinePair (src/dsp/upsampling.c) for an
// output row whose nearer coded chroma row is near and farther one far: weights 9/3/3/1 with
// libwebp's two-step rounding, the first (and, for even widths, last) pixel 3/1 vertically.
func webpFancy(dst, near, far []uint8) {
	w := len(dst)
	tl, l := int(near[0]), int(far[0])
	dst[0] = uint8((3*tl + l + 2) >> 2)
	for i := 1; i <= (w-1)>>1; i++ {
		t, c := int(near[i]), int(far[i])
		avg := tl + t + l + c + 8
		d12 := (avg + 2*(t+l)) >> 3
		d03 := (avg + 2*(tl+c)) >> 3
		dst[2*i-1] = uint8((d12 + tl) >> 1)
		dst[2*i] = uint8((d03 + t) >> 1)
		tl, l = t, c
	}
	if w%2 == 0 {
		dst[w-1] = uint8((3*tl + l + 2) >> 2)
	}
}

// vp8YUVToRGB is libwebp's VP8YUVToR/G/B (src/dsp/yuv.h): BT.601 limited range, 14-bit
// coefficients, results with 6 fractional bits, rounded and clipped.
func vp8YUVToRGB(y, u, v int) (r, g, b uint8) {
	mulHi := func(a, c int) int { return (a * c) >> 8 }
	clip := func(a int) uint8 {
		if a&^(256<<6-1) == 0 {
			return uint8(a >> 6)
		}
		if a < 0 {
			return 0
		}
		return 255
	}
	yc := mulHi(y, 19077)
	return clip(yc + mulHi(v, 26149) - 14234), clip(yc - mulHi(u, 6419) - mulHi(v, 13320) + 8708), clip(yc + mulHi(u, 33050) - 17685)
}
