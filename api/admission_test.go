package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uniter-serve/uniter/api"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestAdmission: past capacity a model request is refused with 503 busy and a Retry-After
// before a byte of its body is read; requests that need no model work are not counted; once
// the admitted request is done the next one is admitted.
func TestAdmission(t *testing.T) {
	s := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 1 << 20, MaxInFlight: 1}})
	h := s.Handler()
	body := js(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a red circle"}})

	// The first request is admitted and stalls reading its body.
	pr, pw := io.Pipe()
	first := make(chan *httptest.ResponseRecorder)
	go func() {
		r := httptest.NewRequest("POST", "/v1/match", pr)
		r.Header.Set("Content-Type", "application/json")
		first <- send(h, r)
	}()
	if _, err := pw.Write([]byte(body[:10])); err != nil { // returns once the handler reads
		t.Fatal(err)
	}

	second := &countingReader{r: strings.NewReader(body)}
	r := httptest.NewRequest("POST", "/v1/match", second)
	r.Header.Set("Content-Type", "application/json")
	rec := send(h, r)
	wantStatus(t, "past capacity", rec, http.StatusServiceUnavailable, "busy")
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", rec.Header().Get("Retry-After"))
	}
	if n := second.n.Load(); n != 0 {
		t.Errorf("the refused request's body was read (%d bytes)", n)
	}
	if rec := send(h, jsonReq("GET", "/v1/models", "")); rec.Code != 200 {
		t.Errorf("GET /v1/models while at capacity: %d, want 200 (no model work)", rec.Code)
	}

	pw.Write([]byte(body[10:]))
	pw.Close()
	wantStatus(t, "the admitted request", <-first, http.StatusOK, "")
	wantStatus(t, "after the admitted one finished", send(h, jsonReq("POST", "/v1/match", body)), http.StatusOK, "")
}

// TestHead: GET routes answer HEAD with the GET's status and no body.
func TestHead(t *testing.T) {
	_, h := newServer(t)
	for _, path := range []string{"/healthz", "/readyz", "/v1/models"} {
		rec := send(h, jsonReq("HEAD", path, ""))
		if rec.Code != 200 {
			t.Errorf("HEAD %s: %d, want 200", path, rec.Code)
		}
	}
}
