package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden responses in testdata/")

const maxBody = 64 << 10

// newServer serves the fixture bundle; ready unless told otherwise.
func newServer(t testing.TB) (*api.Server, http.Handler) {
	s, _ := newServerBundle(t)
	return s, s.Handler()
}

// newServerBundle is newServer with the bundle it serves.
func newServerBundle(t testing.TB) (*api.Server, *pipeline.Bundle) {
	ts := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: maxBody}})
	return ts.Server, ts.bundle
}

// fixtureRegions is a valid R for the fixture (feature dim 64).
func fixtureRegions(n int) map[string]any {
	boxes := make([][]float32, n)
	feats := make([][]float32, n)
	for i := range n {
		boxes[i] = []float32{float32(10 * i), float32(5 * i), float32(10*i + 40), float32(5*i + 30)}
		feats[i] = make([]float32, 64)
		for j := range feats[i] {
			feats[i][j] = float32((i*31+j*7)%11) / 10
		}
	}
	return map[string]any{"width": 200, "height": 120, "boxes": boxes, "features": feats}
}

func do(t testing.TB, h http.Handler, method, path, contentType string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func postJSON(t testing.TB, h http.Handler, path string, v any) *httptest.ResponseRecorder {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, h, http.MethodPost, path, "application/json", bytes.NewReader(raw))
}

