package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is the JSON report (--out).
type Report struct {
	Tool        string      `json:"tool"`
	Date        string      `json:"date"`
	GitDescribe string      `json:"git_describe"`
	Machine     Machine     `json:"machine"`
	Config      RunConfig   `json:"config"`
	Servers     []Server    `json:"servers"`
	Results     []Level     `json:"results"`
	Headlines   []Headline  `json:"headlines"`
	Comparisons []Compared  `json:"comparisons,omitempty"`
	Notes       []string    `json:"notes,omitempty"`
	Unexpected  []Unexpects `json:"unexpected,omitempty"`
}

// Machine is where the run happened (client and servers share it).
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
}

// RunConfig is the workload.
type RunConfig struct {
	Concurrency    []int    `json:"concurrency"`
	Modes          []string `json:"modes"`
	DurationS      float64  `json:"duration_s"`
	WarmupS        float64  `json:"warmup_s"`
	TimeoutS       float64  `json:"timeout_s"`
	Backoff        string   `json:"backoff"`
	Texts          []string `json:"texts"`
	Capacity       int      `json:"capacity"`
	CapacitySource string   `json:"capacity_source"`
	Images         string   `json:"images"`
}

// Server is one server measured: a binary the tool started, or --url.
type Server struct {
	Label    string            `json:"label"`
	Binary   string            `json:"binary,omitempty"`
	Revision string            `json:"revision,omitempty"` // vcs.revision of the binary's build info
	Modified bool              `json:"modified,omitempty"` // vcs.modified
	URL      string            `json:"url"`
	PID      int               `json:"pid,omitempty"`
	Env      map[string]string `json:"env,omitempty"` // the UNITER_* variables it ran with
}

// Level is one server, mode and concurrency: the requests that completed in the window.
type Level struct {
	Server      string         `json:"server"`
	Mode        string         `json:"mode"`
	Concurrency int            `json:"concurrency"`
	WindowS     float64        `json:"window_s"`
	Answers     int            `json:"answers"` // every attempt that ended in the window
	Accepted    int            `json:"accepted"`
	AcceptedPS  float64        `json:"accepted_per_s"`
	P50Ms       float64        `json:"p50_ms"`
	P99Ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	Shed        int            `json:"shed"`
	ShedShare   float64        `json:"shed_share"`
	ShedP50Ms   float64        `json:"shed_p50_ms"`
	Errors      map[string]int `json:"errors,omitempty"`
	RetryAfter  int            `json:"retry_after_headers"` // 503s that carried Retry-After
	BackoffS    float64        `json:"backoff_client_s"`    // client time waiting after 503s (warm-up and window)
	RSSStartKB  int64          `json:"rss_start_kb,omitempty"`
	RSSEndKB    int64          `json:"rss_end_kb,omitempty"`
	RSSPeakKB   int64          `json:"rss_peak_kb,omitempty"`
	PeakScope   string         `json:"rss_peak_scope,omitempty"` // "level" (VmHWM reset) or "process"
	ServerCPU   float64        `json:"server_cpu_cores,omitempty"`
	ClientCPU   float64        `json:"client_cpu_cores"`
	OtherCPU    *float64       `json:"other_cpu_cores,omitempty"` // every other process: noise
	CacheHit    *float64       `json:"detector_cache_hit_share,omitempty"`
}

// Headline is the criterion for one server and mode: accepted throughput and p99 at
// 2× capacity against the level closest to capacity.
type Headline struct {
	Server          string  `json:"server"`
	Mode            string  `json:"mode"`
	Capacity        int     `json:"capacity"`
	AtCapacity      int     `json:"at_capacity_concurrency"`
	AtOverload      int     `json:"overload_concurrency"`
	ThroughputRatio float64 `json:"throughput_ratio"` // accepted req/s, overload / capacity
	P99Ratio        float64 `json:"p99_ratio"`        // accepted p99, overload / capacity
	CapacityPS      float64 `json:"capacity_accepted_per_s"`
	OverloadPS      float64 `json:"overload_accepted_per_s"`
	CapacityP99Ms   float64 `json:"capacity_p99_ms"`
	OverloadP99Ms   float64 `json:"overload_p99_ms"`
}

