package shapes

import (
	"fmt"
	"strings"
)

// Caption templates. A template picks the surface form of an LF; Realize turns the pair into
// text and spans.
//
//	a          exists    "a {size} {color} {shape}"                  a small blue square
//	there_is   exists    "there is a {size} {color} {shape}"         there is a red star
//	count      count     "{n} {size} {color} {shape}s"               two green triangles
//	there_are  count     "there are {n} {size} {color} {shape}s"     there are three crosses
//	none       none      "there are no {size} {color} {shape}s"      there are no purple hearts
//	relation   relation  "{np} {rel} {np}"                           a small blue square left of a yellow star
//	something  relation  "something {color} {rel} {np}"              something orange above a star
//
// {size} and {color} are optional in every noun phrase ({np} is "a {size} {color} {shape}"),
// {n} is two, three or four, {rel} is "left of", "right of", "above" or "below", and "a"
// becomes "an" before a vowel ("an orange circle"). A noun phrase without a shape is
// "something {color}".
const (
	TmplA         = "a"
	TmplThereIs   = "there_is"
	TmplCount     = "count"
	TmplThereAre  = "there_are"
	TmplNone      = "none"
	TmplRelation  = "relation"
	TmplSomething = "something"
)

// Templates lists the template names.
func Templates() []string {
	return []string{TmplA, TmplThereIs, TmplCount, TmplThereAre, TmplNone, TmplRelation, TmplSomething}
}

// Span kinds.
const (
	KindRef      = "ref"      // a referring expression (noun phrase) of the LF
	KindColor    = "color"    // a colour word
	KindShape    = "shape"    // a shape word (singular or plural)
	KindSize     = "size"     // small or large
	KindCount    = "count"    // two, three, four, or the "no" of a none caption
	KindRelation = "relation" // left of, right of, above, below
)

// Span is a stretch [Start, End) of a caption's text (byte offsets; the text is ASCII, so they are
// character offsets too). Ref is the referring expression of the LF the span belongs to (see LF),
// −1 for a relation phrase. Objects are the indices of the scene objects that referring expression
// refers to in the caption's scene (Referents): one object when the caption was generated to
// single it out, several or none otherwise; empty for relation phrases.
type Span struct {
	Start   int    `json:"start"`
	End     int    `json:"end"`
	Kind    string `json:"kind"`
	Text    string `json:"text"`
	Ref     int    `json:"ref"`
	Objects []int  `json:"objects"`
}

// Caption is a caption with its logical form and spans.
type Caption struct {
	Text     string `json:"text"`
	Template string `json:"template"`
	LF       LF     `json:"lf"`
	Spans    []Span `json:"spans"`
}

// realizer builds a text and its spans word by word.
type realizer struct {
	b     strings.Builder
	spans []Span
}

func (r *realizer) word(w, kind string, ref int) {
	if r.b.Len() > 0 {
		r.b.WriteByte(' ')
	}
	start := r.b.Len()
	r.b.WriteString(w)
	if kind != "" {
		r.spans = append(r.spans, Span{Start: start, End: r.b.Len(), Kind: kind, Text: w, Ref: ref})
	}
}

// np writes a noun phrase for s: "a small orange star", "small orange stars" (plural, no
// article), or "something orange" when s names no shape. It records the referring span and the
// attribute words' spans.
func (r *realizer) np(s ObjSpec, ref int, article, plural bool) error {
	if s.Shape == "" {
		if plural || s.Color == "" || s.Size != "" {
			return fmt.Errorf("a noun phrase without a shape must be singular with only a colour: %+v", s)
		}
	}
	ri := len(r.spans)
	r.spans = append(r.spans, Span{Kind: KindRef, Ref: ref})
	start := r.b.Len()
	if start > 0 {
		start++ // the space word() writes
	}
	if s.Shape == "" {
		r.word("something", "", ref)
		r.word(s.Color, KindColor, ref)
	} else {
		var words []string
		if s.Size != "" {
			words = append(words, s.Size)
		}
		if s.Color != "" {
			words = append(words, s.Color)
		}
		if article {
			first := s.Shape
			if len(words) > 0 {
				first = words[0]
			}
			if strings.ContainsRune("aeiou", rune(first[0])) {
				r.word("an", "", ref)
			} else {
				r.word("a", "", ref)
			}
		}
		if s.Size != "" {
			r.word(s.Size, KindSize, ref)
		}
		if s.Color != "" {
			r.word(s.Color, KindColor, ref)
		}
		if plural {
			r.word(Plural(s.Shape), KindShape, ref)
		} else {
			r.word(s.Shape, KindShape, ref)
		}
	}
	sp := &r.spans[ri]
	sp.Start, sp.End = start, r.b.Len()
	return nil
}

