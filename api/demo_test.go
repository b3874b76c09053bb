package api_test

import (
	"encoding/json"
	"testing"

	"github.com/uniter-serve/uniter/api"
)

// TestGalleryStatus: GET /v1/gallery counts what the gallery holds; the demo section appears
// once a demo fill has started and follows it.
func TestGalleryStatus(t *testing.T) {
	ts := newTestServer(t, serverOptions{config: api.Config{MaxBodyBytes: 1 << 20}, gallery: true})
	demo := &api.DemoProgress{}
	ts.SetDemo(demo)
	h := ts.Handler()
	status := func() map[string]any {
		t.Helper()
		rec := send(h, jsonReq("GET", "/v1/gallery", ""))
		if rec.Code != 200 {
			t.Fatalf("GET /v1/gallery: %d %s", rec.Code, rec.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := status(); v["images"] != 0.0 || v["texts"] != 0.0 || v["demo"] != nil {
		t.Errorf("an empty gallery before any fill: %v", v)
	}
	demo.Set(api.DemoStatus{State: api.DemoIndexing, Split: "test-100", Images: 3, Total: 100})
	if d, _ := status()["demo"].(map[string]any); d["state"] != "indexing" || d["images"] != 3.0 || d["total"] != 100.0 {
		t.Errorf("demo while indexing: %v", d)
	}
	wantStatus(t, "a text", send(h, jsonReq("POST", "/v1/texts", `{"texts": [{"id": "t1", "text": "a red square"}]}`)), 200, "")
	demo.Set(api.DemoStatus{State: api.DemoReady, Split: "test-100", Images: 100, Total: 100})
	if v := status(); v["texts"] != 1.0 || v["demo"].(map[string]any)["state"] != "ready" {
		t.Errorf("after a text and the fill: %v", v)
	}
}
