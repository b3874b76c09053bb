package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the bad-input table of docs/api.md (make docs)")

// Keys of the bad-input server.
const (
	readKey  = "reader-secret-0123456789"
	writeKey = "writer-secret-0123456789"
)

// badInput is one class of bad request: how to make one, and the answer it must get.
type badInput struct {
	class  string // what is wrong, as the docs table says it
	status int
	code   string
	req    func(t *testing.T) *http.Request
}

// badInputServer serves the fixture bundle with a gallery holding image "taken", API keys, an
// allowed host, and limits small enough to reach: 256 KiB bodies, 200 KB images of at most
// 1 Mpx, 4 texts a request.
func badInputServer(t *testing.T) http.Handler {
	s := newTestServer(t, serverOptions{
		config: api.Config{MaxBodyBytes: 256 << 10, Access: api.Access{
			Keys:         parseKeys(t, "reader:read:"+readKey, "writer:write:"+api.HashKey(writeKey)),
			AllowedHosts: []string{"example.com"}}},
		pipeline: &pipeline.Options{MaxRegions: 10, MaxTexts: 4, CacheBytes: 16 << 20,
			Decode: detector.DecodeLimits{MaxBytes: 200_000, MaxPixels: 1_000_000}},
		gallery: true, search: retrieval.Config{MaxLimit: 20, MaxOffset: 50, MaxCandidates: 100}, tasks: true})
	h := s.Handler()
	if rec := send(h, withKey(jsonReq("POST", "/v1/images", js(map[string]any{"id": "taken", "image": b64Image(galleryPNG(t, 1, 40, 40))})), writeKey)); rec.Code != 201 {
		t.Fatalf("seeding the gallery: %d %s", rec.Code, rec.Body)
	}
	return h
}

