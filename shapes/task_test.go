package shapes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The independent evaluator: a second, straightforward reading of the item forms on a scene,
// written from the documented semantics without the package's Eval, Referents, Holds, matching or
// the task answer functions, to check every written item against.

// indMatch: every attribute the spec names equals the object's.
func indMatch(spec ObjSpec, o Object) bool {
	if spec.Shape != "" && spec.Shape != o.Shape {
		return false
	}
	if spec.Color != "" && spec.Color != o.Color {
		return false
	}
	return spec.Size == "" || spec.Size == o.Size
}

// indRel: box centres compared with a margin of 5 % of the image side.
func indRel(rel string, a, b Object, w, h int) bool {
	ax, ay := (a.Box[0]+a.Box[2])/2, (a.Box[1]+a.Box[3])/2
	bx, by := (b.Box[0]+b.Box[2])/2, (b.Box[1]+b.Box[3])/2
	switch rel {
	case "left_of":
		return ax < bx-0.05*float64(w)
	case "right_of":
		return ax > bx+0.05*float64(w)
	case "above":
		return ay < by-0.05*float64(h)
	case "below":
		return ay > by+0.05*float64(h)
	}
	panic("unknown relation " + rel)
}

// indCount is the number of objects a spec matches.
func indCount(spec ObjSpec, s Scene) int {
	n := 0
	for _, o := range s.Objects {
		if indMatch(spec, o) {
			n++
		}
	}
	return n
}

// indSubjects are the objects an exists LF's Obj matches, or for a relation LF the objects matching
// A that stand in the relation to some other object matching B.
func indSubjects(lf LF, s Scene) []int {
	var out []int
	for i, a := range s.Objects {
		switch lf.Op {
		case "exists":
			if indMatch(lf.Obj, a) {
				out = append(out, i)
			}
		case "relation":
			if !indMatch(lf.A, a) {
				continue
			}
			for j, b := range s.Objects {
				if i != j && indMatch(lf.B, b) && indRel(lf.Rel, a, b, s.Width, s.Height) {
					out = append(out, i)
					break
				}
			}
		default:
			panic("subjects of " + lf.Op)
		}
	}
	return out
}

// indHolds is the truth of an LF.
func indHolds(lf LF, s Scene) bool {
	switch lf.Op {
	case "exists":
		return indCount(lf.Obj, s) > 0
	case "none":
		return indCount(lf.Obj, s) == 0
	case "count":
		return indCount(lf.Obj, s) == lf.N
	case "relation":
		return len(indSubjects(lf, s)) > 0
	}
	panic("unknown op " + lf.Op)
}

// indQA answers a question form.
func indQA(f QAForm, s Scene) (string, error) {
	switch f.Query {
	case "color", "shape", "size":
		subj := indSubjects(f.LF, s)
		if len(subj) != 1 {
			return "", fmt.Errorf("%d subjects", len(subj))
		}
		o := s.Objects[subj[0]]
		return map[string]string{"color": o.Color, "shape": o.Shape, "size": o.Size}[f.Query], nil
	case "count":
		if f.LF.Op != "exists" {
			return "", fmt.Errorf("count of %s", f.LF.Op)
		}
		return strconv.Itoa(indCount(f.LF.Obj, s)), nil
	case "truth":
		if indHolds(f.LF, s) {
			return "yes", nil
		}
		return "no", nil
	}
	return "", fmt.Errorf("query %q", f.Query)
}

// indVE labels a hypothesis by brute force: every assignment of materials (those the hypothesis
// names, or some other one) to the objects; entailment if the hypothesis holds under all of them,
// contradiction under none, neutral otherwise.
func indVE(f VEForm, s Scene) string {
	mats := []string{"other"}
	for _, m := range f.Materials {
		if m != "" && !slices.Contains(mats, m) {
			mats = append(mats, m)
		}
	}
	matOf := func(ref int) string {
		if ref < len(f.Materials) {
			return f.Materials[ref]
		}
		return ""
	}
	n := len(s.Objects)
	assign := make([]int, n)
	sawTrue, sawFalse := false, false
	for {
		ok := func(spec ObjSpec, ref, i int) bool {
			return indMatch(spec, s.Objects[i]) && (matOf(ref) == "" || mats[assign[i]] == matOf(ref))
		}
		count := func() int {
			c := 0
			for i := range n {
				if ok(f.LF.Obj, 0, i) {
					c++
				}
			}
			return c
		}
		var v bool
		switch f.LF.Op {
		case "exists":
			v = count() > 0
		case "none":
			v = count() == 0
		case "count":
			v = count() == f.LF.N
		case "relation":
			for i := range n {
				for j := range n {
					if i != j && ok(f.LF.A, 0, i) && ok(f.LF.B, 1, j) &&
						indRel(f.LF.Rel, s.Objects[i], s.Objects[j], s.Width, s.Height) {
						v = true
					}
				}
			}
		}
		sawTrue, sawFalse = sawTrue || v, sawFalse || !v
		// Next assignment (odometer).
		k := 0
		for k < n {
			assign[k]++
			if assign[k] < len(mats) {
				break
			}
			assign[k] = 0
			k++
		}
		if k == n {
			break
		}
	}
	switch {
	case !sawFalse:
		return "entailment"
	case !sawTrue:
		return "contradiction"
	}
	return "neutral"
}

