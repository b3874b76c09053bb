// Command uniter-load measures `uniter serve` under closed-loop load: POST /v1/match over a
// sweep of concurrency levels, with never-seen images (fresh: the detector runs) and with a
// warmed set of 8 (cached: the detector cache hits). Per level it reports accepted req/s,
// accepted p50/p99/max, the share shed with 503 busy, other errors, and the server's RSS; then
// the overload criterion: accepted req/s and p99 at 2× capacity against the level closest to
// capacity (capacity = limits.max_concurrent + limits.max_queue). Given two --binary flags
// it measures both builds, alternating per level, and prints after/before ratios.
//
//	go build -o .cache/bench/uniter ./cmd/uniter
//	go run ./cmd/uniter-load --binary .cache/bench/uniter --concurrency 4,32 --duration 3s
//
// See scripts/bench-load.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	binaries, labels, env, texts listFlag
	url, bundle, ortLibrary      string
	pid                          int
	apiKey                       string
	concurrency                  string
	modes                        string
	duration, warmup, timeout    time.Duration
	noBackoff                    bool
	capacity                     int
	out                          string
	seed                         uint64
	logLevel                     string
	capacityLevels               bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "uniter-load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("uniter-load", flag.ContinueOnError)
	fs.Var(&o.binaries, "binary", "uniter binary to start and measure (repeat once to compare two builds, before then after)")
	fs.Var(&o.labels, "label", "name of each --binary in the report, in order (default: the file names; before/after for two)")
	fs.Var(&o.env, "env", "extra KEY=VAL for the started servers (repeatable), e.g. UNITER_LIMITS_MAX_QUEUE=16")
	fs.Var(&o.texts, "text", `a "text" field of every request (repeatable; default "a red circle", "a blue square")`)
	fs.StringVar(&o.url, "url", "", "measure the running server at this base URL instead of starting one")
	fs.IntVar(&o.pid, "pid", 0, "with --url: the server's process, for RSS and CPU")
	fs.StringVar(&o.bundle, "bundle", "bundles/shapes-uniter", "UNITER_BUNDLE of the started servers")
	fs.StringVar(&o.ortLibrary, "ort-library", envOr("UNITER_ORT_LIBRARY", ".cache/onnxruntime/lib/libonnxruntime.so"), "UNITER_ORT_LIBRARY of the started servers")
	fs.StringVar(&o.logLevel, "log-level", "warn", "UNITER_LOG_LEVEL of the started servers")
	fs.StringVar(&o.apiKey, "api-key", "", "send X-API-Key with every request")
	fs.StringVar(&o.concurrency, "concurrency", "4,8,16,32,64,128,256", "closed-loop clients per level, comma-separated")
	fs.StringVar(&o.modes, "modes", "fresh,cached", "image modes: fresh (never-seen images), cached (8 warmed images)")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured window per level")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each window")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request client timeout (counted as client_timeout)")
	fs.BoolVar(&o.noBackoff, "no-backoff", false, "retry at once after a 503 (default: wait Retry-After capped to 1s, 50ms without it)")
	fs.IntVar(&o.capacity, "capacity", 0, "max_concurrent + max_queue for the headline (default: from the UNITER_LIMITS_* env passed, else 1 + 64)")
	fs.BoolVar(&o.capacityLevels, "capacity-levels", false, "add capacity and 2× capacity to the sweep where no level is within 5% of them")
	fs.StringVar(&o.out, "out", ".cache/bench/load.json", "JSON report")
	fs.Uint64Var(&o.seed, "seed", 1, "Shapes World seed of the base images")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: uniter-load (--binary PATH [--binary PATH] | --url URL [--pid PID]) [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	levels, err := parseLevels(o.concurrency)
	if err != nil {
		return err
	}
	modes := strings.Split(o.modes, ",")
	for _, m := range modes {
		if m != "fresh" && m != "cached" {
			return fmt.Errorf("--modes: unknown mode %q (fresh, cached)", m)
		}
	}
	switch {
	case o.url == "" && (len(o.binaries) < 1 || len(o.binaries) > 2):
		return errors.New("give --binary once or twice, or --url")
	case o.url != "" && len(o.binaries) > 0:
		return errors.New("--url and --binary exclude each other")
	case len(o.labels) > 0 && len(o.labels) != max(len(o.binaries), 1):
		return errors.New("give one --label per --binary")
	case o.duration <= 0 || o.warmup < 0 || o.timeout <= 0:
		return errors.New("--duration and --timeout must be positive, --warmup not negative")
	}
	if len(o.texts) == 0 {
		o.texts = listFlag{"a red circle", "a blue square"}
	}
	labels := o.labels
	if len(labels) == 0 {
		switch {
		case o.url != "":
			labels = listFlag{"server"}
		case len(o.binaries) == 2:
			labels = listFlag{"before", "after"}
		default:
			labels = listFlag{filepath.Base(o.binaries[0])}
		}
	}
	if len(labels) == 2 && labels[0] == labels[1] {
		return errors.New("the two --label values must differ")
	}

	// The environment of the started servers; capacity follows from it.
	env := []string{"UNITER_ORT_LIBRARY=" + absOr(o.ortLibrary), "UNITER_BUNDLE=" + absOr(o.bundle), "UNITER_LOG_LEVEL=" + o.logLevel}
	for _, kv := range o.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VAL", kv)
		}
	}
	env = append(env, o.env...)
	capacity, capSource := o.capacity, "--capacity"
	if capacity <= 0 {
		m := uniterEnv(os.Environ())
		capSource = "server defaults or the inherited environment"
		if o.url == "" {
			for k, v := range uniterEnv(env) {
				m[k] = v
			}
			capSource = "the environment passed to the servers (defaults 1 + 64)"
		}
		if capacity, err = capacityOf(m); err != nil {
			return err
		}
	}

	if o.capacityLevels {
		levels = withCapacityLevels(levels, capacity)
	}
	maxConc := slices.Max(levels)
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        4 * maxConc,
		MaxIdleConnsPerHost: 2 * maxConc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	gen, err := newImageGen(o.seed, 16)
	if err != nil {
		return err
	}
	f, err := newForm(o.texts)
	if err != nil {
		return err
	}
	l := &loader{client: client, apiKey: o.apiKey, timeout: o.timeout, noBackoff: o.noBackoff, gen: gen, form: f, seen: map[string]bool{}}
	for range 8 {
		l.cached = append(l.cached, f.body(gen.png()))
	}

	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()
	if o.url != "" {
		targets = append(targets, &target{info: Server{Label: labels[0], URL: strings.TrimRight(o.url, "/"), PID: o.pid}})
	} else {
		for i, bin := range o.binaries {
			fmt.Fprintf(os.Stderr, "uniter-load: starting %s (%s)\n", labels[i], bin)
			t, err := startServer(ctx, labels[i], bin, env, filepath.Dir(o.out), client, o.apiKey)
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
	}

	backoffDesc := fmt.Sprintf("after a 503: wait Retry-After capped to %s, %s without it", maxBackoff, defaultBackoff)
	if o.noBackoff {
		backoffDesc = "none: retry at once after a 503"
	}
	rep := &Report{Tool: "uniter-load", Date: time.Now().UTC().Format(time.RFC3339), GitDescribe: gitDescribe(),
		Machine: Machine{CPUModel: cpuModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version()},
		Config: RunConfig{Concurrency: levels, Modes: modes, DurationS: o.duration.Seconds(), WarmupS: o.warmup.Seconds(),
			TimeoutS: o.timeout.Seconds(), Backoff: backoffDesc, Texts: o.texts, Capacity: capacity, CapacitySource: capSource,
			Images: fmt.Sprintf("Shapes World scenes (seed %d, 16 bases, 160–320 px a side), PNG; fresh: a new serial number in 8 pixels per request; cached: 8 fixed images sent once before measuring", o.seed)}}
	for _, t := range targets {
		rep.Servers = append(rep.Servers, t.info)
	}
	if closest(levels, capacity) == closest(levels, 2*capacity) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("no headline: the sweep has no separate levels near capacity %d and 2× capacity %d (see --capacity-levels)", capacity, 2*capacity))
	}

	// Modes in turn; per level every server, the order alternating so drift hits both.
	for _, mode := range modes {
		for i, conc := range levels {
			order := slices.Clone(targets)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				if mode == "cached" && !t.warmed {
					if err := l.warmCached(ctx, t); err != nil {
						return err
					}
				}
				if err := sleep(ctx, 500*time.Millisecond); err != nil { // let the previous level's work settle
					return err
				}
				lv, err := l.run(ctx, t, mode, conc, o.warmup, o.duration)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "uniter-load: %-8s %-6s conc %3d: %7.1f accepted/s, p50 %6.1f ms, p99 %7.1f ms, shed %5.1f%%, errors %s, RSS %s→%s MiB\n",
					t.info.Label, mode, conc, lv.AcceptedPS, lv.P50Ms, lv.P99Ms, 100*lv.ShedShare, errorsCell(lv.Errors), mib(lv.RSSStartKB), mib(lv.RSSEndKB))
				rep.Results = append(rep.Results, lv)
			}
		}
	}
	if closest(levels, capacity) != closest(levels, 2*capacity) {
		rep.Headlines = headlines(rep.Results, capacity)
	}
	if len(targets) == 2 {
		rep.Comparisons = compare(rep.Results, labels[0], labels[1])
	}
	rep.Unexpected = l.unex
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Print(rep.markdown())
	for _, n := range rep.Notes {
		fmt.Printf("\nNote: %s.\n", n)
	}
	fmt.Fprintf(os.Stderr, "uniter-load: wrote %s\n", o.out)
	return nil
}

// parseLevels reads "4,8,16" into ascending distinct positive levels.
func parseLevels(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--concurrency: %q is not a positive integer", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// withCapacityLevels adds capacity and 2× capacity to levels where no level is within 5%.
func withCapacityLevels(levels []int, capacity int) []int {
	out := slices.Clone(levels)
	for _, want := range []int{capacity, 2 * capacity} {
		if c := closest(out, want); float64(abs(c-want)) > 0.05*float64(want) {
			out = append(out, want)
		}
	}
	slices.Sort(out)
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--tags").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
