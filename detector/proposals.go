package detector

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
)

// ProposalSpec is the RPN's test-time proposal stage (manifest detector.proposals): what the
// split detector graph leaves to the caller between its backbone (image → feature map,
// objectness, anchor deltas) and its heads. With AnchorOffset 0 and MinSize nil it is
// models/uniter/detector.py's Detector.proposals (torchvision's RPN at test time, NMS on
// logits, no small-box filter); with MinSize set it is butd.py's BUTDDetector.proposals
// (detectron2's RPN as the bottom-up-attention port runs it).
type ProposalSpec struct {
	Stride       float32    // feature stride in input pixels (16)
	AnchorOffset float32    // anchors' grid offset in strides (0 torchvision, 0 or 0.5 detectron2)
	CellAnchors  []Box      // A anchors centred on 0, [x1,y1,x2,y2], in the order of the head's channels
	BoxWeights   [4]float32 // wx, wy, ww, wh
	ScaleClamp   float32    // dw, dh clamped from above (log(1000/16))
	PreNMSTopN   int
	PostNMSTopN  int
	NMSIoU       float32 // suppress when IoU > NMSIoU (torchvision's rule)
	// MinSize nil keeps every box (torchvision's Detector); else only boxes with
	// width > *MinSize and height > *MinSize are kept (detectron2's filter: note that
	// a MinSize of 0 still drops zero-width or zero-height boxes, and NaN boxes).
	MinSize *float32
}

// maxAnchors bounds A·fh·fw (rankKey packs an anchor index into 32 bits; 4·A·fh·fw must fit
// an int).
const maxAnchors = 1 << 28

// Validate reports a spec Propose cannot use, naming the offending field.
func (s ProposalSpec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: proposals: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case len(s.CellAnchors) < 1:
		return bad("CellAnchors is empty, want at least one anchor")
	case len(s.CellAnchors) > maxAnchors/4:
		return bad("CellAnchors has %d anchors, too many", len(s.CellAnchors))
	case !Finite(s.Stride) || s.Stride <= 0:
		return bad("Stride %v, want a finite value > 0", s.Stride)
	case !Finite(s.AnchorOffset) || s.AnchorOffset < 0 || s.AnchorOffset >= 1:
		return bad("AnchorOffset %v, want a value in [0, 1)", s.AnchorOffset)
	case !Finite(s.ScaleClamp):
		return bad("ScaleClamp %v is not finite", s.ScaleClamp)
	case s.PreNMSTopN < 1:
		return bad("PreNMSTopN %d, want ≥ 1", s.PreNMSTopN)
	case s.PostNMSTopN < 1:
		return bad("PostNMSTopN %d, want ≥ 1", s.PostNMSTopN)
	case !(s.NMSIoU > 0 && s.NMSIoU <= 1): // also NaN
		return bad("NMSIoU %v, want a value in (0, 1]", s.NMSIoU)
	case s.MinSize != nil && (!Finite(*s.MinSize) || *s.MinSize < 0):
		return bad("MinSize %v, want nil or a finite value ≥ 0", *s.MinSize)
	}
	for i, w := range s.BoxWeights {
		if !Finite(w) || w <= 0 {
			return bad("BoxWeights[%d] %v, want a finite value > 0", i, w)
		}
	}
	for a, b := range s.CellAnchors {
		for _, v := range b {
			if !Finite(v) {
				return bad("CellAnchors[%d] %v is not finite", a, b)
			}
		}
	}
	return nil
}

