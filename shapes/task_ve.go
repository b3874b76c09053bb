package shapes

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// Shapes-VE labels (the official SNLI-VE classes).
const (
	LabelEntailment    = "entailment"
	LabelContradiction = "contradiction"
	LabelNeutral       = "neutral"
)

// VELabels lists the labels in the official order (contradiction, entailment, neutral).
func VELabels() []string { return []string{LabelContradiction, LabelEntailment, LabelNeutral} }

// Rules that decide a Shapes-VE label (VEItem.Rule).
const (
	RuleHolds            = "holds"              // no material named; the LF holds: entailment
	RuleFails            = "fails"              // no material named; the LF is false: contradiction
	RuleHoldsAnyMaterial = "holds_any_material" // true whatever the objects are made of: entailment
	RuleFailsAnyMaterial = "fails_any_material" // false whatever they are made of: contradiction
	RuleMaterialDecides  = "material_decides"   // true for some materials, false for others: neutral
)

// VEForm is a hypothesis's machine-checkable form: a caption LF whose referring expressions may
// also name a material, which Shapes World does not render. Materials[i] is the material of the
// LF's referring expression i (see LF), "" for none.
type VEForm struct {
	LF        LF       `json:"lf"`
	Materials []string `json:"materials,omitempty"`
}

// VEItem is one line of ve.jsonl.
type VEItem struct {
	ID         int    `json:"id"`
	ImageID    int    `json:"image_id"`
	Image      string `json:"image"`
	Hypothesis string `json:"hypothesis"`
	Label      string `json:"label"` // entailment, contradiction or neutral
	Rule       string `json:"rule"`  // the Rule… that decided it
	Template   string `json:"template"`
	Form       VEForm `json:"form"`
}

// truth3 is a three-valued truth: false, unknown (the image leaves it open), true.
type truth3 int

const (
	t3False truth3 = iota
	t3Unknown
	t3True
)

// VELabel decides a hypothesis on a scene. Objects have a material the image does not show, so a
// hypothesis is entailed if it holds whatever the material of each object, contradicted if it
// holds for none, and neutral otherwise. For these LFs (an object matches a description or not;
// a named material leaves a matching object unknown) that is the strong Kleene evaluation of the
// LF's semantics (Eval), which VELabel computes; the rule names the case.
func VELabel(f VEForm, s Scene) (label, rule string, err error) {
	if err := f.LF.Validate(); err != nil {
		return "", "", err
	}
	if len(f.Materials) > f.LF.Refs() {
		return "", "", fmt.Errorf("%d materials for %d referring expressions", len(f.Materials), f.LF.Refs())
	}
	mat := func(ref int) string {
		if ref < len(f.Materials) {
			return f.Materials[ref]
		}
		return ""
	}
	for _, m := range f.Materials {
		if m != "" && !slices.Contains(materialNames, m) {
			return "", "", fmt.Errorf("unknown material %q", m)
		}
	}
	match := func(spec ObjSpec, ref int, o Object) truth3 {
		switch {
		case !spec.Matches(o):
			return t3False
		case mat(ref) != "":
			return t3Unknown
		}
		return t3True
	}
	exists := func(spec ObjSpec) (certain, possible int) {
		for _, o := range s.Objects {
			switch match(spec, 0, o) {
			case t3True:
				certain++
				possible++
			case t3Unknown:
				possible++
			}
		}
		return certain, possible
	}
	var v truth3
	switch f.LF.Op {
	case OpExists, OpNone:
		certain, possible := exists(f.LF.Obj)
		v = t3Unknown
		if certain > 0 {
			v = t3True
		} else if possible == 0 {
			v = t3False
		}
		if f.LF.Op == OpNone {
			v = t3True - v
		}
	case OpCount:
		certain, possible := exists(f.LF.Obj)
		switch n := f.LF.N; {
		case certain == n && possible == n:
			v = t3True
		case n < certain || n > possible:
			v = t3False
		default:
			v = t3Unknown
		}
	case OpRelation:
		for i, a := range s.Objects {
			for j, b := range s.Objects {
				if i != j && Holds(f.LF.Rel, a, b, s.Width, s.Height) {
					v = max(v, min(match(f.LF.A, 0, a), match(f.LF.B, 1, b)))
				}
			}
		}
	}
	named := slices.ContainsFunc(f.Materials, func(m string) bool { return m != "" })
	switch {
	case v == t3True && !named:
		return LabelEntailment, RuleHolds, nil
	case v == t3False && !named:
		return LabelContradiction, RuleFails, nil
	case v == t3True:
		return LabelEntailment, RuleHoldsAnyMaterial, nil
	case v == t3False:
		return LabelContradiction, RuleFailsAnyMaterial, nil
	}
	return LabelNeutral, RuleMaterialDecides, nil
}

