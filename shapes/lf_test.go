package shapes

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// obj is an object of a hand-built scene: a w×w box centred on (cx, cy).
func obj(shape, color, size string, cx, cy, w float64) Object {
	return Object{Shape: shape, Color: color, Size: size, Box: [4]float64{cx - w/2, cy - w/2, cx + w/2, cy + w/2},
		Center: [2]float64{cx, cy}}
}

// handScene is 200×100: the relation margins are 10 px across and 5 px down.
//
//	4 orange circle (105,20)        2 small green triangle (160,20)
//	0 blue square (40,50)    1 yellow star (100,50)
//	                                3 large green triangle (160,80)
var handScene = Scene{Width: 200, Height: 100, Objects: []Object{
	obj("square", "blue", SizeSmall, 40, 50, 16),
	obj("star", "yellow", SizeLarge, 100, 50, 30),
	obj("triangle", "green", SizeSmall, 160, 20, 16),
	obj("triangle", "green", SizeLarge, 160, 80, 30),
	obj("circle", "orange", SizeSmall, 105, 20, 16),
}}

func sp(shape, color, size string) ObjSpec { return ObjSpec{Shape: shape, Color: color, Size: size} }

func rel(r string, a, b ObjSpec) LF { return LF{Op: OpRelation, Rel: r, A: a, B: b} }

func TestEval(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		lf   LF
		want bool
	}{
		{"a small blue square", LF{Op: OpExists, Obj: sp("square", "blue", SizeSmall)}, true},
		{"a large blue square", LF{Op: OpExists, Obj: sp("square", "blue", SizeLarge)}, false},
		{"a blue star", LF{Op: OpExists, Obj: sp("star", "blue", "")}, false},
		{"a star", LF{Op: OpExists, Obj: sp("star", "", "")}, true},
		{"a hexagon", LF{Op: OpExists, Obj: sp("hexagon", "", "")}, false},
		{"something orange", LF{Op: OpExists, Obj: sp("", "orange", "")}, true},
		{"something purple", LF{Op: OpExists, Obj: sp("", "purple", "")}, false},
		{"anything", LF{Op: OpExists}, true},
		{"two green triangles", LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, true},
		{"three green triangles", LF{Op: OpCount, N: 3, Obj: sp("triangle", "green", "")}, false},
		{"one green triangle is not two", LF{Op: OpCount, N: 1, Obj: sp("triangle", "green", "")}, false},
		{"two triangles", LF{Op: OpCount, N: 2, Obj: sp("triangle", "", "")}, true},
		{"exactly one small triangle", LF{Op: OpCount, N: 1, Obj: sp("triangle", "", SizeSmall)}, true},
		{"two small triangles", LF{Op: OpCount, N: 2, Obj: sp("triangle", "", SizeSmall)}, false},
		{"two stars", LF{Op: OpCount, N: 2, Obj: sp("star", "", "")}, false},
		{"zero red stars", LF{Op: OpCount, N: 0, Obj: sp("star", "red", "")}, true},
		{"five objects", LF{Op: OpCount, N: 5}, true},
		{"no red stars", LF{Op: OpNone, Obj: sp("star", "red", "")}, true},
		{"no green triangles", LF{Op: OpNone, Obj: sp("triangle", "green", "")}, false},
		{"no large green triangles", LF{Op: OpNone, Obj: sp("triangle", "green", SizeLarge)}, false},
		{"no small yellow stars", LF{Op: OpNone, Obj: sp("star", "yellow", SizeSmall)}, true},
		{"square left of star", rel(RelLeftOf, sp("square", "", ""), sp("star", "", "")), true},
		{"star left of square", rel(RelLeftOf, sp("star", "", ""), sp("square", "", "")), false},
		{"star right of square", rel(RelRightOf, sp("star", "", ""), sp("square", "", "")), true},
		{"square right of star", rel(RelRightOf, sp("square", "", ""), sp("star", "", "")), false},
		{"square above star (same row)", rel(RelAbove, sp("square", "", ""), sp("star", "", "")), false},
		{"square below star (same row)", rel(RelBelow, sp("square", "", ""), sp("star", "", "")), false},
		{"circle above star", rel(RelAbove, sp("circle", "", ""), sp("star", "", "")), true},
		{"circle right of star (within margin)", rel(RelRightOf, sp("circle", "", ""), sp("star", "", "")), false},
		{"circle left of star (within margin)", rel(RelLeftOf, sp("circle", "", ""), sp("star", "", "")), false},
		{"something orange above a star", rel(RelAbove, sp("", "orange", ""), sp("star", "", "")), true},
		{"something orange below a star", rel(RelBelow, sp("", "orange", ""), sp("star", "", "")), false},
		{"something green right of a star", rel(RelRightOf, sp("", "green", ""), sp("star", "", "")), true},
		{"something blue right of a star", rel(RelRightOf, sp("", "blue", ""), sp("star", "", "")), false},
		{"something yellow left of a triangle", rel(RelLeftOf, sp("", "yellow", ""), sp("triangle", "", "")), true},
		{"green triangle above green triangle", rel(RelAbove, sp("triangle", "green", ""), sp("triangle", "green", "")), true},
		{"large triangle below small triangle", rel(RelBelow, sp("triangle", "", SizeLarge), sp("triangle", "", SizeSmall)), true},
		{"large triangle above small triangle", rel(RelAbove, sp("triangle", "", SizeLarge), sp("triangle", "", SizeSmall)), false},
		{"triangle left of triangle (same column)", rel(RelLeftOf, sp("triangle", "", ""), sp("triangle", "", "")), false},
		{"star above star (needs two objects)", rel(RelAbove, sp("star", "", ""), sp("star", "", "")), false},
		{"something above something", rel(RelAbove, ObjSpec{}, ObjSpec{}), true},
		{"small blue square left of yellow star", rel(RelLeftOf, sp("square", "blue", SizeSmall), sp("star", "yellow", "")), true},
		{"large blue square left of yellow star", rel(RelLeftOf, sp("square", "blue", SizeLarge), sp("star", "yellow", "")), false},
		{"unknown op", LF{Op: "most", Obj: sp("star", "", "")}, false},
		{"unknown colour", LF{Op: OpNone, Obj: sp("star", "pink", "")}, false},
		{"unknown shape", LF{Op: OpNone, Obj: sp("blob", "", "")}, false},
		{"unknown size", LF{Op: OpNone, Obj: sp("star", "", "huge")}, false},
		{"unknown relation", rel("near", sp("square", "", ""), sp("star", "", "")), false},
		{"negative count", LF{Op: OpCount, N: -1, Obj: sp("star", "", "")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Eval(c.lf, handScene); got != c.want {
				t.Errorf("Eval(%+v) = %v, want %v", c.lf, got, c.want)
			}
		})
	}
}

