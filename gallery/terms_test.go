package gallery

import (
	"math/rand/v2"
	"sort"
	"testing"
)

// randomSummary is a summary of regions regions over 6 classes and 5 attributes, each
// region's top 3 labels with random probabilities (some below MinSupport).
func randomSummary(rng *rand.Rand, regions int) *LabelSummary {
	s := &LabelSummary{PerRegionClasses: 3, PerRegionAttrs: 3}
	top := func(dim int) []LabelProb {
		perm := rng.Perm(dim)[:3]
		out := make([]LabelProb, 3)
		for i, j := range perm {
			p := rng.Float32()
			if rng.IntN(4) == 0 {
				p *= 0.02 // faint labels, around MinSupport
			}
			out[i] = LabelProb{Index: uint16(j), Prob: p}
		}
		sort.Slice(out, func(a, b int) bool { return out[a].Prob > out[b].Prob })
		return out
	}
	for range regions {
		s.Classes = append(s.Classes, top(6)...)
		s.Attrs = append(s.Attrs, top(5)...)
	}
	return s
}

// bruteSupport counts, for each candidate value v (every region's product), how many regions
// reach it, and returns the largest v that at least n regions reach.
func bruteSupport(s *LabelSummary, regions, class int, attrs []int, n int) float64 {
	prob := func(top []LabelProb, i int) float64 {
		p := 0.0
		for _, lp := range top {
			if int(lp.Index) == i {
				p = float64(lp.Prob)
			}
		}
		return p
	}
	vals := make([]float64, regions)
	for r := range regions {
		v := 1.0
		if class >= 0 {
			v = prob(s.Classes[r*s.PerRegionClasses:(r+1)*s.PerRegionClasses], class)
		}
		for _, a := range attrs {
			v *= prob(s.Attrs[r*s.PerRegionAttrs:(r+1)*s.PerRegionAttrs], a)
		}
		vals[r] = v
	}
	best := 0.0
	for _, v := range vals {
		reach := 0
		for _, w := range vals {
			if w >= v {
				reach++
			}
		}
		if reach >= n && v > best {
			best = v
		}
	}
	if best < MinSupport {
		return 0
	}
	return best
}

func TestSupportAndTerms(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	leftOut := 0
	for trial := range 50 {
		regions := 1 + rng.IntN(8)
		s := randomSummary(rng, regions)
		// Support against the brute force, multi-attribute patterns included.
		for class := -1; class < 6; class++ {
			for _, attrs := range [][]int{nil, {0}, {3}, {1, 2}, {4, 0}} {
				if class < 0 && len(attrs) == 0 {
					continue
				}
				for n := 1; n <= 6; n++ {
					got, want := s.Support(regions, class, attrs, n), bruteSupport(s, regions, class, attrs, n)
					if got != want {
						t.Fatalf("trial %d: Support(class %d, attrs %v, n %d) = %v, want %v", trial, class, attrs, n, got, want)
					}
				}
			}
		}
		// Terms lists exactly the single-attribute patterns with support, with that weight.
		got := map[Term]float64{}
		for _, wt := range s.Terms(regions, NothingUnnamed) {
			if _, dup := got[wt.Term]; dup {
				t.Fatalf("trial %d: term %v listed twice", trial, wt.Term)
			}
			got[wt.Term] = wt.Weight
		}
		want := map[Term]float64{}
		for class := -1; class < 6; class++ {
			for attr := -1; attr < 5; attr++ {
				if class < 0 && attr < 0 {
					continue
				}
				var attrs []int
				if attr >= 0 {
					attrs = []int{attr}
				}
				for n := 1; n <= MaxTermCount; n++ {
					if v := bruteSupport(s, regions, class, attrs, n); v > 0 {
						want[Term{class, attr, n}] = v
					}
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d terms, want %d:\n got %v\nwant %v", trial, len(got), len(want), got, want)
		}
		for term, w := range want {
			if got[term] != w {
				t.Fatalf("trial %d: term %v weight %v, want %v", trial, term, got[term], w)
			}
		}
		// Unnamed labels: exactly the terms without them, with the same weights.
		unnamed := Unnamed{Class: trial % 6, Attr: trial % 5}
		kept := s.Terms(regions, unnamed)
		for _, wt := range kept {
			if wt.Term.Class == unnamed.Class || wt.Term.Attr == unnamed.Attr || got[wt.Term] != wt.Weight {
				t.Fatalf("trial %d: %v unnamed, term %v (weight %v) kept", trial, unnamed, wt.Term, wt.Weight)
			}
		}
		left := 0
		for term := range want {
			if term.Class == unnamed.Class || term.Attr == unnamed.Attr {
				left++
			}
		}
		if len(kept) != len(want)-left {
			t.Fatalf("trial %d: %v unnamed: %d terms kept of %d, %d left out", trial, unnamed, len(kept), len(want), left)
		}
		leftOut += left
	}
	if leftOut == 0 {
		t.Fatal("no trial had a term with an unnamed label: the check above checked nothing")
	}
}

func TestTermCodesDistinct(t *testing.T) {
	seen := map[int64]Term{}
	for _, c := range []int{-1, 0, 1, 1600, 65534} {
		for _, a := range []int{-1, 0, 1, 400, 65534} {
			for n := 1; n <= MaxTermCount; n++ {
				term := Term{c, a, n}
				if prev, ok := seen[term.Code()]; ok {
					t.Fatalf("%v and %v share code %d", prev, term, term.Code())
				}
				seen[term.Code()] = term
			}
		}
	}
}
