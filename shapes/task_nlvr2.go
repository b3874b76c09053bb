package shapes

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Shapes-NLVR2 statement types.
const (
	NLVR2Left  = "left_image"  // in the left image there is a red circle left of a star
	NLVR2Right = "right_image" // in the right image there are two green triangles
	NLVR2Both  = "both"        // in both images there is a red star
	NLVR2More  = "more"        // the left image has more circles than the right image
	NLVR2Same  = "same"        // both images have the same number of red objects
)

// NLVR2Types lists the statement types in their fixed order.
func NLVR2Types() []string { return []string{NLVR2Left, NLVR2Right, NLVR2Both, NLVR2More, NLVR2Same} }

// NLVR2 form operators.
const (
	NLVR2OpImage = "image" // LF holds on Image (left or right)
	NLVR2OpBoth  = "both"  // LF holds on both images
	NLVR2OpMore  = "more"  // Image has more objects matching Obj than the other image
	NLVR2OpSame  = "same"  // both images have as many objects matching Obj
)

// The two images of a pair.
const (
	ImageLeft  = "left"
	ImageRight = "right"
)

// NLVR2Form is a statement's machine-checkable form (see NLVR2Truth).
type NLVR2Form struct {
	Op    string   `json:"op"`
	Image string   `json:"image,omitempty"` // image: the image the LF is about; more: the one said to have more
	LF    *LF      `json:"lf,omitempty"`    // image, both
	Obj   *ObjSpec `json:"obj,omitempty"`   // more, same
}

// NLVR2Item is one line of nlvr2.jsonl: a statement about an ordered pair of images of the split.
type NLVR2Item struct {
	ID        int       `json:"id"`
	Left      string    `json:"left"` // image files, relative to the split folder
	Right     string    `json:"right"`
	LeftID    int       `json:"left_id"`
	RightID   int       `json:"right_id"`
	Type      string    `json:"type"` // an NLVR2… type
	Statement string    `json:"statement"`
	Label     bool      `json:"label"`
	Template  string    `json:"template"`
	Form      NLVR2Form `json:"form"`
}

// NLVR2Partner is the right image of the statements whose left image is index, in a split of count
// images: the other image of its pair (0–1, 2–3, …; the last image of an odd count pairs with the
// one before). −1 when count < 2.
func NLVR2Partner(index, count int) int {
	switch {
	case count < 2:
		return -1
	case index^1 < count:
		return index ^ 1
	}
	return index - 1
}

// NLVR2Truth computes a statement form's truth on its pair of scenes.
func NLVR2Truth(f NLVR2Form, left, right Scene) (bool, error) {
	pickImage := func() (Scene, Scene, error) {
		switch f.Image {
		case ImageLeft:
			return left, right, nil
		case ImageRight:
			return right, left, nil
		}
		return Scene{}, Scene{}, fmt.Errorf("%s statement: image %q", f.Op, f.Image)
	}
	switch f.Op {
	case NLVR2OpImage, NLVR2OpBoth:
		if f.LF == nil {
			return false, fmt.Errorf("%s statement without an LF", f.Op)
		}
		if err := f.LF.Validate(); err != nil {
			return false, err
		}
		if f.Op == NLVR2OpBoth {
			return Eval(*f.LF, left) && Eval(*f.LF, right), nil
		}
		s, _, err := pickImage()
		return err == nil && Eval(*f.LF, s), err
	case NLVR2OpMore, NLVR2OpSame:
		if f.Obj == nil {
			return false, fmt.Errorf("%s statement without an object", f.Op)
		}
		if err := f.Obj.Validate(); err != nil {
			return false, err
		}
		if f.Op == NLVR2OpSame {
			return len(matching(*f.Obj, left.Objects)) == len(matching(*f.Obj, right.Objects)), nil
		}
		s, other, err := pickImage()
		return err == nil && len(matching(*f.Obj, s.Objects)) > len(matching(*f.Obj, other.Objects)), err
	}
	return false, fmt.Errorf("unknown statement op %q", f.Op)
}