func TestErrors(t *testing.T) {
	_, h := newServer(t)
	badFeat := fixtureRegions(2)
	badFeat["features"] = [][]float32{make([]float32, 63), make([]float32, 64)}
	outside := fixtureRegions(1)
	outside["boxes"] = [][]float32{{0, 0, 201, 50}}
	threeNumbers := fixtureRegions(1)
	threeNumbers["boxes"] = [][]float32{{0, 0, 20}}
	tooMany := fixtureRegions(11)
	cases := []struct {
		name, path, ctype, body string
		status                  int
		code, message           string
	}{
		{"malformed json", "/v1/match", "application/json", `{"texts": [`, 400, "malformed_json", "malformed JSON"},
		{"empty body", "/v1/match", "application/json", ``, 400, "malformed_json", "empty"},
		{"trailing data", "/v1/match", "application/json", `{} {}`, 400, "malformed_json", "trailing"},
		{"unknown field", "/v1/match", "application/json", `{"txts": ["a"]}`, 400, "unknown_field", `"txts"`},
		{"wrong type", "/v1/match", "application/json", `{"texts": "a dog"}`, 400, "malformed_json", "texts: got JSON string, want an array"},
		{"content type", "/v1/match", "text/plain", `{}`, 415, "unsupported_media_type", "application/json"},
		{"missing regions", "/v1/match", "", `{"texts": ["a"]}`, 400, "missing_input", "regions"},
		{"feature dim", "/v1/match", "", js(map[string]any{"regions": badFeat, "texts": []string{"a"}}), 400, "invalid_regions", "feature dimension is 64"},
		{"box outside", "/v1/match", "", js(map[string]any{"regions": outside, "texts": []string{"a"}}), 400, "invalid_regions", "outside the 200×120 image"},
		{"box arity", "/v1/match", "", js(map[string]any{"regions": threeNumbers, "texts": []string{"a"}}), 400, "invalid_regions", "boxes[0]: 3 numbers"},
		{"too many regions", "/v1/match", "", js(map[string]any{"regions": tooMany, "texts": []string{"a"}}), 400, "invalid_regions", "at most 10"},
		{"empty text", "/v1/match", "", js(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a", "  \t"}}), 400, "empty_text", "texts[1]"},
		{"no texts", "/v1/match", "", js(map[string]any{"regions": fixtureRegions(2), "texts": []string{}}), 400, "no_texts", "at least one"},
		{"too many texts", "/v1/match", "", js(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a", "b", "c", "d", "e"}}), 400, "too_many_texts", "at most 4"},
		{"align empty text", "/v1/align", "", js(map[string]any{"regions": fixtureRegions(2), "text": ""}), 400, "empty_text", "text"},
		{"align negative top", "/v1/align", "", js(map[string]any{"regions": fixtureRegions(2), "text": "a", "top_regions": -1}), 400, "invalid_top_regions", "top_regions"},
		{"body too large", "/v1/match", "", `{"texts": ["` + strings.Repeat("a", maxBody) + `"]}`, 413, "body_too_large", fmt.Sprint(maxBody)},
		{"wrong method", "/v1/match", "", "", 405, "method_not_allowed", "GET"},
		{"no route", "/v1/nothing", "", "", 404, "not_found", "/v1/nothing"},
	}
	for _, c := range cases {
		method := http.MethodPost
		if c.status == 405 || c.status == 404 {
			method = http.MethodGet
		}
		rec := do(t, h, method, c.path, c.ctype, strings.NewReader(c.body))
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("%s: body %q is not a JSON error: %v", c.name, rec.Body.String(), err)
			continue
		}
		if rec.Code != c.status || body.Error.Code != c.code || !strings.Contains(body.Error.Message, c.message) {
			t.Errorf("%s: got %d %q %q, want %d %q containing %q", c.name, rec.Code, body.Error.Code, body.Error.Message, c.status, c.code, c.message)
		}
	}
}

// TestBodyTooLargeChunked: a body without Content-Length is cut at the limit too.
func TestBodyTooLargeChunked(t *testing.T) {
	_, h := newServer(t)
	body := io.MultiReader(strings.NewReader(`{"texts": ["`), strings.NewReader(strings.Repeat("a", 2*maxBody)), strings.NewReader(`"]}`))
	req := httptest.NewRequest(http.MethodPost, "/v1/match", body)
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d %s, want 413", rec.Code, rec.Body)
	}
}

func js(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

func TestHealthReadyModels(t *testing.T) {
	s, h := newServer(t)
	if rec := do(t, h, http.MethodGet, "/healthz", "", nil); rec.Code != 200 {
		t.Fatalf("healthz: got %d", rec.Code)
	}
	s.SetReady(false)
	if rec := do(t, h, http.MethodGet, "/readyz", "", nil); rec.Code != 503 {
		t.Fatalf("readyz before warm-up: got %d, want 503", rec.Code)
	}
	s.SetReady(true)
	if rec := do(t, h, http.MethodGet, "/readyz", "", nil); rec.Code != 200 {
		t.Fatalf("readyz: got %d, want 200", rec.Code)
	}
	rec := do(t, h, http.MethodGet, "/v1/models", "", nil)
	var resp api.ModelsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Models) != 1 {
		t.Fatalf("models: %v %s", err, rec.Body)
	}
	m := resp.Models[0]
	if m.Name != "tiny-random" || !m.RandomWeights || m.Provider != "cpu" || m.FeatureDim != 64 || m.Hidden != 32 || m.Layers != 2 {
		t.Fatalf("models: got %+v", m)
	}
	if m.Detector == nil || m.Detector.Provider != "cpu" {
		t.Fatalf("models: detector %+v, want one on the cpu", m.Detector)
	}
}

// golden compares a response with testdata/NAME.golden.json (timings left out); -update rewrites.
func golden(t *testing.T, name string, body []byte) { goldenWithin(t, name, body, 1e-5) }

// goldenWithin is golden with numbers compared within tol.
func goldenWithin(t *testing.T, name string, body []byte, tol float64) {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "timings_ms") // measured, not computed
	got, _ := json.MarshalIndent(v, "", "  ")
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./api -update to create it)", err)
	}
	if !jsonClose(t, got, want, tol) {
		t.Errorf("%s: response differs from %s:\n%s", name, path, got)
	}
}