// TestRelationMargin checks the margin's edges: 5% of the width (200 → 10 px) or of the height
// (400 → 20 px), measured between box centres.
func TestRelationMargin(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		rel    string
		dx, dy float64 // centre of a minus centre of b
		want   bool
	}{
		{"left by 11", RelLeftOf, -11, 0, true},
		{"left by 10 (on the margin)", RelLeftOf, -10, 0, false},
		{"left by 9", RelLeftOf, -9, 0, false},
		{"right by 11", RelRightOf, 11, 0, true},
		{"right by 10", RelRightOf, 10, 0, false},
		{"left by 50, far below too", RelLeftOf, -50, 150, true},
		{"above by 21", RelAbove, 0, -21, true},
		{"above by 20", RelAbove, 0, -20, false},
		{"above by 15 (more than the width margin)", RelAbove, 0, -15, false},
		{"below by 21", RelBelow, 0, 21, true},
		{"below by 19", RelBelow, 0, 19, false},
		{"below by 100, off to the left", RelBelow, -80, 100, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := obj("circle", "red", SizeSmall, 100+c.dx, 200+c.dy, 10)
			b := obj("square", "blue", SizeSmall, 100, 200, 30)
			if got := Holds(c.rel, a, b, 200, 400); got != c.want {
				t.Errorf("Holds = %v, want %v", got, c.want)
			}
			s := Scene{Width: 200, Height: 400, Objects: []Object{b, a}}
			if got := Eval(rel(c.rel, sp("circle", "", ""), sp("square", "", "")), s); got != c.want {
				t.Errorf("Eval = %v, want %v", got, c.want)
			}
			// The converse relation with the roles swapped says the same.
			if got := Holds(relInverse[c.rel], b, a, 200, 400); got != c.want {
				t.Errorf("converse Holds = %v, want %v", got, c.want)
			}
		})
	}
}

