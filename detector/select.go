package detector

import (
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidOutputs reports detector outputs whose shapes do not agree.
var ErrInvalidOutputs = errors.New("invalid detector outputs")

// SelectionSpec is the manifest's detector.selection block plus background_index.
type SelectionSpec struct {
	NMSIoU        float32 // per-class NMS IoU threshold (suppress when IoU > NMSIoU)
	MinConfidence float32 // keep proposals with confidence ≥ this ...
	MinBoxes      int     // ... but at least this many (or all P when fewer) ...
	MaxBoxes      int     // ... and at most this many
	Background    int     // class column to skip; −1 = none
	// MinSide drops proposals narrower or lower than this (resized-image pixels, the boxes'
	// unit) before anything else, as bottom-up-attention's proposal layer drops boxes under
	// RPN_MIN_SIZE: they neither suppress nor count (a NaN side counts as too small). 0 keeps
	// every proposal.
	MinSide float32
}

// Validate reports a spec Select cannot use for numClasses classes.
func (s SelectionSpec) Validate(numClasses int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: selection: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case numClasses < 1:
		return bad("%d classes, want ≥ 1", numClasses)
	case s.Background < -1 || s.Background >= numClasses:
		return bad("background_index %d outside [0, %d) (or −1 for none)", s.Background, numClasses)
	case !Finite(s.NMSIoU):
		return bad("nms_iou is not finite")
	case s.MinConfidence != s.MinConfidence:
		return bad("min_confidence is NaN")
	case s.MinBoxes < 0:
		return bad("min_boxes %d, want ≥ 0", s.MinBoxes)
	case s.MaxBoxes < 1 || s.MaxBoxes < s.MinBoxes:
		return bad("max_boxes %d, want ≥ 1 and ≥ min_boxes (%d)", s.MaxBoxes, s.MinBoxes)
	case !Finite(s.MinSide) || s.MinSide < 0:
		return bad("min_box_size %v, want a finite value ≥ 0", s.MinSide)
	}
	return nil
}

// Select is bottom-up-attention's region selection (docs/detector-contract.md, "Selection").
// boxes are the P proposals (resized-image pixels), classProbs their P×numClasses
// probabilities, row-major. Proposals narrower or lower than MinSide are dropped first (the
// rest below means the proposals left). For every class but the background it runs torchvision's greedy NMS
// over all P boxes scored by that class, and each kept proposal's confidence becomes the
// maximum of its kept class scores (starting at 0). Proposals are sorted by confidence
// descending, ties by lower index; those with confidence ≥ MinConfidence are kept, at least
// MinBoxes of them (all P when P < MinBoxes) and at most MaxBoxes. It returns the kept
// proposal indices in that order and every proposal's confidence in the same order (conf[k]
// belongs to idx[k]). NaN probabilities never raise a confidence.
//
// Every class sees the same boxes, so the P×P "IoU > NMSIoU" relation is computed once (as a
// bit matrix) and each class only sorts the proposals that could still raise a confidence
// (those scoring above their current confidence) and the ones ranked above them; the result is
// identical to running NMS per class.
func Select(boxes []Box, classProbs []float32, numClasses int, spec SelectionSpec) (idx []int, conf []float32, err error) {
	if err := spec.Validate(numClasses); err != nil {
		return nil, nil, err
	}
	P := len(boxes)
	if len(classProbs) != P*numClasses {
		return nil, nil, fmt.Errorf("%w: class_probs has %d values, want %d proposals × %d classes",
			ErrInvalidOutputs, len(classProbs), P, numClasses)
	}
	if spec.MinSide > 0 {
		return selectLargeEnough(boxes, classProbs, numClasses, spec)
	}
	if P == 0 {
		return []int{}, []float32{}, nil
	}
	all := maxConfidence(boxes, classProbs, numClasses, spec)

	order := orderByScore(P, func(i int) float32 { return all[i] })
	n := 0
	for n < P && all[order[n]] >= spec.MinConfidence {
		n++
	}
	if n < spec.MinBoxes {
		n = min(spec.MinBoxes, P)
	}
	n = min(n, spec.MaxBoxes)
	idx = order[:n:n]
	conf = make([]float32, n)
	for k, i := range idx {
		conf[k] = all[i]
	}
	return idx, conf, nil
}

// selectLargeEnough is Select over the proposals at least MinSide wide and high, with the
// indices mapped back to all proposals.
func selectLargeEnough(boxes []Box, classProbs []float32, numClasses int, spec SelectionSpec) ([]int, []float32, error) {
	var keep []int
	for i, b := range boxes {
		if b[2]-b[0] >= spec.MinSide && b[3]-b[1] >= spec.MinSide {
			keep = append(keep, i)
		}
	}
	sub := make([]Box, len(keep))
	probs := make([]float32, 0, len(keep)*numClasses)
	for k, i := range keep {
		sub[k] = boxes[i]
		probs = append(probs, classProbs[i*numClasses:(i+1)*numClasses]...)
	}
	spec.MinSide = 0
	idx, conf, err := Select(sub, probs, numClasses, spec)
	for k, i := range idx {
		idx[k] = keep[i]
	}
	return idx, conf, err
}

