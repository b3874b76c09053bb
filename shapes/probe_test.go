package shapes

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestProbeEditsHand: the probes of captions of the hand-built scene, word for word.
func TestProbeEditsHand(t *testing.T) {
	t.Parallel()
	fourRed := Scene{Width: 200, Height: 100, Objects: []Object{
		obj("circle", "red", SizeSmall, 20, 20, 10), obj("circle", "red", SizeSmall, 60, 20, 10),
		obj("circle", "red", SizeLarge, 100, 60, 20), obj("circle", "red", SizeLarge, 160, 60, 20),
	}}
	cases := []struct {
		scene Scene
		tmpl  string
		lf    LF
		want  []string // "kind: text"
	}{
		{handScene, TmplRelation, rel(RelLeftOf, sp("square", "blue", ""), sp("star", "yellow", "")), []string{
			"relation_swap: a blue square right of a yellow star",
			"color_swap: a yellow square left of a blue star",
			"size: a large blue square left of a yellow star", // "small" keeps it true
			"size: a blue square left of a small yellow star",
		}},
		{handScene, TmplRelation, rel(RelBelow, sp("triangle", "green", SizeLarge), sp("triangle", "green", SizeSmall)), []string{
			"relation_swap: a large green triangle above a small green triangle",
			// same colours: no colour swap
			"size: a small green triangle below a small green triangle",
			"size: a large green triangle below a large green triangle",
		}},
		{handScene, TmplSomething, rel(RelAbove, sp("", "orange", ""), sp("star", "", "")), []string{
			"relation_swap: something orange below a star",
			"size: something orange above a small star",
		}},
		{handScene, TmplCount, LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}, []string{
			"count: three green triangles",
			"size: two small green triangles",
		}},
		{fourRed, TmplThereAre, LF{Op: OpCount, N: 4, Obj: sp("circle", "red", "")}, []string{
			"count: there are three red circles", // five cannot be said
			"size: there are four small red circles",
		}},
		{handScene, TmplA, LF{Op: OpExists, Obj: sp("circle", "orange", "")}, []string{
			"size: a large orange circle", // the article follows the added size
		}},
		{handScene, TmplThereIs, LF{Op: OpExists, Obj: sp("star", "", SizeLarge)}, []string{
			"size: there is a small star",
		}},
		{handScene, TmplNone, LF{Op: OpNone, Obj: sp("star", "red", "")}, nil},
	}
	for _, tc := range cases {
		c, err := NewCaption(tc.lf, tc.tmpl, tc.scene)
		if err != nil || !Eval(c.LF, tc.scene) {
			t.Fatalf("%+v: %v (or false)", tc.lf, err)
		}
		var got []string
		for _, p := range ProbeEdits(tc.scene, c) {
			got = append(got, p.Edit+": "+p.Text)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: probes\n  %s\nwant\n  %s", c.Text, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
		}
	}
}

// TestProbeEditsSplit: on the first images of test-1k, every probe of every true caption is false,
// in the caption's template, deterministic, and differs from the caption in the text exactly by
// its kind's words (checked on the words, independently of the LF); every kind is made.
func TestProbeEditsSplit(t *testing.T) {
	t.Parallel()
	sp, _ := KnownSplit("test-1k")
	n := 300
	if testing.Short() {
		n = 60
	}
	counts := map[string]int{}
	var countCaptions, countProbes int
	for i := range n {
		s := GenerateScene(sp.Seed, i)
		caps := TrueCaptions(s, CaptionsPerImage, imageRNG(sp.Seed, i, streamCaption))
		for _, c := range caps {
			probes := ProbeEdits(s, c)
			if again := ProbeEdits(s, c); !reflect.DeepEqual(probes, again) {
				t.Fatalf("%q: probes differ between two calls", c.Text)
			}
			seen := map[string]bool{c.Text: true}
			nCount := 0
			for _, p := range probes {
				counts[p.Edit]++
				if Eval(p.LF, s) {
					t.Errorf("image %d: %q → %q (%s) is true", i, c.Text, p.Text, p.Edit)
				}
				if p.Template != c.Template {
					t.Errorf("%q → %q: template %s, want %s", c.Text, p.Text, p.Template, c.Template)
				}
				if text, _, err := Realize(p.LF, p.Template); err != nil || text != p.Text {
					t.Errorf("%q: Realize gives %q, %v", p.Text, text, err)
				}
				if seen[p.Text] {
					t.Errorf("%q: probe %q repeated", c.Text, p.Text)
				}
				seen[p.Text] = true
				if err := wordEdit(p.Edit, c.Text, p.Text); err != nil {
					t.Errorf("%s edit %q → %q: %v", p.Edit, c.Text, p.Text, err)
				}
				nCount += boolInt(p.Edit == ProbeCount)
			}
			if c.LF.Op == OpCount {
				// n+1 (or n−1 at four) is always false where n is true.
				countCaptions++
				countProbes += nCount
			}
		}
	}
	if countProbes != countCaptions {
		t.Errorf("%d count captions gave %d count probes, want one each", countCaptions, countProbes)
	}
	for _, kind := range ProbeKinds() {
		if counts[kind] == 0 {
			t.Errorf("no %s probes on %d images", kind, n)
		}
	}
	t.Logf("probes on %d images: %v", n, counts)
}

// wordEdit checks that edited differs from orig exactly by an edit of the kind, word by word (and
// the article of a changed word).
func wordEdit(kind, orig, edited string) error {
	a, b := strings.Fields(orig), strings.Fields(edited)
	var diff []int
	if len(a) == len(b) {
		for i := range a {
			if a[i] != b[i] {
				diff = append(diff, i)
			}
		}
		// "a" ↔ "an" right before a changed word follows it ("a yellow" → "an orange"): not an edit.
		changed := slices.Clone(diff)
		diff = slices.DeleteFunc(diff, func(i int) bool {
			return ((a[i] == "a" && b[i] == "an") || (a[i] == "an" && b[i] == "a")) && slices.Contains(changed, i+1)
		})
	}
	pair := func(i int, x, y string) bool { return (a[i] == x && b[i] == y) || (a[i] == y && b[i] == x) }
	counts := map[string]int{"two": 2, "three": 3, "four": 4}
	colors := Colors()
	switch kind {
	case ProbeRelationSwap:
		if len(diff) == 1 && (pair(diff[0], "left", "right") || pair(diff[0], "above", "below")) {
			return nil
		}
	case ProbeColorSwap:
		if len(diff) == 2 {
			i, j := diff[0], diff[1]
			if a[i] == b[j] && a[j] == b[i] && a[i] != a[j] && slices.Contains(colors, a[i]) && slices.Contains(colors, a[j]) {
				return nil
			}
		}
	case ProbeCount:
		if len(diff) == 1 {
			x, okx := counts[a[diff[0]]]
			y, oky := counts[b[diff[0]]]
			if okx && oky && (x-y == 1 || y-x == 1) {
				return nil
			}
		}
	case ProbeSize:
		if len(diff) == 1 && pair(diff[0], "small", "large") {
			return nil
		}
		if len(b) == len(a)+1 { // a size added: drop it from edited, and allow "an" → "a" before it
			for k, w := range b {
				if w != "small" && w != "large" {
					continue
				}
				rest := slices.Delete(slices.Clone(b), k, k+1)
				if k > 0 && a[k-1] == "an" && rest[k-1] == "a" {
					rest[k-1] = "an"
				}
				if slices.Equal(rest, a) {
					return nil
				}
			}
		}
	default:
		return fmt.Errorf("unknown kind")
	}
	return fmt.Errorf("not a %s edit", kind)
}