func TestReferents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		lf   LF
		want [][]int
	}{
		{"a star", LF{Op: OpExists, Obj: sp("star", "", "")}, [][]int{{1}}},
		{"two green triangles", LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, [][]int{{2, 3}}},
		{"false count still lists the matches", LF{Op: OpCount, N: 4, Obj: sp("triangle", "", "")}, [][]int{{2, 3}}},
		{"no red stars", LF{Op: OpNone, Obj: sp("star", "red", "")}, [][]int{{}}},
		{"something green right of a star", rel(RelRightOf, sp("", "green", ""), sp("star", "", "")), [][]int{{2, 3}, {1}}},
		{"something left of a triangle", rel(RelLeftOf, ObjSpec{}, sp("triangle", "", "")), [][]int{{0, 1, 4}, {2, 3}}},
		{"a triangle above a triangle", rel(RelAbove, sp("triangle", "", ""), sp("triangle", "", "")), [][]int{{2}, {3}}},
		{"false relation refers to nothing", rel(RelBelow, sp("circle", "", ""), sp("star", "", "")), [][]int{{}, {}}},
		{"invalid", rel("near", sp("circle", "", ""), sp("star", "", "")), [][]int{{}, {}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Referents(c.lf, handScene)
			if !slices.EqualFunc(got, c.want, slices.Equal) {
				t.Errorf("Referents = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRealize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tmpl string
		lf   LF
		want string // "" when Realize must fail
	}{
		{TmplA, LF{Op: OpExists, Obj: sp("square", "blue", SizeSmall)}, "a small blue square"},
		{TmplA, LF{Op: OpExists, Obj: sp("circle", "orange", "")}, "an orange circle"},
		{TmplA, LF{Op: OpExists, Obj: sp("star", "", "")}, "a star"},
		{TmplA, LF{Op: OpExists, Obj: sp("cross", "", SizeLarge)}, "a large cross"},
		{TmplThereIs, LF{Op: OpExists, Obj: sp("heart", "orange", SizeSmall)}, "there is a small orange heart"},
		{TmplThereIs, LF{Op: OpExists, Obj: sp("", "white", "")}, "there is something white"},
		{TmplCount, LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, "two green triangles"},
		{TmplCount, LF{Op: OpCount, N: 4, Obj: sp("cross", "black", SizeLarge)}, "four large black crosses"},
		{TmplThereAre, LF{Op: OpCount, N: 3, Obj: sp("hexagon", "", "")}, "there are three hexagons"},
		{TmplNone, LF{Op: OpNone, Obj: sp("heart", "purple", "")}, "there are no purple hearts"},
		{TmplRelation, rel(RelLeftOf, sp("square", "blue", SizeSmall), sp("star", "yellow", "")),
			"a small blue square left of a yellow star"},
		{TmplRelation, rel(RelBelow, sp("diamond", "", ""), sp("circle", "orange", SizeLarge)),
			"a diamond below a large orange circle"},
		{TmplSomething, rel(RelAbove, sp("", "orange", ""), sp("star", "", "")), "something orange above a star"},
		{TmplSomething, rel(RelRightOf, sp("", "red", ""), sp("star", "orange", "")), "something red right of an orange star"},
		// Not sayable.
		{TmplCount, LF{Op: OpCount, N: 5, Obj: sp("star", "", "")}, ""},
		{TmplCount, LF{Op: OpCount, N: 1, Obj: sp("star", "", "")}, ""},
		{TmplCount, LF{Op: OpCount, N: 2, Obj: sp("", "red", "")}, ""},
		{TmplNone, LF{Op: OpNone, Obj: sp("", "red", "")}, ""},
		{TmplSomething, rel(RelAbove, sp("star", "orange", ""), sp("star", "", "")), ""},
		{TmplSomething, rel(RelAbove, sp("", "orange", SizeSmall), sp("star", "", "")), ""},
		{TmplRelation, rel(RelAbove, sp("", "orange", ""), sp("star", "", "")), ""},
		{TmplRelation, rel(RelAbove, sp("star", "", ""), sp("", "orange", "")), ""},
		{TmplA, LF{Op: OpExists}, ""},
		{TmplA, LF{Op: OpCount, N: 2, Obj: sp("star", "", "")}, ""},
		{"nonsense", LF{Op: OpExists, Obj: sp("star", "", "")}, ""},
		{TmplA, LF{Op: OpExists, Obj: sp("star", "pink", "")}, ""},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			got, spans, err := Realize(c.lf, c.tmpl)
			if c.want == "" {
				if err == nil {
					t.Fatalf("Realize(%+v, %s) = %q, want an error", c.lf, c.tmpl, got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Realize(%+v, %s) = %q, %v, want %q", c.lf, c.tmpl, got, err, c.want)
			}
			checkSpans(t, Caption{Text: got, LF: c.lf, Spans: spans})
		})
	}
}

// TestSpans pins the spans of a few captions.
func TestSpans(t *testing.T) {
	t.Parallel()
	type s struct {
		text, kind string
		ref        int
		objects    []int
	}
	cases := []struct {
		tmpl string
		lf   LF
		want []s
	}{
		{TmplCount, LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, []s{
			{"two green triangles", KindRef, 0, []int{2, 3}}, {"two", KindCount, 0, []int{2, 3}},
			{"green", KindColor, 0, []int{2, 3}}, {"triangles", KindShape, 0, []int{2, 3}}}},
		{TmplSomething, rel(RelRightOf, sp("", "green", ""), sp("star", "yellow", SizeLarge)), []s{
			{"something green", KindRef, 0, []int{2, 3}}, {"green", KindColor, 0, []int{2, 3}},
			{"right of", KindRelation, -1, []int{}}, {"a large yellow star", KindRef, 1, []int{1}},
			{"large", KindSize, 1, []int{1}}, {"yellow", KindColor, 1, []int{1}}, {"star", KindShape, 1, []int{1}}}},
		{TmplThereIs, LF{Op: OpExists, Obj: sp("circle", "orange", "")}, []s{
			{"an orange circle", KindRef, 0, []int{4}}, {"orange", KindColor, 0, []int{4}}, {"circle", KindShape, 0, []int{4}}}},
		{TmplNone, LF{Op: OpNone, Obj: sp("star", "red", "")}, []s{
			{"no red stars", KindRef, 0, []int{}}, {"no", KindCount, 0, []int{}},
			{"red", KindColor, 0, []int{}}, {"stars", KindShape, 0, []int{}}}},
	}
	for _, c := range cases {
		cp, err := NewCaption(c.lf, c.tmpl, handScene)
		if err != nil {
			t.Fatal(err)
		}
		var got []s
		for _, x := range cp.Spans {
			if cp.Text[x.Start:x.End] != x.Text {
				t.Errorf("%q: span [%d,%d) is %q, says %q", cp.Text, x.Start, x.End, cp.Text[x.Start:x.End], x.Text)
			}
			got = append(got, s{x.Text, x.Kind, x.Ref, x.Objects})
		}
		if !slices.EqualFunc(got, c.want, func(a, b s) bool {
			return a.text == b.text && a.kind == b.kind && a.ref == b.ref && slices.Equal(a.objects, b.objects)
		}) {
			t.Errorf("%q spans:\n got %v\nwant %v", cp.Text, got, c.want)
		}
	}
}

func TestLFJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		lf   LF
		want string
	}{
		{LF{Op: OpExists, Obj: sp("square", "blue", SizeSmall)}, `{"op":"exists","obj":{"shape":"square","color":"blue","size":"small"}}`},
		{LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, `{"op":"count","n":2,"obj":{"shape":"triangle","color":"green"}}`},
		{LF{Op: OpNone, Obj: sp("star", "red", "")}, `{"op":"none","obj":{"shape":"star","color":"red"}}`},
		{rel(RelLeftOf, sp("square", "", ""), sp("star", "yellow", "")),
			`{"op":"relation","rel":"left_of","a":{"shape":"square"},"b":{"shape":"star","color":"yellow"}}`},
		{rel(RelAbove, sp("", "orange", ""), sp("star", "", "")),
			`{"op":"relation","rel":"above","a":{"color":"orange"},"b":{"shape":"star"}}`},
	}
	for _, c := range cases {
		raw, err := json.Marshal(c.lf)
		if err != nil || string(raw) != c.want {
			t.Errorf("json.Marshal(%+v) = %s, %v, want %s", c.lf, raw, err, c.want)
		}
		var back LF
		if err := json.Unmarshal(raw, &back); err != nil || back != c.lf {
			t.Errorf("round trip of %s = %+v, %v", raw, back, err)
		}
	}
}

func TestVocabulary(t *testing.T) {
	t.Parallel()
	v := Vocabulary()
	if !slices.IsSorted(v) || len(slices.Compact(slices.Clone(v))) != len(v) {
		t.Errorf("vocabulary not sorted and unique: %v", v)
	}
	for _, w := range []string{"a", "an", "there", "is", "are", "no", "something", "left", "right", "of", "above",
		"below", "two", "three", "four", "small", "large", "crosses", "stars", "circle", "orange", "purple"} {
		if !slices.Contains(v, w) {
			t.Errorf("vocabulary lacks %q", w)
		}
	}
	for _, w := range v {
		if w != strings.ToLower(w) || strings.ContainsAny(w, " \t.,") {
			t.Errorf("vocabulary word %q is not a lowercase word", w)
		}
	}
	if len(Shapes()) < 6 || len(Colors()) < 8 {
		t.Errorf("%d shapes and %d colours, want at least 6 and 8", len(Shapes()), len(Colors()))
	}
	if Plural("cross") != "crosses" || Plural("star") != "stars" {
		t.Errorf("plurals: %s %s", Plural("cross"), Plural("star"))
	}
}

// checkSpans checks that a caption's spans say what they cover and lie inside the text.
func checkSpans(t *testing.T, c Caption) {
	t.Helper()
	plurals := map[string]bool{}
	for _, s := range shapeNames {
		plurals[s], plurals[Plural(s)] = true, true
	}
	counts := map[string]bool{"no": true}
	for _, w := range countWords {
		counts[w] = true
	}
	rels := map[string]bool{}
	for _, p := range relPhrase {
		rels[p] = true
	}
	for _, s := range c.Spans {
		if s.Start < 0 || s.End > len(c.Text) || s.Start >= s.End {
			t.Errorf("%q: span [%d,%d) out of range", c.Text, s.Start, s.End)
			continue
		}
		sub := c.Text[s.Start:s.End]
		if sub != s.Text {
			t.Errorf("%q: span [%d,%d) covers %q but says %q", c.Text, s.Start, s.End, sub, s.Text)
		}
		if (s.Start > 0 && c.Text[s.Start-1] != ' ') || (s.End < len(c.Text) && c.Text[s.End] != ' ') {
			t.Errorf("%q: span %q does not cover whole words", c.Text, sub)
		}
		var ok bool
		switch s.Kind {
		case KindColor:
			ok = isColor(sub)
		case KindShape:
			ok = plurals[sub]
		case KindSize:
			ok = isSize(sub)
		case KindCount:
			ok = counts[sub]
		case KindRelation:
			ok = rels[sub] && s.Ref == -1
		case KindRef:
			ok = s.Ref >= 0 && s.Ref < c.LF.Refs()
		}
		if !ok {
			t.Errorf("%q: %s span %q (ref %d) is not a %s", c.Text, s.Kind, sub, s.Ref, s.Kind)
		}
	}
}

func TestNearMiss(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		lf   LF
		want bool
	}{
		{"true: a small blue square", LF{Op: OpExists, Obj: sp("square", "blue", SizeSmall)}, false},
		{"a large blue square (the square is small)", LF{Op: OpExists, Obj: sp("square", "blue", SizeLarge)}, true},
		{"a red square (the square is blue)", LF{Op: OpExists, Obj: sp("square", "red", "")}, true},
		{"a blue circle (the circle is orange, the square blue)", LF{Op: OpExists, Obj: sp("circle", "blue", "")}, true},
		{"a large red square (two attributes off)", LF{Op: OpExists, Obj: sp("square", "red", SizeLarge)}, false},
		{"a hexagon (one attribute: nothing to drop)", LF{Op: OpExists, Obj: sp("hexagon", "", "")}, false},
		{"something purple (one attribute)", LF{Op: OpExists, Obj: sp("", "purple", "")}, false},
		{"a purple hexagon (neither is there)", LF{Op: OpExists, Obj: sp("hexagon", "purple", "")}, false},
		{"three green triangles (two are there)", LF{Op: OpCount, N: 3, Obj: sp("triangle", "green", "")}, true},
		{"two stars (one is there)", LF{Op: OpCount, N: 2, Obj: sp("star", "", "")}, true},
		{"two hexagons (none is there)", LF{Op: OpCount, N: 2, Obj: sp("hexagon", "", "")}, false},
		{"two red triangles (two triangles are there)", LF{Op: OpCount, N: 2, Obj: sp("triangle", "red", "")}, true},
		{"true: two green triangles", LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, false},
		{"no green triangles (none LFs have no near miss)", LF{Op: OpNone, Obj: sp("triangle", "green", "")}, false},
		{"star left of square (both there)", rel(RelLeftOf, sp("star", "", ""), sp("square", "", "")), true},
		{"square above star (same row)", rel(RelAbove, sp("square", "", ""), sp("star", "", "")), true},
		{"star above star (one star only)", rel(RelAbove, sp("star", "", ""), sp("star", "", "")), false},
		{"hexagon left of star (no hexagon)", rel(RelLeftOf, sp("hexagon", "", ""), sp("star", "", "")), false},
		{"red square left of star (square blue; dropping red leaves a true caption)",
			rel(RelLeftOf, sp("square", "red", ""), sp("star", "", "")), true},
		{"red square right of star (square blue and left of the star)",
			rel(RelRightOf, sp("square", "red", ""), sp("star", "", "")), false},
		{"true: square left of star", rel(RelLeftOf, sp("square", "", ""), sp("star", "", "")), false},
		{"invalid: unknown colour", LF{Op: OpExists, Obj: sp("square", "pink", "")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := NearMiss(c.lf, handScene); got != c.want {
				t.Errorf("NearMiss(%+v) = %v, want %v", c.lf, got, c.want)
			}
		})
	}
}

