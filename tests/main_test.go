package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// uniterBin is the binary under test, built once by TestMain.
var uniterBin string

const (
	buildTimeout = 5 * time.Minute   // a cold build compiles gin, viper and onnxruntime_go
	readyTimeout = 120 * time.Second // serve: start to GET /readyz 200
	exitTimeout  = 60 * time.Second  // a process asked to stop, or one expected to fail fast
	// workTimeout bounds commands that do real model work (an evaluation over a split): a hang
	// guard for a shared machine, not a speed check (those are benchmarks).
	workTimeout = 10 * time.Minute
	killTimeout = 10 * time.Second // cleanup: SIGKILL to reaped
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "uniter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// UNITER_E2E_BIN: a binary built elsewhere (a machine with a GPU and no Go toolchain).
	if uniterBin = os.Getenv("UNITER_E2E_BIN"); uniterBin != "" {
		return runTests(m)
	}
	uniterBin = filepath.Join(dir, "uniter")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", uniterBin, "./cmd/uniter")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "tests: go build ./cmd/uniter: %v\n%s", err, out)
		return 1
	}
	return runTests(m)
}

// repoRoot is the folder holding go.mod, for TestMain (which has no testing.TB for testenv).
func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// lockedBuffer collects a subprocess's output; exec copies into it from its own goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// uniterEnv is the environment of every subprocess: this process's, less any UNITER_* variable
// (so the user's settings cannot leak in), plus the test library and extra (KEY=VALUE, last wins).
func uniterEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	lib := testenv.ORTLibrary(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UNITER_") {
			env = append(env, kv)
		}
	}
	// Two threads keep parallel tests from fighting over the cores.
	env = append(env, "UNITER_ORT_LIBRARY="+lib, "UNITER_ORT_INTRA_OP_THREADS=2")
	return append(env, extra...)
}

// proc is a running uniter subprocess.
type proc struct {
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	done   chan struct{} // closed once the process has exited and its output is copied
	err    error         // cmd.Wait's result, set before done is closed
}

