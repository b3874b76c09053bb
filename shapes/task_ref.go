package shapes

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// RefForm is a referring expression's machine-checkable form: an exists LF (the object matching
// Obj) or a relation LF (the object matching A in the relation to an object matching B); the
// referent is the one object of Referents(LF)[0].
type RefForm struct {
	LF LF `json:"lf"`
}

// RefItem is one line of ref.jsonl. A prediction is right when its top region's box has
// IoU ≥ RefIoU with Box.
type RefItem struct {
	ID             int        `json:"id"`
	ImageID        int        `json:"image_id"`
	Image          string     `json:"image"`
	Expression     string     `json:"expression"`
	Object         int        `json:"object"` // the referent's index among the image's objects
	Box            [4]float64 `json:"box"`    // its box, as in annotations.jsonl
	WithRelation   bool       `json:"with_relation"`
	SubjectMatches int        `json:"subject_matches"` // objects the subject's own attributes match
	Template       string     `json:"template"`
	Form           RefForm    `json:"form"`
}

// RefIoU is the least IoU of a predicted box with the referent's box that counts as right.
const RefIoU = 0.5

// RefTarget is the object a referring expression's form singles out; an error when it refers to
// no object or to several.
func RefTarget(f RefForm, s Scene) (int, error) {
	if f.LF.Op != OpExists && f.LF.Op != OpRelation {
		return -1, fmt.Errorf("a referring expression's LF is exists or relation, not %s", f.LF.Op)
	}
	if err := f.LF.Validate(); err != nil {
		return -1, err
	}
	refs := Referents(f.LF, s)[0]
	if len(refs) != 1 {
		return -1, fmt.Errorf("the expression refers to %d objects, not one", len(refs))
	}
	return refs[0], nil
}

// RefPerImage is the number of referring expressions per image.
const RefPerImage = 3

// refItems makes RefPerImage expressions, of different objects where the scene has enough. The
// first has a relation and a subject whose own attributes match several objects ("the circle left
// of the blue square" with two circles, "the object above the red star"): the relation is needed.
// Nearly every scene allows one (98 % of test-1k's), so about a third of a split's expressions
// need a relation. The others name attributes only ("the small circle"), which single the object
// out. A scene that does not allow an expression of one kind gets one of the other.
func refItems(s Scene, rng *rand.Rand) []RefItem {
	var relCands []relCandidate
	for _, c := range relationSubjects(s, allMasks, rng) {
		if c.needed {
			relCands = append(relCands, c)
		}
	}
	wantRel := min(1, len(relCands))
	used := map[int]int{} // expressions per object
	seen := map[string]bool{}
	var out []RefItem
	add := func(lf LF, p phrase, target int) bool {
		if seen[p.text()] {
			return false
		}
		seen[p.text()] = true
		used[target]++
		spec := lf.Obj
		if lf.Op == OpRelation {
			spec = lf.A
		}
		out = append(out, RefItem{Expression: p.text(), Object: target, Box: s.Objects[target].Box,
			WithRelation: lf.Op == OpRelation, SubjectMatches: len(matching(spec, s.Objects)),
			Template: p.template(), Form: RefForm{LF: lf}})
		return true
	}
	// Least used objects first, ties in random order.
	byUse := func(cands []int) []int {
		slices.SortStableFunc(cands, func(a, b int) int { return used[a] - used[b] })
		return cands
	}
	relation := func() bool {
		perm := rng.Perm(len(relCands))
		slices.SortStableFunc(perm, func(a, b int) int { return used[relCands[a].a] - used[relCands[b].a] })
		for _, i := range perm {
			c := relCands[i]
			var p phrase
			relationNP(&p, c.lf)
			if add(c.lf, p, c.a) {
				return true
			}
		}
		return false
	}
	attributes := func() bool {
		for _, i := range byUse(rng.Perm(len(s.Objects))) {
			specs := uniqueSpecs(s, i, masksWith(mShape, 0))
			rng.Shuffle(len(specs), func(a, b int) { specs[a], specs[b] = specs[b], specs[a] })
			for _, spec := range specs {
				var p phrase
				p.np(spec, "the", "", false, 0)
				if add(LF{Op: OpExists, Obj: spec}, p, i) {
					return true
				}
			}
		}
		return false
	}
	for k := range RefPerImage {
		if k < wantRel {
			if relation() || attributes() {
				continue
			}
		} else if attributes() || relation() {
			continue
		}
		break
	}
	return slices.DeleteFunc(out, func(it RefItem) bool { // cannot happen: the candidates were checked
		t, err := RefTarget(it.Form, s)
		return err != nil || t != it.Object
	})
}
