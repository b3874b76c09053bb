package main

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/shapes"
)

func TestPercentile(t *testing.T) {
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {10, 1}, {1, 1}, {0, 1}} {
		if got := percentile(vals, c.p); got != c.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("percentile([7], 99) = %v, want 7", got)
	}
	// Nearest rank on 200 values: p99 is the 198th.
	var many []float64
	for i := 1; i <= 200; i++ {
		many = append(many, float64(i))
	}
	if got := percentile(many, 99); got != 198 {
		t.Errorf("p99 of 1..200 = %v, want 198", got)
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	from, to := t0.Add(time.Second), t0.Add(3*time.Second)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	at := func(n int) time.Time { return t0.Add(ms(n)) }
	attempts := []attempt{
		{end: at(500), latency: ms(1000), class: classAccepted}, // before the window
		{end: at(1000), latency: ms(10), class: classAccepted},  // at its start: counted
		{end: at(1500), latency: ms(30), class: classAccepted},
		{end: at(2000), latency: ms(20), class: classAccepted},
		{end: at(2100), latency: ms(2), class: classShed, retryAfter: true},
		{end: at(2200), latency: ms(3), class: classShed},
		{end: at(2500), latency: ms(30000), class: "client_timeout"},
		{end: at(2600), latency: ms(5), class: "status_500_internal"},
		{end: at(3000), latency: ms(9), class: classAccepted}, // at its end: not counted
	}
	var lv Level
	summarize(&lv, attempts, from, to)
	if lv.WindowS != 2 || lv.Answers != 7 || lv.Accepted != 3 || lv.Shed != 2 || lv.RetryAfter != 1 {
		t.Fatalf("got window %v, answers %d, accepted %d, shed %d, retry-after %d; want 2, 7, 3, 2, 1",
			lv.WindowS, lv.Answers, lv.Accepted, lv.Shed, lv.RetryAfter)
	}
	if lv.AcceptedPS != 1.5 || lv.P50Ms != 20 || lv.P99Ms != 30 || lv.MaxMs != 30 {
		t.Errorf("got %v req/s, p50 %v, p99 %v, max %v; want 1.5, 20, 30, 30", lv.AcceptedPS, lv.P50Ms, lv.P99Ms, lv.MaxMs)
	}
	if want := 2.0 / 7; lv.ShedShare != want {
		t.Errorf("shed share %v, want %v", lv.ShedShare, want)
	}
	if lv.Errors["client_timeout"] != 1 || lv.Errors["status_500_internal"] != 1 || len(lv.Errors) != 2 {
		t.Errorf("errors %v", lv.Errors)
	}
}

func TestHeadlinesAndCompare(t *testing.T) {
	results := []Level{
		{Server: "before", Mode: "fresh", Concurrency: 32, AcceptedPS: 50, P99Ms: 100},
		{Server: "after", Mode: "fresh", Concurrency: 32, AcceptedPS: 60, P99Ms: 90},
		{Server: "before", Mode: "fresh", Concurrency: 64, AcceptedPS: 80, P99Ms: 200, ShedShare: 0.1},
		{Server: "after", Mode: "fresh", Concurrency: 64, AcceptedPS: 80, P99Ms: 100, ShedShare: 0.05},
		{Server: "before", Mode: "fresh", Concurrency: 128, AcceptedPS: 40, P99Ms: 1000},
		{Server: "after", Mode: "fresh", Concurrency: 128, AcceptedPS: 76, P99Ms: 120},
	}
	hs := headlines(results, 65)
	if len(hs) != 2 || hs[0].Server != "before" || hs[1].Server != "after" {
		t.Fatalf("headlines %+v", hs)
	}
	if h := hs[0]; h.AtCapacity != 64 || h.AtOverload != 128 || h.ThroughputRatio != 0.5 || h.P99Ratio != 5 {
		t.Errorf("before: %+v", h)
	}
	if h := hs[1]; h.ThroughputRatio != 0.95 || h.P99Ratio != 1.2 {
		t.Errorf("after: %+v", h)
	}
	cs := compare(results, "before", "after")
	if len(cs) != 3 || cs[1].Concurrency != 64 || cs[1].ThroughputRatio != 1 || cs[1].P99Ratio != 0.5 || cs[1].ShedAfter != 0.05 {
		t.Errorf("compare %+v", cs)
	}
	if got := closest([]int{4, 8, 16, 32, 64, 128, 256}, 130); got != 128 {
		t.Errorf("closest to 130 = %d", got)
	}
	if got := closest([]int{4, 8}, 6); got != 4 {
		t.Errorf("closest tie = %d, want the lower", got)
	}
	if got := withCapacityLevels([]int{4, 32}, 65); !slices.Equal(got, []int{4, 32, 65, 130}) {
		t.Errorf("withCapacityLevels(4,32; 65) = %v", got)
	}
	if got := withCapacityLevels([]int{4, 64, 128, 256}, 65); !slices.Equal(got, []int{4, 64, 128, 256}) {
		t.Errorf("withCapacityLevels(default; 65) = %v", got)
	}
}