// indNLVR2 is the truth of a statement form on (left, right).
func indNLVR2(f NLVR2Form, left, right Scene) bool {
	named, other := left, right
	if f.Image == "right" {
		named, other = right, left
	}
	switch f.Op {
	case "image":
		return indHolds(*f.LF, named)
	case "both":
		return indHolds(*f.LF, left) && indHolds(*f.LF, right)
	case "more":
		return indCount(*f.Obj, named) > indCount(*f.Obj, other)
	case "same":
		return indCount(*f.Obj, left) == indCount(*f.Obj, right)
	}
	panic("unknown statement op " + f.Op)
}

// indBorderline: some pair a relation form could relate is within half the margin of the
// relation's threshold.
func indBorderline(lf LF, s Scene) bool {
	if lf.Op != "relation" {
		return false
	}
	for i, a := range s.Objects {
		for j, b := range s.Objects {
			if i == j || !indMatch(lf.A, a) || !indMatch(lf.B, b) {
				continue
			}
			ax, ay := (a.Box[0]+a.Box[2])/2, (a.Box[1]+a.Box[3])/2
			bx, by := (b.Box[0]+b.Box[2])/2, (b.Box[1]+b.Box[3])/2
			d, m := map[string]float64{"left_of": bx - ax, "right_of": ax - bx, "above": by - ay, "below": ay - by}[lf.Rel],
				0.05*float64(s.Width)
			if lf.Rel == "above" || lf.Rel == "below" {
				m = 0.05 * float64(s.Height)
			}
			if d > m/2 && d < 3*m/2 {
				return true
			}
		}
	}
	return false
}

// readJSONL reads a JSONL file into items.
func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var it T
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&it); err != nil {
			t.Fatalf("%s line %d: %v", path, len(out)+1, err)
		}
		out = append(out, it)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkText checks a task text: words from TaskVocabulary (a final "?" apart), and the template
// is the text with slot words replaced (an article "a" standing for a or an).
func checkText(t *testing.T, text, template string, vocab []string) {
	t.Helper()
	for _, w := range strings.Fields(strings.TrimSuffix(text, "?")) {
		if !slices.Contains(vocab, w) {
			t.Errorf("%q: word %q not in TaskVocabulary", text, w)
		}
	}
	if !templateRE(template).MatchString(text) {
		t.Errorf("%q does not fit its template %q", text, template)
	}
	ws := strings.Fields(text)
	for i, w := range ws {
		if (w == "a" || w == "an") && i+1 < len(ws) {
			want := "a"
			if strings.ContainsRune("aeiou", rune(ws[i+1][0])) {
				want = "an"
			}
			if w != want {
				t.Errorf("%q: %q before %q", text, w, ws[i+1])
			}
		}
	}
}

var slotValues = map[string][]string{
	"color": Colors(), "size": Sizes(), "material": Materials(), "count": {"two", "three", "four"},
	"relation": {"left of", "right of", "above", "below"},
}

func init() {
	for _, s := range Shapes() {
		slotValues["shape"] = append(slotValues["shape"], s, Plural(s))
	}
}

