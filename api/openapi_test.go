package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/openapitest"
	"github.com/uniter-serve/uniter/web"
)

func loadSpec(t testing.TB) *openapitest.Validator {
	t.Helper()
	v, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOpenAPIDocument: api/openapi.yaml is an OpenAPI 3.1 document that kin-openapi loads and
// validates, examples included; its version is APIVersion; the JSON served is the YAML.
func TestOpenAPIDocument(t *testing.T) {
	v := loadSpec(t)
	doc := v.Doc()
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Info.Version != api.APIVersion {
		t.Errorf("served info.version %q, want api.APIVersion %q", doc.Info.Version, api.APIVersion)
	}
	var written struct {
		Info struct {
			Version string `yaml:"version"`
		} `yaml:"info"`
	}
	if err := yaml.Unmarshal(api.OpenAPIYAML(), &written); err != nil {
		t.Fatal(err)
	}
	if written.Info.Version != api.APIVersion {
		t.Errorf("api/openapi.yaml says version %q, api.APIVersion is %q: change both", written.Info.Version, api.APIVersion)
	}
	// The JSON is the YAML: the same value, decoded either way.
	var fromYAML, fromJSON any
	if err := yaml.Unmarshal(api.OpenAPIYAML(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	raw, err := api.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fromJSON); err != nil {
		t.Fatal(err)
	}
	yj, _ := json.Marshal(fromYAML)
	var yv any
	_ = json.Unmarshal(yj, &yv)
	if a, b := mustMarshal(t, yv), mustMarshal(t, fromJSON); a != b {
		t.Error("the served JSON differs from the YAML")
	}
	// Examples are validated: a wrong one fails the document.
	bad := bytes.Replace(raw, []byte(`"example":{"status":"ok"}`), []byte(`"example":{"status":"nope"}`), 1)
	if bytes.Equal(bad, raw) {
		t.Fatal("no /healthz example to break")
	}
	if _, err := openapitest.LoadDocument(bad); err == nil {
		t.Error("a document with an example that does not match its schema validates")
	}
}

func mustMarshal(t testing.TB, v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// openAPIServer serves the fixture bundle with a gallery, the page and its files: every route.
func openAPIServer(t testing.TB) (*gin.Engine, *gallery.Bolt) {
	t.Helper()
	s := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 256 << 10, IndexHTML: web.IndexHTML, Assets: web.Assets},
		gallery: true, search: retrieval.Config{MaxLimit: 20, MaxOffset: 50, MaxCandidates: 100}, tasks: true})
	// A demo fill halfway, so that GET /v1/gallery's demo section is checked against the spec.
	demo := &api.DemoProgress{}
	demo.Set(api.DemoStatus{State: api.DemoIndexing, Split: "test-100", Images: 37, Total: 100})
	s.SetDemo(demo)
	engine, ok := s.Handler().(*gin.Engine)
	if !ok {
		t.Fatalf("Handler is a %T, not a *gin.Engine", s.Handler())
	}
	return engine, s.store
}

