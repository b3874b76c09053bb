package shapes

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Shapes-QA question types, one question of each per image where the scene allows.
const (
	QAColor         = "color"          // what color is the small circle?
	QAShape         = "shape"          // what shape is the red object?
	QASize          = "size"           // what size is the blue star?
	QACount         = "count"          // how many red objects are there?
	QAExists        = "exists"         // is there a large green heart?
	QARelationColor = "relation_color" // what color is the object left of the star?
	QARelationShape = "relation_shape" // what shape is the red object above the blue square?
	QARelationYesNo = "relation_yesno" // is the red circle above the square?
)

// QATypes lists the question types in their fixed order.
func QATypes() []string {
	return []string{QAColor, QAShape, QASize, QACount, QAExists, QARelationColor, QARelationShape, QARelationYesNo}
}

// Queries of a QA form: what the answer is.
const (
	QueryColor = "color" // the colour of the one object the LF's first referring expression refers to
	QueryShape = "shape" // its shape
	QuerySize  = "size"  // its size
	QueryCount = "count" // the number of objects matching an exists LF's Obj
	QueryTruth = "truth" // yes if the LF holds, else no
)

// Yes/no answers.
const (
	AnswerYes = "yes"
	AnswerNo  = "no"
)

// MaxCountAnswer is the largest count answer (a scene has at most MaxObjs objects).
const MaxCountAnswer = MaxObjs

// QAAnswers is the closed answer list, in its fixed order (qa_answers.txt): the colours, the
// shapes, the sizes, the counts 0 … 6, yes, no. A QAItem's Label is its answer's index here.
func QAAnswers() []string {
	out := Colors()
	out = append(out, shapeNames...)
	out = append(out, sizeNames...)
	for n := 0; n <= MaxCountAnswer; n++ {
		out = append(out, strconv.Itoa(n))
	}
	return append(out, AnswerYes, AnswerNo)
}

// QAForm is a question's machine-checkable form: a query on an LF (see QAAnswer).
type QAForm struct {
	Query string `json:"query"`
	LF    LF     `json:"lf"`
}

// QAItem is one line of qa.jsonl.
type QAItem struct {
	ID       int    `json:"id"`       // the line's index
	ImageID  int    `json:"image_id"` // the image's id in annotations.jsonl
	Image    string `json:"image"`    // its file, relative to the split folder
	Type     string `json:"type"`     // a QA… type
	Question string `json:"question"`
	Answer   string `json:"answer"`
	Label    int    `json:"label"`    // the answer's index in QAAnswers (qa_answers.txt)
	Template string `json:"template"` // the question with its attribute words replaced by {slot}
	Form     QAForm `json:"form"`
}

// QAAnswer computes the answer of a question form on a scene:
//
//	color, shape, size: the attribute of the one object Referents(lf) gives for its first
//	                    referring expression (the one object matching Obj for an exists LF, the
//	                    one object matching A in the relation to an object matching B)
//	count:              the number of objects matching Obj (an exists LF), "0" … "6"
//	truth:              "yes" if Eval(lf) holds, else "no"
//
// A form that does not single out one object for an attribute query is an error.
func QAAnswer(f QAForm, s Scene) (string, error) {
	if err := f.LF.Validate(); err != nil {
		return "", err
	}
	switch f.Query {
	case QueryColor, QueryShape, QuerySize:
		refs := Referents(f.LF, s)[0]
		if (f.LF.Op != OpExists && f.LF.Op != OpRelation) || len(refs) != 1 {
			return "", fmt.Errorf("%s query: the LF refers to %d objects, not one", f.Query, len(refs))
		}
		o := s.Objects[refs[0]]
		return map[string]string{QueryColor: o.Color, QueryShape: o.Shape, QuerySize: o.Size}[f.Query], nil
	case QueryCount:
		if f.LF.Op != OpExists {
			return "", fmt.Errorf("count query on a %s LF", f.LF.Op)
		}
		return strconv.Itoa(len(matching(f.LF.Obj, s.Objects))), nil
	case QueryTruth:
		if Eval(f.LF, s) {
			return AnswerYes, nil
		}
		return AnswerNo, nil
	}
	return "", fmt.Errorf("unknown query %q", f.Query)
}