func TestMarkdown(t *testing.T) {
	hit, other := 0.98, 0.05
	rep := &Report{
		Config:  RunConfig{Capacity: 65},
		Servers: []Server{{Label: "before"}, {Label: "after"}},
		Results: []Level{
			{Server: "before", Mode: "cached", Concurrency: 64, AcceptedPS: 812.34, P50Ms: 70.04, P99Ms: 95.5, MaxMs: 120,
				ShedShare: 0.125, RSSStartKB: 100 * 1024, RSSEndKB: 120 * 1024, RSSPeakKB: 130 * 1024, ServerCPU: 1.5, ClientCPU: 0.4, CacheHit: &hit, OtherCPU: &other},
			{Server: "after", Mode: "cached", Concurrency: 64, AcceptedPS: 800, Errors: map[string]int{"status_500_internal": 2, "client_timeout": 1}},
		},
	}
	rep.Headlines = headlines(rep.Results, 65)
	rep.Comparisons = compare(rep.Results, "before", "after")
	md := rep.markdown()
	for _, want := range []string{
		"| server | mode | conc | accepted req/s |",
		"| before | cached | 64 | 812.3 | 70.0 | 95.5 | 120.0 | 12.5% | 0 | 98% | 100 | 120 | 130 | 1.50 | 0.40 | 0.05 |",
		"| after | cached | 64 | 800.0 | 0.0 | 0.0 | 0.0 | 0.0% | client_timeout: 1, status_500_internal: 2 | – | – | – | – | – | 0.00 | – |",
		"capacity = max_concurrent + max_queue = 65",
		"after / before:",
		"| cached | 64 | 0.98 | 0.00 | 12.5% | 0.0% |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// Every table row has as many cells as its header.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| before") || strings.HasPrefix(line, "| after") {
			if got, want := strings.Count(line, "|"), strings.Count("| server | mode | conc | accepted req/s | p50 ms | p99 ms | max ms | shed | errors | cache hits | RSS start MiB | RSS end MiB | RSS peak MiB | server CPU | client CPU | other CPU |", "|"); got != want {
				t.Errorf("row %q has %d bars, want %d", line, got, want)
			}
		}
	}
	one := &Report{Servers: []Server{{Label: "uniter"}}, Results: []Level{{Server: "uniter", Mode: "fresh", Concurrency: 4}}}
	if md := one.markdown(); strings.Contains(md, "| server |") || !strings.HasPrefix(md, "| mode | conc |") {
		t.Errorf("one server: %s", md)
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tuniter\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 2000000 kB\nVmSize:\t 1900000 kB\n" +
		"VmHWM:\t  130560 kB\nVmRSS:\t  120320 kB\nRssAnon:\t   90000 kB\nThreads:\t12\n"
	m, err := parseStatus(strings.NewReader(status))
	if err != nil || m.RSS != 120320 || m.HWM != 130560 {
		t.Errorf("parseStatus = %+v, %v; want RSS 120320, HWM 130560", m, err)
	}
	if _, err := parseStatus(strings.NewReader("Name:\tkthreadd\nState:\tS\n")); err == nil {
		t.Error("a kernel thread's status (no Vm lines) parsed")
	}
	if _, err := parseStatus(strings.NewReader("VmHWM:\t 12 MB\nVmRSS:\t 1 kB\n")); err == nil {
		t.Error("a unit other than kB parsed")
	}
	self, err := readStatus(1) // any live process will do; pid 1 exists in every namespace
	if err == nil && (self.RSS <= 0 || self.HWM < self.RSS) {
		t.Errorf("readStatus(1) = %+v", self)
	}
}

