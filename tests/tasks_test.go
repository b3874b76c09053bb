package tests

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestServeSeveralModels: one `uniter serve` process, the pre-training fixture as its default
// model and every fine-tuned fixture from one models folder (--model testdata/bundles). Each
// task is answered by the model named in the request, as the PyTorch reference computes it;
// the fine-tuned bundles, which have no detector, read images with the default model's;
// requests for a task a model lacks, for a model not served, or for NLVR2 with one image are
// named 4xx errors; /v1/models lists all eight.
func TestServeSeveralModels(t *testing.T) {
	t.Parallel()
	s := startServe(t, uniterEnv(t), "--model", testenv.Path(t, "testdata", "bundles"))
	post := func(path string, body map[string]any) (int, map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(body)
		code, out, _ := s.call(t, "POST", path, nil, string(raw))
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, out)
		}
		return code, v
	}
	golden := func(layout string) map[string]any {
		raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "tiny-"+layout+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var g map[string]any
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatal(err)
		}
		return g["cases"].([]any)[0].(map[string]any)
	}
	regions := func(c map[string]any, i int) map[string]any {
		im := c["images"].([]any)[i].(map[string]any)
		return map[string]any{"width": im["width"], "height": im["height"], "boxes": im["boxes"], "features": im["features"]}
	}
	near := func(what string, got any, want float64) {
		t.Helper()
		if g, ok := got.(float64); !ok || math.Abs(g-want) > 1e-4 {
			t.Errorf("%s: %v, PyTorch %v", what, got, want)
		}
	}

	c := golden("nlvr2-triplet")
	code, out := post("/v1/nlvr2", map[string]any{"regions": []any{regions(c, 0), regions(c, 1)}, "statement": c["text"], "model": "tiny-nlvr2-triplet"})
	if code != 200 {
		t.Fatalf("nlvr2: %d %v", code, out)
	}
	near("nlvr2 P(true)", out["true_probability"], c["answer"].(map[string]any)["true_probability"].(float64))
	c = golden("ve")
	code, out = post("/v1/entailment", map[string]any{"regions": regions(c, 0), "hypothesis": c["text"], "model": "tiny-ve"})
	if code != 200 || out["label"] != c["answer"].(map[string]any)["label"] {
		t.Errorf("entailment: %d %v", code, out)
	}
	c = golden("re")
	code, out = post("/v1/refer", map[string]any{"regions": regions(c, 0), "expression": c["text"], "model": "tiny-re"})
	if code != 200 || out["regions"].([]any)[0].(map[string]any)["index"].(float64) != c["answer"].(map[string]any)["best"].(float64) {
		t.Errorf("refer: %d %v", code, out)
	}
	c = golden("retrieval")
	code, out = post("/v1/match", map[string]any{"regions": regions(c, 0), "texts": []any{c["text"]}, "model": "tiny-retrieval"})
	if code != 200 {
		t.Fatalf("match: %d %v", code, out)
	}
	res := out["results"].([]any)[0].(map[string]any)
	near("rank logit", res["logit"], c["answer"].(map[string]any)["rank_score"].(float64))
	if res["head"] != "rank" {
		t.Errorf("retrieval match scored by %v", res["head"])
	}
	// An image for a fine-tuned model without a detector: the default model's detector reads it.
	png, err := os.ReadFile(testenv.Path(t, "testdata", "images", "shapes-160x128.png"))
	if err != nil {
		t.Fatal(err)
	}
	code, out = post("/v1/vqa", map[string]any{"image": map[string]any{"data": base64.StdEncoding.EncodeToString(png)}, "question": "what colour is the circle?", "model": "tiny-vqa"})
	if code != 200 || len(out["answers"].([]any)) != 5 || out["image"] == nil {
		t.Errorf("vqa on an image: %d %v", code, out)
	}

	for _, bad := range []struct {
		path string
		body map[string]any
		code int
		err  string
		says []string
	}{
		{"/v1/vqa", map[string]any{"regions": regions(c, 0), "question": "what?"}, 400, "task_unavailable", []string{"tiny-random", "vqa"}},
		{"/v1/refer", map[string]any{"regions": regions(c, 0), "expression": "x", "model": "tiny-ve"}, 400, "task_unavailable", []string{"tiny-ve", "referring"}},
		{"/v1/match", map[string]any{"regions": regions(c, 0), "texts": []any{"x"}, "model": "tiny-gone"}, 404, "unknown_model", []string{"tiny-gone", "tiny-vqa"}},
		{"/v1/nlvr2", map[string]any{"regions": []any{regions(c, 0)}, "statement": "x", "model": "tiny-nlvr2-paired"}, 400, "invalid_pair", []string{"regions", "two"}},
	} {
		code, out := post(bad.path, bad.body)
		e, _ := out["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if code != bad.code || e["code"] != bad.err {
			t.Errorf("%s %v: %d %v, want %d %s", bad.path, bad.body["model"], code, out, bad.code, bad.err)
		}
		for _, w := range bad.says {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q does not say %q", bad.path, msg, w)
			}
		}
	}

	code, body, _ := s.call(t, "GET", "/v1/models", nil, "")
	var models struct {
		Models []struct {
			Name string `json:"name"`
			Task struct {
				Name string `json:"name"`
			} `json:"task"`
		} `json:"models"`
	}
	if err := json.Unmarshal(body, &models); err != nil || code != 200 {
		t.Fatalf("/v1/models: %d %v", code, err)
	}
	var names []string
	for _, m := range models.Models {
		names = append(names, m.Name+":"+m.Task.Name)
	}
	want := "tiny-random:pretrain tiny-nlvr2-paired:nlvr2 tiny-nlvr2-paired-attn:nlvr2 tiny-nlvr2-triplet:nlvr2 tiny-re:re tiny-retrieval:retrieval tiny-ve:ve tiny-vqa:vqa"
	if strings.Join(names, " ") != want {
		t.Errorf("/v1/models: %s\nwant %s", strings.Join(names, " "), want)
	}
}
