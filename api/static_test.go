package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/uniter-serve/uniter/api"
)

// TestStaticAssets: /static/ serves the page's files with their types; directories, missing
// files and paths that leave the tree are JSON 404s.
func TestStaticAssets(t *testing.T) {
	_, b := newServerBundle(t)
	assets := fstest.MapFS{
		"dist/main.js":         {Data: []byte("export {};\n")},
		"style.css":            {Data: []byte("body{}")},
		"samples/samples.json": {Data: []byte("[]")},
	}
	s := api.New(api.Config{MaxBodyBytes: maxBody, IndexHTML: []byte("<html></html>"), Assets: assets}, b,
		api.ModelInfo{Name: "x"}, api.Labels{}, nil)
	h := s.Handler()
	for path, want := range map[string]string{
		"/static/dist/main.js":         "text/javascript",
		"/static/style.css":            "text/css",
		"/static/samples/samples.json": "application/json",
	} {
		rec := do(t, h, http.MethodGet, path, "", nil)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), want) {
			t.Errorf("GET %s: got %d %q, want 200 %s", path, rec.Code, rec.Header().Get("Content-Type"), want)
		}
	}
	for _, path := range []string{"/static/dist/", "/static/nope.js", "/static/../go.mod", "/static/dist/../../x"} {
		rec := do(t, h, http.MethodGet, path, "", nil)
		var body api.ErrorBody
		if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code != "not_found" {
			t.Errorf("GET %s: got %d %s, want a JSON 404", path, rec.Code, rec.Body.String())
		}
	}
	// Without assets there is no /static/ route at all.
	plain := api.New(api.Config{MaxBodyBytes: maxBody}, b, api.ModelInfo{}, api.Labels{}, nil).Handler()
	if rec := do(t, plain, http.MethodGet, "/static/style.css", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("no assets: GET /static/style.css got %d, want 404", rec.Code)
	}
}