// NLVR2PerImage is the number of statements whose left image is a given image: one true and one
// false where the pair allows.
const NLVR2PerImage = 2

// nlvr2Items makes the statements about the pair (left, right) whose left image has the given
// index: NLVR2PerImage of them, of types taking turns through NLVR2Types over the split (so types
// are balanced), one true and one false in a random order. A type that cannot have the truth
// wanted on this pair gives way to the next one.
func nlvr2Items(index int, left, right Scene, rng *rand.Rand) []NLVR2Item {
	first := rng.IntN(2) == 0
	types := NLVR2Types()
	var out []NLVR2Item
	seen := map[string]bool{}
	for k := range NLVR2PerImage {
		want := first == (k%2 == 0)
		for t := range types {
			typ := types[(index*NLVR2PerImage+k+t)%len(types)]
			form, p, ok := nlvr2Statement(typ, want, left, right, rng)
			if !ok || seen[p.text()] {
				continue
			}
			truth, err := NLVR2Truth(form, left, right)
			if err != nil || truth != want {
				continue
			}
			seen[p.text()] = true
			out = append(out, NLVR2Item{Type: typ, Statement: p.text(), Label: truth, Template: p.template(), Form: form})
			break
		}
	}
	return out
}

// nlvr2Statement draws a statement of a type meant to have the truth want.
func nlvr2Statement(typ string, want bool, left, right Scene, rng *rand.Rand) (NLVR2Form, phrase, bool) {
	switch typ {
	case NLVR2Left, NLVR2Right:
		img, s, other := ImageLeft, left, right
		if typ == NLVR2Right {
			img, s, other = ImageRight, right, left
		}
		lf, ok := imageLF(s, other, want, rng)
		if !ok {
			return NLVR2Form{}, nil, false
		}
		p, err := sentence(lf)
		if err != nil {
			return NLVR2Form{}, nil, false
		}
		p = append(phrase{{word: "in", ref: -1}, {word: "the", ref: -1}, {word: img, ref: -1}, {word: "image", ref: -1}}, p...)
		return NLVR2Form{Op: NLVR2OpImage, Image: img, LF: &lf}, p, true
	case NLVR2Both:
		spec, ok := bothSpec(left, right, want, rng)
		if !ok {
			return NLVR2Form{}, nil, false
		}
		lf := LF{Op: OpExists, Obj: spec}
		p, err := sentence(lf)
		if err != nil {
			return NLVR2Form{}, nil, false
		}
		p = append(phrase{{word: "in", ref: -1}, {word: "both", ref: -1}, {word: "images", ref: -1}}, p...)
		return NLVR2Form{Op: NLVR2OpBoth, LF: &lf}, p, true
	case NLVR2More, NLVR2Same:
		return compareStatement(typ, want, left, right, rng)
	}
	return NLVR2Form{}, nil, false
}

// imageLF is a caption LF about image s with truth want there. Half the time it is one whose
// truth differs on the other image (a true caption of s false on other, or a true caption of other
// false on s), so that the statement hangs on which image it names; otherwise a true caption of s
// or a minimal false edit of one.
func imageLF(s, other Scene, want bool, rng *rand.Rand) (LF, bool) {
	clearOnes := func(cs []Caption) []Caption {
		return slices.DeleteFunc(cs, func(c Caption) bool { return !clearRelation(c.LF, s) || !clearRelation(c.LF, other) })
	}
	own := clearOnes(TrueCaptions(s, CaptionsPerImage, rng))
	if rng.IntN(2) == 0 {
		src := own
		if !want {
			src = clearOnes(TrueCaptions(other, CaptionsPerImage, rng))
		}
		var cands []LF
		for _, c := range src {
			if Eval(c.LF, s) == want && Eval(c.LF, other) != want {
				cands = append(cands, c.LF)
			}
		}
		if len(cands) > 0 {
			return choose(rng, cands), true
		}
	}
	if len(own) == 0 {
		return LF{}, false
	}
	c := choose(rng, own)
	if want {
		return c.LF, true
	}
	for range 8 {
		if f, _, err := FalseCaption(s, c, rng); err == nil && clearRelation(f.LF, s) && clearRelation(f.LF, other) {
			return f.LF, true
		}
	}
	return LF{}, false
}