// Propose turns the RPN head's raw outputs into proposals in the graph's input pixels, best
// first. objectness is [1, A, fh, fw] and deltas [1, 4A, fh, fw] (row-major, as the conv heads
// output them: objectness[a][y][x], deltas[a*4+c][y][x]); imageH, imageW the input image size.
//
// It reproduces the Python proposal stage in float32, op for op:
//
//  1. Anchor i = (y·fw + x)·A + a is CellAnchors[a] + (sx, sy, sx, sy) with
//     sx = float32(x)·Stride + AnchorOffset·Stride (torch's arange·s + offset·s; the offset
//     term is rounded to float32 once, as torch rounds the Python scalar), sy likewise.
//  2. The k = min(PreNMSTopN, A·fh·fw) anchors of highest objectness, descending, ties by lower
//     index (ONNX TopK's rule; torch.topk leaves the order of ties unspecified), NaN scores
//     last (torch.topk would put them first).
//  3. torchvision's BoxCoder.decode_single / detectron2's apply_deltas: dw, dh clamped from
//     above at ScaleClamp (a NaN delta stays NaN); exp is computed in float64 and rounded,
//     which may differ from torch's float32 exp by an ulp.
//  4. Clipping: max(v, 0) then min(v, imageW) for x and min(v, imageH) for y; NaN stays NaN,
//     as torch.clamp and torch.min propagate it.
//  5. With MinSize, only boxes with x2 − x1 > MinSize and y2 − y1 > MinSize (a NaN box fails).
//  6. torchvision's greedy NMS in that order (suppress IoU > NMSIoU in iouAbove's arithmetic:
//     a box with a NaN coordinate neither suppresses nor is suppressed, nor is a zero-area
//     box), keeping at most PostNMSTopN.
//
// An empty result is not an error (the caller reports ErrNoProposals).
func Propose(s ProposalSpec, objectness, deltas []float32, fh, fw, imageH, imageW int) ([]Box, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	A := len(s.CellAnchors)
	if fh < 1 || fw < 1 {
		return nil, fmt.Errorf("%w: feature map %d×%d, want at least 1×1", ErrInvalidOutputs, fh, fw)
	}
	if fh > maxAnchors/A/fw {
		return nil, fmt.Errorf("%w: feature map %d×%d with %d anchors: too many anchors", ErrInvalidOutputs, fh, fw, A)
	}
	if imageH < 1 || imageW < 1 {
		return nil, fmt.Errorf("detector: proposals: image size %d×%d, want at least 1×1", imageH, imageW)
	}
	n := A * fh * fw
	if len(objectness) != n {
		return nil, fmt.Errorf("%w: objectness has %d values, want %d anchors × %d×%d = %d",
			ErrInvalidOutputs, len(objectness), A, fh, fw, n)
	}
	if len(deltas) != 4*n {
		return nil, fmt.Errorf("%w: anchor deltas have %d values, want 4 × %d anchors × %d×%d = %d",
			ErrInvalidOutputs, len(deltas), A, fh, fw, 4*n)
	}
	plane := fh * fw

	// 2. Top-k over rank keys in anchor order (y, x, a).
	keys := make([]uint64, n)
	for cell := range plane {
		for a := range A {
			i := cell*A + a
			keys[i] = rankKey(objectness[a*plane+cell], i)
		}
	}
	k := min(s.PreNMSTopN, n)
	selectSmallest(keys, k)
	keys = keys[:k]
	slices.Sort(keys)

	// 1, 3, 4, 5: anchors, decoding, clipping and the size filter for the k.
	off := float32(float64(s.AnchorOffset) * float64(s.Stride))
	W, H := float32(imageW), float32(imageH)
	boxes := make([]Box, 0, k)
	for _, key := range keys {
		i := rankIndex(key)
		a, cell := i%A, i/A
		y, x := cell/fw, cell%fw
		sx := float32(float32(x)*s.Stride) + off
		sy := float32(float32(y)*s.Stride) + off
		c := s.CellAnchors[a]
		anchor := Box{sx + c[0], sy + c[1], sx + c[2], sy + c[3]}
		var d [4]float32
		for j := range d {
			d[j] = deltas[(a*4+j)*plane+cell]
		}
		b := decodeBox(anchor, d, s.BoxWeights, s.ScaleClamp)
		b = Box{
			min(max(b[0], 0), W), min(max(b[1], 0), H),
			min(max(b[2], 0), W), min(max(b[3], 0), H),
		}
		if s.MinSize != nil && !(b[2]-b[0] > *s.MinSize && b[3]-b[1] > *s.MinSize) {
			continue
		}
		boxes = append(boxes, b)
	}

	// 6. Greedy NMS: a box is kept when no kept box overlaps it by more than NMSIoU; that is
	// torchvision's suppression order, and it stops once PostNMSTopN are kept.
	thr := float64(s.NMSIoU)
	kept := make([]Box, 0, min(s.PostNMSTopN, len(boxes)))
	keptArea := make([]float32, 0, cap(kept))
	for _, b := range boxes {
		if len(kept) == s.PostNMSTopN {
			break
		}
		area := boxArea(b)
		suppressed := false
		for q, kb := range kept {
			if iouAbove(kb, b, keptArea[q], area, thr) {
				suppressed = true
				break
			}
		}
		if !suppressed {
			kept = append(kept, b)
			keptArea = append(keptArea, area)
		}
	}
	return kept, nil
}