// maxConfidence is step 1 of the selection: every proposal's confidence.
func maxConfidence(boxes []Box, probs []float32, C int, spec SelectionSpec) []float32 {
	P := len(boxes)
	words := (P + 63) / 64
	// over[i*words : (i+1)*words] has bit j set when IoU(i, j) > NMSIoU.
	over := make([]uint64, P*words)
	areas := make([]float32, P)
	for i, b := range boxes {
		areas[i] = boxArea(b)
	}
	thr := float64(spec.NMSIoU)
	for i := 0; i < P; i++ {
		for j := i + 1; j < P; j++ { // IoU is symmetric in torchvision's arithmetic too
			if iouAbove(boxes[i], boxes[j], areas[i], areas[j], thr) {
				over[i*words+j/64] |= 1 << (j % 64)
				over[j*words+i/64] |= 1 << (i % 64)
			}
		}
	}

	// Classes in descending order of their best score: confidences rise early, so later
	// classes find few proposals they could still raise (the result does not depend on the
	// order: a confidence is a maximum). A class whose best score cannot beat the lowest
	// confidence is skipped without looking at its column.
	colMax := make([]float32, C)
	for i := 0; i < P; i++ {
		for c, s := range probs[i*C : (i+1)*C] {
			if s > colMax[c] {
				colMax[c] = s
			}
		}
	}
	var classes []int
	classes = orderByScore(C, func(c int) float32 { return colMax[c] })
	if spec.Background >= 0 {
		classes = slices.DeleteFunc(classes, func(c int) bool { return c == spec.Background })
	}

	conf := make([]float32, P)
	minConf := float32(0)
	col := make([]float32, P)
	cand := make([]uint64, 0, P) // rankKey(score, proposal)
	removed := make([]uint64, words)
	for _, c := range classes {
		if !(colMax[c] > minConf) {
			continue
		}
		// Lowest score among proposals this class could still raise; nothing ranked below
		// all of them can change a confidence, nor suppress one of them.
		floor, found := float32(0), false
		for i := 0; i < P; i++ {
			s := probs[i*C+c]
			col[i] = s
			if s > conf[i] && (!found || s < floor) {
				floor, found = s, true
			}
		}
		if !found {
			continue
		}
		cand = cand[:0]
		for i, s := range col {
			if s >= floor {
				cand = append(cand, rankKey(s, i))
			}
		}
		slices.Sort(cand)
		clear(removed)
		raised := false
		for _, key := range cand {
			i := rankIndex(key)
			if removed[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			if col[i] > conf[i] {
				conf[i], raised = col[i], true
			}
			row := over[i*words : (i+1)*words]
			for w := range removed {
				removed[w] |= row[w]
			}
		}
		if raised {
			minConf = slices.Min(conf)
		}
	}
	return conf
}

// Region is one selected region, mapped back to the original image.
type Region struct {
	Proposal   int                  // row in the detector's outputs (class_probs, features, ...)
	Box        Box                  // original-image pixels, clamped to [0, W]×[0, H]
	Confidence float32              // its selection confidence
	Location   [LocationDim]float32 // UNITER's 7-d location of Box in the W×H image
}

// ToOriginal maps a box from resized-image pixels to original-image pixels, then clamps it to
// [0, W] for x and [0, H] for y (NaN becomes 0). Degenerate boxes stay degenerate.
//
// Under ResizeShorterSide (info.Rule "" or "shorter_side") each coordinate is divided by
// info.Scale in float64 and rounded once to float32. Under ResizeDetectron2 it is the port's
// _scale_box: x · float32(W/Wr) and y · float32(H/Hr), multiplied in float32 (the port's
// scales_yx = raw_size / resized_size is a float32 tensor).
func ToOriginal(b Box, info ScaleInfo) Box {
	lim := [4]float64{float64(info.Width), float64(info.Height), float64(info.Width), float64(info.Height)}
	var o Box
	if info.Rule == ResizeDetectron2 {
		sx := float32(float64(info.Width) / float64(info.ResizedWidth))
		sy := float32(float64(info.Height) / float64(info.ResizedHeight))
		for k, v := range b {
			s := sx
			if k%2 == 1 {
				s = sy
			}
			o[k] = float32(clampCoord(float64(float32(v*s)), lim[k])) // one float32 product
		}
		return o
	}
	for k, v := range b {
		o[k] = float32(clampCoord(float64(v)/info.Scale, lim[k]))
	}
	return o
}

// clampCoord clamps x to [0, lim]; NaN becomes 0.
func clampCoord(x, lim float64) float64 {
	if !(x >= 0) {
		return 0
	}
	return min(x, lim)
}

// MapRegions turns Select's result into regions of the original image: boxes through
// ToOriginal and locations from Location (degenerate boxes included: they are what the
// detector gave). conf is Select's confidences (same order as idx).
func MapRegions(boxes []Box, idx []int, conf []float32, info ScaleInfo) []Region {
	out := make([]Region, len(idx))
	for k, i := range idx {
		b := ToOriginal(boxes[i], info)
		out[k] = Region{Proposal: i, Box: b, Confidence: conf[k], Location: Location(b, info.Width, info.Height)}
	}
	return out
}

// GatherRows copies rows idx of a row-major matrix with dim columns into a new len(idx)×dim
// matrix (class distributions, features, attribute distributions of the kept regions).
func GatherRows(m []float32, dim int, idx []int) []float32 {
	out := make([]float32, 0, len(idx)*dim)
	for _, i := range idx {
		out = append(out, m[i*dim:(i+1)*dim]...)
	}
	return out
}
