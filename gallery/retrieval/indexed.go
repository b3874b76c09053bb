package retrieval

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"

	"github.com/uniter-serve/uniter/gallery"
)

// The first stage on a store that keeps an inverted index of label terms (gallery.TermIndex,
// PostgreSQL): the store proposes the items whose postings best match, ranked by an upper
// bound of Score, and the proposals are scored exactly here. Deepening until the k-th exact
// score reaches the bound of the first item not proposed makes the candidates those of the
// in-memory first stage (up to ties at that bound), while the store reads only the postings
// of the query's terms and a few hundred items, not every image or text.
//
// The bound: each positive mention is looked up by its key term (its class, its first
// attribute, its count up to gallery.MaxTermCount), whose support is at least the mention's;
// a negated mention adds at most log(1 + ε). So Score(text, image) ≤ floor(text) + gain,
// where floor assumes no key term is shown and gain = Σ ln((w + ε)/ε) over the key terms the
// image shows with support w.

// negationSlack is the most a negated mention adds to Score.
var negationSlack = math.Log1p(firstStageEpsilon)

// keyTerms are the key terms of a text's positive mentions (one per mention) and its floor:
// Score if no key term were shown.
func keyTerms(mentions []Mention) (codes []int64, floor float64) {
	if len(mentions) == 0 {
		return nil, noMentionScore
	}
	for _, m := range mentions {
		if m.Negated {
			floor += negationSlack
			continue
		}
		t := gallery.Term{Class: m.Class, Attr: -1, Count: min(max(m.Count, 1), gallery.MaxTermCount)}
		if len(m.Attrs) > 0 {
			t.Attr = m.Attrs[0]
		}
		codes = append(codes, t.Code())
		floor += math.Log(firstStageEpsilon)
	}
	return codes, floor
}

// maxDeepening bounds the items one indexed first stage reads: past it the candidates are the
// best of what was read (ties this deep are rare).
func maxDeepening(k int) int { return max(16*k, 1024) }

// proposal is an item a term index proposed, with its exact score once computed.
type proposal[T any] struct {
	item  T
	id    string
	exact float64
}

// deepen runs fetch(n) for n = 2k, 4k, … until the k best exact scores among the proposals
// reach the bound of every item not proposed (fetch reports it, −Inf when it proposed all),
// and returns the k best by exact score, then ID.
func deepen[T any](k int, fetch func(n int) (props []proposal[T], unseen float64, err error), exact func(T) float64) ([]proposal[T], error) {
	for n := 2 * k; ; n *= 2 {
		props, unseen, err := fetch(n)
		if err != nil {
			return nil, err
		}
		for i := range props {
			props[i].exact = exact(props[i].item)
		}
		slices.SortFunc(props, func(a, b proposal[T]) int {
			if c := cmp.Compare(b.exact, a.exact); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		top := props[:min(k, len(props))]
		// The store's weights are float32: a bound may sit a rounding below the exact score.
		done := len(top) < k || top[k-1].exact >= unseen-1e-6
		if done || n >= maxDeepening(k) {
			return top, nil
		}
	}
}

// indexedImages is the first stage of a text query on a term index: the k candidates.
func (s *Service) indexedImages(ctx context.Context, ti gallery.TermIndex, mentions []Mention, k int) ([]gallery.IndexEntry, error) {
	codes, floor := keyTerms(mentions)
	top, err := deepen(k, func(n int) ([]proposal[gallery.IndexEntry], float64, error) {
		byTerms, err := ti.ImagesByTerms(ctx, codes, firstStageEpsilon, n+1)
		if err != nil {
			return nil, 0, err
		}
		var props []proposal[gallery.IndexEntry]
		seen := map[string]bool{}
		for _, c := range byTerms {
			props = append(props, proposal[gallery.IndexEntry]{item: c.IndexEntry, id: c.ID})
			seen[c.ID] = true
		}
		if len(byTerms) > n { // any other image's bound is at most the last one's
			return props, floor + byTerms[n].Gain, nil
		}
		// Every image with a key term is here; the rest are bounded by the floor alone, and
		// tie on it: the first by ID.
		byID, err := ti.ImagesByID(ctx, n+1)
		if err != nil {
			return nil, 0, err
		}
		for _, c := range byID {
			if !seen[c.ID] {
				props = append(props, proposal[gallery.IndexEntry]{item: c.IndexEntry, id: c.ID})
			}
		}
		if len(byID) > n {
			return props, floor, nil
		}
		return props, math.Inf(-1), nil
	}, func(e gallery.IndexEntry) float64 { return Score(mentions, &e.Labels, e.Regions) })
	if err != nil {
		return nil, err
	}
	out := make([]gallery.IndexEntry, len(top))
	for i, p := range top {
		out[i] = p.item
	}
	return out, nil
}

// indexedTexts is the first stage of an image query on a term index: the k candidates, with
// their mentions.
func (s *Service) indexedTexts(ctx context.Context, ti gallery.TermIndex, summary *gallery.LabelSummary, regions, k int) ([]*gallery.Text, error) {
	if _, err := ti.IndexTexts(ctx, s.lex.Key(), func(text string) ([]int64, float64) { return keyTerms(s.lex.Parse(text)) }); err != nil {
		return nil, err
	}
	terms := summary.Terms(regions, gallery.Unnamed{Class: s.cfg.Labels.Background, Attr: s.cfg.Labels.NoAttribute})
	codes, weights := make([]int64, len(terms)), make([]float64, len(terms))
	for i, wt := range terms {
		codes[i], weights[i] = wt.Term.Code(), wt.Weight
	}
	top, err := deepen(k, func(n int) ([]proposal[*gallery.Text], float64, error) {
		byTerms, err := ti.TextsByTerms(ctx, codes, weights, firstStageEpsilon, n+1)
		if err != nil {
			return nil, 0, err
		}
		byFloor, err := ti.TextsByFloor(ctx, n+1)
		if err != nil {
			return nil, 0, err
		}
		unseen := math.Inf(-1) // a text not proposed is bounded by the last of a full list
		var props []proposal[*gallery.Text]
		seen := map[string]bool{}
		for _, list := range [][]gallery.TextCandidate{byTerms, byFloor} {
			if len(list) > n {
				unseen = max(unseen, list[n].Bound)
			}
			for _, c := range list {
				if !seen[c.ID] {
					props = append(props, proposal[*gallery.Text]{item: c.Text, id: c.ID})
					seen[c.ID] = true
				}
			}
		}
		return props, unseen, nil
	}, func(t *gallery.Text) float64 { return Score(s.lex.Parse(t.Text), summary, regions) })
	if err != nil {
		return nil, err
	}
	out := make([]*gallery.Text, len(top))
	for i, p := range top {
		out[i] = p.item
	}
	return out, nil
}