// bothSpec describes an object of one image (by a description with a shape, or by its colour
// alone) that the other image has too (want) or does not have (not want): "in both images there is
// a red star". The kind of description is drawn as balancedPick does.
func bothSpec(left, right Scene, want bool, rng *rand.Rand) (ObjSpec, bool) {
	type cand struct {
		spec ObjSpec
		both bool
	}
	var cands []cand
	seen := map[ObjSpec]bool{}
	for k, s := range []Scene{left, right} {
		other := []Scene{right, left}[k]
		for _, o := range s.Objects {
			for _, m := range append(masksWith(mShape, 0), mColor) {
				if spec := specOf(o, m); !seen[spec] {
					seen[spec] = true
					cands = append(cands, cand{spec, len(matching(spec, other.Objects)) > 0})
				}
			}
		}
	}
	c, ok := balancedPick(rng, cands, func(c cand) ObjSpec { return c.spec }, func(c cand) bool { return c.both }, want)
	return c.spec, ok
}

// compareStatement compares the numbers of objects of a description in the two images, a
// description of an object of either image (or all objects): "the left image has more red circles
// than the right image", "both images have the same number of objects". The kind of description is
// drawn as balancedPick does. A true "same" has the objects in both images; a false "more" is one
// where the other image has more (two times in three, where the description allows) or the numbers
// are equal.
func compareStatement(typ string, want bool, left, right Scene, rng *rand.Rand) (NLVR2Form, phrase, bool) {
	type cand struct {
		spec        ObjSpec
		left, right int
	}
	var cands []cand
	seen := map[ObjSpec]bool{}
	for _, s := range []Scene{left, right} {
		for _, o := range s.Objects {
			for _, m := range allMasks {
				spec := specOf(o, m)
				if !seen[spec] {
					seen[spec] = true
					cands = append(cands, cand{spec, len(matching(spec, left.Objects)), len(matching(spec, right.Objects))})
				}
			}
		}
	}
	spec := func(c cand) ObjSpec { return c.spec }
	var p phrase
	if typ == NLVR2Same {
		c, ok := balancedPick(rng, cands, spec, func(c cand) bool { return c.left == c.right && c.left > 0 }, want)
		if !ok {
			return NLVR2Form{}, nil, false
		}
		p.fixed("both", "images", "have", "the", "same", "number", "of")
		p.np(c.spec, "", "", true, 0)
		return NLVR2Form{Op: NLVR2OpSame, Obj: &c.spec}, p, true
	}
	img, other := ImageLeft, ImageRight
	if rng.IntN(2) == 0 {
		img, other = ImageRight, ImageLeft
	}
	more := func(c cand) int { // how many more the named image has
		if img == ImageLeft {
			return c.left - c.right
		}
		return c.right - c.left
	}
	pool := cands
	if !want { // the other image has more, or as many
		equal := rng.IntN(3) == 0
		pool = slices.DeleteFunc(slices.Clone(cands), func(c cand) bool { return (more(c) == 0) != equal && more(c) <= 0 })
	}
	c, ok := balancedPick(rng, pool, spec, func(c cand) bool { return more(c) > 0 }, want)
	if !ok && !want {
		c, ok = balancedPick(rng, cands, spec, func(c cand) bool { return more(c) > 0 }, want)
	}
	if !ok {
		return NLVR2Form{}, nil, false
	}
	p.fixed("the", img, "image", "has", "more")
	p.np(c.spec, "", "", true, 0)
	p.fixed("than", "the", other, "image")
	return NLVR2Form{Op: NLVR2OpMore, Image: img, Obj: &c.spec}, p, true
}
