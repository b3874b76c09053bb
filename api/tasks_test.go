package api_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// taskCase is one case of testdata/golden/tiny-<layout>.json (python3 -m uniter.fixtures.tiny_tasks).
type taskCase struct {
	Text   string           `json:"text"`
	Images []map[string]any `json:"images"` // width, height, boxes, features (and locations, unused)
	Answer json.RawMessage  `json:"answer"`
}

func taskCases(t *testing.T, layout string) []taskCase {
	t.Helper()
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "tiny-"+layout+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []taskCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g.Cases
}

// regionsJSON is a golden image as a request's regions.
func regionsJSON(im map[string]any) map[string]any {
	return map[string]any{"width": im["width"], "height": im["height"], "boxes": im["boxes"], "features": im["features"]}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-4 || math.IsNaN(got) {
		t.Errorf("%s: HTTP %v, PyTorch %v", what, got, want)
	}
}

// TestTaskEndpoints: one process serves the pre-training fixture and every fine-tuned one;
// each task endpoint, given the golden regions and the model's name, answers what the
// PyTorch reference of the official class computes (within 1e-4), and /v1/models lists each
// model's task and heads.
func TestTaskEndpoints(t *testing.T) {
	h := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 4 << 20}, tasks: true}).Handler()
	post := func(path string, body map[string]any, out any) {
		t.Helper()
		rec := send(h, jsonReq("POST", path, js(body)))
		if rec.Code != 200 {
			t.Fatalf("%s (model %v): %d %s", path, body["model"], rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatal(err)
		}
	}
	for ci, c := range taskCases(t, "vqa") {
		var want struct {
			Top [][2]any `json:"top"`
		}
		mustUnmarshal(t, c.Answer, &want)
		var got api.VQAResponse
		post("/v1/vqa", map[string]any{"regions": regionsJSON(c.Images[0]), "question": c.Text, "top_k": len(want.Top), "model": "tiny-vqa"}, &got)
		for k, top := range want.Top {
			if got.Answers[k].Answer != top[0].(string) {
				t.Errorf("vqa case %d: answer %d %q, PyTorch %q", ci, k, got.Answers[k].Answer, top[0])
			}
			near(t, fmt.Sprintf("vqa case %d answer %d", ci, k), float64(got.Answers[k].Score), top[1].(float64))
		}
		if got.Model != "tiny-vqa" || got.Question.Tokens < 2 {
			t.Errorf("vqa case %d: model %q, %d tokens", ci, got.Model, got.Question.Tokens)
		}
	}
	for ci, c := range taskCases(t, "ve") {
		var want struct {
			Probabilities []float64 `json:"probabilities"`
			Label         string    `json:"label"`
		}
		mustUnmarshal(t, c.Answer, &want)
		var got api.EntailmentResponse
		post("/v1/entailment", map[string]any{"regions": regionsJSON(c.Images[0]), "hypothesis": c.Text, "model": "tiny-ve"}, &got)
		if got.Label != want.Label {
			t.Errorf("ve case %d: %q, PyTorch %q", ci, got.Label, want.Label)
		}
		for k, label := range []string{"contradiction", "entailment", "neutral"} {
			near(t, fmt.Sprintf("ve case %d %s", ci, label), float64(got.Probabilities[label]), want.Probabilities[k])
		}
	}
	for ci, c := range taskCases(t, "re") {
		var want struct {
			Scores        []float64 `json:"scores"`
			Probabilities []float64 `json:"probabilities"`
			Best          int       `json:"best"`
		}
		mustUnmarshal(t, c.Answer, &want)
		var got api.ReferResponse
		post("/v1/refer", map[string]any{"regions": regionsJSON(c.Images[0]), "expression": c.Text, "top_k": len(want.Scores), "model": "tiny-re"}, &got)
		if len(got.Regions) != len(want.Scores) || got.Regions[0].Index != want.Best {
			t.Fatalf("re case %d: %+v, PyTorch best %d of %d", ci, got.Regions, want.Best, len(want.Scores))
		}
		for _, r := range got.Regions {
			near(t, fmt.Sprintf("re case %d region %d score", ci, r.Index), float64(r.Score), want.Scores[r.Index])
			near(t, fmt.Sprintf("re case %d region %d probability", ci, r.Index), float64(r.Probability), want.Probabilities[r.Index])
		}
	}
	for _, layout := range []string{"nlvr2-paired", "nlvr2-triplet", "nlvr2-paired-attn"} {
		for ci, c := range taskCases(t, layout) {
			var want struct {
				TrueProbability float64 `json:"true_probability"`
				Label           bool    `json:"label"`
			}
			mustUnmarshal(t, c.Answer, &want)
			var got api.NLVR2Response
			post("/v1/nlvr2", map[string]any{"regions": []any{regionsJSON(c.Images[0]), regionsJSON(c.Images[1])}, "statement": c.Text, "model": "tiny-" + layout}, &got)
			near(t, fmt.Sprintf("%s case %d P(true)", layout, ci), float64(got.TrueProbability), want.TrueProbability)
			if got.Label != want.Label {
				t.Errorf("%s case %d: label %v, PyTorch %v", layout, ci, got.Label, want.Label)
			}
		}
	}
	for ci, c := range taskCases(t, "retrieval") {
		var want struct {
			RankScore float64 `json:"rank_score"`
		}
		mustUnmarshal(t, c.Answer, &want)
		var got api.MatchResponse
		post("/v1/match", map[string]any{"regions": regionsJSON(c.Images[0]), "texts": []string{c.Text}, "model": "tiny-retrieval"}, &got)
		if got.Results[0].Head != "rank" {
			t.Errorf("retrieval case %d: scored by %q, want rank", ci, got.Results[0].Head)
		}
		near(t, fmt.Sprintf("retrieval case %d logit", ci), float64(got.Results[0].Logit), want.RankScore)
	}
	// The default model is the pre-training one, scored by ITM.
	var m api.MatchResponse
	post("/v1/match", map[string]any{"regions": fixtureRegions(2), "texts": []string{"a red square"}}, &m)
	if m.Model != "tiny-random" || m.Results[0].Head != "itm" {
		t.Errorf("default match: model %q, head %q", m.Model, m.Results[0].Head)
	}
	var models api.ModelsResponse
	rec := send(h, jsonReq("GET", "/v1/models", ""))
	mustUnmarshal(t, rec.Body.Bytes(), &models)
	tasks := map[string]string{}
	for _, info := range models.Models {
		tasks[info.Name] = info.Task.Name + "/" + info.Task.Class
	}
	want := map[string]string{"tiny-random": "pretrain/UniterForPretraining", "tiny-retrieval": "retrieval/UniterForImageTextRetrieval",
		"tiny-vqa": "vqa/UniterForVisualQuestionAnswering", "tiny-ve": "ve/UniterForVisualEntailment",
		"tiny-re": "re/UniterForReferringExpressionComprehension", "tiny-nlvr2-paired": "nlvr2/UniterForNlvr2Paired",
		"tiny-nlvr2-triplet": "nlvr2/UniterForNlvr2Triplet", "tiny-nlvr2-paired-attn": "nlvr2/UniterForNlvr2PairedAttn"}
	if fmt.Sprint(tasks) != fmt.Sprint(want) {
		t.Errorf("/v1/models tasks:\n got %v\nwant %v", tasks, want)
	}
	for _, info := range models.Models {
		if info.Name == "tiny-vqa" && (info.Task.Labels != 12 || info.Heads["itm"] || info.Heads["mlm"] || !info.Heads["vqa"]) {
			t.Errorf("tiny-vqa: %+v, heads %v", info.Task, info.Heads)
		}
	}
}

func mustUnmarshal(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}