func send(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func jsonReq(method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

func withKey(r *http.Request, key string) *http.Request {
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	return r
}

func b64Image(raw []byte) map[string]string {
	return map[string]string{"data": base64.StdEncoding.EncodeToString(raw)}
}

// multipartReq is a multipart body with an image file (when not nil) and fields, in order.
func multipartReq(t *testing.T, path string, image []byte, fields ...[2]string) *http.Request {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if image != nil {
		fw, err := w.CreateFormFile("image", "image.png")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(image)
	}
	for _, f := range fields {
		w.WriteField(f[0], f[1])
	}
	w.Close()
	r := httptest.NewRequest("POST", path, &buf)
	r.Header.Set("Content-Type", w.FormDataContentType())
	return r
}

func badInputs() []badInput {
	regions := func(n int) map[string]any { return fixtureRegions(n) }
	post := func(path string, body any) func(*testing.T) *http.Request {
		return func(*testing.T) *http.Request { return jsonReq("POST", path, js(body)) }
	}
	raw := func(method, path, body string) func(*testing.T) *http.Request {
		return func(*testing.T) *http.Request { return jsonReq(method, path, body) }
	}
	match := func(extra map[string]any) func(*testing.T) *http.Request {
		body := map[string]any{"regions": regions(2), "texts": []string{"a red circle"}}
		for k, v := range extra {
			body[k] = v
		}
		return post("/v1/match", body)
	}
	withImage := func(path string, img func(t *testing.T) []byte, extra map[string]any) func(*testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			body := map[string]any{"image": b64Image(img(t))}
			for k, v := range extra {
				body[k] = v
			}
			return jsonReq("POST", path, js(body))
		}
	}
	small := func(t *testing.T) []byte { return galleryPNG(t, 2, 40, 40) }
	return []badInput{
		// The body itself.
		{"empty JSON body", 400, "malformed_json", raw("POST", "/v1/match", " ")},
		{"malformed JSON", 400, "malformed_json", raw("POST", "/v1/match", `{"texts": [`)},
		{"data after the JSON object", 400, "malformed_json", raw("POST", "/v1/match", `{"texts": ["a"]} {}`)},
		{"a field of the wrong JSON type", 400, "malformed_json", raw("POST", "/v1/match", `{"texts": "a dog"}`)},
		{"an unknown field", 400, "unknown_field", raw("POST", "/v1/match", `{"txts": ["a"]}`)},
		{"JSON nested 100,000 deep", 400, "malformed_json", raw("POST", "/v1/match", `{"texts":`+strings.Repeat("[", 100_000))},
		{"a content type other than JSON or multipart", 415, "unsupported_media_type", func(*testing.T) *http.Request {
			r := jsonReq("POST", "/v1/match", "texts=a")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}},
		{"a body over limits.max_body_bytes (declared length)", 413, "body_too_large", raw("POST", "/v1/match", strings.Repeat(" ", 300<<10))},
		{"a body over limits.max_body_bytes (chunked)", 413, "body_too_large", func(*testing.T) *http.Request {
			r := jsonReq("POST", "/v1/match", `{"texts": ["`+strings.Repeat("a", 300<<10)+`"]}`)
			r.ContentLength = -1
			return r
		}},
		{"multipart without a boundary", 400, "malformed_multipart", func(*testing.T) *http.Request {
			r := jsonReq("POST", "/v1/match", "--x\r\n")
			r.Header.Set("Content-Type", "multipart/form-data")
			return r
		}},
		{"a multipart field the endpoint does not take", 400, "unknown_field", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/match", small(t), [2]string{"colour", "red"})
		}},
		{"multipart without the image file", 400, "missing_image", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/match", nil, [2]string{"text", "a"})
		}},
		{"multipart with an empty image file", 400, "invalid_image", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/match", []byte{}, [2]string{"text", "a"})
		}},
		{"a multipart boolean that is not one", 400, "invalid_features", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/regions", small(t), [2]string{"features", "maybe"})
		}},
		// Images.
		{"image.data not base64", 400, "invalid_image", post("/v1/match", map[string]any{"image": map[string]string{"data": "%%%"}, "texts": []string{"a"}})},
		{"image.data empty", 400, "invalid_image", post("/v1/match", map[string]any{"image": map[string]string{"data": ""}, "texts": []string{"a"}})},
		{"bytes that are not an image", 400, "invalid_image", withImage("/v1/regions", func(*testing.T) []byte { return []byte("hello, not pixels") }, nil)},
		{"a truncated image", 400, "invalid_image", withImage("/v1/regions", func(t *testing.T) []byte { p := small(t); return p[:len(p)/2] }, nil)},
		{"an image format not supported (TIFF)", 415, "unsupported_image_format", withImage("/v1/regions", func(*testing.T) []byte {
			return []byte("II*\x00\x08\x00\x00\x00" + strings.Repeat("\x00", 64))
		}, nil)},
		{"an image over limits.max_image_bytes", 413, "image_too_large", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/regions", noisyPNG(t, 280, 280))
		}},
		{"a decompression bomb: a small PNG declaring 6300×6300 pixels (over limits.max_image_pixels)", 413, "image_too_large", withImage("/v1/regions", func(t *testing.T) []byte {
			return galleryPNG(t, 3, 6300, 6300)
		}, nil)},
		{"both image and regions", 400, "invalid_input", post("/v1/match", map[string]any{"image": map[string]string{"data": "AAAA"}, "regions": regions(1), "texts": []string{"a"}})},
		{"neither image nor regions", 400, "missing_input", post("/v1/match", map[string]any{"texts": []string{"a"}})},
		{"no image for an image-only endpoint", 400, "missing_image", post("/v1/regions", map[string]any{})},
		// Regions.
		{"a box without four numbers", 400, "invalid_regions", post("/v1/match", map[string]any{"regions": map[string]any{"width": 10, "height": 10,
			"boxes": [][]float32{{1, 2, 3}}, "features": [][]float32{make([]float32, 64)}}, "texts": []string{"a"}})},
		{"features of the wrong dimension", 400, "invalid_regions", post("/v1/match", map[string]any{"regions": map[string]any{"width": 10, "height": 10,
			"boxes": [][]float32{{1, 1, 5, 5}}, "features": [][]float32{make([]float32, 63)}}, "texts": []string{"a"}})},
		{"more regions than limits.max_regions", 400, "invalid_regions", match(map[string]any{"regions": regions(11)})},
		{"an inverted box (x2 < x1; zero width or height is valid)", 400, "invalid_regions", post("/v1/match", map[string]any{"regions": map[string]any{"width": 10, "height": 10,
			"boxes": [][]float32{{5, 1, 4, 5}}, "features": [][]float32{make([]float32, 64)}}, "texts": []string{"a"}})},
		{"a box outside the image", 400, "invalid_regions", post("/v1/match", map[string]any{"regions": map[string]any{"width": 10, "height": 10,
			"boxes": [][]float32{{5, 1, 11, 5}}, "features": [][]float32{make([]float32, 64)}}, "texts": []string{"a"}})},
		{"a feature beyond float32", 400, "malformed_json", raw("POST", "/v1/match", `{"regions": {"width": 1, "height": 1, "boxes": [[0,0,1,1]], "features": [[1e39]]}, "texts": ["a"]}`)},
		// Texts.
		{"no texts", 400, "no_texts", match(map[string]any{"texts": []string{}})},
		{"more texts than limits.max_texts", 400, "too_many_texts", match(map[string]any{"texts": []string{"a", "b", "c", "d", "e"}})},
		{"a text with no token (only spaces)", 400, "empty_text", match(map[string]any{"texts": []string{"   "}})},
		{"two texts for an alignment", 400, "invalid_input", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/align", small(t), [2]string{"text", "a"}, [2]string{"text", "b"})
		}},
		{"fill-mask without [MASK]", 400, "invalid_text", post("/v1/fill-mask", map[string]any{"regions": regions(2), "text": "a red circle"})},
		// Models and tasks.
		{"a model that is not served", 404, "unknown_model", match(map[string]any{"model": "nope"})},
		{"a task the model was not fine-tuned for (VQA on a pre-training model)", 400, "task_unavailable", post("/v1/vqa", map[string]any{"regions": regions(2), "question": "what colour?"})},
		{"matching on a model with neither itm nor rank head", 400, "task_unavailable", match(map[string]any{"model": "tiny-vqa"})},
		{"a VQA question with no token", 400, "empty_text", post("/v1/vqa", map[string]any{"regions": regions(2), "question": " ", "model": "tiny-vqa"})},
		{"NLVR2 with one image", 400, "invalid_pair", post("/v1/nlvr2", map[string]any{"regions": []any{regions(2)}, "statement": "a", "model": "tiny-nlvr2-paired"})},
		{"NLVR2 with three images", 400, "invalid_pair", post("/v1/nlvr2", map[string]any{"regions": []any{regions(2), regions(2), regions(2)}, "statement": "a", "model": "tiny-nlvr2-paired"})},
		{"NLVR2 with images and regions", 400, "invalid_input", post("/v1/nlvr2", map[string]any{"regions": []any{regions(2), regions(2)}, "images": []any{map[string]string{"data": "AAAA"}, map[string]string{"data": "AAAA"}}, "statement": "a"})},
		{"NLVR2 with one image file in multipart", 400, "invalid_pair", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/nlvr2", small(t), [2]string{"statement", "a"}, [2]string{"model", "tiny-nlvr2-paired"})
		}},
		{"images for a model without a detector (send regions)", 400, "unsupported", post("/v1/nlvr2", map[string]any{"images": []any{map[string]string{"data": "AAAA"}, map[string]string{"data": "AAAA"}}, "statement": "a", "model": "tiny-nlvr2-paired"})},
		// Numbers: every one has a range, checked before anything is allocated for it.
		{"top_labels of 1,000,000,000", 400, "invalid_top_labels", withImage("/v1/regions", small, map[string]any{"top_labels": 1_000_000_000})},
		{"top_labels of 10^18", 400, "invalid_top_labels", withImage("/v1/regions", small, map[string]any{"top_labels": int64(1e18)})},
		{"top_labels written 1e18 (not an integer)", 400, "malformed_json", raw("POST", "/v1/regions", `{"image": {"data": "AAAA"}, "top_labels": 1e18}`)},
		{"top_labels negative", 400, "invalid_top_labels", withImage("/v1/regions", small, map[string]any{"top_labels": -1})},
		{"top_labels of 10^9 in multipart", 400, "invalid_top_labels", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/regions", small(t), [2]string{"top_labels", "1000000000"})
		}},
		{"top_labels not an integer in multipart", 400, "invalid_top_labels", func(t *testing.T) *http.Request {
			return multipartReq(t, "/v1/regions", small(t), [2]string{"top_labels", "lots"})
		}},
		{"a feature_dtype other than float16 or float32", 400, "invalid_feature_dtype", withImage("/v1/regions", small, map[string]any{"features": true, "feature_dtype": "float64"})},
		{"a feature_dtype without features", 400, "invalid_feature_dtype", withImage("/v1/regions", small, map[string]any{"feature_dtype": "float32"})},
		{"top_k over 50", 400, "invalid_top_k", post("/v1/fill-mask", map[string]any{"regions": regions(2), "text": "a [MASK]", "top_k": 1_000_000_000})},
		{"top_regions over 100", 400, "invalid_top_regions", post("/v1/align", map[string]any{"regions": regions(2), "text": "a", "top_regions": int64(1e18)})},
		{"a listing limit over 1000", 400, "invalid_limit", raw("GET", "/v1/images?limit=1000000000", "")},
		{"a listing limit of 0", 400, "invalid_limit", raw("GET", "/v1/texts?limit=0", "")},
		{"a cursor the server did not issue", 400, "invalid_cursor", raw("GET", "/v1/images?cursor="+strings.Repeat("%25", 40), "")},
		{"a search limit over search.max_limit", 400, "invalid_limit", post("/v1/search/images", map[string]any{"text": "a", "limit": 1_000_000_000})},
		{"a search offset of 10^18", 400, "invalid_offset", post("/v1/search/images", map[string]any{"text": "a", "offset": int64(1e18)})},
		{"search candidates over search.max_candidates", 400, "invalid_candidates", post("/v1/search/images", map[string]any{"text": "a", "mode": "two_stage", "candidates": 1_000_000_000})},
		{"an unknown search mode", 400, "invalid_mode", post("/v1/search/images", map[string]any{"text": "a", "mode": "fastest"})},
		// The gallery.
		{"an image id that is not stored", 404, "not_found", raw("GET", "/v1/images/nothing-here", "")},
		{"an image id already taken", 409, "conflict", withImage("/v1/images", func(t *testing.T) []byte { return galleryPNG(t, 9, 40, 40) }, map[string]any{"id": "taken"})},
		{"an invalid image id", 400, "invalid_record", withImage("/v1/images", func(t *testing.T) []byte { return galleryPNG(t, 8, 40, 40) }, map[string]any{"id": "no spaces/or slashes"})},
		{"metadata that is not a JSON object", 400, "invalid_record", withImage("/v1/images", func(t *testing.T) []byte { return galleryPNG(t, 7, 40, 40) }, map[string]any{"metadata": []int{1}})},
		// Routes and methods.
		{"an unknown route", 404, "not_found", raw("GET", "/v1/nothing", "")},
		{"a method the route does not take", 405, "method_not_allowed", raw("GET", "/v1/match", "")},
		// Who may call.
		{"no API key", 401, "unauthorized", func(*testing.T) *http.Request {
			r := jsonReq("GET", "/v1/models", "")
			r.Header.Del("X-API-Key")
			return r
		}},
		{"an unknown API key", 401, "unauthorized", func(*testing.T) *http.Request {
			return withKey(jsonReq("GET", "/v1/models", ""), "not-a-key-of-this-server")
		}},
		{"a read key changing the gallery", 403, "forbidden", func(*testing.T) *http.Request { return withKey(jsonReq("DELETE", "/v1/images/taken", ""), readKey) }},
		{"a write from a page of another origin", 403, "forbidden_origin", func(*testing.T) *http.Request {
			r := jsonReq("DELETE", "/v1/images/taken", "")
			r.Header.Set("Origin", "http://evil.example")
			return r
		}},
		{"a Host header this server does not answer for (DNS rebinding)", 421, "unknown_host", func(*testing.T) *http.Request {
			r := jsonReq("GET", "/v1/models", "")
			r.Host = "rebind.evil.example"
			return r
		}},
	}
}