// quantified writes the plural noun phrase after a count word (the last span written) and
// widens its referring span over the count word: "two green triangles".
func (r *realizer) quantified(s ObjSpec) error {
	q := r.spans[len(r.spans)-1].Start
	ri := len(r.spans)
	if err := r.np(s, 0, false, true); err != nil {
		return err
	}
	r.spans[ri].Start = q
	return nil
}

// Realize writes the text of an LF in a template, with spans (their Objects left nil).
func Realize(lf LF, template string) (string, []Span, error) {
	if err := lf.Validate(); err != nil {
		return "", nil, err
	}
	var r realizer
	wantOp := map[string]string{TmplA: OpExists, TmplThereIs: OpExists, TmplCount: OpCount, TmplThereAre: OpCount,
		TmplNone: OpNone, TmplRelation: OpRelation, TmplSomething: OpRelation}[template]
	if wantOp == "" {
		return "", nil, fmt.Errorf("unknown template %q", template)
	}
	if lf.Op != wantOp {
		return "", nil, fmt.Errorf("template %s needs op %s, not %s", template, wantOp, lf.Op)
	}
	var err error
	switch template {
	case TmplA, TmplThereIs:
		if template == TmplThereIs {
			r.word("there", "", -1)
			r.word("is", "", -1)
		}
		err = r.np(lf.Obj, 0, true, false)
	case TmplCount, TmplThereAre:
		w := CountWord(lf.N)
		if w == "" {
			return "", nil, fmt.Errorf("count %d cannot be said (only %d to %d)", lf.N, MinCount, MaxCount)
		}
		if lf.Obj.Shape == "" {
			return "", nil, fmt.Errorf("a count needs a shape")
		}
		if template == TmplThereAre {
			r.word("there", "", -1)
			r.word("are", "", -1)
		}
		r.word(w, KindCount, 0)
		err = r.quantified(lf.Obj)
	case TmplNone:
		if lf.Obj.Shape == "" {
			return "", nil, fmt.Errorf("a none caption needs a shape")
		}
		r.word("there", "", -1)
		r.word("are", "", -1)
		r.word("no", KindCount, 0)
		err = r.quantified(lf.Obj)
	case TmplRelation, TmplSomething:
		if (template == TmplSomething) != (lf.A.Shape == "") {
			return "", nil, fmt.Errorf("template %s with subject %+v", template, lf.A)
		}
		if lf.B.Shape == "" {
			return "", nil, fmt.Errorf("the object of a relation needs a shape")
		}
		if err = r.np(lf.A, 0, true, false); err != nil {
			break
		}
		r.word(relPhrase[lf.Rel], KindRelation, -1)
		err = r.np(lf.B, 1, true, false)
	}
	if err != nil {
		return "", nil, err
	}
	// In text order, an enclosing span before the spans inside it.
	sortSpans(r.spans)
	text := r.b.String()
	for i := range r.spans {
		r.spans[i].Text = text[r.spans[i].Start:r.spans[i].End]
	}
	return text, r.spans, nil
}

func sortSpans(sp []Span) {
	for i := 1; i < len(sp); i++ {
		for j := i; j > 0 && spanLess(sp[j], sp[j-1]); j-- {
			sp[j], sp[j-1] = sp[j-1], sp[j]
		}
	}
}

func spanLess(a, b Span) bool {
	if a.Start != b.Start {
		return a.Start < b.Start
	}
	return a.End > b.End // the enclosing span first
}

// NewCaption realises an LF in a template and fills each span's Objects with the referents of
// its referring expression in s.
func NewCaption(lf LF, template string, s Scene) (Caption, error) {
	text, spans, err := Realize(lf, template)
	if err != nil {
		return Caption{}, err
	}
	c := Caption{Text: text, Template: template, LF: lf, Spans: spans}
	c.Ground(s)
	return c, nil
}

// Ground sets each span's Objects to its referring expression's referents in s (so a caption can
// be grounded on any scene, not only the one it was made for).
func (c *Caption) Ground(s Scene) {
	refs := Referents(c.LF, s)
	for i := range c.Spans {
		sp := &c.Spans[i]
		if sp.Ref >= 0 && sp.Ref < len(refs) {
			sp.Objects = append([]int{}, refs[sp.Ref]...)
		} else {
			sp.Objects = []int{}
		}
	}
}