// ginPath writes a gin route in OpenAPI's form: /v1/images/:id → /v1/images/{id}.
func ginPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if len(s) > 1 && (s[0] == ':' || s[0] == '*') {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// TestOpenAPIRoutes: every route the server has is an operation of the document, and every
// operation a route; operations are secured as their routes are; every answer documented
// carries X-Request-ID and every error answer is an ErrorBody.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadSpec(t).Doc()
	engine, _ := openAPIServer(t)
	routes := map[string]bool{}
	for _, r := range engine.Routes() {
		routes[r.Method+" "+ginPath(r.Path)] = true
	}
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	for r := range routes {
		if ops[r] == nil {
			t.Errorf("route %s has no operation in api/openapi.yaml", r)
		}
	}
	for o := range ops {
		if !routes[o] {
			t.Errorf("operation %s of api/openapi.yaml is no route of the server", o)
		}
	}
	ids := map[string]string{}
	for key, op := range ops {
		method, path, _ := strings.Cut(key, " ")
		if prev, ok := ids[op.OperationID]; ok || op.OperationID == "" {
			t.Errorf("%s: operationId %q (also %s)", key, op.OperationID, prev)
		}
		ids[op.OperationID] = key
		// The scope the route's authorize middleware asks for.
		want := ""
		if strings.HasPrefix(path, "/v1/") {
			want = string(api.ScopeRead)
			if method == http.MethodDelete || (method == http.MethodPost && (path == "/v1/images" || path == "/v1/texts")) {
				want = string(api.ScopeWrite)
			}
		}
		if got := securityScope(t, key, op); got != want {
			t.Errorf("%s: security scope %q, want %q", key, got, want)
		}
		statuses := op.Responses.Map()
		for _, must := range []string{"421", "500"} {
			if statuses[must] == nil {
				t.Errorf("%s: no %s answer (every route may give it)", key, must)
			}
		}
		if want != "" && statuses["401"] == nil {
			t.Errorf("%s: no 401 answer", key)
		}
		if (method == http.MethodPost || method == http.MethodDelete) && strings.HasPrefix(path, "/v1/") && statuses["403"] == nil {
			t.Errorf("%s: no 403 answer (forbidden_origin)", key)
		}
		for status, ref := range statuses {
			resp := ref.Value
			if resp.Headers["X-Request-ID"] == nil {
				t.Errorf("%s %s: no X-Request-ID header", key, status)
			}
			if status >= "400" && method != http.MethodHead {
				mt := resp.Content.Get("application/json")
				if mt == nil || !refersTo(mt.Schema, "#/components/schemas/ErrorBody") {
					t.Errorf("%s %s: the error answer is not an ErrorBody", key, status)
				}
			}
		}
		if method == http.MethodHead {
			get := doc.Paths.Value(path).Get
			if get == nil {
				t.Errorf("%s: no GET beside it", key)
				continue
			}
			if a, b := sortedKeys(statuses), sortedKeys(get.Responses.Map()); !slices.Equal(a, b) {
				t.Errorf("%s answers %v, its GET %v", key, a, b)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// refersTo reports whether the schema is ref or all of ref and more.
func refersTo(s *openapi3.SchemaRef, ref string) bool {
	if s == nil {
		return false
	}
	if s.Ref == ref {
		return true
	}
	if s.Value != nil {
		for _, a := range s.Value.AllOf {
			if refersTo(a, ref) {
				return true
			}
		}
	}
	return false
}

// securityScope is the one scope an operation's security requirements name (both schemes
// alike, and the empty requirement for a server without keys), "" for none.
func securityScope(t *testing.T, key string, op *openapi3.Operation) string {
	if op.Security == nil {
		t.Errorf("%s: no security (write security: [] for none)", key)
		return "?"
	}
	scopes := map[string]bool{}
	schemes := map[string]bool{}
	empty := false
	for _, req := range *op.Security {
		if len(req) == 0 {
			empty = true
		}
		for scheme, s := range req {
			schemes[scheme] = true
			for _, sc := range s {
				scopes[sc] = true
			}
		}
	}
	if len(scopes) == 0 {
		return ""
	}
	if len(scopes) != 1 || !schemes["apiKey"] || !schemes["bearer"] || !empty {
		t.Errorf("%s: security %v, want apiKey and bearer with one scope, and {}", key, *op.Security)
	}
	for sc := range scopes {
		return sc
	}
	return ""
}

// TestOpenAPIServed: GET /openapi.json is the document, valid against itself.
func TestOpenAPIServed(t *testing.T) {
	v := loadSpec(t)
	engine, _ := openAPIServer(t)
	want, _ := api.OpenAPIJSON()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req := httptest.NewRequest(method, "/openapi.json", nil)
		rec := send(engine, req)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s /openapi.json: %d %q", method, rec.Code, rec.Header().Get("Content-Type"))
		}
		if method == http.MethodGet && !bytes.Equal(rec.Body.Bytes(), want) {
			t.Error("GET /openapi.json is not api.OpenAPIJSON()")
		}
		body := rec.Body.Bytes()
		if method == http.MethodHead {
			body = nil // net/http drops it on the wire
		}
		if err := v.Check(req, rec.Code, rec.Header(), body); err != nil {
			t.Error(err)
		}
	}
}

// TestOpenAPIGoldens: the golden answers in testdata/ match their schemas.
func TestOpenAPIGoldens(t *testing.T) {
	v := loadSpec(t)
	for file, schema := range map[string]string{
		"match.golden.json":         "MatchResponse",
		"align.golden.json":         "AlignResponse",
		"gallery_image.golden.json": "GalleryImage",
		"search_images.golden.json": "SearchResponse",
		"search_texts.golden.json":  "SearchResponse",
	} {
		raw, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var value map[string]any
		if err := json.Unmarshal(raw, &value); err != nil {
			t.Fatal(err)
		}
		// Put back what the goldens leave out as measured rather than computed.
		if props := v.Schema(schema).Properties; props["timings_ms"] != nil && value["timings_ms"] == nil {
			zero := map[string]any{}
			for _, k := range props["timings_ms"].Value.Required {
				zero[k] = 0
			}
			value["timings_ms"] = zero
		}
		if value["created"] == "measured" {
			value["created"] = "2026-01-01T00:00:00Z"
		}
		if err := v.CheckValue(schema, any(value)); err != nil {
			t.Errorf("testdata/%s is no %s: %v", file, schema, err)
		}
	}
}

// TestOpenAPIBadInputs: the answer to every class of bad input (api/badinput_test.go) is one
// the document lists for its operation, with its error code.
func TestOpenAPIBadInputs(t *testing.T) {
	v := loadSpec(t)
	h := badInputServer(t)
	for _, c := range badInputs() {
		r := c.req(t)
		if c.status != http.StatusUnauthorized && r.Header.Get("X-API-Key") == "" {
			withKey(r, writeKey)
		}
		rec := send(h, r)
		if err := v.Check(r, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("%s: %v", c.class, err)
		}
	}
}

// TestOpenAPIAnswers: one successful request of every operation, and a few failing ones, each
// answer checked against the document; every operation is answered 2xx at least once.
func TestOpenAPIAnswers(t *testing.T) {
	v := loadSpec(t)
	engine, _ := openAPIServer(t)
	png := galleryPNG(t, 3, 48, 40)
	regions := fixtureRegions(3)
	succeeded := map[string]bool{}
	call := func(method, path, ctype string, body []byte, wantStatus int) []byte {
		t.Helper()
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := send(engine, req)
		if rec.Code != wantStatus {
			t.Errorf("%s %s: %d, want %d: %s", method, path, rec.Code, wantStatus, cutBody(rec.Body.String()))
		}
		out := rec.Body.Bytes()
		if method == http.MethodHead {
			out = nil
		}
		if err := v.Check(req, rec.Code, rec.Header(), out); err != nil {
			t.Error(err)
		}
		if rec.Code < 300 {
			route, _, err := v.Operation(method, req.URL.Path)
			if err == nil {
				succeeded[method+" "+route.Path] = true
			}
		}
		return rec.Body.Bytes()
	}
	postJS := func(path string, body any, want int) []byte {
		return call(http.MethodPost, path, "application/json", []byte(js(body)), want)
	}
	getBoth := func(path string, want int) []byte {
		call(http.MethodHead, path, "", nil, want)
		return call(http.MethodGet, path, "", nil, want)
	}

	getBoth("/", 200)
	getBoth("/static/dist/main.js", 200)
	getBoth("/static/style.css", 200)
	getBoth("/healthz", 200)
	getBoth("/readyz", 200)
	getBoth("/openapi.json", 200)
	getBoth("/v1/models", 200)
	postJS("/v1/match", map[string]any{"regions": regions, "texts": []string{"a red square", "a star"}}, 200)
	postJS("/v1/match", map[string]any{"image": b64Image(png), "texts": []string{"a red square"}}, 200)
	ct, mp := multipartBody(t, png, map[string][]string{"text": {"a red square", "two stars"}})
	call(http.MethodPost, "/v1/match", ct, mp.Bytes(), 200)
	postJS("/v1/align", map[string]any{"regions": regions, "text": "a red square left of a star", "attention": true}, 200)
	postJS("/v1/align", map[string]any{"image": b64Image(png), "text": "a red square", "top_regions": 2}, 200)
	postJS("/v1/regions", map[string]any{"image": b64Image(png), "features": true, "top_labels": 2, "text": "a red square"}, 200)
	postJS("/v1/regions", map[string]any{"image": b64Image(png), "features": true, "feature_dtype": "float32"}, 200)
	ct, mp = multipartBody(t, png, map[string][]string{"features": {"true"}, "feature_dtype": {"float32"}})
	call(http.MethodPost, "/v1/regions", ct, mp.Bytes(), 200)
	// Texts with a word outside the vocabulary: unknown_words in every answer that reads a text.
	postJS("/v1/match", map[string]any{"regions": regions, "texts": []string{"a ✿ square", "a red square"}}, 200)
	postJS("/v1/align", map[string]any{"regions": regions, "text": "a ✿ square"}, 200)
	postJS("/v1/fill-mask", map[string]any{"regions": regions, "text": "a [MASK] ✿"}, 200)
	postJS("/v1/refer", map[string]any{"regions": regions, "expression": "the ✿", "model": "tiny-re"}, 200)
	postJS("/v1/fill-mask", map[string]any{"regions": regions, "text": "a [MASK] square", "top_k": 3, "without_image": true}, 200)
	postJS("/v1/match", map[string]any{"regions": regions, "texts": []string{"a red square"}, "model": "tiny-retrieval"}, 200)
	postJS("/v1/vqa", map[string]any{"regions": regions, "question": "what colour is the square?", "top_k": 3, "model": "tiny-vqa"}, 200)
	ct, mp = multipartBody(t, png, map[string][]string{"question": {"what colour is it?"}, "model": {"tiny-vqa"}})
	call(http.MethodPost, "/v1/vqa", ct, mp.Bytes(), 400) // the VQA fixture has no detector: an image cannot be read
	postJS("/v1/entailment", map[string]any{"regions": regions, "hypothesis": "there is a red square", "model": "tiny-ve"}, 200)
	postJS("/v1/nlvr2", map[string]any{"regions": []any{regions, fixtureRegions(2)}, "statement": "the left image has more squares", "model": "tiny-nlvr2-paired-attn"}, 200)
	postJS("/v1/refer", map[string]any{"regions": regions, "expression": "the red square", "top_k": 2, "model": "tiny-re"}, 200)
	postJS("/v1/vqa", map[string]any{"regions": regions, "question": "what colour?"}, 400) // the default model has no VQA head
	postJS("/v1/vqa", map[string]any{"regions": regions, "question": "what colour?", "model": "nope"}, 404)
	postJS("/v1/images", map[string]any{"image": b64Image(png), "id": "img-1", "metadata": map[string]any{"k": 1}}, 201)
	postJS("/v1/images", map[string]any{"image": b64Image(png)}, 200) // the same bytes: a duplicate
	ct, mp = multipartBody(t, galleryPNG(t, 4, 40, 40), map[string][]string{"id": {"img-2"}, "metadata": {`{"k": 2}`}})
	call(http.MethodPost, "/v1/images", ct, mp.Bytes(), 201)
	getBoth("/v1/images?limit=1", 200)
	getBoth("/v1/gallery", 200)
	getBoth("/v1/images/img-1?features=true", 200)
	getBoth("/v1/images/img-1/thumbnail", 200)
	postJS("/v1/texts", map[string]any{"texts": []map[string]any{{"id": "t1", "text": "a red square", "metadata": map[string]any{"k": 1}}, {"text": "a blue star"}}}, 200)
	getBoth("/v1/texts?limit=1", 200)
	getBoth("/v1/texts/t1", 200)
	postJS("/v1/search/images", map[string]any{"text": "a red square", "limit": 2, "evidence": true, "evidence_by": "ot"}, 200)
	postJS("/v1/search/images", map[string]any{"text": "a red square", "mode": "two_stage", "candidates": 10}, 200)
	postJS("/v1/search/texts", map[string]any{"image_id": "img-1", "limit": 2, "evidence": true}, 200)
	postJS("/v1/search/texts", map[string]any{"image": b64Image(png)}, 200)
	call(http.MethodDelete, "/v1/texts/t1", "", nil, 200)
	call(http.MethodDelete, "/v1/images/img-2", "", nil, 200)
	getBoth("/metrics", 200)

	// Errors beyond the bad-input classes.
	getBoth("/v1/images/nope", 404)
	getBoth("/v1/texts/nope", 404)
	getBoth("/static/nope.js", 404)
	getBoth("/v1/nothing", 404)
	call(http.MethodPut, "/v1/match", "", nil, 405)
	call(http.MethodDelete, "/v1/texts/t1", "", nil, 404)
	postJS("/v1/texts", map[string]any{"texts": []map[string]any{{"id": "img-1", "text": "x"}, {"id": "img-1", "text": "y"}}}, 409)
	call(http.MethodPost, "/v1/search/images", "text/plain", []byte("x"), 415)

	doc := v.Doc()
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !succeeded[method+" "+path] {
				t.Errorf("%s %s: never answered 2xx here", method, path)
			}
		}
	}
}