// TestBadInputs sends one request of every documented class of bad input and checks its
// status and error code; the table in docs/api.md is rendered from the same list.
func TestBadInputs(t *testing.T) {
	h := badInputServer(t)
	cases := badInputs()
	for _, c := range cases {
		r := c.req(t)
		if c.status != http.StatusUnauthorized {
			if r.Header.Get("X-API-Key") == "" {
				withKey(r, writeKey)
			}
		}
		rec := send(h, r)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != c.status || body.Error.Code != c.code || body.Error.Message == "" {
			t.Errorf("%s: got %d %s, want %d %q", c.class, rec.Code, cutBody(rec.Body.String()), c.status, c.code)
			continue
		}
		if m := body.Error.Message; len(m) > 300 || strings.Contains(m, "api.") || strings.Contains(m, "Options.") {
			t.Errorf("%s: message %q is long or names Go types", c.class, m)
		}
	}
	// The store is intact after all of this.
	if rec := send(h, withKey(jsonReq("GET", "/v1/images/taken", ""), readKey)); rec.Code != 200 {
		t.Errorf("the stored image after the bad inputs: %d %s", rec.Code, rec.Body)
	}
	checkBadInputDoc(t, cases)
}

func cutBody(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

const (
	badInputDoc   = "docs/api.md"
	badInputStart = "<!-- generated by api/badinput_test.go (bad-inputs); make docs updates it -->"
	badInputEnd   = "<!-- end generated -->"
)

// checkBadInputDoc compares the docs' table with the cases (or rewrites it with -update-docs).
func checkBadInputDoc(t *testing.T, cases []badInput) {
	var b strings.Builder
	b.WriteString("| # | bad input | status | `error.code` |\n|---|---|---|---|\n")
	for i, c := range cases {
		fmt.Fprintf(&b, "| %d | %s | %d | `%s` |\n", i+1, c.class, c.status, c.code)
	}
	path := testenv.Path(t, badInputDoc)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, badInputStart)
	j := strings.Index(doc[max(i, 0):], badInputEnd)
	if i < 0 || j < 0 {
		t.Fatalf("%s has no bad-input section (%s … %s)", badInputDoc, badInputStart, badInputEnd)
	}
	j += i
	want := doc[:i] + badInputStart + "\n" + b.String() + doc[j:]
	if want == doc {
		return
	}
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the bad-input table is out of date; run make docs", badInputDoc)
}

// A task endpoint asked of a model not fine-tuned for it names the served models that are.
func TestTaskUnavailableNamesTheModelsThatCan(t *testing.T) {
	h := badInputServer(t)
	for _, c := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"/v1/vqa", map[string]any{"regions": fixtureRegions(2), "question": "what colour?"},
			`cannot do visual question answering: it has no vqa head; served models that can: "tiny-vqa" (send "model": "tiny-vqa")`},
		{"/v1/refer", map[string]any{"regions": fixtureRegions(2), "expression": "the red one", "model": "tiny-vqa"},
			`model tiny-vqa (task vqa) cannot do referring expression comprehension: it has no re head; served models that can: "tiny-re"`},
		{"/v1/nlvr2", map[string]any{"regions": []any{fixtureRegions(2), fixtureRegions(2)}, "statement": "a"},
			`served models that can: "tiny-nlvr2-paired", `},
	} {
		rec := send(h, withKey(jsonReq("POST", c.path, js(c.body)), writeKey))
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 400 || body.Error.Code != "task_unavailable" ||
			!strings.Contains(body.Error.Message, c.want) {
			t.Errorf("%s: got %d %s, want 400 task_unavailable with %q", c.path, rec.Code, rec.Body, c.want)
		}
	}
}
