package shapes

import (
	"fmt"
	"slices"
)

// RelationMargin is the margin of the spatial relations, as a fraction of the image side:
// a is left of b iff centre(a).x < centre(b).x − RelationMargin·width (above: y and height).
const RelationMargin = 0.05

// ObjSpec is a referring expression: the attributes an object must have. An empty field matches
// any value, so {Color: "orange"} is "something orange" and {} is anything.
type ObjSpec struct {
	Shape string `json:"shape,omitempty"`
	Color string `json:"color,omitempty"`
	Size  string `json:"size,omitempty"`
}

// Matches reports whether o has every attribute the spec names.
func (s ObjSpec) Matches(o Object) bool {
	return (s.Shape == "" || s.Shape == o.Shape) && (s.Color == "" || s.Color == o.Color) &&
		(s.Size == "" || s.Size == o.Size)
}

// Validate checks that every named attribute is a known value.
func (s ObjSpec) Validate() error {
	if s.Shape != "" && !isShape(s.Shape) {
		return fmt.Errorf("unknown shape %q", s.Shape)
	}
	if s.Color != "" && !isColor(s.Color) {
		return fmt.Errorf("unknown colour %q", s.Color)
	}
	if s.Size != "" && !isSize(s.Size) {
		return fmt.Errorf("unknown size %q", s.Size)
	}
	return nil
}

// The LF operators.
const (
	OpExists   = "exists"   // some object matches Obj
	OpCount    = "count"    // exactly N objects match Obj
	OpNone     = "none"     // no object matches Obj
	OpRelation = "relation" // some object matching A stands in Rel to some other object matching B
)

// LF is the logical form of a caption. It is JSON-serialisable and evaluable on any scene:
//
//	{"op":"exists","obj":{"shape":"square","color":"blue","size":"small"}}
//	{"op":"count","n":2,"obj":{"shape":"triangle","color":"green"}}
//	{"op":"none","obj":{"shape":"star","color":"red"}}
//	{"op":"relation","rel":"left_of","a":{"shape":"square"},"b":{"shape":"star","color":"yellow"}}
//
// Its referring expressions are numbered: Obj is 0 for exists, count and none; A is 0 and B is 1
// for relation. Span.Ref and Referents use these numbers.
type LF struct {
	Op  string  `json:"op"`
	N   int     `json:"n,omitzero"`
	Obj ObjSpec `json:"obj,omitzero"`
	Rel string  `json:"rel,omitempty"`
	A   ObjSpec `json:"a,omitzero"`
	B   ObjSpec `json:"b,omitzero"`
}

// Validate checks the operator, the relation, the count and the attribute values.
func (lf LF) Validate() error {
	switch lf.Op {
	case OpExists, OpNone:
		return lf.Obj.Validate()
	case OpCount:
		if lf.N < 0 {
			return fmt.Errorf("negative count %d", lf.N)
		}
		return lf.Obj.Validate()
	case OpRelation:
		if _, ok := relPhrase[lf.Rel]; !ok {
			return fmt.Errorf("unknown relation %q", lf.Rel)
		}
		if err := lf.A.Validate(); err != nil {
			return err
		}
		return lf.B.Validate()
	}
	return fmt.Errorf("unknown op %q", lf.Op)
}

// Refs is the number of referring expressions of the LF: 2 for a relation, else 1.
func (lf LF) Refs() int {
	if lf.Op == OpRelation {
		return 2
	}
	return 1
}

// Holds reports whether a stands in relation rel to b in a w×h image, comparing box centres
// with the margin RelationMargin·w (left/right) or RelationMargin·h (above/below).
func Holds(rel string, a, b Object, w, h int) bool {
	ax, ay := a.center()
	bx, by := b.center()
	mx, my := RelationMargin*float64(w), RelationMargin*float64(h)
	switch rel {
	case RelLeftOf:
		return ax < bx-mx
	case RelRightOf:
		return ax > bx+mx
	case RelAbove:
		return ay < by-my
	case RelBelow:
		return ay > by+my
	}
	return false
}

// matching lists the indices of the objects that match s.
func matching(s ObjSpec, objs []Object) []int {
	out := []int{}
	for i, o := range objs {
		if s.Matches(o) {
			out = append(out, i)
		}
	}
	return out
}

