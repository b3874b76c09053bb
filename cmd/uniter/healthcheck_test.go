package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runHealthcheck runs `uniter healthcheck ARGS...` as main would and returns its error.
func runHealthcheck(t *testing.T, args ...string) error {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"healthcheck"}, args...))
	err := root.ExecuteContext(context.Background())
	if out.Len() > 0 {
		t.Errorf("healthcheck wrote %q; it should only return its error (main prints it)", out.String())
	}
	return err
}

// wantFailure checks err is one line naming every part of want.
func wantFailure(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("healthcheck succeeded; want a failure naming %q", want)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error is not one line: %q", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestHealthcheckReady(t *testing.T) {
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	}))
	defer srv.Close()
	if err := runHealthcheck(t, "--url", srv.URL+"/readyz"); err != nil {
		t.Fatalf("healthcheck of a ready server: %v", err)
	}
	if got := path.Load(); got != "/readyz" {
		t.Errorf("asked %v, want /readyz", got)
	}
}

func TestHealthcheckNotReady(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"not_ready","message":"models are loading"}}`))
	}))
	defer srv.Close()
	wantFailure(t, runHealthcheck(t, "--url", srv.URL+"/readyz"), "healthcheck", "503", "models are loading")
}

func TestHealthcheckOtherAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"redirect is not ready", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, []string{"302"}},
		{"multi-line body stays one line", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "line one\nline two", http.StatusInternalServerError)
		}, []string{"500", "line one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			wantFailure(t, runHealthcheck(t, "--url", srv.URL+"/readyz"), tc.want...)
		})
	}
}

func TestHealthcheckConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	wantFailure(t, runHealthcheck(t, "--url", "http://"+addr+"/readyz"), "healthcheck", addr, "refused")
}

func TestHealthcheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	wantFailure(t, runHealthcheck(t, "--url", srv.URL+"/readyz", "--timeout", "200ms"), "no answer within 200ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 200ms timeout took %v", d)
	}
	wantFailure(t, runHealthcheck(t, "--url", srv.URL, "--timeout", "0s"), "--timeout must be positive")
}

// Without --url the command asks /readyz on the configured addr, as the container's
// HEALTHCHECK does with UNITER_ADDR=0.0.0.0:8080; invalid settings unrelated to the address (no
// bundle here) do not stop it.
func TestHealthcheckFromConfig(t *testing.T) {
	var host atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	t.Setenv("UNITER_BUNDLE", t.TempDir()+"/no-such-bundle")
	t.Setenv("UNITER_ADDR", "0.0.0.0:"+port)
	if err := runHealthcheck(t); err != nil {
		t.Fatalf("healthcheck on UNITER_ADDR=0.0.0.0:%s: %v", port, err)
	}
	if got := host.Load(); got != "127.0.0.1:"+port {
		t.Errorf("Host %v, want 127.0.0.1:%s", got, port)
	}
	t.Setenv("UNITER_HTTP_ALLOWED_HOSTS", "Uniter.Example,other.example")
	if err := runHealthcheck(t); err != nil {
		t.Fatalf("healthcheck with allowed hosts: %v", err)
	}
	if got := host.Load(); got != "uniter.example:"+port {
		t.Errorf("Host %v, want an allowed name, uniter.example:%s", got, port)
	}
	t.Setenv("UNITER_ADDR", "not-an-address")
	wantFailure(t, runHealthcheck(t), "config addr", "not-an-address")
}

func TestReadyURL(t *testing.T) {
	for _, tc := range []struct {
		addr        string
		allowed     []string
		url, header string
	}{
		{"0.0.0.0:8080", nil, "http://127.0.0.1:8080/readyz", ""},
		{":8080", nil, "http://127.0.0.1:8080/readyz", ""},
		{"[::]:8080", nil, "http://127.0.0.1:8080/readyz", ""},
		{"127.0.0.1:9000", nil, "http://127.0.0.1:9000/readyz", ""},
		{"[::1]:9000", nil, "http://[::1]:9000/readyz", ""},
		{"10.1.2.3:80", nil, "http://10.1.2.3:80/readyz", ""},
		{"0.0.0.0:8080", []string{"*"}, "http://127.0.0.1:8080/readyz", ""},
		{"0.0.0.0:8080", []string{"api.example", "127.0.0.1"}, "http://127.0.0.1:8080/readyz", ""},
		{"0.0.0.0:8080", []string{"API.example"}, "http://127.0.0.1:8080/readyz", "api.example:8080"},
		{"0.0.0.0:8080", []string{"::1"}, "http://127.0.0.1:8080/readyz", "[::1]:8080"},
	} {
		url, header, err := readyURL(tc.addr, tc.allowed)
		if err != nil || url != tc.url || header != tc.header {
			t.Errorf("readyURL(%q, %q) = %q, %q, %v; want %q, %q", tc.addr, tc.allowed, url, header, err, tc.url, tc.header)
		}
	}
	if _, _, err := readyURL("8080", nil); err == nil {
		t.Error("readyURL accepted an address without a port")
	}
}