// decodeBox is torchvision's BoxCoder.decode_single (= detectron2's apply_deltas) for one
// anchor, op for op in float32. The explicit float32 conversions round every product, so the
// compiler cannot fuse it with the following addition.
func decodeBox(a Box, d [4]float32, wts [4]float32, clamp float32) Box {
	w := a[2] - a[0]
	h := a[3] - a[1]
	cx := a[0] + float32(0.5*w)
	cy := a[1] + float32(0.5*h)
	dx := d[0] / wts[0]
	dy := d[1] / wts[1]
	dw := min(d[2]/wts[2], clamp) // NaN stays NaN, as with torch.clamp
	dh := min(d[3]/wts[3], clamp)
	px := float32(dx*w) + cx
	py := float32(dy*h) + cy
	pw := float32(float32(math.Exp(float64(dw))) * w)
	ph := float32(float32(math.Exp(float64(dh))) * h)
	hw := float32(0.5 * pw)
	hh := float32(0.5 * ph)
	return Box{px - hw, py - hh, px + hw, py + hh}
}

// selectSmallest reorders keys so that its k smallest come first (in no particular order):
// a quickselect that falls back to sorting when its partitions keep coming out lopsided.
func selectSmallest(keys []uint64, k int) {
	lo, hi := 0, len(keys) // the k-th smallest lies in keys[lo:hi]
	budget := 2 * bits.Len(uint(len(keys)))
	for hi-lo > 16 {
		if k <= lo || k >= hi {
			return
		}
		if budget == 0 {
			slices.Sort(keys[lo:hi])
			return
		}
		budget--
		// Median of three as the pivot, then Hoare partition.
		m := lo + (hi-lo)/2
		a, b, c := keys[lo], keys[m], keys[hi-1]
		pivot := max(min(a, b), min(max(a, b), c))
		i, j := lo-1, hi
		for {
			for i++; keys[i] < pivot; i++ {
			}
			for j--; keys[j] > pivot; j-- {
			}
			if i >= j {
				break
			}
			keys[i], keys[j] = keys[j], keys[i]
		}
		// keys[lo:j+1] ≤ pivot ≤ keys[j+1:hi]
		if k <= j+1 {
			hi = j + 1
		} else {
			lo = j + 1
		}
	}
	slices.Sort(keys[lo:hi])
}

// RoIs returns boxes as a heads graph's rois input: [P, 5] rows (0, x1, y1, x2, y2), batch
// index 0.
func RoIs(boxes []Box) []float32 {
	r := make([]float32, 5*len(boxes))
	for i, b := range boxes {
		copy(r[5*i+1:5*i+5], b[:])
	}
	return r
}

// roiCoordLimit bounds a box coordinate times the spatial scale (in feature cells) before it
// is converted to an integer: beyond it torchvision's conversion to int is undefined.
const roiCoordLimit = 1 << 29

// RoIPool is Caffe's / torchvision's RoI max pooling (torchvision.ops.roi_pool's CPU kernel,
// as bottom-up-attention's region features use it with spatial scale 1/16). feature is
// [C, fh, fw]; boxes are in input pixels; the result goes to dst, [P, C, S, S] with
// S = outputSize, every value overwritten (an ONNX Runtime input tensor's buffer, for instance).
//
// For each box: start = round(x1·scale), end = round(x2·scale) (float32 product, rounded half
// away from zero), width = max(end − start + 1, 1), bin = float32(width)/float32(S); bin pw
// covers columns [floor(pw·bin), ceil((pw+1)·bin)) shifted by start and clipped to [0, fw];
// rows likewise. An empty bin is 0; otherwise the bin's maximum, as the kernel takes it
// (start at −MaxFloat32, take v when v > max): −Inf values give −MaxFloat32, NaN values are
// skipped, and a bin of only NaN gives −MaxFloat32. One difference: where a bin's maximum is
// zero and it holds both +0 and −0, the result is +0 (the kernel keeps whichever comes first).
// A box with a NaN coordinate (torchvision: undefined) pools to zeros; coordinates beyond
// ±2^29 feature cells are clamped there.
//
// The work is split over runtime.GOMAXPROCS(0) goroutines.
func RoIPool(dst, feature []float32, channels, fh, fw int, boxes []Box, outputSize int, spatialScale float32) error {
	if err := checkRoIPool(feature, channels, fh, fw, boxes, outputSize, spatialScale); err != nil {
		return err
	}
	if want := len(boxes) * channels * outputSize * outputSize; len(dst) != want {
		return fmt.Errorf("detector: roi_pool: the output buffer has %d values, want %d boxes × %d × %d×%d = %d",
			len(dst), len(boxes), channels, outputSize, outputSize, want)
	}
	roiPool(dst, feature, channels, fh, fw, boxes, outputSize, spatialScale)
	return nil
}

