package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestServe drives one `uniter serve` over real HTTP, then stops it with SIGTERM while a
// request is in flight.
func TestServe(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	s := startServe(t, uniterEnv(t))

	t.Run("healthz and readyz", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
			status, raw := s.do(t, http.MethodGet, path, "", nil)
			var body struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(raw, &body); err != nil || status != http.StatusOK || body.Status != want {
				t.Errorf("GET %s: got %d %s, want 200 {\"status\":%q}", path, status, raw, want)
			}
		}
	})

	t.Run("index page", func(t *testing.T) {
		resp, err := client.Get(s.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("GET /: got %d %q, want 200 text/html", resp.StatusCode, ct)
		}
		if !bytes.Contains(bytes.ToLower(raw), []byte("<html")) {
			t.Errorf("GET /: body is not an HTML page: %.200q", raw)
		}
	})

	t.Run("models", func(t *testing.T) {
		info := s.modelInfo(t)
		if !info.RandomWeights || info.Provider != "cpu" || info.FeatureDim != 64 {
			t.Errorf("GET /v1/models: random_weights %v, provider %q, feature_dim %d; want true, cpu, 64",
				info.RandomWeights, info.Provider, info.FeatureDim)
		}
		if info.ProviderFallback != "" {
			t.Errorf("provider_fallback %q on a cpu run, want none", info.ProviderFallback)
		}
		if info.Name != "tiny-random" || info.ONNXRuntime == "" || len(info.Graphs) == 0 {
			t.Errorf("name %q, onnxruntime_version %q, graphs %v: want tiny-random, a version, graphs",
				info.Name, info.ONNXRuntime, info.Graphs)
		}
		if info.MaxRegions != 100 {
			t.Errorf("max_regions %d, want the default limit 100", info.MaxRegions)
		}
	})

	t.Run("match", func(t *testing.T) {
		texts := g.matchTexts()
		resp := s.match(t, g.regions(0), texts...)
		if len(resp.Results) != len(texts) {
			t.Fatalf("%d results, want %d (one per text)", len(resp.Results), len(texts))
		}
		for i, r := range resp.Results {
			if r.Text != texts[i] {
				t.Errorf("results[%d].text %q, want %q (request order)", i, r.Text, texts[i])
			}
			if !(r.Score >= 0 && r.Score <= 1) {
				t.Errorf("results[%d].score %v, want in [0, 1]", i, r.Score)
			}
			if math.IsNaN(float64(r.Logit)) || math.IsNaN(r.OTDistance) || r.OTDistance < 0 {
				t.Errorf("results[%d]: logit %v, ot_distance %v: want finite, distance >= 0", i, r.Logit, r.OTDistance)
			}
			if words := len(strings.Fields(texts[i])); r.Tokens < words+2 || r.Truncated {
				t.Errorf("results[%d]: %d tokens, truncated %v; want >= %d ([CLS] words [SEP]), not truncated",
					i, r.Tokens, r.Truncated, words+2)
			}
		}
		if resp.Model != "tiny-random" || resp.Timings.Total <= 0 || resp.Timings.Total < resp.Timings.Encoder {
			t.Errorf("model %q, timings_ms %+v: want tiny-random, a positive total covering the encoder", resp.Model, resp.Timings)
		}
		if a, b, c := resp.Results[0].Logit, resp.Results[1].Logit, resp.Results[2].Logit; a == b && b == c {
			t.Errorf("all logits equal (%v): the scores do not depend on the text", a)
		}
	})

	t.Run("match agrees with the PyTorch golden logits", func(t *testing.T) {
		checked := 0
		for _, b := range g.Batches {
			if len(b.Pairs) != 1 {
				continue
			}
			i := b.Pairs[0]
			l0, l1 := b.ITMLogits[0][0], b.ITMLogits[0][1]
			r := s.match(t, g.regions(i), g.Pairs[i].Text).Results[0]
			wantScore := 1 / (1 + math.Exp(l0-l1)) // softmax(logits)[1]
			if math.Abs(float64(r.Logit)-l1) > 1e-4 || math.Abs(float64(r.Score)-wantScore) > 1e-4 {
				t.Errorf("pair %d: logit %v score %v, want %v %v (golden)", i, r.Logit, r.Score, l1, wantScore)
			}
			checked++
		}
		if checked == 0 {
			t.Fatal("no single-pair batch in the golden file")
		}
	})

	t.Run("align", func(t *testing.T) {
		text := g.Pairs[0].Text
		status, raw := s.postJSON(t, "/v1/align", api.AlignRequest{Regions: g.regions(0), Text: text})
		if status != http.StatusOK {
			t.Fatalf("POST /v1/align: status %d, want 200: %s", status, raw)
		}
		var resp api.AlignResponse
		decodeStrict(t, raw, &resp)
		checkAlignment(t, resp, text, len(g.Pairs[0].Boxes), 3)
		for i, r := range resp.Regions {
			if r.Box != [4]float32(g.Pairs[0].Boxes[i]) {
				t.Errorf("regions[%d].box %v, want the input box %v", i, r.Box, g.Pairs[0].Boxes[i])
			}
		}
		// The same pair through /v1/match scores the same.
		m := s.match(t, g.regions(0), text).Results[0]
		if math.Abs(float64(m.Logit-resp.Logit)) > 1e-4 || math.Abs(m.OTDistance-resp.OTDistance) > 1e-4 {
			t.Errorf("align logit %v, ot_distance %v; match says %v, %v", resp.Logit, resp.OTDistance, m.Logit, m.OTDistance)
		}

		status, raw = s.postJSON(t, "/v1/align", api.AlignRequest{Regions: g.regions(0), Text: text, TopRegions: 1})
		if status != http.StatusOK {
			t.Fatalf("POST /v1/align top_regions 1: status %d: %s", status, raw)
		}
		decodeStrict(t, raw, &resp)
		checkAlignment(t, resp, text, len(g.Pairs[0].Boxes), 1)
	})

	t.Run("errors", func(t *testing.T) {
		good := g.regions(0)
		badDim := *good
		badDim.Features = [][]float32{{1, 2, 3}}
		badDim.Boxes = good.Boxes[:1]
		badBox := *good
		badBox.Boxes = [][]float32{{1, 2, 3}}
		badBox.Features = good.Features[:1]
		cases := []struct {
			name, method, path, contentType string
			body                            []byte
			status                          int
			code                            string
		}{
			{"malformed json", "POST", "/v1/match", "application/json", []byte(`{"regions": {"width": 3,`), 400, "malformed_json"},
			{"empty body", "POST", "/v1/match", "application/json", nil, 400, "malformed_json"},
			{"wrong json type", "POST", "/v1/match", "application/json", []byte(`{"texts": "one"}`), 400, "malformed_json"},
			{"unknown field", "POST", "/v1/match", "application/json", mustJSON(t, map[string]any{"regions": good, "texts": []string{"a"}, "txt": 1}), 400, "unknown_field"},
			{"not json", "POST", "/v1/match", "text/plain", []byte("a red square"), 415, "unsupported_media_type"},
			{"no texts", "POST", "/v1/match", "application/json", mustJSON(t, api.MatchRequest{Regions: good}), 400, "no_texts"},
			{"empty text", "POST", "/v1/match", "application/json", mustJSON(t, api.MatchRequest{Regions: good, Texts: []string{"a", ""}}), 400, "empty_text"},
			{"missing regions", "POST", "/v1/match", "application/json", mustJSON(t, api.MatchRequest{Texts: []string{"a"}}), 400, "missing_input"},
			{"wrong feature dim", "POST", "/v1/match", "application/json", mustJSON(t, api.MatchRequest{Regions: &badDim, Texts: []string{"a"}}), 400, "invalid_regions"},
			{"box of three numbers", "POST", "/v1/align", "application/json", mustJSON(t, api.AlignRequest{Regions: &badBox, Text: "a"}), 400, "invalid_regions"},
			{"negative top_regions", "POST", "/v1/align", "application/json", mustJSON(t, api.AlignRequest{Regions: good, Text: "a", TopRegions: -1}), 400, "invalid_top_regions"},
			{"wrong method", "GET", "/v1/match", "", nil, 405, "method_not_allowed"},
			{"no route", "GET", "/v2/nothing", "", nil, 404, "not_found"},
		}
		for _, c := range cases {
			status, raw := s.do(t, c.method, c.path, c.contentType, c.body)
			wantError(t, c.name, status, raw, c.status, c.code)
		}
	})

	t.Run("concurrent requests", func(t *testing.T) {
		texts := g.matchTexts()
		want := s.match(t, g.regions(0), texts...)
		body := mustJSON(t, api.MatchRequest{Regions: g.regions(0), Texts: texts})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				resp, err := client.Post(s.url+"/v1/match", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Errorf("request %d: %v", w, err)
					return
				}
				defer resp.Body.Close()
				var got api.MatchResponse
				if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("request %d: status %d, decode error %v", w, resp.StatusCode, err)
					return
				}
				for i := range want.Results {
					if d := math.Abs(float64(got.Results[i].Logit - want.Results[i].Logit)); d > 1e-5 {
						t.Errorf("request %d text %d: logit %v, alone %v", w, i, got.Results[i].Logit, want.Results[i].Logit)
					}
				}
			})
		}
		wg.Wait()
	})

	// Last: it stops the server.
	t.Run("graceful shutdown", func(t *testing.T) { checkGracefulShutdown(t, s, g) })
}