// qaItems makes one question of each type the scene allows, in QATypes order.
func qaItems(s Scene, rng *rand.Rand) []QAItem {
	var out []QAItem
	answers := QAAnswers()
	for _, typ := range QATypes() {
		var form QAForm
		var p phrase
		ok := false
		switch typ {
		case QAColor, QAShape, QASize:
			form, p, ok = attrQuestion(s, typ, rng)
		case QACount:
			form, p, ok = countQuestion(s, rng)
		case QAExists:
			form, p, ok = existsQuestion(s, rng)
		case QARelationColor, QARelationShape:
			form, p, ok = relationQuery(s, typ, rng)
		case QARelationYesNo:
			form, p, ok = relationYesNo(s, rng)
		}
		if !ok {
			continue
		}
		ans, err := QAAnswer(form, s)
		if err != nil {
			continue
		}
		out = append(out, QAItem{Type: typ, Question: p.text(), Answer: ans, Label: slices.Index(answers, ans),
			Template: p.template(), Form: form})
	}
	return out
}

// attrQuestion asks for the colour, shape or size of an object that a description without that
// attribute singles out: "what color is the small circle?". Size questions draw the answer first
// (small or large, even odds) so that sizes are balanced where the scene allows.
func attrQuestion(s Scene, typ string, rng *rand.Rand) (QAForm, phrase, bool) {
	asked := map[string]attrMask{QAColor: mColor, QAShape: mShape, QASize: mSize}[typ]
	objs := rng.Perm(len(s.Objects))
	if typ == QASize {
		want := sizeNames[rng.IntN(len(sizeNames))]
		slices.SortStableFunc(objs, func(a, b int) int {
			return boolInt(s.Objects[a].Size != want) - boolInt(s.Objects[b].Size != want)
		})
	}
	for _, i := range objs {
		specs := uniqueSpecs(s, i, masksWith(0, asked))
		if len(specs) == 0 {
			continue
		}
		spec := choose(rng, specs)
		var p phrase
		p.fixed("what", typ, "is")
		p.np(spec, "the", "", false, 0)
		p.fixed("?")
		return QAForm{Query: typ, LF: LF{Op: OpExists, Obj: spec}}, p, true
	}
	return QAForm{}, nil, false
}

// countWeights weigh the count a count question is drawn to have, among those the scene allows:
// large counts are rare in scenes (they need many objects alike), so they weigh more.
var countWeights = [MaxCountAnswer + 1]float64{1, 1, 1.5, 3, 6, 10, 16}

// countQuestion asks how many objects match a description: "how many red circles are there?".
// The answer is drawn first among the counts some description allows (0 always: a description
// one attribute away from an object's), by countWeights, then a description with that count.
func countQuestion(s Scene, rng *rand.Rand) (QAForm, phrase, bool) {
	byCount := make([][]ObjSpec, MaxCountAnswer+1)
	seen := map[ObjSpec]bool{}
	for _, o := range s.Objects {
		for _, m := range allMasks {
			spec := specOf(o, m)
			if seen[spec] {
				continue
			}
			seen[spec] = true
			if n := len(matching(spec, s.Objects)); n <= MaxCountAnswer {
				byCount[n] = append(byCount[n], spec)
			}
		}
	}
	for _, m := range masksWith(0, 0) {
		byCount[0] = append(byCount[0], absentSpecs(s, m, 1, rng)...)
	}
	var ws []weighted[int]
	for n, specs := range byCount {
		if len(specs) > 0 {
			ws = append(ws, weighted[int]{n, countWeights[n]})
		}
	}
	if len(ws) == 0 {
		return QAForm{}, nil, false
	}
	spec := choose(rng, byCount[pick(rng, ws)])
	var p phrase
	p.fixed("how", "many")
	p.np(spec, "", "", true, 0)
	p.fixed("are", "there", "?")
	return QAForm{Query: QueryCount, LF: LF{Op: OpExists, Obj: spec}}, p, true
}