// veItems makes three hypotheses per image, one per label, in a random order:
//
//	entailment:    a true caption (holds), or "there are no {material} X" where there is no X
//	               (holds_any_material), even odds
//	contradiction: a false edit of a true caption (fails), or a caption false whatever the material
//	               named (fails_any_material), even odds
//	neutral:       a material named in a caption true without it, or in "there are no {material} X"
//	               where there are Xs (material_decides), even odds
//
// Each kind of sentence (with or without a material; none or another op) holds two labels equally
// often, with the same templates: false captions are edits that keep the template (sameTemplateFalse),
// and the none sentences draw their kind of description as balancedPick does. The words of a
// hypothesis do not tell its label beyond that (a text-only guess by template gets about 50 %).
func veItems(s Scene, rng *rand.Rand) []VEItem {
	trues := TrueCaptions(s, CaptionsPerImage, rng)
	trues = slices.DeleteFunc(trues, func(c Caption) bool { return !clearRelation(c.LF, s) })
	if len(trues) == 0 {
		return nil
	}
	var out []VEItem
	seen := map[string]bool{}
	for _, label := range []string{LabelEntailment, LabelContradiction, LabelNeutral} {
		withMat := rng.IntN(2) == 0
		for range 64 {
			form, ok := veCandidate(s, trues, label, withMat, rng)
			if !ok {
				continue
			}
			p, err := veRealize(form)
			if err != nil || seen[p.text()] {
				continue
			}
			got, rule, err := VELabel(form, s)
			if err != nil || got != label {
				continue
			}
			seen[p.text()] = true
			out = append(out, VEItem{Hypothesis: p.text(), Label: got, Rule: rule, Template: p.template(), Form: form})
			break
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// veCandidate draws a hypothesis meant to have the label (VELabel checks it). alt picks the
// second way of each label (see veItems).
func veCandidate(s Scene, trues []Caption, label string, alt bool, rng *rand.Rand) (VEForm, bool) {
	if alt && label != LabelContradiction { // "there are no {material} X"
		spec, ok := noneSpec(s, label == LabelNeutral, rng)
		return withMaterialForm(LF{Op: OpNone, Obj: spec}, rng), ok
	}
	c := choose(rng, trues)
	switch {
	case label == LabelEntailment:
		return VEForm{LF: c.LF}, true
	case label == LabelContradiction:
		if alt && c.LF.Op == OpNone {
			return VEForm{}, false
		}
		lf, ok := sameTemplateFalse(s, c.LF, rng)
		if !ok {
			return VEForm{}, false
		}
		if !alt {
			return VEForm{LF: lf}, true
		}
		return withMaterialForm(lf, rng), true
	default: // neutral: a true caption with a material
		if c.LF.Op == OpNone {
			return VEForm{}, false
		}
		return withMaterialForm(c.LF, rng), true
	}
}

// noneSpec is a description with a shape of objects the scene has (present) or has not, one
// attribute away from an object it has; the kind of description is drawn as balancedPick does.
func noneSpec(s Scene, present bool, rng *rand.Rand) (ObjSpec, bool) {
	type cand struct {
		spec    ObjSpec
		present bool
	}
	var cands []cand
	for _, m := range masksWith(mShape, 0) {
		seen := map[ObjSpec]bool{}
		for _, o := range s.Objects {
			if spec := specOf(o, m); !seen[spec] {
				seen[spec] = true
				cands = append(cands, cand{spec, true})
			}
		}
		for _, spec := range absentSpecs(s, m, 4, rng) {
			cands = append(cands, cand{spec, false})
		}
	}
	c, ok := balancedPick(rng, cands, func(c cand) ObjSpec { return c.spec }, func(c cand) bool { return c.present }, present)
	return c.spec, ok
}

// sameTemplateFalse edits an LF into one false on s with the same template: another value of an
// attribute it names, the converse relation or another count (two to four). ok is false when no
// try gave one.
func sameTemplateFalse(s Scene, lf LF, rng *rand.Rand) (LF, bool) {
	kinds := []string{EditColor, EditShape, EditSize}
	switch lf.Op {
	case OpCount:
		kinds = append(kinds, EditCount, EditCount)
	case OpRelation:
		kinds = append(kinds, EditRelation, EditRelation)
	}
	for range 32 {
		e, ok := editLF(lf, choose(rng, kinds), rng)
		if !ok || Eval(e, s) || !clearRelation(e, s) {
			continue
		}
		same := true
		for i, sp := range e.specs() {
			same = same && maskOf(*sp) == maskOf(*lf.specs()[i])
		}
		if same {
			return e, true
		}
	}
	return LF{}, false
}

// withMaterialForm names a random material on a random referring expression that has a shape.
func withMaterialForm(lf LF, rng *rand.Rand) VEForm {
	var refs []int
	for i, sp := range lf.specs() {
		if sp.Shape != "" {
			refs = append(refs, i)
		}
	}
	f := VEForm{LF: lf}
	if len(refs) == 0 {
		return f
	}
	f.Materials = make([]string, choose(rng, refs)+1)
	f.Materials[len(f.Materials)-1] = choose(rng, materialNames)
	return f
}

// veRealize writes a hypothesis: its LF as a sentence, each material before its shape word.
func veRealize(f VEForm) (phrase, error) {
	p, err := sentence(f.LF)
	if err != nil {
		return nil, err
	}
	for ref, m := range f.Materials {
		if m == "" {
			continue
		}
		var ok bool
		if p, ok = withMaterial(p, ref, m); !ok {
			return nil, fmt.Errorf("referring expression %d has no shape for material %q", ref, m)
		}
	}
	return p, nil
}
