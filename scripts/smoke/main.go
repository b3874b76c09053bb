// Command smoke is the container image's smoke test, run by the Dockerfile's smoke stage inside
// the build (no curl in the slim image, and `docker run` is not needed): it starts `uniter
// serve` on a free loopback port with a throw-away API key, waits until `uniter healthcheck`
// says ready, checks that /v1/match refuses a request without the key, sends a bundled sample
// with its true and false captions, and checks that every true caption scores above 0.5 and
// every false one below. Then it stops the server with SIGTERM (it must exit 0) and checks that
// the health check now fails. It prints the scores and exits non-zero on any failure.
//
//	smoke -uniter /app/uniter -samples /smoke/samples.json [-sample test-100-00000.png]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type sample struct {
	File     string   `json:"file"`
	Captions []string `json:"captions"`
	Truth    []bool   `json:"truth"`
}

type matchAnswer struct {
	Results []struct {
		Text  string  `json:"text"`
		Score float64 `json:"score"`
		Logit float64 `json:"logit"`
	} `json:"results"`
	Model string `json:"model"`
}

func main() {
	uniter := flag.String("uniter", "/app/uniter", "the uniter binary")
	samples := flag.String("samples", "web/samples/samples.json", "samples.json; the images lie next to it")
	file := flag.String("sample", "test-100-00000.png", "which sample to send")
	ready := flag.Duration("ready-timeout", 5*time.Minute, "how long the server may take to become ready")
	flag.Parse()
	if err := run(*uniter, *samples, *file, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "smoke: FAIL:", err)
		os.Exit(1)
	}
}

func run(uniter, samplesPath, file string, readyTimeout time.Duration) error {
	s, image, err := loadSample(samplesPath, file)
	if err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	secret, err := randomSecret()
	if err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", "uniter-smoke-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	// The image's environment (bundle, library, log format) with a loopback address: a build's
	// RUN may share the host's network.
	env := append(os.Environ(), "UNITER_ADDR="+addr, "UNITER_AUTH_KEYS=smoke:read:"+secret, "UNITER_DATA_DIR="+dataDir)

	server := exec.Command(uniter, "serve")
	server.Env = env
	server.Stdout, server.Stderr = os.Stderr, os.Stderr
	if err := server.Start(); err != nil {
		return fmt.Errorf("starting %s serve: %w", uniter, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = server.Process.Kill()
			<-exited
		}
	}()
	fmt.Fprintf(os.Stderr, "smoke: started uniter serve on %s (pid %d)\n", addr, server.Process.Pid)

	// Ready: `uniter healthcheck` with the server's own configuration, as the HEALTHCHECK runs it.
	start := time.Now()
	for {
		hc := exec.Command(uniter, "healthcheck", "--timeout", "2s")
		hc.Env = env
		out, err := hc.CombinedOutput()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			return fmt.Errorf("uniter serve exited before it was ready: %v", err)
		default:
		}
		if time.Since(start) > readyTimeout {
			return fmt.Errorf("not ready after %v: %s", readyTimeout, strings.TrimSpace(string(out)))
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "smoke: ready after %.1f s (uniter healthcheck exits 0)\n", time.Since(start).Seconds())

	base := "http://" + addr
	if status, body, err := match(base, "", s, image); err != nil {
		return err
	} else if status != http.StatusUnauthorized {
		return fmt.Errorf("/v1/match without an API key answered %d, want 401: %s", status, body)
	}
	status, body, err := match(base, secret, s, image)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("/v1/match answered %d: %s", status, body)
	}
	if err := check(s, body); err != nil {
		return err
	}

	if err := server.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			return fmt.Errorf("uniter serve after SIGTERM: %v (want exit status 0)", err)
		}
	case <-time.After(40 * time.Second):
		return errors.New("uniter serve did not stop within 40 s of SIGTERM")
	}
	hc := exec.Command(uniter, "healthcheck", "--timeout", "2s")
	hc.Env = env
	out, err := hc.CombinedOutput()
	if err == nil {
		return errors.New("uniter healthcheck exits 0 with the server stopped")
	}
	fmt.Fprintf(os.Stderr, "smoke: stopped on SIGTERM with status 0; healthcheck now fails as it should: %s\n", strings.TrimSpace(string(out)))
	fmt.Fprintln(os.Stderr, "smoke: PASS")
	return nil
}

func loadSample(samplesPath, file string) (sample, []byte, error) {
	raw, err := os.ReadFile(samplesPath)
	if err != nil {
		return sample{}, nil, err
	}
	var all []sample
	if err := json.Unmarshal(raw, &all); err != nil {
		return sample{}, nil, fmt.Errorf("%s: %w", samplesPath, err)
	}
	for _, s := range all {
		if s.File != file {
			continue
		}
		if len(s.Captions) == 0 || len(s.Captions) != len(s.Truth) {
			return sample{}, nil, fmt.Errorf("%s: sample %s has %d captions and %d truth values", samplesPath, file, len(s.Captions), len(s.Truth))
		}
		image, err := os.ReadFile(filepath.Join(filepath.Dir(samplesPath), file))
		return s, image, err
	}
	return sample{}, nil, fmt.Errorf("%s: no sample %s", samplesPath, file)
}

// match sends POST /v1/match as multipart (the image and every caption), as the README's curl does.
func match(base, key string, s sample, image []byte) (int, []byte, error) {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	part, err := w.CreateFormFile("image", s.File)
	if err != nil {
		return 0, nil, err
	}
	if _, err := part.Write(image); err != nil {
		return 0, nil, err
	}
	for _, c := range s.Captions {
		if err := w.WriteField("text", c); err != nil {
			return 0, nil, err
		}
	}
	if err := w.Close(); err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/match", &body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST /v1/match: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, answer, err
}

// check wants every true caption above 0.5 and every false one below, and prints the scores.
func check(s sample, body []byte) error {
	var a matchAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("/v1/match answer is not JSON: %v: %.200s", err, body)
	}
	if len(a.Results) != len(s.Captions) {
		return fmt.Errorf("/v1/match answered %d results for %d captions: %.300s", len(a.Results), len(s.Captions), body)
	}
	var bad []string
	for i, r := range a.Results {
		if r.Text != s.Captions[i] {
			return fmt.Errorf("result %d is for %q, want %q", i, r.Text, s.Captions[i])
		}
		verdict := "ok"
		if (r.Score > 0.5) != s.Truth[i] {
			verdict = "WRONG"
			bad = append(bad, fmt.Sprintf("%q (true: %v) scored %.4f", r.Text, s.Truth[i], r.Score))
		}
		fmt.Printf("smoke: %s %-45q true=%-5v score=%.6f logit=%.4f %s\n", s.File, r.Text, s.Truth[i], r.Score, r.Logit, verdict)
	}
	if len(bad) > 0 {
		return fmt.Errorf("model %s answered wrongly: %s", a.Model, strings.Join(bad, "; "))
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func randomSecret() (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}