// TestServeAddressInUse: a port that is taken stops serve with the listener's error.
func TestServeAddressInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, stderr := runUniter(t, "", uniterEnv(t), "serve", "--addr", l.Addr().String(), "--bundle", testenv.FixtureBundle(t))
	if code == 0 {
		t.Fatalf("serve on a taken port: exit code 0, want non-zero")
	}
	if !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, l.Addr().String()) {
		t.Errorf("stderr does not say %s is in use:\n%s", l.Addr(), stderr)
	}
}

// checkAlignment checks an AlignResponse's structure: one plan row per token, one column per
// region, a transport plan (non-negative, total mass 1) and word lists of at most top regions.
func checkAlignment(t *testing.T, resp api.AlignResponse, text string, regions, top int) {
	t.Helper()
	if resp.Text != text {
		t.Errorf("text %q, want %q", resp.Text, text)
	}
	if n := len(resp.Tokens); n < 3 || resp.Tokens[0].Text != "[CLS]" || !resp.Tokens[0].Special ||
		resp.Tokens[n-1].Text != "[SEP]" || !resp.Tokens[n-1].Special {
		t.Fatalf("tokens %+v: want [CLS] ... [SEP]", resp.Tokens)
	}
	if len(resp.Plan) != len(resp.Tokens) {
		t.Fatalf("plan has %d rows, want %d (one per token)", len(resp.Plan), len(resp.Tokens))
	}
	if len(resp.Regions) != regions {
		t.Fatalf("%d regions, want %d", len(resp.Regions), regions)
	}
	var sum float64
	for i, row := range resp.Plan {
		if len(row) != regions {
			t.Fatalf("plan row %d has %d columns, want %d (one per region)", i, len(row), regions)
		}
		for j, v := range row {
			if !(v >= 0) {
				t.Errorf("plan[%d][%d] = %v, want >= 0", i, j, v)
			}
			sum += v
		}
	}
	if math.Abs(sum-1) > 1e-6 {
		t.Errorf("plan sums to %v, want 1", sum)
	}
	if words := len(strings.Fields(text)); len(resp.WordRegions) != words {
		t.Errorf("%d word_regions, want %d (one per word)", len(resp.WordRegions), words)
	}
	for _, w := range resp.WordRegions {
		if w.Text == "" || len(w.Regions) == 0 || len(w.Regions) > top {
			t.Errorf("word %d %q: %d regions, want 1..%d", w.Word, w.Text, len(w.Regions), top)
		}
		if got := string([]rune(text)[w.Start:w.End]); !strings.EqualFold(got, w.Text) {
			t.Errorf("word %d: span [%d,%d) is %q, want %q", w.Word, w.Start, w.End, got, w.Text)
		}
		for _, r := range w.Regions {
			if r.Region < 0 || r.Region >= regions || !(r.Share >= 0 && r.Share <= 1+1e-9) {
				t.Errorf("word %d: region %d share %v", w.Word, r.Region, r.Share)
			}
		}
	}
	if !(resp.Score >= 0 && resp.Score <= 1) || resp.Model == "" {
		t.Errorf("score %v, model %q", resp.Score, resp.Model)
	}
}

