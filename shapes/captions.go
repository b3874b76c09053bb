package shapes

import (
	"errors"
	"math/rand/v2"
	"slices"
)

// CaptionsPerImage is the number of true captions (and of false ones) written per image.
const CaptionsPerImage = 5

// attrMask picks which of an object's attributes a noun phrase names.
type attrMask uint8

const (
	mShape attrMask = 1 << iota
	mColor
	mSize
)

// descWeights is how often each kind of noun phrase is tried first: colour and shape most often
// (colour words matter to the masked-colour probe), shape alone, with size, or all three.
var descWeights = []weighted[attrMask]{{mShape | mColor, 4}, {mShape | mColor | mSize, 2}, {mShape, 2}, {mShape | mSize, 1}}

// templateWeights is how often each template is drawn for a true caption.
var templateWeights = []weighted[string]{{TmplA, 2}, {TmplThereIs, 1}, {TmplCount, 1.5}, {TmplThereAre, 0.75},
	{TmplRelation, 3}, {TmplSomething, 1.25}, {TmplNone, 0.5}}

type weighted[T any] struct {
	v T
	w float64
}

// pick draws one value by weight.
func pick[T any](rng *rand.Rand, ws []weighted[T]) T {
	var total float64
	for _, w := range ws {
		total += w.w
	}
	x := rng.Float64() * total
	for _, w := range ws {
		if x < w.w {
			return w.v
		}
		x -= w.w
	}
	return ws[len(ws)-1].v
}

// order draws all values without replacement, by weight.
func order[T any](rng *rand.Rand, ws []weighted[T]) []T {
	rest := slices.Clone(ws)
	out := make([]T, 0, len(ws))
	for len(rest) > 0 {
		v := pick(rng, rest)
		out = append(out, v)
		rest = slices.DeleteFunc(rest, func(w weighted[T]) bool { return any(w.v) == any(v) })
	}
	return out
}

func specOf(o Object, m attrMask) ObjSpec {
	var s ObjSpec
	if m&mShape != 0 {
		s.Shape = o.Shape
	}
	if m&mColor != 0 {
		s.Color = o.Color
	}
	if m&mSize != 0 {
		s.Size = o.Size
	}
	return s
}

// TrueCaptions draws n distinct captions that are true on s. Each names objects of the scene and
// singles out the objects its noun phrases refer to where the scene allows (a referring span
// with one object); captions are drawn so that together they mention every object where n allows.
// Fewer than n come back only for degenerate scenes (no objects).
func TrueCaptions(s Scene, n int, rng *rand.Rand) []Caption {
	var out []Caption
	if len(s.Objects) == 0 {
		return out
	}
	covered := make([]bool, len(s.Objects))
	seen := map[string]bool{}
	for attempt := 0; len(out) < n && attempt < 100*n; attempt++ {
		var uncovered []int
		for i, c := range covered {
			if !c {
				uncovered = append(uncovered, i)
			}
		}
		tmpl := pick(rng, templateWeights)
		if len(uncovered) > n-len(out) && len(s.Objects) > 1 {
			tmpl = TmplRelation // two objects per caption, or some stay unmentioned
		}
		target := rng.IntN(len(s.Objects))
		if len(uncovered) > 0 {
			target = uncovered[rng.IntN(len(uncovered))]
		}
		var lf LF
		var ok bool
		switch tmpl {
		case TmplA, TmplThereIs:
			lf, ok = existsLF(s, target, rng), true
		case TmplCount, TmplThereAre:
			lf, ok = countLF(s, target, rng)
		case TmplNone:
			lf, ok = noneLF(s, rng)
		case TmplRelation, TmplSomething:
			lf, ok = relationLF(s, target, covered, tmpl == TmplSomething, rng)
		}
		if !ok {
			continue
		}
		c, err := NewCaption(lf, tmpl, s)
		if err != nil || seen[c.Text] || !Eval(lf, s) {
			continue
		}
		seen[c.Text] = true
		out = append(out, c)
		for _, sp := range c.Spans {
			if sp.Kind == KindRef {
				for _, i := range sp.Objects {
					covered[i] = true
				}
			}
		}
	}
	return out
}

// existsLF describes object t, by the first kind of noun phrase (in a random order) that picks it
// out alone, else by all its attributes.
func existsLF(s Scene, t int, rng *rand.Rand) LF {
	for _, m := range order(rng, descWeights) {
		spec := specOf(s.Objects[t], m)
		if len(matching(spec, s.Objects)) == 1 {
			return LF{Op: OpExists, Obj: spec}
		}
	}
	return LF{Op: OpExists, Obj: specOf(s.Objects[t], mShape|mColor|mSize)}
}

