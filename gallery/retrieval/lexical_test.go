package retrieval

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/uniter-serve/uniter/gallery"
)

// shapesLabels are the Shapes World detector's label files.
var shapesLabels = Labels{
	Classes:    []string{"__background__", "circle", "square", "triangle", "star", "diamond", "cross", "heart", "hexagon"},
	Attributes: []string{"__no_attribute__", "red", "green", "blue", "yellow", "orange", "purple", "white", "black"},
	Background: 0, NoAttribute: 0,
}

func TestParse(t *testing.T) {
	lex := NewLexicon(shapesLabels)
	const (
		circle, square, triangle, star, cross, heart = 1, 2, 3, 4, 6, 7
		red, green, blue, yellow, orange, purple     = 1, 2, 3, 4, 5, 6
	)
	for _, c := range []struct {
		text string
		want []Mention
	}{
		{"an orange circle", []Mention{{Class: circle, Attrs: []int{orange}, Count: 1, Text: "orange circle"}}},
		{"There is a small red star.", []Mention{{Class: star, Attrs: []int{red}, Count: 1, Text: "red star"}}},
		{"two green crosses", []Mention{{Class: cross, Attrs: []int{green}, Count: 2, Text: "green crosses"}}},
		{"there are 3 triangles", []Mention{{Class: triangle, Count: 3, Text: "triangles"}}},
		{"there are no purple hearts", []Mention{{Class: heart, Attrs: []int{purple}, Count: 1, Negated: true, Text: "purple hearts"}}},
		{"a small blue square left of a yellow star", []Mention{
			{Class: square, Attrs: []int{blue}, Count: 1, Text: "blue square"},
			{Class: star, Attrs: []int{yellow}, Count: 1, Text: "yellow star"}}},
		// An attribute before a relation word is not the next noun's.
		{"something orange above a star", []Mention{
			{Class: -1, Attrs: []int{orange}, Count: 1, Text: "orange"},
			{Class: star, Count: 1, Text: "star"}}},
		{"a dog on a sofa", nil},
		{"", nil},
		{"RED Circles", []Mention{{Class: circle, Attrs: []int{red}, Count: 1, Text: "red circles"}}},
	} {
		got := lex.Parse(c.text)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Parse(%q):\n got %+v\nwant %+v", c.text, got, c.want)
		}
	}
}

func TestLexiconSynonymsAndPhrases(t *testing.T) {
	lex := NewLexicon(Labels{Classes: []string{"__background__", "man,men", "traffic light", "bus", "berry"},
		Attributes: []string{"wooden"}, Background: 0, NoAttribute: -1})
	for text, want := range map[string]string{
		"two men near the traffic lights": "[{1 [] 2 false men} {2 [] 1 false traffic lights}]",
		"a wooden bus":                    "[{3 [0] 1 false wooden bus}]",
		"buses and berries":               "[{3 [] 1 false buses} {4 [] 1 false berries}]",
	} {
		if got := fmt.Sprint(lex.Parse(text)); got != want {
			t.Errorf("Parse(%q): got %s, want %s", text, got, want)
		}
	}
}

// summary builds a label summary from per-region (class, p) and (attr, p) lists.
func summary(regions ...[2][]gallery.LabelProb) *gallery.LabelSummary {
	s := &gallery.LabelSummary{PerRegionClasses: 2, PerRegionAttrs: 2}
	for _, r := range regions {
		s.Classes = append(s.Classes, r[0]...)
		s.Attrs = append(s.Attrs, r[1]...)
	}
	return s
}

func lp(i int, p float32) gallery.LabelProb { return gallery.LabelProb{Index: uint16(i), Prob: p} }

