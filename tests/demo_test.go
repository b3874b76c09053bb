package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDemoGallery: with gallery.demo, an empty gallery is filled in the background with Shapes
// World test-100 (100 images, their true captions as texts) while the server already answers;
// GET /v1/gallery reports the fill's progress; search then finds images. A second start on the same data directory leaves it as it is.
func TestDemoGallery(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServe(t, uniterEnv(t, "UNITER_GALLERY_DEMO=true"), "--data-dir", data)
	deadline := time.Now().Add(3 * time.Minute)
	// GET /v1/gallery follows the fill (the page shows it): states in order, the count of
	// images indexed never going down, ready at the end with all of them.
	order := map[string]int{"generating": 0, "indexing": 1, "texts": 2, "ready": 3}
	var last struct {
		State  string `json:"state"`
		Images int    `json:"images"`
		Total  int    `json:"total"`
	}
	seen := map[string]bool{}
	for last.State != "ready" && time.Now().Before(deadline) {
		if s.exited() {
			t.Fatalf("uniter serve exited: %s", s.stderr.String())
		}
		code, body := s.do(t, http.MethodGet, "/v1/gallery", "", nil)
		var st struct {
			Demo *struct {
				State  string `json:"state"`
				Images int    `json:"images"`
				Total  int    `json:"total"`
				Error  string `json:"error"`
			} `json:"demo"`
		}
		if code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("GET /v1/gallery: %d %s", code, body)
		}
		if d := st.Demo; d != nil {
			if d.State == "failed" {
				t.Fatalf("demo fill failed: %s", d.Error)
			}
			o, known := order[d.State]
			if !known || (last.State != "" && (o < order[last.State] || d.Images < last.Images)) {
				t.Fatalf("demo progress went from %+v to %+v", last, *d)
			}
			last.State, last.Images, last.Total = d.State, d.Images, d.Total
			seen[d.State] = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last.State != "ready" || last.Images != 100 || last.Total != 100 || !seen["indexing"] {
		t.Fatalf("demo progress: last %+v, states seen %v", last, seen)
	}
	if !strings.Contains(s.stderr.String(), "demo gallery: ready") {
		t.Errorf("the log does not say the demo gallery is ready:\n%s", s.stderr.String())
	}
	if n := listed(t, s, "/v1/images", "images"); n != 100 {
		t.Fatalf("demo gallery: %d images, want 100; log:\n%s", n, s.stderr.String())
	}
	texts := listed(t, s, "/v1/texts", "texts")
	if texts < 100 {
		t.Errorf("demo gallery: %d texts, want test-100's captions", texts)
	}
	code, body := s.do(t, http.MethodPost, "/v1/search/images", "application/json", []byte(`{"text": "a red circle", "limit": 3}`))
	if code != 200 || !strings.Contains(string(body), `"results":[{`) {
		t.Errorf("search on the demo gallery: %d %s", code, body)
	}
	s.stop(t)

	again := startServe(t, uniterEnv(t, "UNITER_GALLERY_DEMO=true"), "--data-dir", data)
	time.Sleep(time.Second)
	if strings.Contains(again.stderr.String(), "filling it") {
		t.Errorf("a gallery that holds images was filled again:\n%s", again.stderr.String())
	}
	if n := listed(t, again, "/v1/images", "images"); n != 100 {
		t.Errorf("after a restart: %d images, want 100", n)
	}
}

// listed is the number of items the first page of a gallery listing holds (at most 1,000).
func listed(t *testing.T, s *server, path, key string) int {
	t.Helper()
	code, body := s.do(t, http.MethodGet, path+"?limit=1000", "", nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var page map[string][]json.RawMessage
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	return len(page[key])
}