func templateRE(template string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, w := range strings.Fields(strings.ReplaceAll(template, "?", " ?")) {
		if i > 0 && w != "?" {
			b.WriteString(" ")
		}
		switch {
		case strings.HasPrefix(w, "{"):
			vals := slotValues[strings.Trim(w, "{}")]
			quoted := make([]string, len(vals))
			for k, v := range vals {
				quoted[k] = regexp.QuoteMeta(v)
			}
			b.WriteString("(" + strings.Join(quoted, "|") + ")")
		case w == "a":
			b.WriteString("an?")
		default:
			b.WriteString(regexp.QuoteMeta(w))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// TestTaskSplit writes a 300-image split with every task and checks every item against the
// independent evaluator on the scenes read back from annotations.jsonl, the formats, the balance
// of types and answers, and the baselines.
func TestTaskSplit(t *testing.T) {
	t.Parallel()
	const images = 300
	sp := Split{Name: "tasks", Seed: 17, Count: images}
	dir := t.TempDir()
	if _, err := WriteSplit(context.Background(), dir, sp, Options{Workers: 4}); err != nil {
		t.Fatal(err)
	}
	info, err := WriteTasks(context.Background(), dir, sp, []string{"all"}, Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadRecords(dir)
	if err != nil || len(recs) != images {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	scene := func(file string) (Scene, int) {
		t.Helper()
		var id int
		if _, err := fmt.Sscanf(file, "images/%05d.png", &id); err != nil || id < 0 || id >= images {
			t.Fatalf("image %q", file)
		}
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
		return recs[id].Scene(), id
	}
	vocab := TaskVocabulary()

	t.Run("qa", func(t *testing.T) {
		items := readJSONL[QAItem](t, filepath.Join(dir, QAFile))
		raw, err := os.ReadFile(filepath.Join(dir, QAAnswersFile))
		answers := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		if err != nil || !slices.Equal(answers, QAAnswers()) || len(answers) != 8+8+2+7+2 {
			t.Fatalf("qa_answers.txt: %q, %v", answers, err)
		}
		byType := map[string]map[string]int{}
		for i, it := range items {
			s, id := scene(it.Image)
			if it.ID != i || it.ImageID != id {
				t.Errorf("item %d: id %d image %d %s", i, it.ID, it.ImageID, it.Image)
			}
			want, err := indQA(it.Form, s)
			if err != nil || want != it.Answer {
				t.Errorf("%s %q: answer %q, independently %q %v (%+v)", it.Image, it.Question, it.Answer, want, err, it.Form)
			}
			if it.Label < 0 || it.Label >= len(answers) || answers[it.Label] != it.Answer {
				t.Errorf("%q: label %d for %q", it.Question, it.Label, it.Answer)
			}
			if indBorderline(it.Form.LF, s) {
				t.Errorf("%s %q: a borderline pair", it.Image, it.Question)
			}
			checkText(t, it.Question, it.Template, vocab)
			if !strings.HasSuffix(it.Question, "?") {
				t.Errorf("%q: no question mark", it.Question)
			}
			if byType[it.Type] == nil {
				byType[it.Type] = map[string]int{}
			}
			byType[it.Type][it.Answer]++
			// The type and its form agree.
			q, op := it.Form.Query, it.Form.LF.Op
			ok := map[string]bool{
				QAColor: q == "color" && op == "exists", QAShape: q == "shape" && op == "exists",
				QASize: q == "size" && op == "exists", QACount: q == "count" && op == "exists",
				QAExists: q == "truth" && op == "exists", QARelationColor: q == "color" && op == "relation",
				QARelationShape: q == "shape" && op == "relation", QARelationYesNo: q == "truth" && op == "relation",
			}[it.Type]
			if !ok {
				t.Errorf("%q: type %s with form %+v", it.Question, it.Type, it.Form)
			}
			// An attribute question does not name what it asks.
			if (it.Type == QAColor || it.Type == QARelationColor) && it.Form.LF.Obj.Color+it.Form.LF.A.Color != "" ||
				(it.Type == QAShape || it.Type == QARelationShape) && it.Form.LF.Obj.Shape+it.Form.LF.A.Shape != "" ||
				it.Type == QASize && it.Form.LF.Obj.Size != "" {
				t.Errorf("%q names the attribute it asks", it.Question)
			}
		}
		sum := func(m map[string]int) int {
			n := 0
			for _, k := range m {
				n += k
			}
			return n
		}
		for _, typ := range QATypes() {
			if n := sum(byType[typ]); n < images*9/10 {
				t.Errorf("type %s: %d questions for %d images", typ, n, images)
			}
		}
		share := func(typ, ans string) float64 { return float64(byType[typ][ans]) / float64(sum(byType[typ])) }
		for _, typ := range []string{QAExists, QARelationYesNo} {
			if y := share(typ, "yes"); y < 0.42 || y > 0.58 {
				t.Errorf("%s: yes share %.3f", typ, y)
			}
		}
		if l := share(QASize, SizeLarge); l < 0.42 || l > 0.58 {
			t.Errorf("size: large share %.3f", l)
		}
		for n := 0; n <= MaxCountAnswer; n++ {
			if c := share(QACount, strconv.Itoa(n)); c < 0.06 || c > 0.25 {
				t.Errorf("count: answer %d share %.3f (%v)", n, c, byType[QACount])
			}
		}
		for _, typ := range []string{QAColor, QAShape, QARelationColor, QARelationShape} {
			if len(byType[typ]) != 8 {
				t.Errorf("%s: answers %v", typ, byType[typ])
			}
		}
		st := info.Stats.QA
		if st == nil || st.Items != len(items) || info.Items[TaskQA] != len(items) {
			t.Fatalf("stats %+v for %d items", st, len(items))
		}
		for typ, max := range map[string]float64{QAColor: 0.2, QAShape: 0.2, QARelationColor: 0.2, QARelationShape: 0.2,
			QASize: 0.6, QAExists: 0.6, QARelationYesNo: 0.6, QACount: 0.4} {
			if got := st.ByType[typ].TextOnly; got > max {
				t.Errorf("%s: text-only baseline %.3f > %.2f", typ, got, max)
			}
		}
		t.Logf("qa: %d items; majority %.3f, text-only %.3f (by text %.3f, fitted %.3f)", st.Items, st.Majority,
			st.TextOnly, st.TextOnlyText, st.TextOnlyFit)
	})

	t.Run("ve", func(t *testing.T) {
		items := readJSONL[VEItem](t, filepath.Join(dir, VEFile))
		labels, rules := map[string]int{}, map[string]int{}
		perImage := map[int][]string{}
		for i, it := range items {
			s, id := scene(it.Image)
			if it.ID != i || it.ImageID != id {
				t.Errorf("item %d: id %d image %d %s", i, it.ID, it.ImageID, it.Image)
			}
			if want := indVE(it.Form, s); want != it.Label {
				t.Errorf("%s %q: %s, independently %s (%+v)", it.Image, it.Hypothesis, it.Label, want, it.Form)
			}
			named := slices.ContainsFunc(it.Form.Materials, func(m string) bool { return m != "" })
			wantRule := map[string]string{"entailment": RuleHolds, "contradiction": RuleFails}[it.Label]
			if named {
				wantRule = map[string]string{"entailment": RuleHoldsAnyMaterial, "contradiction": RuleFailsAnyMaterial,
					"neutral": RuleMaterialDecides}[it.Label]
			}
			if it.Rule != wantRule {
				t.Errorf("%q: rule %s, label %s, materials %v", it.Hypothesis, it.Rule, it.Label, it.Form.Materials)
			}
			for _, m := range it.Form.Materials {
				if m != "" && !strings.Contains(it.Hypothesis, " "+m+" ") {
					t.Errorf("%q does not say %s", it.Hypothesis, m)
				}
			}
			if indBorderline(it.Form.LF, s) {
				t.Errorf("%s %q: a borderline pair", it.Image, it.Hypothesis)
			}
			checkText(t, it.Hypothesis, it.Template, vocab)
			labels[it.Label]++
			rules[it.Rule]++
			perImage[id] = append(perImage[id], it.Label)
		}
		for id := range images {
			if l := perImage[id]; len(l) != 3 || len(slices.Compact(slices.Sorted(slices.Values(l)))) != 3 {
				t.Errorf("image %d: labels %v, want one of each", id, l)
			}
		}
		for _, l := range VELabels() {
			if labels[l] != images {
				t.Errorf("label %s: %d items, want %d", l, labels[l], images)
			}
		}
		for _, r := range []string{RuleHolds, RuleFails, RuleHoldsAnyMaterial, RuleFailsAnyMaterial, RuleMaterialDecides} {
			if rules[r] < images/4 {
				t.Errorf("rule %s: %d items", r, rules[r])
			}
		}
		if st := info.Stats.VE; st == nil || st.TextOnly > 0.58 {
			t.Errorf("text-only baseline %+v", st)
		} else {
			t.Logf("ve: %d items; text-only %.3f (by text %.3f, fitted %.3f)", st.Items, st.TextOnly, st.TextOnlyText, st.TextOnlyFit)
		}
	})

	t.Run("nlvr2", func(t *testing.T) {
		items := readJSONL[NLVR2Item](t, filepath.Join(dir, NLVR2File))
		truths, types := map[bool]int{}, map[string]map[bool]int{}
		imageBound, imageStatements := 0, 0
		for i, it := range items {
			left, lid := scene(it.Left)
			right, rid := scene(it.Right)
			if it.ID != i || it.LeftID != lid || it.RightID != rid || rid != lid^1 || rid == lid {
				t.Errorf("item %d: id %d, images %d %s, %d %s", i, it.ID, it.LeftID, it.Left, it.RightID, it.Right)
			}
			if want := indNLVR2(it.Form, left, right); want != it.Label {
				t.Errorf("%s|%s %q: %v, independently %v (%+v)", it.Left, it.Right, it.Statement, it.Label, want, it.Form)
			}
			checkText(t, it.Statement, it.Template, vocab)
			wantOp := map[string]string{NLVR2Left: "image", NLVR2Right: "image", NLVR2Both: "both", NLVR2More: "more",
				NLVR2Same: "same"}[it.Type]
			if it.Form.Op != wantOp {
				t.Errorf("%q: type %s, op %s", it.Statement, it.Type, it.Form.Op)
			}
			// Statements about one image name it, and use it.
			switch it.Type {
			case NLVR2Left, NLVR2Right:
				side := strings.TrimSuffix(it.Type, "_image")
				if it.Form.Image != side || !strings.HasPrefix(it.Statement, "in the "+side+" image ") {
					t.Errorf("%q: type %s, form image %s", it.Statement, it.Type, it.Form.Image)
				}
				named, other := left, right
				if side == "right" {
					named, other = right, left
				}
				if indBorderline(*it.Form.LF, named) || indBorderline(*it.Form.LF, other) {
					t.Errorf("%q: a borderline pair", it.Statement)
				}
				imageStatements++
				if indHolds(*it.Form.LF, other) != it.Label {
					imageBound++ // the other image would give the other answer
				}
			case NLVR2More:
				if !strings.HasPrefix(it.Statement, "the "+it.Form.Image+" image has more ") {
					t.Errorf("%q: form image %s", it.Statement, it.Form.Image)
				}
			}
			truths[it.Label]++
			if types[it.Type] == nil {
				types[it.Type] = map[bool]int{}
			}
			types[it.Type][it.Label]++
		}
		if n := len(items); n != 2*images || truths[true] != images {
			t.Errorf("%d statements, %d true; want %d, half true", n, truths[true], 2*images)
		}
		for _, typ := range NLVR2Types() {
			n := types[typ][true] + types[typ][false]
			if n < len(items)/7 {
				t.Errorf("type %s: %d statements of %d", typ, n, len(items))
			}
			if f := float64(types[typ][true]) / float64(n); f < 0.38 || f > 0.62 {
				t.Errorf("type %s: true share %.3f", typ, f)
			}
		}
		if f := float64(imageBound) / float64(imageStatements); f < 0.4 {
			t.Errorf("only %.2f of the one-image statements change truth on the other image", f)
		}
		if st := info.Stats.NLVR2; st == nil || st.TextOnly > 0.58 {
			t.Errorf("text-only baseline %+v", st)
		}
	})

	t.Run("ref", func(t *testing.T) {
		items := readJSONL[RefItem](t, filepath.Join(dir, RefFile))
		withRel := 0
		seen := map[string]bool{}
		for i, it := range items {
			s, id := scene(it.Image)
			if it.ID != i || it.ImageID != id {
				t.Errorf("item %d: id %d image %d %s", i, it.ID, it.ImageID, it.Image)
			}
			subj := indSubjects(it.Form.LF, s)
			if len(subj) != 1 || subj[0] != it.Object {
				t.Errorf("%s %q: refers to %v, item says %d", it.Image, it.Expression, subj, it.Object)
				continue
			}
			if it.Box != recs[id].Objects[it.Object].Box {
				t.Errorf("%q: box %v, object %v", it.Expression, it.Box, recs[id].Objects[it.Object].Box)
			}
			spec := it.Form.LF.Obj
			if it.Form.LF.Op == "relation" {
				spec = it.Form.LF.A
				if indCount(it.Form.LF.B, s) != 1 {
					t.Errorf("%q: the related object is not singled out", it.Expression)
				}
			}
			n := indCount(spec, s)
			if it.SubjectMatches != n || it.WithRelation != (it.Form.LF.Op == "relation") || it.WithRelation != (n > 1) {
				t.Errorf("%q: with_relation %v, subject matches %d (item: %d)", it.Expression, it.WithRelation, n, it.SubjectMatches)
			}
			if indBorderline(it.Form.LF, s) {
				t.Errorf("%s %q: a borderline pair", it.Image, it.Expression)
			}
			if !strings.HasPrefix(it.Expression, "the ") {
				t.Errorf("%q: not a definite description", it.Expression)
			}
			checkText(t, it.Expression, it.Template, vocab)
			key := it.Image + "|" + it.Expression
			if seen[key] {
				t.Errorf("%s: %q twice", it.Image, it.Expression)
			}
			seen[key] = true
			if it.WithRelation {
				withRel++
			}
		}
		if len(items) < 2*images || len(items) > RefPerImage*images {
			t.Errorf("%d expressions for %d images", len(items), images)
		}
		if f := float64(withRel) / float64(len(items)); f < 0.3 || f > 0.37 {
			t.Errorf("%.3f of the expressions need a relation", f)
		}
		if st := info.Stats.Ref; st == nil || st.Items != len(items) || st.WithRelation != withRel {
			t.Errorf("stats %+v", st)
		}
	})

	var ti TasksInfo
	raw, err := os.ReadFile(filepath.Join(dir, TasksFile))
	if err != nil || json.Unmarshal(raw, &ti) != nil || ti.Split != sp || ti.Version != TaskVersion ||
		!slices.Equal(ti.Tasks, Tasks()) {
		t.Errorf("tasks.json: %v %s", err, raw[:min(len(raw), 300)])
	}
	raw, err = os.ReadFile(filepath.Join(dir, TaskWordsFile))
	if err != nil || string(raw) != strings.Join(TaskVocabulary(), "\n")+"\n" {
		t.Errorf("task_words.txt: %v", err)
	}
}

// TestTaskDeterminism: the same split gives byte-identical files whatever the worker count, and a
// split of fewer images starts with the same items.
func TestTaskDeterminism(t *testing.T) {
	t.Parallel()
	hash := func(workers, count int) map[string][32]byte {
		dir := t.TempDir()
		sp := Split{Name: "det", Seed: 23, Count: count}
		if _, err := WriteTasks(context.Background(), dir, sp, []string{"all"}, Options{Workers: workers}); err != nil {
			t.Fatal(err)
		}
		h := map[string][32]byte{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			h[e.Name()] = sha256.Sum256(raw)
		}
		return h
	}
	one, four := hash(1, 60), hash(4, 60)
	if len(one) != 7 { // the 5 task files, tasks.json, task_words.txt
		t.Errorf("files %v", slices.Sorted(func(yield func(string) bool) {
			for k := range one {
				if !yield(k) {
					return
				}
			}
		}))
	}
	for name, h := range one {
		if four[name] != h {
			t.Errorf("%s differs between 1 and 4 workers", name)
		}
	}
	// Items depend on the image only: the first images' items of a larger split are the same.
	for _, task := range Tasks() {
		small, large := t.TempDir(), t.TempDir()
		for dir, n := range map[string]int{small: 20, large: 60} {
			if _, err := WriteTasks(context.Background(), dir, Split{Name: "p", Seed: 23, Count: n}, []string{task}, Options{Workers: 3}); err != nil {
				t.Fatal(err)
			}
		}
		a, _ := os.ReadFile(filepath.Join(small, TaskFile(task)))
		b, _ := os.ReadFile(filepath.Join(large, TaskFile(task)))
		if len(a) == 0 || !bytes.HasPrefix(b, a) {
			t.Errorf("%s: the 20-image items are not the start of the 60-image ones", task)
		}
	}
	// The same scenes as the caption split: Generate's records hold the task items' boxes.
	for _, it := range RefItems(23, 5, GenerateScene(23, 5)) {
		rec, _, err := Generate(23, 5)
		if err != nil || rec.Objects[it.Object].Box != it.Box {
			t.Errorf("%q: box %v, record %v", it.Expression, it.Box, rec.Objects[it.Object].Box)
		}
	}
}

// taskScene is a hand-built 200×100 scene (the relation margins are 10 px across, 5 down):
//
//	0 small red circle (30,30)    1 large red circle (100,30)    2 small blue square (170,30)
//	                              3 small green star (100,80)
var taskScene = Scene{Width: 200, Height: 100, Objects: []Object{
	taskObj("circle", "red", SizeSmall, 30, 30, 16),
	taskObj("circle", "red", SizeLarge, 100, 30, 30),
	taskObj("square", "blue", SizeSmall, 170, 30, 16),
	taskObj("star", "green", SizeSmall, 100, 80, 16),
}}

func taskObj(shape, color, size string, cx, cy, w float64) Object {
	return Object{Shape: shape, Color: color, Size: size, Box: [4]float64{cx - w/2, cy - w/2, cx + w/2, cy + w/2},
		Center: [2]float64{cx, cy}}
}

func TestVELabel(t *testing.T) {
	t.Parallel()
	spc := func(shape, color, size string) ObjSpec { return ObjSpec{Shape: shape, Color: color, Size: size} }
	cases := []struct {
		form        VEForm
		label, rule string
	}{
		{VEForm{LF: LF{Op: OpExists, Obj: spc("circle", "red", "")}}, LabelEntailment, RuleHolds},
		{VEForm{LF: LF{Op: OpExists, Obj: spc("circle", "blue", "")}}, LabelContradiction, RuleFails},
		{VEForm{LF: LF{Op: OpExists, Obj: spc("circle", "red", "")}, Materials: []string{"wooden"}}, LabelNeutral, RuleMaterialDecides},
		{VEForm{LF: LF{Op: OpExists, Obj: spc("heart", "", "")}, Materials: []string{"metal"}}, LabelContradiction, RuleFailsAnyMaterial},
		{VEForm{LF: LF{Op: OpNone, Obj: spc("heart", "", "")}, Materials: []string{"glass"}}, LabelEntailment, RuleHoldsAnyMaterial},
		{VEForm{LF: LF{Op: OpNone, Obj: spc("star", "", "")}, Materials: []string{"glass"}}, LabelNeutral, RuleMaterialDecides},
		{VEForm{LF: LF{Op: OpCount, N: 2, Obj: spc("circle", "", "")}, Materials: []string{"plastic"}}, LabelNeutral, RuleMaterialDecides},
		{VEForm{LF: LF{Op: OpCount, N: 3, Obj: spc("circle", "", "")}, Materials: []string{"plastic"}}, LabelContradiction, RuleFailsAnyMaterial},
		{VEForm{LF: LF{Op: OpCount, N: 2, Obj: spc("circle", "red", "")}}, LabelEntailment, RuleHolds},
		// Two small circles: one of them being wooden is open.
		{VEForm{LF: LF{Op: OpRelation, Rel: RelLeftOf, A: spc("circle", "", ""), B: spc("square", "", "")},
			Materials: []string{"", "wooden"}}, LabelNeutral, RuleMaterialDecides},
		{VEForm{LF: LF{Op: OpRelation, Rel: RelRightOf, A: spc("circle", "", ""), B: spc("square", "", "")},
			Materials: []string{"wooden"}}, LabelContradiction, RuleFailsAnyMaterial},
		{VEForm{LF: LF{Op: OpRelation, Rel: RelAbove, A: spc("circle", "", SizeLarge), B: spc("star", "", "")}}, LabelEntailment, RuleHolds},
	}
	for _, c := range cases {
		label, rule, err := VELabel(c.form, taskScene)
		if err != nil || label != c.label || rule != c.rule {
			t.Errorf("%+v: %s %s %v, want %s %s", c.form, label, rule, err, c.label, c.rule)
		}
		if ind := indVE(c.form, taskScene); ind != c.label {
			t.Errorf("%+v: independently %s, want %s", c.form, ind, c.label)
		}
	}
	for _, bad := range []VEForm{{LF: LF{Op: OpExists, Obj: spc("circle", "", "")}, Materials: []string{"velvet"}},
		{LF: LF{Op: OpExists, Obj: spc("circle", "", "")}, Materials: []string{"", "metal"}}} {
		if _, _, err := VELabel(bad, taskScene); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestQAAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		form QAForm
		want string
	}{
		{QAForm{QueryColor, LF{Op: OpExists, Obj: ObjSpec{Shape: "square"}}}, "blue"},
		{QAForm{QuerySize, LF{Op: OpExists, Obj: ObjSpec{Shape: "star"}}}, SizeSmall},
		{QAForm{QueryShape, LF{Op: OpExists, Obj: ObjSpec{Color: "green"}}}, "star"},
		{QAForm{QueryCount, LF{Op: OpExists, Obj: ObjSpec{Color: "red"}}}, "2"},
		{QAForm{QueryCount, LF{Op: OpExists, Obj: ObjSpec{Shape: "heart"}}}, "0"},
		{QAForm{QueryCount, LF{Op: OpExists}}, "4"},
		{QAForm{QueryTruth, LF{Op: OpExists, Obj: ObjSpec{Shape: "heart"}}}, AnswerNo},
		// "what size is the circle left of the large red circle?": the small one (an object is
		// never in a relation to itself).
		{QAForm{QuerySize, LF{Op: OpRelation, Rel: RelLeftOf, A: ObjSpec{Shape: "circle"}, B: ObjSpec{Color: "red", Size: SizeLarge}}}, SizeSmall},
		{QAForm{QueryColor, LF{Op: OpRelation, Rel: RelBelow, A: ObjSpec{}, B: ObjSpec{Shape: "circle", Size: SizeLarge}}}, "green"},
		{QAForm{QueryTruth, LF{Op: OpRelation, Rel: RelBelow, A: ObjSpec{Shape: "star"}, B: ObjSpec{Shape: "square"}}}, AnswerYes},
	}
	for _, c := range cases {
		got, err := QAAnswer(c.form, taskScene)
		if err != nil || got != c.want {
			t.Errorf("%+v: %q %v, want %q", c.form, got, err, c.want)
		}
	}
	// Not singled out: two circles; three objects above the star, three left of the square.
	for _, bad := range []QAForm{
		{QueryColor, LF{Op: OpExists, Obj: ObjSpec{Shape: "circle"}}},
		{QueryColor, LF{Op: OpRelation, Rel: RelAbove, A: ObjSpec{}, B: ObjSpec{Shape: "star"}}},
		{QueryColor, LF{Op: OpRelation, Rel: RelLeftOf, A: ObjSpec{}, B: ObjSpec{Shape: "square"}}},
		{QueryCount, LF{Op: OpNone, Obj: ObjSpec{Shape: "circle"}}},
		{"weight", LF{Op: OpExists}},
	} {
		if got, err := QAAnswer(bad, taskScene); err == nil {
			t.Errorf("%+v: %q, no error", bad, got)
		}
	}
	if a := QAAnswers(); len(a) != 27 || a[0] != "red" || a[8] != "circle" || a[16] != SizeSmall || a[18] != "0" ||
		a[24] != "6" || a[25] != AnswerYes || a[26] != AnswerNo {
		t.Errorf("QAAnswers = %v", a)
	}
}

func TestNLVR2TruthAndPartner(t *testing.T) {
	t.Parallel()
	other := Scene{Width: 200, Height: 100, Objects: []Object{taskObj("circle", "red", SizeSmall, 30, 30, 16)}}
	circle := ObjSpec{Shape: "circle"}
	square := LF{Op: OpExists, Obj: ObjSpec{Shape: "square"}}
	redCircle := LF{Op: OpExists, Obj: ObjSpec{Shape: "circle", Color: "red"}}
	cases := []struct {
		f    NLVR2Form
		want bool
	}{
		{NLVR2Form{Op: NLVR2OpImage, Image: ImageLeft, LF: &square}, true},
		{NLVR2Form{Op: NLVR2OpImage, Image: ImageRight, LF: &square}, false},
		{NLVR2Form{Op: NLVR2OpBoth, LF: &redCircle}, true},
		{NLVR2Form{Op: NLVR2OpBoth, LF: &square}, false},
		{NLVR2Form{Op: NLVR2OpMore, Image: ImageLeft, Obj: &circle}, true},
		{NLVR2Form{Op: NLVR2OpMore, Image: ImageRight, Obj: &circle}, false},
		{NLVR2Form{Op: NLVR2OpSame, Obj: &circle}, false},
		{NLVR2Form{Op: NLVR2OpSame, Obj: &ObjSpec{Shape: "circle", Size: SizeSmall}}, true},
	}
	for _, c := range cases {
		got, err := NLVR2Truth(c.f, taskScene, other)
		if err != nil || got != c.want || indNLVR2(c.f, taskScene, other) != c.want {
			t.Errorf("%+v: %v %v, want %v", c.f, got, err, c.want)
		}
	}
	if _, err := NLVR2Truth(NLVR2Form{Op: NLVR2OpImage, Image: "middle", LF: &square}, taskScene, other); err == nil {
		t.Error("image middle: no error")
	}
	for _, c := range [][3]int{{0, 10, 1}, {1, 10, 0}, {8, 9, 7}, {7, 9, 6}, {0, 1, -1}, {4, 5, 3}} {
		if got := NLVR2Partner(c[0], c[1]); got != c[2] {
			t.Errorf("NLVR2Partner(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}

func TestParseTasks(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{"qa": {"qa"}, "ref,qa": {"qa", "ref"}, "all": Tasks(), "ve, nlvr2,ve": {"ve", "nlvr2"}, "": nil} {
		got, err := ParseTasks([]string{in})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseTasks(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseTasks([]string{"vqa"}); err == nil {
		t.Error("vqa: no error")
	}
	if _, err := WriteTasks(context.Background(), t.TempDir(), Split{Name: "x", Seed: 1, Count: 2}, nil, Options{}); err == nil {
		t.Error("no task: no error")
	}
}

// TestTaskVocabulary: the task words extend the caption vocabulary.
func TestTaskVocabulary(t *testing.T) {
	t.Parallel()
	v := TaskVocabulary()
	for _, w := range Vocabulary() {
		if !slices.Contains(v, w) {
			t.Errorf("caption word %q missing", w)
		}
	}
	if !slices.IsSorted(v) || len(slices.Compact(slices.Clone(v))) != len(v) {
		t.Error("not sorted and unique")
	}
	for _, w := range []string{"what", "wooden", "images", "the"} {
		if slices.Contains(Vocabulary(), w) || !slices.Contains(v, w) {
			t.Errorf("%q: a task word", w)
		}
	}
}
