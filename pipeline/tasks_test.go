package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// taskGolden is testdata/golden/tiny-<layout>.json, written by python3 -m
// uniter.fixtures.tiny_tasks from the PyTorch reference of each official fine-tuned class.
type taskGolden struct {
	Bundle string `json:"bundle"`
	Task   string `json:"task"`
	Cases  []struct {
		Text   string  `json:"text"`
		IDs    []int64 `json:"ids"`
		Images []struct {
			Width    int          `json:"width"`
			Height   int          `json:"height"`
			Boxes    [][4]float32 `json:"boxes"`
			Features [][]float32  `json:"features"`
		} `json:"images"`
		Outputs map[string]any  `json:"outputs"`
		Answer  json.RawMessage `json:"answer"`
	} `json:"cases"`
	Batch struct {
		Cases   []int          `json:"cases"`
		Outputs map[string]any `json:"outputs"`
	} `json:"batch"`
}

// taskLayouts are the fixture bundles of the official fine-tuned classes.
var taskLayouts = []string{"retrieval", "vqa", "ve", "re", "nlvr2-paired", "nlvr2-triplet", "nlvr2-paired-attn"}

func loadTaskGolden(t *testing.T, layout string) *taskGolden {
	t.Helper()
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "tiny-"+layout+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g taskGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

// nested converts a JSON value (numbers in nested arrays) to a flat row-major slice.
func nested(v any) []float64 {
	switch x := v.(type) {
	case float64:
		return []float64{x}
	case []any:
		var out []float64
		for _, e := range x {
			out = append(out, nested(e)...)
		}
		return out
	}
	panic(fmt.Sprintf("nested: %T", v))
}

func closeTo(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-4 || math.IsNaN(got) {
		t.Errorf("%s: Go %v, PyTorch %v (|Δ| %.2g > 1e-4)", what, got, want, math.Abs(got-want))
	}
}

// TestTaskGoldens runs every official fine-tuned layout's bundle through the Go task path
// (tokenizer, 7-d locations, the graphs, the post-processing) and compares its answers with
// the PyTorch reference's, within 1e-4; the padded batch of all cases gives each case's
// outputs.
func TestTaskGoldens(t *testing.T) {
	env := testenv.Env(t)
	ctx := context.Background()
	for _, layout := range taskLayouts {
		t.Run(layout, func(t *testing.T) {
			g := loadTaskGolden(t, layout)
			b, err := Load(env, testenv.Path(t, "testdata", g.Bundle), Options{MaxRegions: 100, VerifyChecksums: true})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Manifest.TaskName() != g.Task {
				t.Fatalf("bundle task %q, golden %q", b.Manifest.TaskName(), g.Task)
			}
			var inputs [][]Input
			for ci, c := range g.Cases {
				enc, err := b.Tokenize(c.Text)
				if err != nil {
					t.Fatal(err)
				}
				var ids []int64
				for _, tok := range enc.Tokens {
					ids = append(ids, tok.ID)
				}
				if !slices.Equal(ids, c.IDs) {
					t.Fatalf("case %d: Go token ids %v, PyTorch %v", ci, ids, c.IDs)
				}
				var in []Input
				for _, im := range c.Images {
					r := detector.Regions{Width: im.Width, Height: im.Height, Features: im.Features}
					for _, box := range im.Boxes {
						r.Boxes = append(r.Boxes, detector.Box(box))
					}
					in = append(in, Input{Regions: &r})
				}
				inputs = append(inputs, in)
				what := fmt.Sprintf("case %d", ci)
				switch g.Task {
				case TaskVQA:
					var want struct {
						Scores []float64 `json:"scores"`
						Top    [][2]any  `json:"top"`
					}
					mustJSON(t, c.Answer, &want)
					out, err := b.VQA(ctx, in[0], c.Text, len(want.Scores))
					if err != nil {
						t.Fatal(err)
					}
					for k, top := range want.Top {
						if out.Answers[k].Answer != top[0].(string) {
							t.Errorf("%s: answer %d is %q, PyTorch %q", what, k, out.Answers[k].Answer, top[0])
						}
						closeTo(t, what+" answer score", float64(out.Answers[k].Score), top[1].(float64))
					}
					for _, a := range out.Answers {
						closeTo(t, what+" "+a.Answer, float64(a.Score), want.Scores[slices.Index(b.TaskLabels(), a.Answer)])
					}
				case TaskVE:
					var want struct {
						Probabilities []float64 `json:"probabilities"`
						Label         string    `json:"label"`
					}
					mustJSON(t, c.Answer, &want)
					out, err := b.Entail(ctx, in[0], c.Text)
					if err != nil {
						t.Fatal(err)
					}
					if out.Label != want.Label {
						t.Errorf("%s: label %q, PyTorch %q", what, out.Label, want.Label)
					}
					for k, p := range out.Probabilities {
						closeTo(t, what+" "+p.Label, float64(p.Probability), want.Probabilities[k])
					}
				case TaskRE:
					var want struct {
						Scores        []float64 `json:"scores"`
						Probabilities []float64 `json:"probabilities"`
						Best          int       `json:"best"`
					}
					mustJSON(t, c.Answer, &want)
					out, err := b.Refer(ctx, in[0], c.Text, len(want.Scores))
					if err != nil {
						t.Fatal(err)
					}
					if len(out.Regions) != len(want.Scores) || out.Regions[0].Index != want.Best {
						t.Fatalf("%s: %d regions, best %d; PyTorch %d, best %d", what, len(out.Regions), out.Regions[0].Index, len(want.Scores), want.Best)
					}
					for _, r := range out.Regions {
						closeTo(t, fmt.Sprintf("%s region %d score", what, r.Index), float64(r.Score), want.Scores[r.Index])
						closeTo(t, fmt.Sprintf("%s region %d probability", what, r.Index), float64(r.Probability), want.Probabilities[r.Index])
					}
				case TaskNLVR2:
					var want struct {
						TrueProbability float64 `json:"true_probability"`
						Label           bool    `json:"label"`
					}
					mustJSON(t, c.Answer, &want)
					out, err := b.NLVR2(ctx, [2]Input{in[0], in[1]}, c.Text)
					if err != nil {
						t.Fatal(err)
					}
					closeTo(t, what+" P(true)", float64(out.TrueProbability), want.TrueProbability)
					if out.True != want.Label {
						t.Errorf("%s: label %v, PyTorch %v", what, out.True, want.Label)
					}
				case TaskRetrieval:
					var want struct {
						RankScore float64 `json:"rank_score"`
					}
					mustJSON(t, c.Answer, &want)
					out, err := b.Match(ctx, in[0], []string{c.Text})
					if err != nil {
						t.Fatal(err)
					}
					if out.Results[0].Head != MatchByRank {
						t.Errorf("%s: scored by %q, want the rank head", what, out.Results[0].Head)
					}
					closeTo(t, what+" rank logit", float64(out.Results[0].Logit), want.RankScore)
				default:
					t.Fatalf("task %q", g.Task)
				}
			}
			if g.Task == TaskNLVR2 {
				return
			}
			// The padded batch of every case: each row as PyTorch's batch gives it.
			var pairs []Pair
			for ci, c := range g.Cases {
				enc, _ := b.Tokenize(c.Text)
				p, err := b.Prepare(*inputs[ci][0].Regions)
				if err != nil {
					t.Fatal(err)
				}
				pairs = append(pairs, Pair{Text: enc, Regions: p})
			}
			e, err := b.Encode(ctx, pairs, false)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range g.Batch.Outputs {
				var got []float32
				switch name {
				case "pooled":
					got = e.pooled
				case "hidden":
					got = e.hidden
				default:
					got = e.heads[name]
				}
				w := nested(want)
				if len(got) != len(w) {
					t.Fatalf("batch %s: %d values, PyTorch %d", name, len(got), len(w))
				}
				worst := 0.0
				for i := range got {
					worst = math.Max(worst, math.Abs(float64(got[i])-w[i]))
				}
				if worst > 1e-4 {
					t.Errorf("batch %s: max |Δ| %.2g > 1e-4", name, worst)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// TestTaskUnavailable: a task the bundle has no head for is refused with task_unavailable,
// naming the task and the bundle.
func TestTaskUnavailable(t *testing.T) {
	env := testenv.Env(t)
	ctx := context.Background()
	b, err := Load(env, testenv.Path(t, "testdata", "bundles", "tiny-vqa"), Options{MaxRegions: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := detector.Regions{Width: 10, Height: 10, Boxes: []detector.Box{{0, 0, 5, 5}}, Features: [][]float32{make([]float32, b.Manifest.Model.FeatureDim)}}
	in := Input{Regions: &r}
	for what, call := range map[string]func() error{
		"match":  func() error { _, err := b.Match(ctx, in, []string{"a"}); return err },
		"ve":     func() error { _, err := b.Entail(ctx, in, "a"); return err },
		"refer":  func() error { _, err := b.Refer(ctx, in, "a", 1); return err },
		"nlvr2":  func() error { _, err := b.NLVR2(ctx, [2]Input{in, in}, "a"); return err },
		"scores": func() error { _, err := b.ScoreMatrix(ctx, []*detector.Prepared{}, nil, ScoreOptions{}); return err },
	} {
		err := call()
		ie, ok := err.(*InputError)
		if !ok || ie.Code != CodeTaskUnavailable || !strings.Contains(ie.Message, "tiny-vqa") || !strings.Contains(ie.Message, "task vqa") {
			t.Errorf("%s on a VQA bundle: %v", what, err)
		}
	}
	if _, err := b.VQA(ctx, in, "what colour?", 3); err != nil {
		t.Errorf("vqa: %v", err)
	}
}
