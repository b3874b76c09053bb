package offline

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
)

// TestEvaluateTask runs each task of a small generated split through its fine-tuned fixture
// (random weights, so the figures mean nothing) and checks the report's bookkeeping against
// an independent loop over the items: item counts, per-type counts, and the accuracy of the
// model's answers scored the same way.
func TestEvaluateTask(t *testing.T) {
	env := testenv.Env(t)
	ctx := context.Background()
	def, err := pipeline.Load(env, testenv.FixtureBundle(t), pipeline.Options{MaxRegions: 100, CacheBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	dir := filepath.Join(t.TempDir(), "tiny")
	sp := shapes.Split{Name: "tiny", Seed: 91, Count: 6}
	if _, err := shapes.WriteSplit(ctx, dir, sp, shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := shapes.WriteTasks(ctx, dir, sp, shapes.Tasks(), shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	for task, bundle := range map[string]string{shapes.TaskQA: "tiny-vqa", shapes.TaskVE: "tiny-ve",
		shapes.TaskNLVR2: "tiny-nlvr2-paired", shapes.TaskRef: "tiny-re"} {
		b, err := pipeline.Load(env, testenv.Path(t, "testdata", "bundles", bundle), pipeline.Options{MaxRegions: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.BorrowDetector(def); err != nil {
			t.Fatal(err)
		}
		rep, err := EvaluateTask(ctx, b, dir, task, 2, nil)
		if err != nil {
			t.Fatalf("%s: %v", task, err)
		}
		items, err := readTaskItems(dir, task)
		if err != nil {
			t.Fatal(err)
		}
		// The independent loop: every item's answer from the bundle, judged by the file's label.
		right, types := 0, map[string]int{}
		raw, _ := os.ReadFile(filepath.Join(dir, shapes.TaskFile(task)))
		lines := splitLines(raw)
		if len(lines) != len(items) || rep.Items != len(items) {
			t.Fatalf("%s: %d lines, %d items read, report says %d", task, len(lines), len(items), rep.Items)
		}
		for _, line := range lines {
			var item struct {
				Image, Left, Right, Question, Answer, Hypothesis, Statement, Expression, Type string
				Label                                                                         json.RawMessage
				Box                                                                           [4]float64
				WithRelation                                                                  bool `json:"with_relation"`
			}
			if err := json.Unmarshal(line, &item); err != nil {
				t.Fatal(err)
			}
			input := func(file string) pipeline.Input {
				data, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				det, _, err := b.Detect(ctx, data)
				if err != nil {
					t.Fatal(err)
				}
				return pipeline.Input{Prepared: det.Prepared}
			}
			ok := false
			switch task {
			case shapes.TaskQA:
				a, err := b.VQA(ctx, input(item.Image), item.Question, 1)
				if err != nil {
					t.Fatal(err)
				}
				ok = a.Answers[0].Answer == item.Answer
				types[item.Type]++
			case shapes.TaskVE:
				e, err := b.Entail(ctx, input(item.Image), item.Hypothesis)
				if err != nil {
					t.Fatal(err)
				}
				var label string
				_ = json.Unmarshal(item.Label, &label)
				ok = e.Label == label
				types[label]++
			case shapes.TaskNLVR2:
				o, err := b.NLVR2(ctx, [2]pipeline.Input{input(item.Left), input(item.Right)}, item.Statement)
				if err != nil {
					t.Fatal(err)
				}
				var label bool
				_ = json.Unmarshal(item.Label, &label)
				ok = o.True == label
				types[item.Type]++
			case shapes.TaskRef:
				o, err := b.Refer(ctx, input(item.Image), item.Expression, 1)
				if err != nil {
					t.Fatal(err)
				}
				bx := o.Regions[0].Box
				ix := math.Max(0, math.Min(float64(bx[2]), item.Box[2])-math.Max(float64(bx[0]), item.Box[0]))
				iy := math.Max(0, math.Min(float64(bx[3]), item.Box[3])-math.Max(float64(bx[1]), item.Box[1]))
				inter := ix * iy
				union := float64((bx[2]-bx[0])*(bx[3]-bx[1])) + (item.Box[2]-item.Box[0])*(item.Box[3]-item.Box[1]) - inter
				ok = inter/union >= 0.5
				if item.WithRelation {
					types["with_relation"]++
				} else {
					types["attributes"]++
				}
			}
			if ok {
				right++
			}
		}
		if want := float64(right) / float64(len(lines)); math.Abs(rep.Accuracy-want) > 1e-9 {
			t.Errorf("%s: accuracy %v, the independent loop %v", task, rep.Accuracy, want)
		}
		for k, n := range types {
			if rep.PerType[k].Items != n {
				t.Errorf("%s: type %s has %d items in the report, %d in the file", task, k, rep.PerType[k].Items, n)
			}
		}
		if rep.Blanked < 0 || rep.Blanked > 1 {
			t.Errorf("%s: blanked accuracy %v", task, rep.Blanked)
		}
	}
}

func splitLines(raw []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range raw {
		if c == '\n' {
			if i > start {
				out = append(out, raw[start:i])
			}
			start = i + 1
		}
	}
	if start < len(raw) {
		out = append(out, raw[start:])
	}
	return out
}
