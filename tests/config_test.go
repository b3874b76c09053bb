package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// writeConfig writes a config file named name (its extension picks the format).
func writeConfig(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// texts makes n distinct texts.
func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("text number %d", i)
	}
	return out
}

func TestConfigEnvironment(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	s := startServe(t, uniterEnv(t, "UNITER_LIMITS_MAX_TEXTS=2"))
	s.match(t, g.regions(0), texts(2)...)
	status, raw := s.postJSON(t, "/v1/match", api.MatchRequest{Regions: g.regions(0), Texts: texts(3)})
	detail := wantError(t, "3 texts with UNITER_LIMITS_MAX_TEXTS=2", status, raw, http.StatusBadRequest, "too_many_texts")
	if !strings.Contains(detail.Message, "2") {
		t.Errorf("message %q does not state the limit 2", detail.Message)
	}
}

// detector.min_box_size reaches the bundle: /v1/models reports the override.
func TestConfigMinBoxSize(t *testing.T) {
	t.Parallel()
	s := startServe(t, uniterEnv(t, "UNITER_DETECTOR_MIN_BOX_SIZE=4.5"))
	if d := s.modelInfo(t).Detector; d == nil || d.MinBoxSize != 4.5 {
		t.Fatalf("GET /v1/models detector %+v, want min_box_size 4.5", d)
	}
}

func TestConfigRequestTimeout(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	// A deadline that has passed before the model starts: every model call must give up.
	s := startServe(t, uniterEnv(t, "UNITER_LIMITS_REQUEST_TIMEOUT=1ns"))
	status, raw := s.postJSON(t, "/v1/match", api.MatchRequest{Regions: g.regions(0), Texts: texts(2)})
	wantError(t, "match with limits.request_timeout 1ns", status, raw, http.StatusGatewayTimeout, "timeout")
	status, raw = s.postJSON(t, "/v1/align", api.AlignRequest{Regions: g.regions(0), Text: "a red square"})
	wantError(t, "align with limits.request_timeout 1ns", status, raw, http.StatusGatewayTimeout, "timeout")
	status, _ = s.do(t, http.MethodGet, "/v1/models", "", nil)
	if status != http.StatusOK {
		t.Errorf("GET /v1/models: status %d, want 200 (no model work, no deadline)", status)
	}
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	fileAddr := freeAddr(t)
	const maxBody = 16 << 10 // golden pair 0 with a few texts is about 4 KiB
	file := writeConfig(t, "uniter.yaml", fmt.Sprintf(`# set by TestConfigFile
addr: %q
limits:
  max_texts: 1
  max_body_bytes: %d
log:
  format: json
`, fileAddr, maxBody))

	t.Run("file", func(t *testing.T) {
		t.Parallel()
		// No --addr: the file's addr must be used.
		s := startServeAt(t, fileAddr, uniterEnv(t), "serve", "--config", file, "--bundle", testenv.FixtureBundle(t))
		s.match(t, g.regions(0), texts(1)...)
		status, raw := s.postJSON(t, "/v1/match", api.MatchRequest{Regions: g.regions(0), Texts: texts(2)})
		wantError(t, "2 texts with limits.max_texts 1", status, raw, http.StatusBadRequest, "too_many_texts")

		long := strings.Repeat("word ", maxBody/4)
		status, raw = s.postJSON(t, "/v1/match", api.MatchRequest{Regions: g.regions(0), Texts: []string{long}})
		wantError(t, "body over limits.max_body_bytes", status, raw, http.StatusRequestEntityTooLarge, "body_too_large")

		// log.format json: every stderr line is a JSON object.
		lines := strings.Split(strings.TrimSpace(s.stderr.String()), "\n")
		sawReady := false
		for _, line := range lines {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("log.format json: stderr line is not JSON: %q", line)
				continue
			}
			sawReady = sawReady || rec["msg"] == "ready"
		}
		if !sawReady {
			t.Errorf("no {\"msg\":\"ready\"} log line in:\n%s", s.stderr.String())
		}

		// SIGINT stops it as cleanly as SIGTERM.
		if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := s.wait(t, exitTimeout); code != 0 {
			t.Errorf("exit code %d after SIGINT, want 0", code)
		}
	})

	t.Run("precedence", func(t *testing.T) {
		t.Parallel()
		// Flags beat the environment, which beats the file.
		flagAddr, envAddr := freeAddr(t), freeAddr(t)
		env := uniterEnv(t, "UNITER_LIMITS_MAX_TEXTS=3", "UNITER_ADDR="+envAddr)
		s := startServeAt(t, flagAddr, env, "serve", "--config", file, "--addr", flagAddr, "--bundle", testenv.FixtureBundle(t))
		if got := s.match(t, g.regions(0), texts(3)...); len(got.Results) != 3 {
			t.Errorf("%d results, want 3", len(got.Results))
		}
		status, raw := s.postJSON(t, "/v1/match", api.MatchRequest{Regions: g.regions(0), Texts: texts(4)})
		wantError(t, "4 texts with UNITER_LIMITS_MAX_TEXTS=3 over a file's 1", status, raw, http.StatusBadRequest, "too_many_texts")
		// (The file's addr is the parallel "file" subtest's: only the environment's is free.)
		if !portClosed(envAddr) {
			t.Errorf("listening on UNITER_ADDR %s, want only the flag's %s", envAddr, flagAddr)
		}
	})
}

