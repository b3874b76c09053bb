package heads

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestWordRegions(t *testing.T) {
	// 5 tokens × 4 regions: [CLS] "dog" "sk" "##ate" [SEP]; "sk##ate" is word 1.
	plan := [][]float64{
		{0.05, 0.05, 0.05, 0.05}, // [CLS]
		{0.10, 0.02, 0.02, 0.06}, // dog  (mass 0.2)
		{0.00, 0.08, 0.02, 0.00}, // sk
		{0.00, 0.02, 0.08, 0.00}, // ##ate
		{0.05, 0.05, 0.05, 0.05}, // [SEP]
	}
	words := []int{-1, 0, 1, 1, -1}
	type rs = RegionShare
	tests := []struct {
		name string
		topK int
		want []WordAlignment
	}{
		{"top1", 1, []WordAlignment{
			{Word: 0, Regions: []rs{{0, 0.5}}},
			// sk##ate: column sums 0, .10, .10, 0 -> tie between 1 and 2, lower index first.
			{Word: 1, Regions: []rs{{1, 0.5}}},
		}},
		{"top2", 2, []WordAlignment{
			{Word: 0, Regions: []rs{{0, 0.5}, {3, 0.3}}},
			{Word: 1, Regions: []rs{{1, 0.5}, {2, 0.5}}},
		}},
		{"all (topK 0)", 0, []WordAlignment{
			{Word: 0, Regions: []rs{{0, 0.5}, {3, 0.3}, {1, 0.1}, {2, 0.1}}},
			{Word: 1, Regions: []rs{{1, 0.5}, {2, 0.5}, {0, 0}, {3, 0}}},
		}},
		{"topK beyond N", 10, []WordAlignment{
			{Word: 0, Regions: []rs{{0, 0.5}, {3, 0.3}, {1, 0.1}, {2, 0.1}}},
			{Word: 1, Regions: []rs{{1, 0.5}, {2, 0.5}, {0, 0}, {3, 0}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := WordRegions(plan, words, tt.topK)
			if !alignmentsClose(got, tt.want, 1e-12) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestWordRegionsEdgeCases(t *testing.T) {
	type rs = RegionShare
	tests := []struct {
		name  string
		plan  [][]float64
		words []int
		topK  int
		want  []WordAlignment
	}{
		{"no tokens", nil, nil, 3, nil},
		{"only special tokens", [][]float64{{1, 2}}, []int{-1}, 3, nil},
		{"any negative index is special", [][]float64{{1, 0}, {0, 1}}, []int{-7, 0}, 0,
			[]WordAlignment{{Word: 0, Regions: []rs{{1, 1}, {0, 0}}}}},
		{"sparse, unordered word indices", [][]float64{{0, 3}, {2, 0}, {1, 1}}, []int{9, 2, 9}, 1,
			[]WordAlignment{{Word: 2, Regions: []rs{{0, 1}}}, {Word: 9, Regions: []rs{{1, 0.8}}}}},
		{"zero-mass word has no regions", [][]float64{{0, 0}, {1, 3}}, []int{0, 1}, 2,
			[]WordAlignment{{Word: 0}, {Word: 1, Regions: []rs{{1, 0.75}, {0, 0.25}}}}},
		{"all-tie keeps region order", [][]float64{{0.25, 0.25, 0.25, 0.25}}, []int{0}, 3,
			[]WordAlignment{{Word: 0, Regions: []rs{{0, 0.25}, {1, 0.25}, {2, 0.25}}}}},
		{"ragged rows count missing entries as zero", [][]float64{{1}, {1, 2}}, []int{0, 0}, 0,
			[]WordAlignment{{Word: 0, Regions: []rs{{0, 0.5}, {1, 0.5}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := WordRegions(tt.plan, tt.words, tt.topK)
			if !alignmentsClose(got, tt.want, 1e-12) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestWordRegionsPanicsOnLengthMismatch(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for len(words) != len(plan)")
		}
	}()
	WordRegions([][]float64{{1}}, []int{0, 1}, 1)
}

// TestWordRegionsOnAlignedPlan: on a real plan, shares sum to 1 per word
// when all regions are requested, and a token's words follow its rows.
func TestWordRegionsOnAlignedPlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	text, regions := randPair(rng, "structured", 7, 9, 16)
	p := mustAlign(t, text, regions, OTOptions{})
	words := []int{-1, 0, 1, 1, 2, 3, -1}
	got := WordRegions(p.Weights, words, 0)
	if len(got) != 4 {
		t.Fatalf("got %d words, want 4", len(got))
	}
	for _, wa := range got {
		var sum float64
		for k, r := range wa.Regions {
			sum += r.Share
			if k > 0 && r.Share > wa.Regions[k-1].Share {
				t.Errorf("word %d: shares not sorted", wa.Word)
			}
		}
		if len(wa.Regions) != 9 || math.Abs(sum-1) > 1e-12 {
			t.Errorf("word %d: %d regions, shares sum to %v", wa.Word, len(wa.Regions), sum)
		}
	}
	// Word 0 is token 1 alone: its top region is the argmax of row 1.
	best := 0
	for j, w := range p.Weights[1] {
		if w > p.Weights[1][best] {
			best = j
		}
	}
	if got[0].Regions[0].Region != best {
		t.Errorf("word 0 top region %d, want argmax of its row %d", got[0].Regions[0].Region, best)
	}
}

func alignmentsClose(a, b []WordAlignment, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Word != b[i].Word || len(a[i].Regions) != len(b[i].Regions) {
			return false
		}
		for k := range a[i].Regions {
			x, y := a[i].Regions[k], b[i].Regions[k]
			if x.Region != y.Region || math.Abs(x.Share-y.Share) > tol {
				return false
			}
		}
	}
	return true
}