// checkGracefulShutdown sends SIGTERM while a request's body is half sent: the listener must
// close, the request must still be answered, and the process must then exit 0.
func checkGracefulShutdown(t *testing.T, s *server, g *golden) {
	texts := g.matchTexts()
	body := mustJSON(t, api.MatchRequest{Regions: g.regions(0), Texts: texts})
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("POST /v1/match HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n", s.addr, len(body))
	half := len(body) / 2
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	// Let the server read the header, so the handler is running. (If it has not yet, Go's
	// server still waits up to 5 s for a new connection's first request on shutdown.)
	time.Sleep(200 * time.Millisecond)

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitFor(exitTimeout, func() bool { return strings.Contains(s.stderr.String(), "shutting down") }) {
		t.Fatalf("no \"shutting down\" log within 10 s of SIGTERM")
	}
	if !waitFor(exitTimeout, func() bool { return portClosed(s.addr) }) {
		t.Errorf("%s still accepts connections 10 s after SIGTERM", s.addr)
	}
	if s.exited() {
		t.Fatalf("uniter exited (%v) with a request in flight", s.err)
	}

	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatalf("finishing the in-flight request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request got no answer: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight request: status %d, want 200: %s", resp.StatusCode, raw)
	} else {
		var m api.MatchResponse
		decodeStrict(t, raw, &m)
		if len(m.Results) != len(texts) {
			t.Errorf("in-flight request: %d results, want %d", len(m.Results), len(texts))
		}
	}

	if code := s.wait(t, exitTimeout); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if !portClosed(s.addr) {
		t.Errorf("%s accepts connections after uniter exited", s.addr)
	}
	if log := s.stderr.String(); strings.Contains(log, "level=ERROR") || strings.Contains(log, "panic") {
		t.Errorf("errors logged during shutdown:\n%s", log)
	}
}
