package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Backoff after a 503: the Retry-After header capped to maxBackoff, defaultBackoff without it.
const (
	maxBackoff     = time.Second
	defaultBackoff = 50 * time.Millisecond
)

// loader sends the workload.
type loader struct {
	client    *http.Client
	apiKey    string
	timeout   time.Duration
	noBackoff bool
	gen       *imageGen
	form      *form
	cached    []body // the cached mode's fixed set

	mu   sync.Mutex
	seen map[string]bool // server + class already printed
	unex []Unexpects
}

// parseRetryAfter reads a Retry-After value (delay-seconds or an HTTP date) as a wait.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// backoff is the wait after a 503 with the given Retry-After value.
func backoff(retryAfter string, now time.Time) time.Duration {
	d, ok := parseRetryAfter(retryAfter, now)
	if !ok {
		return defaultBackoff
	}
	return min(d, maxBackoff)
}

// payload is the next request body of a mode; client spreads the cached mode's images.
func (l *loader) payload(mode string, client, i int) body {
	if mode == "cached" {
		return l.cached[(client+i)%len(l.cached)]
	}
	b, t := l.gen.next()
	return l.form.body(b.head, t)
}

// send posts one /v1/match and classifies the answer; wait is the backoff it asks for.
func (l *loader) send(ctx context.Context, t *target, b body) (a attempt, wait time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.info.URL+"/v1/match", b.reader())
	if err != nil {
		panic(err) // a fixed, valid URL
	}
	req.ContentLength = b.size()
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(b.reader()), nil }
	req.Header.Set("Content-Type", l.form.contentType)
	setKey(req, l.apiKey)
	start := time.Now()
	resp, err := l.client.Do(req)
	var respBody []byte
	if err == nil {
		respBody, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	a.end = time.Now()
	a.latency = a.end.Sub(start)
	switch {
	case err != nil:
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			a.class = "client_timeout"
		} else {
			a.class = "conn_error"
		}
		if ctx.Err() == context.Canceled {
			a.class = "canceled" // the run was interrupted; not counted
		}
		l.report(t, a.class, err.Error())
	case resp.StatusCode == http.StatusOK:
		a.class = classAccepted
		if !bytes.Contains(respBody, []byte(`"results"`)) {
			a.class = "bad_body"
			l.report(t, a.class, string(respBody))
		}
	case resp.StatusCode == http.StatusServiceUnavailable && errorCode(respBody) == "busy":
		a.class = classShed
		ra := resp.Header.Get("Retry-After")
		a.retryAfter = ra != ""
		wait = backoff(ra, a.end)
	default:
		a.class = "status_" + strconv.Itoa(resp.StatusCode)
		if code := errorCode(respBody); code != "" {
			a.class += "_" + code
		}
		l.report(t, a.class, string(respBody))
	}
	if l.noBackoff {
		wait = 0
	}
	return a, wait
}

func errorCode(b []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// report prints the first answer of each unexpected class per server.
func (l *loader) report(t *target, class, body string) {
	if class == "canceled" {
		return
	}
	if len(body) > 500 {
		body = body[:500] + "…"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[t.info.Label+" "+class] {
		return
	}
	l.seen[t.info.Label+" "+class] = true
	l.unex = append(l.unex, Unexpects{Server: t.info.Label, Class: class, Body: body})
	fmt.Fprintf(os.Stderr, "uniter-load: %s: unexpected %s: %s\n", t.info.Label, class, body)
}

// warmCached sends each image of the cached set once, retrying while the server is busy.
func (l *loader) warmCached(ctx context.Context, t *target) error {
	for _, b := range l.cached {
		for {
			a, _ := l.send(ctx, t, b)
			if a.class == classAccepted {
				break
			}
			if a.class != classShed {
				return fmt.Errorf("%s: warming the cached set: %s", t.info.Label, a.class)
			}
			if err := sleep(ctx, defaultBackoff); err != nil {
				return err
			}
		}
	}
	t.warmed = true
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// run measures one level: conc closed-loop clients for warmup+duration, then a drain (no new
// requests; those in flight finish and are not counted).
func (l *loader) run(ctx context.Context, t *target, mode string, conc int, warmup, duration time.Duration) (Level, error) {
	lv := Level{Server: t.info.Label, Mode: mode, Concurrency: conc}
	pid := t.info.PID
	if pid > 0 {
		if m, err := readStatus(pid); err == nil {
			lv.RSSStartKB = m.RSS
		}
		lv.PeakScope = "process"
		if resetPeak(pid) {
			lv.PeakScope = "level"
		}
	}
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+duration)
	stop, cancel := context.WithDeadline(ctx, to) // ends backoff waits; requests use ctx
	defer cancel()

	results := make([][]attempt, conc)
	backoffs := make([]time.Duration, conc)
	var wg sync.WaitGroup
	for c := range conc {
		wg.Go(func() {
			for i := 0; time.Now().Before(to) && ctx.Err() == nil; i++ {
				a, wait := l.send(ctx, t, l.payload(mode, c, i))
				results[c] = append(results[c], a)
				if wait > 0 {
					w := time.Now()
					_ = sleep(stop, wait)
					backoffs[c] += time.Since(w)
				}
			}
		})
	}

	// Window samples: server and client CPU, detector cache counters.
	var srvCPU0, srvCPU1, cli0, cli1, all0, all1 time.Duration
	var allErr0, allErr1 error
	var h0, m0, h1, m1 int64
	var ok0, ok1 bool
	if sleep(ctx, time.Until(from)) == nil {
		cli0 = selfCPU()
		all0, allErr0 = machineCPU()
		if pid > 0 {
			srvCPU0, _ = processCPU(pid)
		}
		h0, m0, ok0 = cacheCounters(ctx, l.client, t.info.URL, l.apiKey)
		if sleep(ctx, time.Until(to)) == nil {
			cli1 = selfCPU()
			all1, allErr1 = machineCPU()
			if pid > 0 {
				srvCPU1, _ = processCPU(pid)
			}
			h1, m1, ok1 = cacheCounters(ctx, l.client, t.info.URL, l.apiKey)
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return lv, err
	}
	var all []attempt
	for _, r := range results {
		all = append(all, r...)
	}
	summarize(&lv, all, from, to)
	for _, b := range backoffs {
		lv.BackoffS += b.Seconds()
	}
	w := duration.Seconds()
	lv.ClientCPU = (cli1 - cli0).Seconds() / w
	if pid > 0 {
		lv.ServerCPU = (srvCPU1 - srvCPU0).Seconds() / w
		if m, err := readStatus(pid); err == nil {
			lv.RSSEndKB, lv.RSSPeakKB = m.RSS, m.HWM
		}
		if allErr0 == nil && allErr1 == nil { // the rest of the machine: noise
			other := max((all1-all0).Seconds()/w-lv.ServerCPU-lv.ClientCPU, 0)
			lv.OtherCPU = &other
		}
	}
	if ok0 && ok1 && h1+m1 > h0+m0 {
		share := float64(h1-h0) / float64(h1+m1-h0-m0)
		lv.CacheHit = &share
	}
	return lv, t.alive()
}
