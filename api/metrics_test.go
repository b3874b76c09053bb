package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
)

// scrape reads /metrics into series → value ("name{labels}" as the text format writes it).
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := send(h, jsonReq("GET", "/metrics", ""))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics: the series move with the requests that should move them, and only those.
func TestMetrics(t *testing.T) {
	h, _ := newGalleryServer(t, 1<<20)
	before := scrape(t, h)
	png := galleryPNG(t, 4, 48, 40)
	for range 2 { // the second detection is a cache hit
		wantStatus(t, "match", postJSON(t, h, "/v1/match", map[string]any{"image": b64Image(png), "texts": []string{"a", "b", "c"}}), 200, "")
	}
	wantStatus(t, "bad match", postJSON(t, h, "/v1/match", map[string]any{"texts": []string{}}), 400, "missing_input")
	wantStatus(t, "upload", upload(t, h, galleryPNG(t, 5, 40, 40), "", nil), 201, "")
	after := scrape(t, h)

	moved := func(series string, want float64) {
		t.Helper()
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	moved(`uniter_http_requests_total{method="POST",route="/v1/match",status="200"}`, 2)
	moved(`uniter_http_requests_total{method="POST",route="/v1/match",status="400"}`, 1)
	moved(`uniter_http_request_duration_seconds_count{method="POST",route="/v1/match"}`, 3)
	moved(`uniter_admission_admitted_total`, 4)
	moved(`uniter_stage_duration_seconds_count{stage="detector"}`, 1) // the match that missed the cache (uploads show in the graph series)
	moved(`uniter_stage_duration_seconds_count{stage="encoder"}`, 2)
	moved(`uniter_graph_batch_size_sum{graph="encoder"}`, 6) // two batches of three texts
	moved(`uniter_graph_run_duration_seconds_count{graph="detector"}`, 2)
	moved(`uniter_detector_cache_hits_total`, 1)
	moved(`uniter_detector_cache_misses_total`, 2)
	moved(`uniter_gallery_images`, 1)
	if after[`uniter_requests_in_flight`] != 0 || after[`uniter_admission_capacity`] != 65 {
		t.Errorf("in flight %v, capacity %v; want 0 and 65", after[`uniter_requests_in_flight`], after[`uniter_admission_capacity`])
	}
	var info bool
	for series, v := range after {
		if strings.HasPrefix(series, "uniter_build_info{") && v == 1 && strings.Contains(series, `provider="cpu"`) && strings.Contains(series, `onnxruntime_version="`) {
			info = true
		}
		if strings.Contains(series, `route="/v1/images/`) && !strings.Contains(series, ":id") {
			t.Errorf("a raw path as a label: %s", series)
		}
	}
	if !info {
		t.Error("no uniter_build_info with the provider and ONNX Runtime version")
	}
}

// TestRequestIDs: a well-formed X-Request-ID is kept, anything else replaced; every answer
// carries one, and the access log line and the error log of that request carry it too.
func TestRequestIDs(t *testing.T) {
	var logs bytes.Buffer
	s := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 1 << 20}, log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h := s.Handler()

	r := jsonReq("POST", "/v1/match", js(map[string]any{"regions": fixtureRegions(2), "texts": []string{"a"}}))
	r.Header.Set("X-Request-ID", "client-id.42")
	if rec := send(h, r); rec.Header().Get("X-Request-ID") != "client-id.42" {
		t.Errorf("a well-formed id was not kept: %q", rec.Header().Get("X-Request-ID"))
	}
	r = jsonReq("GET", "/v1/nothing", "")
	r.Header.Set("X-Request-ID", "bad id\nwith a newline")
	rec := send(h, r)
	generated := rec.Header().Get("X-Request-ID")
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(generated) {
		t.Errorf("a malformed id got %q back, want a generated one", generated)
	}
	lines := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "request" {
			lines[m["request_id"].(string)] = m
		}
	}
	for id, want := range map[string]map[string]any{
		"client-id.42": {"method": "POST", "route": "/v1/match", "status": float64(200)},
		generated:      {"method": "GET", "route": "unmatched", "status": float64(404)},
	} {
		got, ok := lines[id]
		if !ok {
			t.Errorf("no access log line with request_id %q in:\n%s", id, logs.String())
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("access log %s: %s = %v, want %v", id, k, got[k], v)
			}
		}
		for _, k := range []string{"bytes", "latency_ms", "remote"} {
			if _, ok := got[k]; !ok {
				t.Errorf("access log %s has no %s", id, k)
			}
		}
	}
}