func TestScore(t *testing.T) {
	lex := NewLexicon(shapesLabels)
	// Image A: a red square (0.9 · 0.8) and a blue circle; image B: a blue square and a red
	// circle (each label present, never together); image C: two green crosses.
	A := summary([2][]gallery.LabelProb{{lp(2, 0.9), lp(1, 0.05)}, {lp(1, 0.8), lp(3, 0.1)}},
		[2][]gallery.LabelProb{{lp(1, 0.95), lp(0, 0.05)}, {lp(3, 0.9), lp(0, 0.1)}})
	B := summary([2][]gallery.LabelProb{{lp(2, 0.9), lp(0, 0.1)}, {lp(3, 0.9), lp(0, 0.1)}},
		[2][]gallery.LabelProb{{lp(1, 0.9), lp(0, 0.1)}, {lp(1, 0.9), lp(0, 0.1)}})
	C := summary([2][]gallery.LabelProb{{lp(6, 0.9), lp(0, 0.1)}, {lp(2, 0.8), lp(0, 0.2)}},
		[2][]gallery.LabelProb{{lp(2, 0.9), lp(0, 0.1)}, {lp(2, 0.9), lp(0, 0.1)}})
	score := func(text string, s *gallery.LabelSummary) float64 { return Score(lex.Parse(text), s, 2) }

	// Support is the product on one region: A's red square is 0.9·0.8; B has no region with both.
	if got, want := score("a red square", A), math.Log(0.9*0.8+firstStageEpsilon); math.Abs(got-want) > 1e-6 {
		t.Errorf("red square on A: got %v, want %v", got, want)
	}
	if got, want := score("a red square", B), math.Log(firstStageEpsilon); math.Abs(got-want) > 1e-6 {
		t.Errorf("red square on B: got %v, want %v", got, want)
	}
	if !(score("a red square", A) > score("a red square", B)) {
		t.Errorf("A should beat B for a red square")
	}
	// A count needs that many matching regions: C has a green cross and a green square.
	if got, want := score("two green crosses", C), math.Log(0+firstStageEpsilon); math.Abs(got-want) > 1e-6 {
		t.Errorf("two green crosses on C: got %v, want %v", got, want)
	}
	// "things" is no label: "green" stands alone, and two regions are green (0.8, 0.9).
	if got, want := score("two green things", C), math.Log(float64(float32(0.8))+firstStageEpsilon); math.Abs(got-want) > 1e-6 {
		t.Errorf("two green things on C: got %v, want %v", got, want)
	}
	// Negation prefers images without the object.
	if !(score("there are no red squares", B) > score("there are no red squares", A)) {
		t.Errorf("no red squares: B should beat A")
	}
	// No label words: the neutral score for every image.
	if got := score("a dog", A); got != noMentionScore {
		t.Errorf("no mentions: got %v, want %v", got, noMentionScore)
	}
}

func TestFirstStageTiesByID(t *testing.T) {
	ids := []string{"d", "b", "a", "c", "e"}
	scores := []float64{1, 2, 2, 0, 2}
	got := rankLexical(5, 3, func(i int) string { return ids[i] }, func(i int) float64 { return scores[i] })
	if want := []int{2, 1, 4}; !slices.Equal(got, want) { // a, b, e (score 2, by ID)
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestTopK(t *testing.T) {
	var all []hit
	for i := range 200 {
		all = append(all, hit{id: fmt.Sprintf("%03d", (i*37)%200), logit: float32((i * 13) % 17), score: float32(i%3) / 3})
	}
	all = append(all, hit{id: "nan", logit: float32(math.NaN())})
	top := &topK{k: 25}
	for _, h := range all {
		top.add(h)
	}
	got := top.sorted()
	want := slices.Clone(all)
	// Independent order: sort by the documented key with the standard library.
	slices.SortStableFunc(want, func(a, b hit) int {
		la, lb := float64(a.logit), float64(b.logit)
		if math.IsNaN(la) {
			la = math.Inf(-1)
		}
		if math.IsNaN(lb) {
			lb = math.Inf(-1)
		}
		switch {
		case la != lb:
			return -cmpF(la, lb)
		case a.score != b.score:
			return -cmpF(float64(a.score), float64(b.score))
		}
		return cmpS(a.id, b.id)
	})
	if len(got) != 25 {
		t.Fatalf("kept %d, want 25", len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("rank %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpS(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