// existsQuestion asks whether there is an object of a description: "is there a red circle?".
// Yes and no have even odds, and the kind of description is drawn among those that can have
// either answer here (balancedPick); a no names an object one attribute away from one the scene
// has.
func existsQuestion(s Scene, rng *rand.Rand) (QAForm, phrase, bool) {
	type cand struct {
		spec    ObjSpec
		present bool
	}
	var cands []cand
	for _, m := range masksWith(0, 0) {
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
	c, ok := balancedPick(rng, cands, func(c cand) ObjSpec { return c.spec }, func(c cand) bool { return c.present },
		rng.IntN(2) == 0)
	if !ok {
		return QAForm{}, nil, false
	}
	var p phrase
	p.fixed("is", "there")
	p.np(c.spec, "a", "", false, 0)
	p.fixed("?")
	return QAForm{Query: QueryTruth, LF: LF{Op: OpExists, Obj: c.spec}}, p, true
}

// relCandidate is an object a, described by A, in relation rel to object b, described by B alone.
type relCandidate struct {
	lf     LF
	a, b   int
	needed bool // A alone matches several objects: the relation is needed to single out a
}

// relationSubjects lists the relation LFs whose first referring expression singles out one object
// a, described with subject masks, in relation to an object b that its description B singles out
// alone, with no borderline pair.
func relationSubjects(s Scene, subjMasks []attrMask, rng *rand.Rand) []relCandidate {
	var out []relCandidate
	n := len(s.Objects)
	for _, a := range rng.Perm(n) {
		for _, b := range rng.Perm(n) {
			if a == b {
				continue
			}
			bSpecs := uniqueSpecs(s, b, masksWith(0, 0))
			for _, ri := range rng.Perm(len(relNames)) {
				rel := relNames[ri]
				if !Holds(rel, s.Objects[a], s.Objects[b], s.Width, s.Height) {
					continue
				}
				for _, m := range subjMasks {
					A := specOf(s.Objects[a], m)
					for _, B := range bSpecs {
						lf := LF{Op: OpRelation, Rel: rel, A: A, B: B}
						if slices.Equal(Referents(lf, s)[0], []int{a}) && clearRelation(lf, s) {
							out = append(out, relCandidate{lf: lf, a: a, b: b, needed: len(matching(A, s.Objects)) > 1})
						}
					}
				}
			}
		}
	}
	return out
}

// relationQuery asks for the colour or shape of an object singled out by a relation to another
// one: "what color is the object left of the star?". The subject does not name the attribute
// asked; subjects that need the relation to be singled out are preferred.
func relationQuery(s Scene, typ string, rng *rand.Rand) (QAForm, phrase, bool) {
	asked, query := mColor, QueryColor
	if typ == QARelationShape {
		asked, query = mShape, QueryShape
	}
	var masks []attrMask
	for _, m := range allMasks {
		if m&asked == 0 {
			masks = append(masks, m)
		}
	}
	cands := relationSubjects(s, masks, rng)
	if needed := slices.DeleteFunc(slices.Clone(cands), func(c relCandidate) bool { return !c.needed }); len(needed) > 0 {
		cands = needed
	}
	if len(cands) == 0 {
		return QAForm{}, nil, false
	}
	c := choose(rng, cands)
	var p phrase
	p.fixed("what", query, "is")
	relationNP(&p, c.lf)
	p.fixed("?")
	return QAForm{Query: query, LF: c.lf}, p, true
}

// relationNP writes "the {A} {rel} the {B}".
func relationNP(p *phrase, lf LF) {
	p.np(lf.A, "the", "", false, 0)
	p.fill(KindRelation, relPhrase[lf.Rel], -1)
	p.np(lf.B, "the", "", false, 1)
}

// relationYesNo asks whether one object stands in a relation to another, each singled out by its
// description alone: "is the red circle above the square?". Yes and no have even odds; no pair
// is borderline.
func relationYesNo(s Scene, rng *rand.Rand) (QAForm, phrase, bool) {
	want := rng.IntN(2) == 0
	n := len(s.Objects)
	for _, a := range rng.Perm(n) {
		aSpecs := uniqueSpecs(s, a, masksWith(0, 0))
		if len(aSpecs) == 0 {
			continue
		}
		for _, b := range rng.Perm(n) {
			bSpecs := uniqueSpecs(s, b, masksWith(0, 0))
			if a == b || len(bSpecs) == 0 {
				continue
			}
			for _, ri := range rng.Perm(len(relNames)) {
				rel := relNames[ri]
				oa, ob := s.Objects[a], s.Objects[b]
				if Holds(rel, oa, ob, s.Width, s.Height) != want || borderline(rel, oa, ob, s.Width, s.Height) {
					continue
				}
				lf := LF{Op: OpRelation, Rel: rel, A: choose(rng, aSpecs), B: choose(rng, bSpecs)}
				var p phrase
				p.fixed("is")
				relationNP(&p, lf)
				p.fixed("?")
				return QAForm{Query: QueryTruth, LF: lf}, p, true
			}
		}
	}
	return QAForm{}, nil, false
}