// startProc starts uniter with args in dir (a fresh temp folder when empty, so relative
// defaults cannot resolve by accident). Cleanup kills it if it still runs, and logs its
// output if the test failed.
func startProc(t testing.TB, dir string, env []string, args ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(uniterBin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting uniter %v: %v", args, err)
	}
	go func() { // exits when the process does (the cleanup below makes sure it does)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("uniter %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout.String(), p.stderr.String())
		}
	})
	t.Cleanup(func() { // runs before the log above (cleanups run last-in first-out)
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(killTimeout):
			t.Errorf("uniter pid %d did not die within %v of SIGKILL", p.cmd.Process.Pid, killTimeout)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("uniter %v still running after %v", p.cmd.Args[1:], timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("uniter %v: %v", p.cmd.Args[1:], p.err)
	return -1
}

// runUniter runs one command to completion (bounded by exitTimeout) and returns its exit code
// and output.
func runUniter(t testing.TB, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runUniterWithin(t, exitTimeout, dir, env, args...)
}

// runUniterWithin is runUniter with another bound (workTimeout for model work over a split).
func runUniterWithin(t testing.TB, timeout time.Duration, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startProc(t, dir, env, args...)
	code = p.wait(t, timeout)
	return code, p.stdout.String(), p.stderr.String()
}

// freeAddr is a loopback address with a port the kernel just handed out.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// server is a `uniter serve` subprocess that answered GET /readyz with 200.
type server struct {
	*proc
	addr string
	url  string
}

// startServe runs `uniter serve --addr <free port> --bundle <fixture> args...`.
func startServe(t testing.TB, env []string, args ...string) *server {
	t.Helper()
	addr := freeAddr(t)
	args = append([]string{"serve", "--addr", addr, "--bundle", testenv.FixtureBundle(t)}, args...)
	return startServeAt(t, addr, env, args...)
}

// startServeAt runs uniter with args (which must make it listen on addr) and waits until ready.
func startServeAt(t testing.TB, addr string, env []string, args ...string) *server {
	t.Helper()
	s := &server{proc: startProc(t, "", env, args...), addr: addr, url: "http://" + addr}
	s.waitReady(t)
	return s
}

// client validates every answer against api/openapi.yaml (tests/openapi_test.go).
var client = &http.Client{Timeout: 20 * time.Second, Transport: specTransport()}

func (s *server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	quick := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for time.Now().Before(deadline) {
		if s.exited() {
			t.Fatalf("uniter serve exited before it was ready (%v); stderr:\n%s", s.err, s.stderr.String())
		}
		resp, err := quick.Get(s.url + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET /readyz: not 200 within %v (last: %s)", readyTimeout, last)
}

// do sends one request and returns the status and body.
func (s *server) do(t testing.TB, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(withSpecTest(req, t))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

func (s *server) postJSON(t testing.TB, path string, v any) (int, []byte) {
	t.Helper()
	return s.do(t, http.MethodPost, path, "application/json", mustJSON(t, v))
}

func (s *server) modelInfo(t testing.TB) api.ModelInfo {
	t.Helper()
	status, raw := s.do(t, http.MethodGet, "/v1/models", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/models: status %d, want 200: %s", status, raw)
	}
	var resp api.ModelsResponse
	decodeStrict(t, raw, &resp)
	if len(resp.Models) != 1 {
		t.Fatalf("GET /v1/models: %d models, want 1", len(resp.Models))
	}
	return resp.Models[0]
}

// match posts texts against the regions and wants 200.
func (s *server) match(t testing.TB, r *api.RegionsJSON, texts ...string) api.MatchResponse {
	t.Helper()
	status, raw := s.postJSON(t, "/v1/match", api.MatchRequest{Regions: r, Texts: texts})
	if status != http.StatusOK {
		t.Fatalf("POST /v1/match: status %d, want 200: %s", status, raw)
	}
	var resp api.MatchResponse
	decodeStrict(t, raw, &resp)
	return resp
}

// wantError checks an error response's status and code.
func wantError(t testing.TB, what string, status int, raw []byte, wantStatus int, wantCode string) api.ErrorDetail {
	t.Helper()
	var body api.ErrorBody
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s: body is not a JSON error (%v): %q", what, err, raw)
	}
	if status != wantStatus || body.Error.Code != wantCode {
		t.Errorf("%s: got %d %q, want %d %q (%s)", what, status, body.Error.Code, wantStatus, wantCode, raw)
	}
	if body.Error.Message == "" {
		t.Errorf("%s: empty error message: %s", what, raw)
	}
	return body.Error
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// decodeStrict decodes exactly one JSON value whose fields all exist in v.
func decodeStrict(t testing.TB, raw []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %T: %v\n%s", v, err, raw)
	}
	if dec.More() {
		t.Fatalf("decoding %T: trailing data after the JSON value:\n%s", v, raw)
	}
}

// golden is the part of testdata/golden/tiny-random.json these tests use.
type golden struct {
	Pairs []struct {
		Text     string      `json:"text"`
		Width    int         `json:"width"`
		Height   int         `json:"height"`
		Boxes    [][]float32 `json:"boxes"`
		Features [][]float32 `json:"features"`
	} `json:"pairs"`
	Batches []struct {
		Pairs     []int       `json:"pairs"`
		ITMLogits [][]float64 `json:"itm_logits"`
	} `json:"batches"`
}

func loadGolden(t testing.TB) *golden {
	t.Helper()
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "tiny-random.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("golden file: %v", err)
	}
	if len(g.Pairs) == 0 {
		t.Fatal("golden file has no pairs")
	}
	return &g
}

// regions is golden pair i's regions in the wire form.
func (g *golden) regions(i int) *api.RegionsJSON {
	p := g.Pairs[i]
	return &api.RegionsJSON{Width: p.Width, Height: p.Height, Boxes: p.Boxes, Features: p.Features}
}

// writeRegions writes golden pair i's regions as a CLI regions file.
func (g *golden) writeRegions(t testing.TB, i int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("regions-%d.json", i))
	if err := os.WriteFile(path, mustJSON(t, g.regions(i)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// matchTexts are three texts for golden pair 0, the last its own caption.
func (g *golden) matchTexts() []string {
	return []string{"a red square", "two green triangles", g.Pairs[0].Text}
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// portClosed reports whether nothing accepts connections on addr.
func portClosed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}
