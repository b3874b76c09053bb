package shapes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Downstream tasks on Shapes World images: question answering (Shapes-QA), visual entailment
// (Shapes-VE), statements about image pairs (Shapes-NLVR2) and referring expressions
// (Shapes-Ref). Every item is made from a split's scenes (the images WriteSplit writes for the same
// seed), with a machine-checkable form (an LF-like JSON) whose answer is computed from the scene.
// WriteTasks writes them as JSONL beside the images.

// Task names.
const (
	TaskQA    = "qa"
	TaskVE    = "ve"
	TaskNLVR2 = "nlvr2"
	TaskRef   = "ref"
)

// TaskVersion names the task generator; it changes whenever the same seed would give other items.
const TaskVersion = "shapes-tasks/1"

// Tasks lists the task names in their fixed order.
func Tasks() []string { return []string{TaskQA, TaskVE, TaskNLVR2, TaskRef} }

// ParseTasks reads task names (each entry may hold several, comma-separated; "all" is every
// task) into a list in Tasks order without repeats.
func ParseTasks(names []string) ([]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		for _, t := range strings.Split(n, ",") {
			t = strings.TrimSpace(t)
			switch {
			case t == "":
			case t == "all":
				for _, k := range Tasks() {
					want[k] = true
				}
			case slices.Contains(Tasks(), t):
				want[t] = true
			default:
				return nil, fmt.Errorf("unknown task %q (known: %s, all)", t, strings.Join(Tasks(), ", "))
			}
		}
	}
	var out []string
	for _, t := range Tasks() {
		if want[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

// Streams of the per-image task generators (see imageRNG): each task draws from its own stream,
// so tasks do not change the images, the captions or each other.
const (
	streamQA    = 3
	streamVE    = 4
	streamNLVR2 = 5
	streamRef   = 6
)

// Words the task texts use beyond the caption grammar's (Vocabulary).
var (
	taskWords = []string{"the", "what", "color", "shape", "size", "how", "many", "object", "objects", "in",
		"image", "images", "both", "has", "have", "more", "than", "same", "number"}
	// Materials are properties Shapes World does not render (Shapes-VE's neutral hypotheses).
	materialNames = []string{"wooden", "metal", "glass", "plastic"}
)

// Materials lists the unrendered properties Shapes-VE hypotheses may name.
func Materials() []string { return slices.Clone(materialNames) }

// TaskVocabulary is every word the task texts (questions, hypotheses, statements, expressions)
// can hold: the caption grammar's Vocabulary plus the task words and the materials, sorted. Texts
// also end questions with "?", a punctuation token of its own.
func TaskVocabulary() []string {
	words := Vocabulary()
	words = append(words, taskWords...)
	words = append(words, materialNames...)
	slices.Sort(words)
	return slices.Compact(words)
}

// token is one word of a task text (a relation's words are one token), and the slot it fills in
// the text's template: "" for a fixed word, else color, shape, size, count, relation or material.
// ref is the referring expression of the LF it belongs to (−1 for none).
type token struct {
	word, slot string
	ref        int
}

// phrase is a task text as tokens: its text and its template (the text with each slot's word
// replaced by {slot}), the unit of the text-only baselines.
type phrase []token

func (p *phrase) fixed(words ...string) {
	for _, w := range words {
		*p = append(*p, token{word: w, ref: -1})
	}
}

func (p *phrase) fill(slot, word string, ref int) {
	*p = append(*p, token{word: word, slot: slot, ref: ref})
}

// np writes a noun phrase for s: det ("the", "a" or none), then size, colour, material and the
// shape, or "object" when s names no shape ("the small red object", "a wooden star", "circles").
func (p *phrase) np(s ObjSpec, det, material string, plural bool, ref int) {
	if det != "" {
		p.fixed(det)
	}
	if s.Size != "" {
		p.fill(KindSize, s.Size, ref)
	}
	if s.Color != "" {
		p.fill(KindColor, s.Color, ref)
	}
	if material != "" {
		p.fill(slotMaterial, material, ref)
	}
	switch {
	case s.Shape != "" && plural:
		p.fill(KindShape, Plural(s.Shape), ref)
	case s.Shape != "":
		p.fill(KindShape, s.Shape, ref)
	case plural:
		p.fixed("objects")
	default:
		p.fixed("object")
	}
	p.articles()
}

// slotMaterial is the template slot of a material word.
const slotMaterial = "material"

// articles makes each fixed "a" or "an" agree with the word after it.
func (p phrase) articles() {
	for i := 0; i+1 < len(p); i++ {
		if p[i].slot == "" && (p[i].word == "a" || p[i].word == "an") {
			p[i].word = "a"
			if strings.ContainsRune("aeiou", rune(p[i+1].word[0])) {
				p[i].word = "an"
			}
		}
	}
}

func (p phrase) join(tmpl bool) string {
	var b strings.Builder
	for i, t := range p {
		if i > 0 && t.word != "?" {
			b.WriteByte(' ')
		}
		switch {
		case tmpl && t.slot != "":
			b.WriteString("{" + t.slot + "}")
		case tmpl && t.word == "an":
			b.WriteString("a") // the template does not tell what word follows
		default:
			b.WriteString(t.word)
		}
	}
	return b.String()
}

func (p phrase) text() string     { return p.join(false) }
func (p phrase) template() string { return p.join(true) }

// captionPhrase turns a realised caption (Realize) into tokens, one per attribute, count or
// relation span, the other words fixed.
func captionPhrase(text string, spans []Span) phrase {
	var p phrase
	pos := 0
	for _, sp := range spans {
		if sp.Kind == KindRef || sp.Start < pos {
			continue
		}
		p.fixed(strings.Fields(text[pos:sp.Start])...)
		if w := text[sp.Start:sp.End]; sp.Kind == KindCount && w == "no" {
			p.fixed(w) // "there are no …" is a template of its own, not a count
		} else {
			p.fill(sp.Kind, w, sp.Ref)
		}
		pos = sp.End
	}
	p.fixed(strings.Fields(text[pos:])...)
	return p
}

// sentence realises an LF as a sentence: "there is a red circle", "there are two stars", "there are
// no green hearts", "there is a small square left of a star", "there is something red above a
// heart".
func sentence(lf LF) (phrase, error) {
	var tmpl string
	prefix := false
	switch lf.Op {
	case OpExists:
		tmpl = TmplThereIs
	case OpCount:
		tmpl = TmplThereAre
	case OpNone:
		tmpl = TmplNone
	case OpRelation:
		tmpl, prefix = TmplRelation, true
		if lf.A.Shape == "" {
			tmpl = TmplSomething
		}
	default:
		return nil, fmt.Errorf("unknown op %q", lf.Op)
	}
	text, spans, err := Realize(lf, tmpl)
	if err != nil {
		return nil, err
	}
	var p phrase
	if prefix {
		p.fixed("there", "is")
	}
	return append(p, captionPhrase(text, spans)...), nil
}

// withMaterial inserts a material word before the shape word of referring expression ref
// ("a red wooden circle"); ok is false when that expression has no shape word.
func withMaterial(p phrase, ref int, material string) (phrase, bool) {
	i := slices.IndexFunc(p, func(t token) bool { return t.slot == KindShape && t.ref == ref })
	if i < 0 {
		return p, false
	}
	out := slices.Insert(slices.Clone(p), i, token{word: material, slot: slotMaterial, ref: ref})
	out.articles()
	return out, true
}

// borderline reports whether a stands near the threshold of rel to b: the offset of the centres
// along rel's axis is within half the margin of the margin (left of: cx(b) − cx(a) within
// [0.5, 1.5]·RelationMargin·width). Task items avoid such pairs, so that no answer hangs on a few
// pixels.
func borderline(rel string, a, b Object, w, h int) bool {
	ax, ay := a.center()
	bx, by := b.center()
	var d, m float64
	switch rel {
	case RelLeftOf:
		d, m = bx-ax, RelationMargin*float64(w)
	case RelRightOf:
		d, m = ax-bx, RelationMargin*float64(w)
	case RelAbove:
		d, m = by-ay, RelationMargin*float64(h)
	case RelBelow:
		d, m = ay-by, RelationMargin*float64(h)
	default:
		return false
	}
	return math.Abs(d-m) < m/2
}

// clearRelation reports whether no pair of objects a relation LF could relate (distinct objects
// matching A and B) is borderline. Other LFs are clear.
func clearRelation(lf LF, s Scene) bool {
	if lf.Op != OpRelation {
		return true
	}
	for _, a := range matching(lf.A, s.Objects) {
		for _, b := range matching(lf.B, s.Objects) {
			if a != b && borderline(lf.Rel, s.Objects[a], s.Objects[b], s.Width, s.Height) {
				return false
			}
		}
	}
	return true
}

// allMasks are the attribute subsets a description can name, the empty one included.
var allMasks = []attrMask{0, mShape, mColor, mSize, mShape | mColor, mShape | mSize, mColor | mSize, mShape | mColor | mSize}

// masksWith are the non-empty masks that name every attribute of with and none of without.
func masksWith(with, without attrMask) []attrMask {
	var out []attrMask
	for _, m := range allMasks {
		if m != 0 && m&with == with && m&without == 0 {
			out = append(out, m)
		}
	}
	return out
}

// uniqueSpecs are the descriptions of object i, one per mask, that match it alone.
func uniqueSpecs(s Scene, i int, masks []attrMask) []ObjSpec {
	var out []ObjSpec
	for _, m := range masks {
		spec := specOf(s.Objects[i], m)
		if n := matching(spec, s.Objects); len(n) == 1 {
			out = append(out, spec)
		}
	}
	return out
}

// maskOf is the mask of the attributes a description names.
func maskOf(s ObjSpec) attrMask {
	var m attrMask
	if s.Shape != "" {
		m |= mShape
	}
	if s.Color != "" {
		m |= mColor
	}
	if s.Size != "" {
		m |= mSize
	}
	return m
}

// balancedPick picks a candidate whose truth is want. It first draws the kind of description
// (the mask of its spec, which the text shows) among those whose candidates have both truths,
// failing that among those with want, so that the words of a text do not tell its truth.
func balancedPick[T any](rng *rand.Rand, cands []T, spec func(T) ObjSpec, truth func(T) bool, want bool) (T, bool) {
	has := map[attrMask][2]bool{}
	for _, c := range cands {
		m := maskOf(spec(c))
		h := has[m]
		h[boolInt(truth(c))] = true
		has[m] = h
	}
	var both, some []attrMask
	for _, m := range allMasks {
		if h := has[m]; h[boolInt(want)] {
			some = append(some, m)
			if h[0] && h[1] {
				both = append(both, m)
			}
		}
	}
	if len(both) > 0 {
		some = both
	}
	if len(some) == 0 {
		var zero T
		return zero, false
	}
	m := choose(rng, some)
	var pool []T
	for _, c := range cands {
		if maskOf(spec(c)) == m && truth(c) == want {
			pool = append(pool, c)
		}
	}
	return choose(rng, pool), true
}

// absentSpecs are descriptions with mask m that match no object, each one attribute away from
// an object of the scene ("a small blue circle" on a scene with a small red circle), at most k.
func absentSpecs(s Scene, m attrMask, k int, rng *rand.Rand) []ObjSpec {
	var out []ObjSpec
	for range 4 * k {
		if len(out) >= k {
			break
		}
		spec := specOf(s.Objects[rng.IntN(len(s.Objects))], m)
		var fields []*string
		for _, f := range spec.fields() {
			if *f != "" {
				fields = append(fields, f)
			}
		}
		if len(fields) == 0 {
			break
		}
		switch f := choose(rng, fields); f {
		case &spec.Shape:
			spec.Shape = otherThan(rng, shapeNames, spec.Shape)
		case &spec.Color:
			spec.Color = otherThan(rng, colorNames, spec.Color)
		default:
			spec.Size = otherThan(rng, sizeNames, spec.Size)
		}
		if len(matching(spec, s.Objects)) == 0 && !slices.Contains(out, spec) {
			out = append(out, spec)
		}
	}
	return out
}

// choose returns a random element of xs (which must not be empty).
func choose[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }
