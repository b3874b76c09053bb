package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is a server under load: one the tool started (cmd set) or one at --url.
type target struct {
	info    Server
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	waitErr error
	dataDir string
	logPath string
	warmed  bool // the cached mode's images were sent once
}

// startServer runs `binary serve` on a free port with env (KEY=VAL, overriding the inherited
// environment) and waits for GET /readyz to answer 200.
func startServer(ctx context.Context, label, binary string, env []string, logDir string, client *http.Client, apiKey string) (*target, error) {
	abs, err := filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "uniter-load-data-")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	env = append(append([]string(nil), env...), "UNITER_ADDR="+addr, "UNITER_DATA_DIR="+dataDir)
	t := &target{dataDir: dataDir, exited: make(chan struct{}),
		logPath: filepath.Join(logDir, "uniter-load-"+safeName(label)+".log")}
	t.info = Server{Label: label, Binary: binary, URL: "http://" + addr, Env: uniterEnv(mergeEnv(os.Environ(), env))}
	if bi, err := buildinfo.ReadFile(abs); err == nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				t.info.Revision = s.Value
			case "vcs.modified":
				t.info.Modified = s.Value == "true"
			}
		}
	}
	logFile, err := os.Create(t.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	t.cmd = exec.Command(abs, "serve")
	t.cmd.Env = mergeEnv(os.Environ(), env)
	t.cmd.Stdout, t.cmd.Stderr = logFile, logFile
	if err := t.cmd.Start(); err != nil {
		_ = os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	t.info.PID = t.cmd.Process.Pid
	go func() { t.waitErr = t.cmd.Wait(); close(t.exited) }()
	if err := t.waitReady(ctx, client, apiKey, 3*time.Minute); err != nil {
		t.stop()
		return nil, fmt.Errorf("server %s: %w\n%s", label, err, t.logTail(2000))
	}
	return t, nil
}

func (t *target) waitReady(ctx context.Context, client *http.Client, apiKey string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.info.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		setKey(req, apiKey)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.exited:
			return fmt.Errorf("exited before ready: %v", t.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// alive reports an error when a started server has exited.
func (t *target) alive() error {
	if t.cmd == nil {
		return nil
	}
	select {
	case <-t.exited:
		return fmt.Errorf("server %s exited: %v\n%s", t.info.Label, t.waitErr, t.logTail(2000))
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL after 20 s, and removes the data directory.
func (t *target) stop() {
	if t.cmd != nil {
		_ = t.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-t.exited:
		case <-time.After(20 * time.Second):
			_ = t.cmd.Process.Kill()
			<-t.exited
		}
	}
	if t.dataDir != "" {
		_ = os.RemoveAll(t.dataDir)
	}
}

func (t *target) logTail(n int) string {
	b, err := os.ReadFile(t.logPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return fmt.Sprintf("--- %s (last %d bytes) ---\n%s", t.logPath, len(b), b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// mergeEnv is base with the variables of over replacing those of the same name.
func mergeEnv(base, over []string) []string {
	set := map[string]bool{}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	var out []string
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}

// uniterEnv is the UNITER_* variables of env (later ones win), secrets redacted: the server
// configuration a report records.
func uniterEnv(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "UNITER_") {
			continue
		}
		if u := strings.ToUpper(k); strings.Contains(u, "KEY") || strings.Contains(u, "SECRET") || strings.Contains(u, "TOKEN") || strings.Contains(u, "PASSWORD") {
			v = "(redacted)"
		}
		m[k] = v
	}
	return m
}

// capacityOf is limits.max_concurrent + limits.max_queue as the environment sets them (the
// server's defaults 1 and 64 otherwise; non-positive values mean the defaults, as in the
// pipeline).
func capacityOf(env map[string]string) (int, error) {
	get := func(key string, def int) (int, error) {
		v, ok := env[key]
		if !ok || v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: %w", key, v, err)
		}
		if n <= 0 {
			return def, nil
		}
		return n, nil
	}
	c, err := get("UNITER_LIMITS_MAX_CONCURRENT", 1)
	if err != nil {
		return 0, err
	}
	q, err := get("UNITER_LIMITS_MAX_QUEUE", 64)
	if err != nil {
		return 0, err
	}
	return c + q, nil
}

// memStatus is the memory lines of /proc/<pid>/status, in kB.
type memStatus struct {
	RSS, HWM int64
}

// parseStatus reads VmRSS and VmHWM from a /proc/<pid>/status text.
func parseStatus(r io.Reader) (memStatus, error) {
	var m memStatus
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "VmRSS" && key != "VmHWM" {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("%s: unexpected value %q", key, val)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSS = n
		} else {
			m.HWM = n
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if seen < 2 {
		return m, errors.New("no VmRSS and VmHWM lines")
	}
	return m, nil
}

func readStatus(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	return parseStatus(f)
}

// resetPeak resets the process's VmHWM to its current RSS (clear_refs 5); false where that is
// not allowed (another user's process, an old kernel).
func resetPeak(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// parseStat is the user+system CPU time in a /proc/<pid>/stat text.
func parseStat(b []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces; the fields after it
	// start with the state (field 3); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseMachineStat is the busy CPU time of all cores (not idle, not iowait; guests are already
// in user and nice) from a /proc/stat text.
func parseMachineStat(b []byte) (time.Duration, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("no cpu line")
	}
	var busy int64
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineStat(b)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cacheCounters is the detector cache's hits and misses from GET /v1/models; ok false when
// the server does not report them.
func cacheCounters(ctx context.Context, client *http.Client, url, apiKey string) (hits, misses int64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/models", nil)
	if err != nil {
		return 0, 0, false
	}
	setKey(req, apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	var body struct {
		Models []struct {
			DetectorCache *struct {
				Hits   int64 `json:"hits"`
				Misses int64 `json:"misses"`
			} `json:"detector_cache"`
		} `json:"models"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil ||
		len(body.Models) == 0 || body.Models[0].DetectorCache == nil {
		return 0, 0, false
	}
	return body.Models[0].DetectorCache.Hits, body.Models[0].DetectorCache.Misses, true
}

func setKey(req *http.Request, apiKey string) {
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
