package detector

import (
	"math"
	"slices"
)

// boxArea is torchvision's area: (x2 − x1)·(y2 − y1), no +1, in float32 (negative for
// inverted boxes, as torchvision computes it).
func boxArea(b Box) float32 { return float32((b[2] - b[0]) * (b[3] - b[1])) }

// iouAbove reports IoU(a, b) > thr exactly as torchvision's CPU nms kernel decides it:
// inter = max(0, min x2 − max x1)·max(0, min y2 − max y1); iou = inter / (areaA + areaB − inter)
// in float32; compared with the threshold widened to float64. A 0/0 IoU (two zero-area boxes)
// is NaN and never suppresses. Explicit float32 conversions keep the compiler from fusing
// multiply-adds, so results do not depend on the architecture.
func iouAbove(a, b Box, areaA, areaB float32, thr float64) bool {
	w := max(float32(0), min(a[2], b[2])-max(a[0], b[0]))
	h := max(float32(0), min(a[3], b[3])-max(a[1], b[1]))
	inter := float32(w * h)
	iou := inter / float32(areaA+areaB-inter)
	return float64(iou) > thr
}

// rankKey packs a score and an index into one integer whose ascending order is descending
// score, ties (including −0 = +0) by lower index, NaN scores last. Sorting these with
// slices.Sort is several times faster than a comparison function.
func rankKey(score float32, i int) uint64 {
	var k uint32 // ascending with the score; NaN lowest
	switch {
	case score != score:
		k = 0
	case score == 0:
		k = 0x80000000 // +0 and −0 alike
	default:
		b := math.Float32bits(score)
		if b&0x80000000 != 0 {
			k = ^b
		} else {
			k = b | 0x80000000
		}
	}
	return uint64(^k)<<32 | uint64(uint32(i))
}

// rankIndex is the index packed by rankKey.
func rankIndex(k uint64) int { return int(uint32(k)) }

// orderByScore returns 0..n−1 in descending score order, ties by lower index, NaN last.
func orderByScore(n int, score func(int) float32) []int {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rankKey(score(i), i)
	}
	slices.Sort(keys)
	order := make([]int, n)
	for k, key := range keys {
		order[k] = rankIndex(key)
	}
	return order
}
