package heads

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// RegionShare is one region's share of a word's alignment mass.
type RegionShare struct {
	Region int     // column of the plan (region index)
	Share  float64 // fraction of the word's mass on this region, in [0, 1]
}

// WordAlignment lists the regions a word is aligned to.
type WordAlignment struct {
	// Word is the word index, as given in the words argument of WordRegions.
	Word int
	// Regions are the word's top regions, by Share descending, ties by
	// Region ascending. Empty when the word's rows carry no mass.
	Regions []RegionShare
}

// WordRegions folds a tokens × regions transport plan (Plan.Weights) into
// words and returns, for each word, its topK regions.
//
// words[i] is the word index of token i (row i of plan); a negative value
// (-1 by convention) marks a special token such as [CLS] or [SEP], whose row
// is ignored. Sub-word tokens of one word share its index. For each word the
// rows of its tokens are summed and renormalised into shares that sum to 1
// over all regions; the topK largest shares are returned, sorted by share
// descending and, on ties, by region index ascending. topK <= 0, or larger
// than the number of regions, returns every region.
//
// The result has one entry per distinct non-negative word index, in
// increasing word order. A word whose rows sum to zero (or to a non-finite
// value) gets an empty Regions list. Rows may differ in length; the number of
// regions is the longest row, missing entries count as zero.
//
// WordRegions panics if len(words) != len(plan): the two describe the same
// tokens and a mismatch is a programming error.
func WordRegions(plan [][]float64, words []int, topK int) []WordAlignment {
	if len(words) != len(plan) {
		panic(fmt.Sprintf("heads: WordRegions: %d word indices for %d plan rows", len(words), len(plan)))
	}
	ids := make([]int, 0, len(words))
	for _, w := range words {
		if w >= 0 {
			ids = append(ids, w)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil
	}
	n := 0
	for _, row := range plan {
		n = max(n, len(row))
	}
	if topK <= 0 || topK > n {
		topK = n
	}

	// mass[w*n+j]: summed weight of word ids[w] on region j.
	mass := make([]float64, len(ids)*n)
	for i, w := range words {
		if w < 0 {
			continue
		}
		k, _ := slices.BinarySearch(ids, w)
		acc := mass[k*n : (k+1)*n]
		for j, v := range plan[i] {
			acc[j] += v
		}
	}

	out := make([]WordAlignment, len(ids))
	shares := make([]RegionShare, n) // reused per word
	for k, w := range ids {
		out[k].Word = w
		acc := mass[k*n : (k+1)*n]
		var total float64
		for _, v := range acc {
			total += v
		}
		if !(total > 0) || math.IsInf(total, 0) {
			continue
		}
		for j, v := range acc {
			shares[j] = RegionShare{Region: j, Share: v / total}
		}
		slices.SortFunc(shares, func(a, b RegionShare) int {
			if c := cmp.Compare(b.Share, a.Share); c != 0 {
				return c
			}
			return cmp.Compare(a.Region, b.Region)
		})
		out[k].Regions = slices.Clone(shares[:topK])
	}
	return out
}
