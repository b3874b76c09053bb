package gallery

import (
	"cmp"
	"fmt"
	"slices"
)

// The first stage of two-stage search asks how well an image shows a label pattern: a class,
// some attributes on the same region, at least n times. Support answers it from the label
// summary; the server-backed store keeps the answers for single patterns as an inverted index
// of Terms (term → images with their support), so that it can rank images for a text without
// reading every image's summary.

// MinSupport is the weakest support that counts: below it a pattern is taken as absent, so
// that an index need not keep every faint label.
const MinSupport = 0.05

// MaxTermCount is the largest count a Term records; "at least n" for a larger n is bounded by it.
const MaxTermCount = 4

// Support is how well an image with this summary and regions regions shows class (−1: any)
// with all of attrs on one region, at least n times: the n-th largest over regions of
// P(class) · Π P(attribute), each from the region's top labels (a label not among them has
// probability 0); 0 when fewer than n regions qualify or the value is below MinSupport.
func (s *LabelSummary) Support(regions, class int, attrs []int, n int) float64 {
	n = max(n, 1)
	if n > regions {
		return 0
	}
	var v float64
	if n == 1 { // the common case, on the first stage's hot path: no allocation
		for r := range regions {
			v = max(v, s.regionSupport(r, class, attrs))
		}
	} else {
		support := make([]float64, regions)
		for r := range regions {
			support[r] = s.regionSupport(r, class, attrs)
		}
		slices.SortFunc(support, func(a, b float64) int { return cmp.Compare(b, a) })
		v = support[n-1]
	}
	if v < MinSupport {
		return 0
	}
	return v
}

func (s *LabelSummary) regionSupport(r, class int, attrs []int) float64 {
	p := 1.0
	if class >= 0 {
		p = probOf(s.RegionClasses(r), class)
	}
	for _, a := range attrs {
		if p == 0 {
			break
		}
		p *= probOf(s.RegionAttrs(r), a)
	}
	return p
}

func probOf(top []LabelProb, index int) float64 {
	for _, lp := range top {
		if int(lp.Index) == index {
			return float64(lp.Prob)
		}
	}
	return 0
}

// Term is one pattern of the inverted index: Class (−1: any) with Attr (−1: none) on one
// region, shown by at least Count regions (1 … MaxTermCount).
type Term struct {
	Class, Attr, Count int
}

// Code packs a term into the integer the index stores: (class+1)·2²⁴ + (attr+1)·2⁴ + count.
func (t Term) Code() int64 {
	return int64(t.Class+1)<<24 | int64(t.Attr+1)<<4 | int64(t.Count)
}

func (t Term) String() string { return fmt.Sprintf("c%d.a%d*%d", t.Class, t.Attr, t.Count) }

// attrs is the term's attribute list for Support.
func (t Term) attrs() []int {
	if t.Attr < 0 {
		return nil
	}
	return []int{t.Attr}
}

// Unnamed are the class and attribute indices that name nothing (a detector's background
// class, bottom-up-attention's "__no_attribute__"), −1 where there is none. No text mentions
// them, so no query asks for them: Terms leaves their patterns out.
type Unnamed struct{ Class, Attr int }

// NothingUnnamed keeps every label's terms.
var NothingUnnamed = Unnamed{Class: -1, Attr: -1}

// WeightedTerm is a term an image shows, with its Support.
type WeightedTerm struct {
	Term   Term
	Weight float64
}

// Terms lists every term the image shows with support ≥ MinSupport, by code: each class,
// each attribute, and each class with one attribute that its regions' top labels name,
// counted 1 … MaxTermCount times; none with an unnamed class or attribute.
func (s *LabelSummary) Terms(regions int, unnamed Unnamed) []WeightedTerm {
	patterns := map[[2]int]bool{}
	for r := range regions {
		classes, attrs := s.regionLabels(r)
		attrs = slices.DeleteFunc(attrs, func(a LabelProb) bool { return int(a.Index) == unnamed.Attr })
		for _, c := range classes {
			if int(c.Index) == unnamed.Class {
				continue
			}
			patterns[[2]int{int(c.Index), -1}] = true
			for _, a := range attrs {
				if float64(c.Prob)*float64(a.Prob) >= MinSupport {
					patterns[[2]int{int(c.Index), int(a.Index)}] = true
				}
			}
		}
		for _, a := range attrs {
			patterns[[2]int{-1, int(a.Index)}] = true
		}
	}
	var out []WeightedTerm
	support := make([]float64, regions)
	for p := range patterns {
		t := Term{Class: p[0], Attr: p[1]}
		for r := range regions {
			support[r] = s.regionSupport(r, t.Class, t.attrs())
		}
		slices.SortFunc(support, func(a, b float64) int { return cmp.Compare(b, a) })
		for n := 1; n <= min(MaxTermCount, regions) && support[n-1] >= MinSupport; n++ {
			t.Count = n
			out = append(out, WeightedTerm{Term: t, Weight: support[n-1]})
		}
	}
	slices.SortFunc(out, func(a, b WeightedTerm) int { return cmp.Compare(a.Term.Code(), b.Term.Code()) })
	return out
}

// regionLabels are region r's top classes and attributes with probability ≥ MinSupport (a
// label below it cannot reach MinSupport in any pattern).
func (s *LabelSummary) regionLabels(r int) (classes, attrs []LabelProb) {
	keep := func(top []LabelProb) []LabelProb {
		var out []LabelProb
		for _, lp := range top {
			if float64(lp.Prob) >= MinSupport {
				out = append(out, lp)
			}
		}
		return out
	}
	if s.PerRegionClasses > 0 {
		classes = keep(s.RegionClasses(r))
	}
	if s.PerRegionAttrs > 0 {
		attrs = keep(s.RegionAttrs(r))
	}
	return classes, attrs
}