// Referents lists, for each referring expression of the LF (see LF), the indices of the objects
// of the scene it can refer to. For exists and count these are the objects matching Obj (for none
// too, so a true none caption has an empty list); for a relation, the objects matching A that
// stand in the relation to some other object matching B, and the objects matching B that some
// other object matching A stands in the relation to. An invalid LF refers to nothing. The lists
// are never nil.
func Referents(lf LF, s Scene) [][]int {
	refs := make([][]int, lf.Refs())
	for i := range refs {
		refs[i] = []int{}
	}
	if lf.Validate() != nil {
		return refs
	}
	if lf.Op != OpRelation {
		refs[0] = matching(lf.Obj, s.Objects)
		return refs
	}
	as, bs := matching(lf.A, s.Objects), matching(lf.B, s.Objects)
	for _, a := range as {
		for _, b := range bs {
			if a != b && Holds(lf.Rel, s.Objects[a], s.Objects[b], s.Width, s.Height) {
				if !slices.Contains(refs[0], a) {
					refs[0] = append(refs[0], a)
				}
				if !slices.Contains(refs[1], b) {
					refs[1] = append(refs[1], b)
				}
			}
		}
	}
	slices.Sort(refs[1])
	return refs
}

// Eval is the truth of the LF on a scene (any scene: only the objects' boxes and attributes and
// the image size are used). An invalid LF is false.
func Eval(lf LF, s Scene) bool {
	if lf.Validate() != nil {
		return false
	}
	switch lf.Op {
	case OpExists:
		return len(matching(lf.Obj, s.Objects)) > 0
	case OpCount:
		return len(matching(lf.Obj, s.Objects)) == lf.N
	case OpNone:
		return len(matching(lf.Obj, s.Objects)) == 0
	default: // OpRelation
		return len(Referents(lf, s)[0]) > 0
	}
}

// NearMiss reports whether the LF is false on s although s nearly holds it: what the LF says
// about its objects fails while the objects are there (a count LF whose objects are present in
// another number; a relation LF whose two objects are present in another arrangement), or the LF
// holds once one attribute of one referring expression is dropped (a small red circle where "a
// small blue circle" was said), an expression keeping at least one attribute. These are the images
// a caption is hardest to tell from: they differ from it by about one minimal edit. A none LF
// (false exactly when its object is present) and an invalid LF have no near misses.
func NearMiss(lf LF, s Scene) bool {
	if lf.Op == OpNone || lf.Validate() != nil || Eval(lf, s) {
		return false
	}
	switch lf.Op {
	case OpCount:
		if len(matching(lf.Obj, s.Objects)) > 0 {
			return true
		}
	case OpRelation:
		as, bs := matching(lf.A, s.Objects), matching(lf.B, s.Objects)
		for _, a := range as {
			for _, b := range bs {
				if a != b {
					return true
				}
			}
		}
	}
	for _, r := range relaxations(lf) {
		if Eval(r, s) {
			return true
		}
	}
	return false
}

// specs are the LF's referring expressions, in Refs order, as pointers into lf.
func (lf *LF) specs() []*ObjSpec {
	if lf.Op == OpRelation {
		return []*ObjSpec{&lf.A, &lf.B}
	}
	return []*ObjSpec{&lf.Obj}
}

// fields are the spec's attributes (shape, colour, size), as pointers into s.
func (s *ObjSpec) fields() []*string { return []*string{&s.Shape, &s.Color, &s.Size} }

// named is the number of attributes the spec names.
func (s ObjSpec) named() int {
	n := 0
	for _, v := range s.fields() {
		if *v != "" {
			n++
		}
	}
	return n
}

// relaxations are the LF with one attribute of one referring expression dropped, for each
// expression that names more than one attribute.
func relaxations(lf LF) []LF {
	var out []LF
	for i, spec := range lf.specs() {
		if spec.named() < 2 {
			continue
		}
		for j, v := range spec.fields() {
			if *v == "" {
				continue
			}
			r := lf
			*r.specs()[i].fields()[j] = ""
			out = append(out, r)
		}
	}
	return out
}
