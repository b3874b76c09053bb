package tests

import (
	"encoding/base64"
	"fmt"
	"io"
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

const (
	e2eReadKey  = "e2e-reader-0123456789"
	e2eWriteKey = "e2e-writer-0123456789"
)

// keyedEnv configures a read key in clear and a write key by its hash.
func keyedEnv(t testing.TB, extra ...string) []string {
	return uniterEnv(t, append([]string{"UNITER_AUTH_KEYS=reader:read:" + e2eReadKey + ",writer:write:" + api.HashKey(e2eWriteKey)}, extra...)...)
}

// call sends one request with the given headers over real HTTP.
func (s *server) call(t testing.TB, method, path string, headers map[string]string, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

// TestServeAPIKeys: with keys from the environment (one in clear, one hashed), /v1/ needs a
// key of the right scope, the page and health checks do not, writes from a foreign origin and
// unknown hosts are refused.
func TestServeAPIKeys(t *testing.T) {
	t.Parallel()
	s := startServe(t, keyedEnv(t, "UNITER_DATA_DIR="+t.TempDir()))
	texts := `{"texts": [{"id": "t1", "text": "a red circle"}]}`
	cases := []struct {
		what         string
		method, path string
		headers      map[string]string
		body         string
		status       int
		code         string
	}{
		{"the page without a key", "GET", "/", nil, "", 200, ""},
		{"readyz without a key", "GET", "/readyz", nil, "", 200, ""},
		{"models without a key", "GET", "/v1/models", nil, "", 401, "unauthorized"},
		{"models with a wrong key", "GET", "/v1/models", map[string]string{"X-API-Key": "wrong-key-0123456789"}, "", 401, "unauthorized"},
		{"models with the read key", "GET", "/v1/models", map[string]string{"X-API-Key": e2eReadKey}, "", 200, ""},
		{"a write with the read key", "POST", "/v1/texts", map[string]string{"X-API-Key": e2eReadKey}, texts, 403, "forbidden"},
		{"a write with the hashed write key as a bearer token", "POST", "/v1/texts", map[string]string{"Authorization": "Bearer " + e2eWriteKey}, texts, 200, ""},
		{"a write from a foreign origin", "DELETE", "/v1/texts/t1", map[string]string{"X-API-Key": e2eWriteKey, "Origin": "http://evil.example"}, "", 403, "forbidden_origin"},
		{"a write from the server's own origin", "DELETE", "/v1/texts/t1", map[string]string{"X-API-Key": e2eWriteKey, "Origin": s.url}, "", 200, ""},
		{"a rebinding host", "GET", "/healthz", map[string]string{"Host": "rebind.evil.example:" + strings.Split(s.addr, ":")[1]}, "", 421, "unknown_host"},
	}
	for _, c := range cases {
		status, raw, hdr := s.call(t, c.method, c.path, c.headers, c.body)
		if status != c.status {
			t.Errorf("%s: %d %s, want %d", c.what, status, raw, c.status)
			continue
		}
		if c.code != "" {
			wantError(t, c.what, status, raw, c.status, c.code)
		}
		if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", c.what, hdr.Get("WWW-Authenticate"))
		}
	}
	if strings.Contains(s.stderr.String(), e2eReadKey) || strings.Contains(s.stderr.String(), e2eWriteKey) {
		t.Error("a key's secret appears in the log")
	}
}

// TestServeRefusesOpenListen: beyond loopback without keys, serve refuses to start unless
// told it is insecure.
func TestServeRefusesOpenListen(t *testing.T) {
	t.Parallel()
	port := strings.Split(freeAddr(t), ":")[1]
	code, _, stderr := runUniter(t, "", uniterEnv(t), "serve", "--addr", "0.0.0.0:"+port, "--bundle", testenv.FixtureBundle(t))
	if code == 0 || !strings.Contains(stderr, "auth.keys") || !strings.Contains(stderr, "insecure_no_auth") {
		t.Fatalf("serve on 0.0.0.0 without keys: exit %d, stderr %q; want a refusal naming auth.keys and auth.insecure_no_auth", code, stderr)
	}
	s := startServeAt(t, "127.0.0.1:"+port, uniterEnv(t, "UNITER_DATA_DIR="+t.TempDir()),
		"serve", "--addr", "0.0.0.0:"+port, "--bundle", testenv.FixtureBundle(t), "--insecure-no-auth")
	s.stop(t)
}

// TestServeShutdownUnderLoad: SIGTERM with many searches in flight and a client stalled in
// the middle of its body: the process waits at most the grace (request timeout + 5 s),
// cancels what is left, closes the model only after every run returned, and exits 0.
func TestServeShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	s := startServe(t, uniterEnv(t, "UNITER_DATA_DIR="+t.TempDir(), "UNITER_LIMITS_REQUEST_TIMEOUT=3s",
		"UNITER_LIMITS_MAX_QUEUE=200", "UNITER_SEARCH_BATCH_PAIRS=1"))
	for i := range 24 {
		body := fmt.Sprintf(`{"id": "img%d", "image": {"data": %q}}`, i, base64.StdEncoding.EncodeToString(galleryImage(t, uint64(i))))
		if status, raw, _ := s.call(t, "POST", "/v1/images", nil, body); status != 201 {
			t.Fatalf("adding image %d: %d %s", i, status, raw)
		}
	}

	// A client that sends half its body and stalls.
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/search/images HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\":", s.addr)

	// Sixty searches, each 24 encoder runs with evidence, queued behind one another.
	var wg sync.WaitGroup
	statuses := make(chan int, 60)
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(s.url+"/v1/search/images", "application/json",
				strings.NewReader(`{"text": "a red square", "limit": 20, "evidence": true}`))
			if err != nil {
				statuses <- 0 // the connection closed at shutdown
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := s.wait(t, exitTimeout)
	took := time.Since(start)
	wg.Wait()
	close(statuses)
	seen := map[int]int{}
	for st := range statuses {
		seen[st]++
	}
	t.Logf("exit %d after %v; answers by status: %v", code, took.Round(time.Millisecond), seen)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > 3*time.Second+5*time.Second+5*time.Second {
		t.Errorf("shutdown took %v, want within the grace (8 s) and the drain (5 s)", took)
	}
	if out := s.stderr.String(); strings.Contains(out, "SIGSEGV") || strings.Contains(out, "panic") {
		t.Errorf("the process crashed on shutdown:\n%s", out)
	}
	for st := range seen {
		switch st {
		case 0, 200, 503, 504:
		default:
			t.Errorf("%d searches answered %d, want 200, 503 busy, 504 timeout or a closed connection", seen[st], st)
		}
	}
}