// TestNearMissOfMinimalEdits checks NearMiss against the generator's own minimal edits: an edit
// of a true caption is false on the caption's image and differs from a true caption by one step,
// so the image is a near miss of the edit when the edit is a count or a relation, or an attribute
// of an exists or relation caption that leaves the edited expression two attributes or more
// (dropping the edited attribute then gives back a caption implied by the true one). Not checked:
// none captions (no near misses), and attribute edits of counts ("two large hearts" from "two
// large circles": with a third large object, neither "two large things" nor "two hearts" holds).
func TestNearMissOfMinimalEdits(t *testing.T) {
	t.Parallel()
	checked := map[string]int{}
	for i := range 300 {
		rec, _, err := Generate(99, i)
		if err != nil {
			t.Fatal(err)
		}
		s := rec.Scene()
		for _, c := range rec.Captions {
			if NearMiss(c.LF, s) {
				t.Fatalf("image %d: true caption %q is a near miss", i, c.Text)
			}
		}
		for _, n := range rec.FalseCaptions {
			if n.Source < 0 || n.LF.Op == OpNone {
				continue
			}
			src := rec.Captions[n.Source].LF
			want := n.Edit == EditCount || n.Edit == EditRelation
			if !want && n.LF.Op != OpCount {
				edited := n.LF.Obj
				if n.LF.Op == OpRelation {
					edited = n.LF.A
					if n.LF.A == src.A {
						edited = n.LF.B
					}
				}
				want = edited.named() >= 2
			}
			if want {
				checked[n.Edit]++
				if !NearMiss(n.LF, s) {
					t.Errorf("image %d: %s edit %q of %q is not a near miss of its image", i, n.Edit, n.Text,
						rec.Captions[n.Source].Text)
				}
			}
		}
	}
	for _, kind := range []string{EditColor, EditShape, EditSize, EditCount, EditRelation} {
		if checked[kind] == 0 {
			t.Errorf("no %s edit checked (of %v)", kind, checked)
		}
	}
}