// countLF counts a group of two to four objects that t belongs to.
func countLF(s Scene, t int, rng *rand.Rand) (LF, bool) {
	for _, m := range order(rng, descWeights) {
		spec := specOf(s.Objects[t], m)
		if n := len(matching(spec, s.Objects)); n >= MinCount && n <= MaxCount {
			return LF{Op: OpCount, N: n, Obj: spec}, true
		}
	}
	return LF{}, false
}

// noneLF names a kind of object the scene does not have, mostly a shape it has in another colour
// (or size).
func noneLF(s Scene, rng *rand.Rand) (LF, bool) {
	o := s.Objects[rng.IntN(len(s.Objects))]
	shape := o.Shape
	if rng.Float64() < 0.3 {
		shape = shapeNames[rng.IntN(len(shapeNames))]
	}
	if rng.Float64() < 0.25 && shape == o.Shape {
		other := SizeSmall
		if o.Size == SizeSmall {
			other = SizeLarge
		}
		spec := ObjSpec{Shape: shape, Color: o.Color, Size: other}
		if len(matching(spec, s.Objects)) == 0 {
			return LF{Op: OpNone, Obj: spec}, true
		}
	}
	for _, i := range rng.Perm(len(colorNames)) {
		spec := ObjSpec{Shape: shape, Color: colorNames[i]}
		if len(matching(spec, s.Objects)) == 0 {
			return LF{Op: OpNone, Obj: spec}, true
		}
	}
	return LF{}, false
}