// TestConfigInvalid: every invalid setting stops `uniter serve` quickly, non-zero, with a
// message naming the key.
func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		file string // YAML config file content, if any
		args []string
		want []string // substrings of stderr
	}{
		{name: "provider from env", env: []string{"UNITER_ORT_PROVIDER=tpu"}, want: []string{"ort", "provider", `"tpu"`}},
		{name: "provider from flag", args: []string{"--provider", "tpu"}, want: []string{"ort", "provider", `"tpu"`}},
		{name: "zero max_regions in file", file: "limits:\n  max_regions: 0\n", want: []string{"limits.max_regions"}},
		{name: "negative max_text_length in file", file: "limits:\n  max_text_length: -1\n", want: []string{"limits.max_text_length"}},
		{name: "every bad key is named", file: "limits:\n  max_texts: 0\n  max_queue: -3\nlog:\n  level: loud\n",
			want: []string{"limits.max_texts", "limits.max_queue", "log.level"}},
		{name: "missing bundle", args: []string{"--bundle", "/nonexistent/uniter-bundle"}, want: []string{"bundle", "/nonexistent/uniter-bundle"}},
		{name: "unknown keys in file", file: "bogus_key: 1\nlimits:\n  max_regionz: 5\n", want: []string{"bogus_key", "max_regionz"}},
		{name: "not an int in env", env: []string{"UNITER_LIMITS_MAX_TEXTS=many"}, want: []string{"limits.max_texts"}},
		{name: "negative timeout in env", env: []string{"UNITER_LIMITS_REQUEST_TIMEOUT=-1s"}, want: []string{"limits.request_timeout"}},
		{name: "log format", env: []string{"UNITER_LOG_FORMAT=xml"}, want: []string{"log.format", "xml"}},
		{name: "negative min_box_size", env: []string{"UNITER_DETECTOR_MIN_BOX_SIZE=-3"}, want: []string{"detector.min_box_size", "-3"}},
		{name: "log level flag", args: []string{"--log-level", "loud"}, want: []string{"log.level"}},
		{name: "negative threads", env: []string{"UNITER_ORT_INTRA_OP_THREADS=-1"}, want: []string{"ort", "thread"}},
		{name: "missing config file", args: []string{"--config", "/nonexistent/uniter.yaml"}, want: []string{"config file", "/nonexistent/uniter.yaml"}},
		{name: "unparsable config file", file: "limits: [1, 2\n", want: []string{"config file"}},
		{name: "missing ort library", env: []string{"UNITER_ORT_LIBRARY=/nonexistent/libonnxruntime.so"},
			want: []string{"/nonexistent/libonnxruntime.so"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			args := []string{"serve", "--addr", addr, "--bundle", testenv.FixtureBundle(t)}
			if c.file != "" {
				args = append(args, "--config", writeConfig(t, "uniter.yaml", c.file))
			}
			args = append(args, c.args...) // later flags win: --bundle may be overridden
			start := time.Now()
			code, _, stderr := runUniter(t, "", uniterEnv(t, c.env...), args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", stderr)
			}
			if took := time.Since(start); took > exitTimeout {
				t.Errorf("took %v to refuse the config, a hang guard, not a speed goal", took)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if !strings.HasPrefix(stderr, "uniter: ") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("want one `uniter: ...` error, no panic; stderr:\n%s", stderr)
			}
		})
	}
}