// TestOpenAPICheckRejects: the checker is not vacuous: it refuses an undocumented status, a
// missing field, an unknown field, a wrong error code and a missing X-Request-ID.
func TestOpenAPICheckRejects(t *testing.T) {
	v := loadSpec(t)
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	match := `{"results": [], "model": "m", "timings_ms": {"total": 1, "decode": 0, "preprocess": 0, "detector": 0, "selection": 0, "encoder": 0, "ot": 0}}`
	for _, c := range []struct {
		what         string
		method, path string
		status       int
		header       http.Header
		body         string
		ok           bool
	}{
		{"a valid answer", "POST", "/v1/match", 200, hdr("X-Request-ID", "r1"), match, true},
		{"no X-Request-ID", "POST", "/v1/match", 200, hdr(), match, false},
		{"an undocumented status", "POST", "/v1/match", 418, hdr("X-Request-ID", "r1"), `{"error": {"code": "teapot", "message": "x"}}`, false},
		{"a missing field", "POST", "/v1/match", 200, hdr("X-Request-ID", "r1"), strings.Replace(match, `"model": "m", `, "", 1), false},
		{"an unknown field", "POST", "/v1/match", 200, hdr("X-Request-ID", "r1"), strings.Replace(match, `"model"`, `"extra": 1, "model"`, 1), false},
		{"a 401 without WWW-Authenticate", "GET", "/v1/models", 401, hdr("X-Request-ID", "r1"), `{"error": {"code": "unauthorized", "message": "x"}}`, false},
		{"a 401 with another code", "GET", "/v1/models", 401, hdr("X-Request-ID", "r1", "WWW-Authenticate", `Bearer realm="uniter"`), `{"error": {"code": "nope", "message": "x"}}`, false},
		{"a 401", "GET", "/v1/models", 401, hdr("X-Request-ID", "r1", "WWW-Authenticate", `Bearer realm="uniter"`), `{"error": {"code": "unauthorized", "message": "x"}}`, true},
		{"a 400 with an unlisted code", "POST", "/v1/align", 400, hdr("X-Request-ID", "r1"), `{"error": {"code": "made_up", "message": "x"}}`, false},
		{"a busy 503 without Retry-After", "POST", "/v1/align", 503, hdr("X-Request-ID", "r1"), `{"error": {"code": "busy", "message": "x"}}`, false},
		{"an unknown route answered 200", "GET", "/v1/nothing", 200, hdr("X-Request-ID", "r1"), `{}`, false},
		{"an unknown route", "GET", "/v1/nothing", 404, hdr("X-Request-ID", "r1"), `{"error": {"code": "not_found", "message": "x"}}`, true},
		{"a HEAD with a body", "HEAD", "/healthz", 200, hdr("X-Request-ID", "r1"), `{"status": "ok"}`, false},
	} {
		req := httptest.NewRequest(c.method, c.path, nil)
		err := v.Check(req, c.status, c.header, []byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%s: Check gave %v, want ok=%v", c.what, err, c.ok)
		}
	}
}