// relationLF relates t to another object (preferably one not yet mentioned), with noun phrases
// that single out both where the scene allows. With something, the subject is "something {color}"
// and only unique referents are accepted; otherwise, failing that, the least ambiguous
// description found is used.
func relationLF(s Scene, t int, covered []bool, something bool, rng *rand.Rand) (LF, bool) {
	var others []int
	for _, i := range rng.Perm(len(s.Objects)) {
		if i != t {
			others = append(others, i)
		}
	}
	slices.SortStableFunc(others, func(a, b int) int { return boolInt(covered[a]) - boolInt(covered[b]) })
	var best LF
	bestScore := -1
	for _, p := range others {
		a, b := t, p
		if rng.IntN(2) == 0 {
			a, b = p, t
		}
		for _, ri := range rng.Perm(len(relNames)) {
			rel := relNames[ri]
			if !Holds(rel, s.Objects[a], s.Objects[b], s.Width, s.Height) {
				continue
			}
			aMasks := []attrMask{mColor}
			if !something {
				aMasks = order(rng, descWeights)
			}
			for _, ma := range aMasks {
				for _, mb := range order(rng, descWeights) {
					lf := LF{Op: OpRelation, Rel: rel, A: specOf(s.Objects[a], ma), B: specOf(s.Objects[b], mb)}
					refs := Referents(lf, s)
					if slices.Equal(refs[0], []int{a}) && slices.Equal(refs[1], []int{b}) {
						return lf, true
					}
					// refs always hold a and b; fewer extra referents is better.
					if score := len(refs[0]) + len(refs[1]); !something && (bestScore < 0 || score < bestScore) {
						best, bestScore = lf, score
					}
				}
			}
		}
	}
	return best, bestScore >= 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Edits that turn a true caption false.
const (
	EditColor    = "color"    // another colour (or one added)
	EditShape    = "shape"    // another shape
	EditSize     = "size"     // the other size (or one added)
	EditCount    = "count"    // another count
	EditRelation = "relation" // the converse relation: left of ↔ right of, above ↔ below
	EditRandom   = "random"   // no minimal edit was false: a random caption that is
)

// Negative is a caption that is false on its image: a minimal edit of one of its true captions.
type Negative struct {
	Caption
	Edit   string `json:"edit"`   // the Edit… constant that made it
	Source int    `json:"source"` // the index of the true caption it was made from, −1 for EditRandom
}

// ErrNoFalse is returned when no false caption was found (a scene that makes every caption true
// does not exist, so this means a bug or an empty vocabulary).
var ErrNoFalse = errors.New("shapes: no false caption found")

// FalseCaption makes a caption that is false on s by one minimal edit of c (usually a caption
// true on s): a colour, shape, size, count or relation changed, in c's template. Every candidate
// is checked with Eval. It returns the caption and the Edit… constant used.
func FalseCaption(s Scene, c Caption, rng *rand.Rand) (Caption, string, error) {
	var edits []weighted[string]
	switch c.LF.Op {
	case OpCount:
		edits = append(edits, weighted[string]{EditCount, 3})
	case OpRelation:
		edits = append(edits, weighted[string]{EditRelation, 3})
	}
	edits = append(edits, weighted[string]{EditColor, 3}, weighted[string]{EditShape, 2}, weighted[string]{EditSize, 1})
	for range 64 {
		kind := pick(rng, edits)
		lf, ok := editLF(c.LF, kind, rng)
		if !ok || Eval(lf, s) {
			continue
		}
		out, err := NewCaption(lf, c.Template, s)
		if err != nil {
			continue
		}
		return out, kind, nil
	}
	return Caption{}, "", ErrNoFalse
}

// editLF applies one edit of a kind to a random referring expression of the LF.
func editLF(lf LF, kind string, rng *rand.Rand) (LF, bool) {
	specs := lf.specs()
	sp := specs[rng.IntN(len(specs))]
	switch kind {
	case EditCount:
		if lf.Op != OpCount {
			return lf, false
		}
		lf.N = otherThan(rng, []int{2, 3, 4}, lf.N)
	case EditRelation:
		if lf.Op != OpRelation {
			return lf, false
		}
		lf.Rel = relInverse[lf.Rel]
	case EditColor:
		sp.Color = otherThan(rng, colorNames, sp.Color)
	case EditShape:
		if sp.Shape == "" {
			return lf, false
		}
		sp.Shape = otherThan(rng, shapeNames, sp.Shape)
	case EditSize:
		if sp.Shape == "" {
			return lf, false
		}
		sp.Size = otherThan(rng, sizeNames, sp.Size)
	default:
		return lf, false
	}
	return lf, true
}

// otherThan draws a value of vs different from v.
func otherThan[T comparable](rng *rand.Rand, vs []T, v T) T {
	for {
		if w := vs[rng.IntN(len(vs))]; w != v {
			return w
		}
	}
}

// RandomFalseCaption draws captions from the whole grammar (random attributes, not the scene's)
// until one is false on s.
func RandomFalseCaption(s Scene, rng *rand.Rand) (Caption, error) {
	randSpec := func() ObjSpec {
		sp := ObjSpec{Shape: shapeNames[rng.IntN(len(shapeNames))]}
		if rng.IntN(3) > 0 {
			sp.Color = colorNames[rng.IntN(len(colorNames))]
		}
		if rng.IntN(3) == 0 {
			sp.Size = sizeNames[rng.IntN(len(sizeNames))]
		}
		return sp
	}
	for range 1000 {
		var lf LF
		tmpl := pick(rng, templateWeights)
		switch tmpl {
		case TmplA, TmplThereIs:
			lf = LF{Op: OpExists, Obj: randSpec()}
		case TmplCount, TmplThereAre:
			lf = LF{Op: OpCount, N: MinCount + rng.IntN(MaxCount-MinCount+1), Obj: randSpec()}
		case TmplNone:
			lf = LF{Op: OpNone, Obj: randSpec()}
		case TmplRelation:
			lf = LF{Op: OpRelation, Rel: relNames[rng.IntN(len(relNames))], A: randSpec(), B: randSpec()}
		case TmplSomething:
			lf = LF{Op: OpRelation, Rel: relNames[rng.IntN(len(relNames))],
				A: ObjSpec{Color: colorNames[rng.IntN(len(colorNames))]}, B: randSpec()}
		}
		if Eval(lf, s) {
			continue
		}
		if c, err := NewCaption(lf, tmpl, s); err == nil {
			return c, nil
		}
	}
	return Caption{}, ErrNoFalse
}

// FalseCaptions makes one false caption from each true caption of a scene (FalseCaption, or
// RandomFalseCaption where no edit gives a false one), avoiding repeats.
func FalseCaptions(s Scene, trues []Caption, rng *rand.Rand) ([]Negative, error) {
	out := make([]Negative, 0, len(trues))
	seen := map[string]bool{}
	for _, t := range trues {
		seen[t.Text] = true
	}
	for i, t := range trues {
		var neg Negative
		found := false
		for range 8 {
			c, kind, err := FalseCaption(s, t, rng)
			if err == nil && !seen[c.Text] {
				neg, found = Negative{Caption: c, Edit: kind, Source: i}, true
				break
			}
		}
		for tries := 0; !found && tries < 8; tries++ {
			c, err := RandomFalseCaption(s, rng)
			if err != nil {
				return nil, err
			}
			if !seen[c.Text] {
				neg, found = Negative{Caption: c, Edit: EditRandom, Source: -1}, true
			}
		}
		if !found {
			return nil, ErrNoFalse
		}
		seen[neg.Text] = true
		out = append(out, neg)
	}
	return out, nil
}
