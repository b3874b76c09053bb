package heads

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// A hand-worked case: one layer, one head, [CLS] w [SEP] and two regions. Only w and region 1
// attend to each other; everything else attends to itself.
func TestCrossAttentionHandWorked(t *testing.T) {
	l := AttentionLayout{Text: 3, Regions: 2}
	m := mapOf(l, func(q, k int) float64 {
		switch {
		case q == 1 && k == 4, q == 4 && k == 1:
			return 1
		case q == k:
			return 1
		}
		return 0
	})
	// Rows 1 and 4 split their mass 0.5/0.5 between self and partner, so the cross-modal mass
	// is 0.5 (w→r1) + 0.5 (r1→w) = 1, all of it on (w, region 1).
	w, err := CrossAttention(m, 1, 1, l)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{0, 0}, {0, 1}, {0, 0}}
	for i := range want {
		for j := range want[i] {
			if math.Abs(w[i][j]-want[i][j]) > 1e-7 {
				t.Fatalf("weights %v, want %v", w, want)
			}
		}
	}
}

// Against an independent computation on random maps: the maps are generated as a nested
// [layer][head][query][key] array and flattened, and the expected weights are summed from the
// nested form, so an indexing slip in the flat layout shows.
func TestCrossAttentionMatchesNestedSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const L, H, T, N = 3, 2, 5, 7
	S := T + N
	nested := make([][][][]float64, L)
	var flat []float32
	for l := range L {
		nested[l] = make([][][]float64, H)
		for h := range H {
			nested[l][h] = make([][]float64, S)
			for q := range S {
				row := make([]float64, S)
				sum := 0.0
				for k := range S {
					row[k] = rng.Float64()
					sum += row[k]
				}
				for k := range S {
					row[k] = float64(float32(row[k] / sum))
					flat = append(flat, float32(row[k]))
				}
				nested[l][h][q] = row
			}
		}
	}
	got, err := CrossAttention(flat, L, H, AttentionLayout{Text: T, Regions: N})
	if err != nil {
		t.Fatal(err)
	}
	want := make([][]float64, T)
	total := 0.0
	for tok := range T {
		want[tok] = make([]float64, N)
		for r := range N {
			for l := range L {
				for h := range H {
					want[tok][r] += nested[l][h][tok][T+r] + nested[l][h][T+r][tok]
				}
			}
			total += want[tok][r]
		}
	}
	sum := 0.0
	for tok := range T {
		for r := range N {
			sum += got[tok][r]
			if d := math.Abs(got[tok][r] - want[tok][r]/total); d > 1e-9 {
				t.Fatalf("token %d region %d: %g, want %g", tok, r, got[tok][r], want[tok][r]/total)
			}
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("weights sum to %g, want 1", sum)
	}
}

func TestCrossAttentionRejectsBadInput(t *testing.T) {
	l := AttentionLayout{Text: 3, Regions: 2}
	ok := mapOf(l, func(q, k int) float64 { return 1 })
	selfOnly := mapOf(l, func(q, k int) float64 {
		if q == k {
			return 1
		}
		return 0
	})
	nan := append([]float32(nil), ok...)
	nan[4] = float32(math.NaN())
	for name, tc := range map[string]struct {
		maps          []float32
		layers, heads int
		l             AttentionLayout
	}{
		"short":         {ok[:len(ok)-1], 1, 1, l},
		"two heads":     {ok, 1, 2, l},
		"no regions":    {ok, 1, 1, AttentionLayout{Text: 5}},
		"no [SEP]":      {ok[:16], 1, 1, AttentionLayout{Text: 1, Regions: 3}},
		"no layers":     {nil, 0, 1, l},
		"no cross mass": {selfOnly, 1, 1, l},
		"not a number":  {nan, 1, 1, l},
	} {
		if _, err := CrossAttention(tc.maps, tc.layers, tc.heads, tc.l); !errors.Is(err, ErrAttentionShape) {
			t.Errorf("%s: got %v, want ErrAttentionShape", name, err)
		}
	}
}