func checkRoIPool(feature []float32, channels, fh, fw int, boxes []Box, outputSize int, spatialScale float32) error {
	switch {
	case channels < 1 || fh < 1 || fw < 1:
		return fmt.Errorf("%w: roi_pool: feature map %d×%d×%d, want at least 1×1×1", ErrInvalidOutputs, channels, fh, fw)
	case fh > math.MaxInt32/channels/fw:
		return fmt.Errorf("%w: roi_pool: feature map %d×%d×%d is too large", ErrInvalidOutputs, channels, fh, fw)
	case len(feature) != channels*fh*fw:
		return fmt.Errorf("%w: roi_pool: feature has %d values, want %d×%d×%d = %d",
			ErrInvalidOutputs, len(feature), channels, fh, fw, channels*fh*fw)
	case outputSize < 1 || outputSize > 1<<12:
		return fmt.Errorf("%w: roi_pool: output size %d, want 1 to 4096", ErrInvalidSpec, outputSize)
	case !Finite(spatialScale) || spatialScale <= 0:
		return fmt.Errorf("%w: roi_pool: spatial scale %v, want a finite value > 0", ErrInvalidSpec, spatialScale)
	case len(boxes) > 0 && channels*outputSize*outputSize > math.MaxInt32/len(boxes):
		return errors.New("detector: roi_pool: the output would be too large")
	}
	return nil
}