func TestParseStat(t *testing.T) {
	// Field 2 with a space and a parenthesis; utime 250 and stime 50 ticks = 3 s.
	stat := "4242 (uni ter) (x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 12 0 100 2000000000 30000\n"
	d, err := parseStat([]byte(stat))
	if err != nil || d != 3*time.Second {
		t.Errorf("parseStat = %v, %v; want 3s", d, err)
	}
	if _, err := parseStat([]byte("4242 (x) S 1")); err == nil {
		t.Error("a short stat parsed")
	}
	// user 300 nice 20 system 80 idle 1000 iowait 50 irq 0 softirq 10 steal 90: 500 busy ticks.
	d, err = parseMachineStat([]byte("cpu  300 20 80 1000 50 0 10 90 0 0\ncpu0 150 10 40 500 25 0 5 45 0 0\n"))
	if err != nil || d != 5*time.Second {
		t.Errorf("parseMachineStat = %v, %v; want 5s", d, err)
	}
	if _, err := parseMachineStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a stat without a cpu line parsed")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", defaultBackoff},
		{"junk", defaultBackoff},
		{"-1", defaultBackoff},
		{"0", 0},
		{"1", time.Second},
		{"30", maxBackoff},
		{now.Add(500 * time.Millisecond).Format(http.TimeFormat), 0}, // HTTP dates have whole seconds
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(time.Hour).Format(http.TimeFormat), maxBackoff},
	} {
		if got := backoff(c.v, now); got != c.want {
			t.Errorf("backoff(%q) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestCapacityAndEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, 65},
		{map[string]string{"UNITER_LIMITS_MAX_QUEUE": "16"}, 17},
		{map[string]string{"UNITER_LIMITS_MAX_CONCURRENT": "2", "UNITER_LIMITS_MAX_QUEUE": "0"}, 66},
	} {
		if got, err := capacityOf(c.env); err != nil || got != c.want {
			t.Errorf("capacityOf(%v) = %d, %v; want %d", c.env, got, err, c.want)
		}
	}
	if _, err := capacityOf(map[string]string{"UNITER_LIMITS_MAX_QUEUE": "many"}); err == nil {
		t.Error("a non-integer queue parsed")
	}
	env := uniterEnv([]string{"PATH=/bin", "UNITER_BUNDLE=a", "UNITER_BUNDLE=b", "UNITER_API_KEYS=secret"})
	if len(env) != 2 || env["UNITER_BUNDLE"] != "b" || env["UNITER_API_KEYS"] != "(redacted)" {
		t.Errorf("uniterEnv = %v", env)
	}
	merged := mergeEnv([]string{"PATH=/bin", "UNITER_ADDR=x"}, []string{"UNITER_ADDR=y"})
	if !slices.Equal(merged, []string{"PATH=/bin", "UNITER_ADDR=y"}) {
		t.Errorf("mergeEnv = %v", merged)
	}
	if got, err := parseLevels("32, 4,4,256"); err != nil || !slices.Equal(got, []int{4, 32, 256}) {
		t.Errorf("parseLevels = %v, %v", got, err)
	}
	if _, err := parseLevels("4,0"); err == nil {
		t.Error("level 0 parsed")
	}
}

// The generated images decode to their base scene but for the marked pixels, and differ.
func TestImageGen(t *testing.T) {
	const bases = 3
	gen, err := newImageGen(1, bases)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 7 {
		b, tail := gen.next()
		n := gen.serial.Load()
		data := append(append([]byte(nil), b.head...), tail...)
		if seen[string(data)] {
			t.Fatalf("image %d repeats an earlier one", i)
		}
		seen[string(data)] = true
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		ref := shapes.Render(shapes.GenerateScene(1, int(n%bases)))
		r := img.Bounds()
		if r != ref.Bounds() || r.Dx() < 160 || r.Dx() > 320 || r.Dy() < 160 || r.Dy() > 320 {
			t.Fatalf("image %d: %v, scene %v", i, r, ref.Bounds())
		}
		again, err := png.Decode(bytes.NewReader(append(append([]byte(nil), b.head...), b.tail(n)...)))
		if err != nil || !sameImage(img, again) {
			t.Fatalf("image %d: tail(n) is not deterministic (%v)", i, err)
		}
		changed := 0
		for y := range r.Dy() {
			for x := range r.Dx() {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				got := [3]int{int(cr >> 8), int(cg >> 8), int(cb >> 8)}
				p := ref.PixOffset(x, y)
				want := [3]int{int(ref.Pix[p]), int(ref.Pix[p+1]), int(ref.Pix[p+2])}
				if got == want {
					continue
				}
				if y != r.Dy()-1 || x >= markedPixels {
					t.Fatalf("image %d: pixel (%d,%d) changed", i, x, y)
				}
				for ch := range 3 {
					if d := got[ch] - want[ch]; d < -7 || d > 7 {
						t.Fatalf("image %d: pixel (%d,%d) channel %d changed by %d", i, x, y, ch, d)
					}
				}
				changed++
			}
		}
		if changed == 0 {
			t.Errorf("image %d: no pixel marked", i)
		}
	}
}

func sameImage(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

func TestForm(t *testing.T) {
	f, err := newForm([]string{"a red circle", "a blue square"})
	if err != nil {
		t.Fatal(err)
	}
	body := f.body([]byte("\x89PNG"), []byte("rest"))
	raw, err := io.ReadAll(body.reader())
	if err != nil || int64(len(raw)) != body.size() {
		t.Fatalf("read %d bytes, %v; size %d", len(raw), err, body.size())
	}
	_, params, err := mime.ParseMediaType(f.contentType)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(raw), params["boundary"])
	var names, values []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		v, _ := io.ReadAll(p)
		names, values = append(names, p.FormName()), append(values, string(v))
	}
	if !slices.Equal(names, []string{"image", "text", "text"}) || !slices.Equal(values, []string{"\x89PNGrest", "a red circle", "a blue square"}) {
		t.Errorf("parts %q = %q", names, values)
	}
}

// A fresh image costs about a microsecond and one small allocation (PNG encoding would take
// milliseconds: on a 2-core machine the client would compete with the server).
func BenchmarkNextImage(b *testing.B) {
	gen, err := newImageGen(1, 16)
	if err != nil {
		b.Fatal(err)
	}
	f, err := newForm([]string{"a red circle"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		base, tail := gen.next()
		_ = f.body(base.head, tail)
	}
}

func BenchmarkEncodePNG(b *testing.B) {
	img := shapes.Render(shapes.GenerateScene(1, 0))
	for b.Loop() {
		if _, err := shapes.EncodePNG(img); err != nil {
			b.Fatal(err)
		}
	}
}