// Compared is after/before for one mode and level (two binaries).
type Compared struct {
	Mode            string  `json:"mode"`
	Concurrency     int     `json:"concurrency"`
	ThroughputRatio float64 `json:"throughput_ratio"`
	P99Ratio        float64 `json:"p99_ratio"`
	ShedBefore      float64 `json:"shed_share_before"`
	ShedAfter       float64 `json:"shed_share_after"`
}

// Unexpects is the first body of an unexpected answer class.
type Unexpects struct {
	Server string `json:"server"`
	Class  string `json:"class"`
	Body   string `json:"body"`
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted values; 0 when empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// attempt is one request's outcome.
type attempt struct {
	end        time.Time
	latency    time.Duration
	class      string // classAccepted, classShed or an error class
	retryAfter bool
}

const (
	classAccepted = "accepted"
	classShed     = "shed"
)

// summarize fills a level's request figures from the attempts that ended in [from, to).
func summarize(lv *Level, attempts []attempt, from, to time.Time) {
	lv.WindowS = to.Sub(from).Seconds()
	var acc, shed []float64
	for _, a := range attempts {
		if a.end.Before(from) || !a.end.Before(to) {
			continue
		}
		lv.Answers++
		ms := float64(a.latency.Microseconds()) / 1000
		switch a.class {
		case classAccepted:
			acc = append(acc, ms)
		case classShed:
			shed = append(shed, ms)
			if a.retryAfter {
				lv.RetryAfter++
			}
		default:
			if lv.Errors == nil {
				lv.Errors = map[string]int{}
			}
			lv.Errors[a.class]++
		}
	}
	sort.Float64s(acc)
	sort.Float64s(shed)
	lv.Accepted, lv.Shed = len(acc), len(shed)
	if lv.WindowS > 0 {
		lv.AcceptedPS = float64(lv.Accepted) / lv.WindowS
	}
	lv.P50Ms, lv.P99Ms, lv.MaxMs = percentile(acc, 50), percentile(acc, 99), percentile(acc, 100)
	lv.ShedP50Ms = percentile(shed, 50)
	if lv.Answers > 0 {
		lv.ShedShare = float64(lv.Shed) / float64(lv.Answers)
	}
}

// closest is the level in levels nearest to target (the lower one on a tie).
func closest(levels []int, target int) int {
	best := levels[0]
	for _, l := range levels[1:] {
		if d, bd := abs(l-target), abs(best-target); d < bd || d == bd && l < best {
			best = l
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// headlines computes the criterion per server and mode from the results.
func headlines(results []Level, capacity int) []Headline {
	var out []Headline
	for _, key := range groups(results) {
		var levels []int
		byConc := map[int]Level{}
		for _, r := range results {
			if r.Server == key[0] && r.Mode == key[1] {
				levels = append(levels, r.Concurrency)
				byConc[r.Concurrency] = r
			}
		}
		atCap, atOver := closest(levels, capacity), closest(levels, 2*capacity)
		c, o := byConc[atCap], byConc[atOver]
		out = append(out, Headline{Server: key[0], Mode: key[1], Capacity: capacity, AtCapacity: atCap, AtOverload: atOver,
			ThroughputRatio: ratio(o.AcceptedPS, c.AcceptedPS), P99Ratio: ratio(o.P99Ms, c.P99Ms),
			CapacityPS: c.AcceptedPS, OverloadPS: o.AcceptedPS, CapacityP99Ms: c.P99Ms, OverloadP99Ms: o.P99Ms})
	}
	return out
}

// groups lists the (server, mode) pairs of results in order of first appearance.
func groups(results []Level) [][2]string {
	var keys [][2]string
	for _, r := range results {
		if k := [2]string{r.Server, r.Mode}; !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// compare is after/before per mode and level for two servers.
func compare(results []Level, before, after string) []Compared {
	find := func(server, mode string, conc int) (Level, bool) {
		for _, r := range results {
			if r.Server == server && r.Mode == mode && r.Concurrency == conc {
				return r, true
			}
		}
		return Level{}, false
	}
	var out []Compared
	for _, a := range results {
		if a.Server != after {
			continue
		}
		b, ok := find(before, a.Mode, a.Concurrency)
		if !ok {
			continue
		}
		out = append(out, Compared{Mode: a.Mode, Concurrency: a.Concurrency, ThroughputRatio: ratio(a.AcceptedPS, b.AcceptedPS),
			P99Ratio: ratio(a.P99Ms, b.P99Ms), ShedBefore: b.ShedShare, ShedAfter: a.ShedShare})
	}
	return out
}

func mib(kb int64) string {
	if kb == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(kb)/1024)
}

func errorsCell(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// markdown renders the results table, the headlines and, for two servers, the comparison.
func (r *Report) markdown() string {
	var b strings.Builder
	multi := len(r.Servers) > 1
	head := "| mode | conc | accepted req/s | p50 ms | p99 ms | max ms | shed | errors | cache hits | RSS start MiB | RSS end MiB | RSS peak MiB | server CPU | client CPU | other CPU |"
	rule := "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
	if multi {
		head, rule = "| server "+head, "|---"+rule
	}
	b.WriteString(head + "\n" + rule + "\n")
	for _, l := range r.Results {
		hits := "–"
		if l.CacheHit != nil {
			hits = fmt.Sprintf("%.0f%%", 100**l.CacheHit)
		}
		cpu := "–"
		if l.ServerCPU > 0 {
			cpu = fmt.Sprintf("%.2f", l.ServerCPU)
		}
		other := "–"
		if l.OtherCPU != nil {
			other = fmt.Sprintf("%.2f", *l.OtherCPU)
		}
		if multi {
			fmt.Fprintf(&b, "| %s ", l.Server)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f%% | %s | %s | %s | %s | %s | %s | %.2f | %s |\n",
			l.Mode, l.Concurrency, l.AcceptedPS, l.P50Ms, l.P99Ms, l.MaxMs, 100*l.ShedShare, errorsCell(l.Errors), hits,
			mib(l.RSSStartKB), mib(l.RSSEndKB), mib(l.RSSPeakKB), cpu, l.ClientCPU, other)
	}
	b.WriteString("\nCPU columns are cores busy during the window: the server, this client, every other process (noise).\n")
	if len(r.Headlines) > 0 {
		fmt.Fprintf(&b, "\nOverload (capacity = max_concurrent + max_queue = %d; target: accepted req/s ratio ≥ 0.80, p99 bounded):\n\n", r.Config.Capacity)
		for _, h := range r.Headlines {
			name := h.Mode
			if multi {
				name = h.Server + " " + h.Mode
			}
			verdict := "meets ≥ 0.80"
			if h.ThroughputRatio < 0.8 {
				verdict = "below 0.80"
			}
			fmt.Fprintf(&b, "- %s: accepted req/s at conc %d (%.2f× capacity) / at conc %d = %.1f / %.1f = **%.2f** (%s); accepted p99 %.0f ms / %.0f ms = **%.2f×**\n",
				name, h.AtOverload, float64(h.AtOverload)/float64(h.Capacity), h.AtCapacity, h.OverloadPS, h.CapacityPS,
				h.ThroughputRatio, verdict, h.OverloadP99Ms, h.CapacityP99Ms, h.P99Ratio)
		}
	}
	if len(r.Comparisons) > 0 {
		fmt.Fprintf(&b, "\n%s / %s:\n\n| mode | conc | accepted req/s ratio | p99 ratio | shed %s | shed %s |\n|---|---:|---:|---:|---:|---:|\n",
			r.Servers[1].Label, r.Servers[0].Label, r.Servers[0].Label, r.Servers[1].Label)
		for _, c := range r.Comparisons {
			fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.1f%% | %.1f%% |\n", c.Mode, c.Concurrency, c.ThroughputRatio, c.P99Ratio,
				100*c.ShedBefore, 100*c.ShedAfter)
		}
	}
	return b.String()
}