func roiPool(out, feature []float32, channels, fh, fw int, boxes []Box, S int, spatialScale float32) {
	P := len(boxes)
	if P == 0 {
		return
	}
	// Each box's bins, once: rows[(p*S+ph)*2 : +2] = [hstart, hend), cols likewise. Both are
	// non-decreasing in ph, pw. A NaN box gets empty bins.
	rows := make([]int32, 2*P*S)
	cols := make([]int32, 2*P*S)
	for p, b := range boxes {
		if b[0] != b[0] || b[1] != b[1] || b[2] != b[2] || b[3] != b[3] {
			continue // all bins [0, 0)
		}
		poolBins(rows[2*p*S:2*(p+1)*S], roiCell(b[1], spatialScale), roiCell(b[3], spatialScale), S, fh)
		poolBins(cols[2*p*S:2*(p+1)*S], roiCell(b[0], spatialScale), roiCell(b[2], spatialScale), S, fw)
	}

	// Tasks t = c·P + p: one channel at a time, so its plane stays in cache across the boxes.
	plane := fh * fw
	tasks := channels * P
	pool := func(from, to int) {
		keys := make([]int32, plane)
		rowMax := make([]int32, fh*S)
		lastC, nanFree := -1, false
		for t := from; t < to; t++ {
			c, p := t/P, t%P
			src := feature[c*plane : (c+1)*plane]
			if c != lastC {
				lastC, nanFree = c, orderKeys(keys, src)
			}
			dst := out[(p*channels+c)*S*S : (p*channels+c+1)*S*S]
			r := rows[2*p*S : 2*(p+1)*S]
			q := cols[2*p*S : 2*(p+1)*S]
			if nanFree {
				poolKeys(dst, keys, fw, r, q, S, rowMax)
			} else {
				poolFloats(dst, src, fw, r, q, S)
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), (tasks*S*S+(1<<14)-1)/(1<<14)) // ≥ 16k bins each
	if workers <= 1 {
		pool(0, tasks)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		from, to := tasks*w/workers, tasks*(w+1)/workers
		wg.Go(func() { pool(from, to) })
	}
	wg.Wait()
}

// roiCell is round(v·scale) in float32, half away from zero, clamped to ±roiCoordLimit.
func roiCell(v, scale float32) int {
	r := math.Round(float64(float32(v * scale)))
	return int(max(min(r, roiCoordLimit), -roiCoordLimit))
}

// poolBins fills bins with S [start, end) pairs for a RoI from cell start to end (inclusive)
// along an axis of size size, Caffe's way.
func poolBins(bins []int32, start, end, S, size int) {
	width := max(end-start+1, 1) // malformed RoIs are forced to 1 cell
	bin := float32(width) / float32(S)
	for i := range S {
		s := int(math.Floor(float64(float32(float32(i) * bin))))
		e := int(math.Ceil(float64(float32(float32(i+1) * bin))))
		s = min(max(s+start, 0), size)
		e = min(max(e+start, 0), size)
		bins[2*i], bins[2*i+1] = int32(s), int32(e)
	}
}

// orderKey maps a non-NaN float32 to an int32 of the same order (−0 just below +0), so that
// a maximum is a branchless integer max; it is its own inverse on the bits.
func orderKey(bits int32) int32 { return bits ^ (bits>>31)&0x7fffffff }

var minFloatKey = orderKey(int32(math.Float32bits(-math.MaxFloat32)))

// orderKeys fills keys with src's order keys and reports whether src is free of NaN.
func orderKeys(keys []int32, src []float32) bool {
	for i, v := range src {
		if v != v {
			return false
		}
		keys[i] = orderKey(int32(math.Float32bits(v)))
	}
	return true
}

// poolKeys pools one RoI of a NaN-free plane (its order keys, fw wide) into dst [S×S]: first
// each row's column-bin maxima, then each row band's maximum of those. Starting from
// −MaxFloat32 as the kernel does, −Inf gives −MaxFloat32. Bins of rows [r[2i], r[2i+1]) and
// columns [q[2j], q[2j+1]) are non-decreasing in i and j, so the RoI's rows are
// [r[0], r[2S−1]).
func poolKeys(dst []float32, keys []int32, fw int, r, q []int32, S int, rowMax []int32) {
	h0, h1 := int(r[0]), int(r[2*S-1])
	for h := h0; h < h1; h++ {
		row := keys[h*fw : (h+1)*fw]
		cm := rowMax[(h-h0)*S : (h-h0+1)*S]
		for pw := range cm {
			m := minFloatKey
			for _, v := range row[q[2*pw]:max(q[2*pw], q[2*pw+1])] {
				m = max(m, v)
			}
			cm[pw] = m
		}
	}
	for ph := 0; ph < S; ph++ {
		hs, he := int(r[2*ph]), int(r[2*ph+1])
		out := dst[ph*S : (ph+1)*S]
		if he <= hs {
			clear(out)
			continue
		}
		first := rowMax[(hs-h0)*S : (hs-h0+1)*S]
		for pw := range out {
			m := first[pw]
			for h := hs + 1; h < he; h++ {
				m = max(m, rowMax[(h-h0)*S+pw])
			}
			if q[2*pw+1] <= q[2*pw] {
				out[pw] = 0 // an empty column bin
			} else {
				out[pw] = math.Float32frombits(uint32(orderKey(m)))
			}
		}
	}
}

// poolFloats pools one RoI of a plane holding NaN into dst [S×S], the kernel's way.
func poolFloats(dst, src []float32, fw int, r, q []int32, S int) {
	for ph := 0; ph < S; ph++ {
		hs, he := int(r[2*ph]), int(r[2*ph+1])
		for pw := 0; pw < S; pw++ {
			ws, we := int(q[2*pw]), int(q[2*pw+1])
			m := float32(0) // an empty bin
			if he > hs && we > ws {
				m = -math.MaxFloat32
				for h := hs; h < he; h++ {
					for _, v := range src[h*fw+ws : h*fw+we] {
						if v > m { // skips NaN
							m = v
						}
					}
				}
			}
			dst[ph*S+pw] = m
		}
	}
}