// jsonClose compares two JSON documents, numbers within tol (different ONNX Runtime builds or
// CPUs may differ in the last float bits).
func jsonClose(t *testing.T, a, b []byte, tol float64) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	var eq func(x, y any) bool
	eq = func(x, y any) bool {
		switch xv := x.(type) {
		case float64:
			yv, ok := y.(float64)
			return ok && math.Abs(xv-yv) <= tol
		case []any:
			yv, ok := y.([]any)
			if !ok || len(xv) != len(yv) {
				return false
			}
			for i := range xv {
				if !eq(xv[i], yv[i]) {
					return false
				}
			}
			return true
		case map[string]any:
			yv, ok := y.(map[string]any)
			if !ok || len(xv) != len(yv) {
				return false
			}
			for k := range xv {
				if !eq(xv[k], yv[k]) {
					return false
				}
			}
			return true
		}
		return x == y
	}
	return eq(x, y)
}

func TestMatchGolden(t *testing.T) {
	_, h := newServer(t)
	texts := []string{"a red square left of a blue circle", "two green triangles", "Something orange above a star."}
	rec := postJSON(t, h, "/v1/match", map[string]any{"regions": fixtureRegions(4), "texts": texts})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var resp api.MatchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(texts) || resp.Model != "tiny-random" {
		t.Fatalf("got %d results for model %q", len(resp.Results), resp.Model)
	}
	for i, r := range resp.Results {
		p := 1 / (1 + math.Exp(-float64(r.Logit)))
		if r.Text != texts[i] || r.Score < 0 || r.Score > 1 || r.OTDistance <= 0 || r.Tokens < 3 {
			t.Errorf("result %d: %+v", i, r)
		}
		_ = p // score is softmax over two logits, not a sigmoid of one: checked in heads
	}
	golden(t, "match", rec.Body.Bytes())
}

func TestAlignGolden(t *testing.T) {
	_, h := newServer(t)
	text := "Two playing dogs, near a café!"
	rec := postJSON(t, h, "/v1/align", map[string]any{"regions": fixtureRegions(3), "text": text, "top_regions": 2})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var resp api.AlignResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Plan) != len(resp.Tokens) || len(resp.Regions) != 3 {
		t.Fatalf("plan %d rows for %d tokens, %d regions", len(resp.Plan), len(resp.Tokens), len(resp.Regions))
	}
	total := 0.0
	for _, row := range resp.Plan {
		if len(row) != 3 {
			t.Fatalf("plan row has %d entries, want 3", len(row))
		}
		for _, v := range row {
			total += v
		}
	}
	if math.Abs(total-1) > 1e-6 {
		t.Errorf("plan sums to %v, want 1", total)
	}
	runes := []rune(text)
	for _, w := range resp.WordRegions {
		if string(runes[w.Start:w.End]) != w.Text || len(w.Regions) != 2 {
			t.Errorf("word %+v: span gives %q", w, string(runes[w.Start:w.End]))
		}
	}
	if len(resp.WordRegions) != 8 { // two playing dogs , near a café !
		t.Errorf("got %d words, want 8", len(resp.WordRegions))
	}
	golden(t, "align", rec.Body.Bytes())
}

// TestHugeTextIsNotEchoed: a text far longer than the model reads is scored on its first
// tokens and echoed only as far as they go.
func TestHugeTextIsNotEchoed(t *testing.T) {
	_, h := newServer(t)
	huge := strings.Repeat("a red circle left of a blue square. ", 1500) // 54 KB
	rec := postJSON(t, h, "/v1/match", map[string]any{"regions": fixtureRegions(2), "texts": []string{huge}})
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var resp api.MatchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	r := resp.Results[0]
	if !r.Truncated || len(r.Text) > 1000 || !strings.HasPrefix(huge, r.Text) || strings.HasSuffix(r.Text, " ") {
		t.Errorf("truncated %v, echoed %d bytes ending %q; want the read prefix only", r.Truncated, len(r.Text), r.Text[max(0, len(r.Text)-20):])
	}
	if rec.Body.Len() > 4000 {
		t.Errorf("the answer is %d bytes", rec.Body.Len())
	}
}
