package pipeline

// Encoder and detector benchmarks. `make bench` runs them on a UNITER-base-sized random bundle
// with a default-size detector (UNITER_BENCH_BUNDLE, exported by python3 -m uniter.bench)
// next to the PyTorch reference; without UNITER_BENCH_BUNDLE they run on the committed tiny
// fixture, so that `go test -bench . ./models` always measures something real.
//
// Encoder benchmarks: every pair is 20 tokens ([CLS] and [SEP] included) and 36 regions,
// UNITER's usual sizes. Detector benchmarks: one synthetic 640×480 JPEG (benchJPEG). The
// bundle is loaded once per top-level benchmark, outside any timed region, and each
// (sub-)benchmark warms up with one untimed call before timing.

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/textproc"
)

const (
	benchTokens  = 20 // per text, [CLS] and [SEP] included
	benchRegions = 36 // per image
)

var benchBatches = batchesFromEnv([]int{1, 8, 32})

// batchesFromEnv reads $UNITER_BENCH_BATCHES ("1,8,32,128"), e.g. for larger GPU batches.
func batchesFromEnv(def []int) []int {
	v := os.Getenv("UNITER_BENCH_BATCHES")
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			panic("UNITER_BENCH_BATCHES: want positive integers separated by commas, got " + v)
		}
		out = append(out, n)
	}
	return out
}

// benchTexts have 18 words each, all whole tokens of the fixture vocabulary (which the base
// benchmark bundle's synthetic vocabulary starts with): 20 tokens with [CLS] and [SEP].
var benchTexts = []string{
	"a small red square left of a large blue circle near two green triangles above the yellow star",
	"two large blue circles are next to a tiny orange diamond and three purple crosses below the sky",
	"a man and a woman playing with a dog near the tree on the left of the street",
	"people play ball in the water next to a white car and a black cat on the right",
}

var printConfig sync.Once

// benchBundle opens ONNX Runtime (testenv.CPUConfig: CPU, 2 intra-op threads) and loads the
// bundle named by UNITER_BENCH_BUNDLE (a relative path is taken from the repository root), or
// the fixture bundle, with at most 36 regions per image and no detector cache; both close
// when b ends.
func benchBundle(b *testing.B) *Bundle {
	b.Helper()
	return benchBundleWith(b, Options{MaxRegions: benchRegions})
}

// benchBundleWith is benchBundle with other serving options.
func benchBundleWith(b *testing.B, opts Options) *Bundle {
	b.Helper()
	dir := os.Getenv("UNITER_BENCH_BUNDLE")
	switch {
	case dir == "":
		dir = testenv.FixtureBundle(b)
	case !filepath.IsAbs(dir):
		dir = testenv.Path(b, dir)
	}
	env := testenv.Env(b)
	bundle, err := Load(env, dir, opts)
	if err != nil {
		b.Fatalf("loading bundle (set UNITER_BENCH_BUNDLE or run `make bench`): %v", err)
	}
	b.Cleanup(func() {
		if err := bundle.Close(); err != nil {
			b.Errorf("closing bundle: %v", err)
		}
	})
	printConfig.Do(func() {
		// Configuration lines in the format of `go test -bench` ("key: value"), for
		// scripts/bench.sh and benchstat.
		m := bundle.Manifest.Model
		fmt.Printf("onnxruntime: %s\nbundle: %s (hidden %d, %d layers, feature dim %d)\n",
			env.Version(), bundle.Manifest.Name, m.HiddenSize, m.NumHiddenLayers, m.FeatureDim)
		ot := "go (heads.Align per pair)"
		if bundle.OTInGraph() {
			ot = "graph (ot_distance, ot_plan)"
		}
		fmt.Printf("transport: %s\n", ot)
	})
	return bundle
}

// benchRegionsFor builds 36 deterministic regions (valid boxes in a 640×480 image and
// non-negative features of the bundle's dimension, like pooled ReLU outputs).
func benchRegionsFor(dim int) detector.Regions {
	rng := rand.New(rand.NewPCG(1, 2))
	r := detector.Regions{Width: 640, Height: 480}
	for range benchRegions {
		x1, y1 := float32(rng.Float64()*480), float32(rng.Float64()*360)
		w, h := float32(8+rng.Float64()*150), float32(8+rng.Float64()*110)
		r.Boxes = append(r.Boxes, detector.Box{x1, y1, x1 + w, y1 + h})
		f := make([]float32, dim)
		for i := range f {
			f[i] = float32(rng.ExpFloat64())
		}
		r.Features = append(r.Features, f)
	}
	return r
}

// benchTextsFor returns batch texts of exactly benchTokens tokens each with bundle's
// tokenizer: benchTexts, cycled, for the benchmark bundle's vocabulary (the PyTorch peer's
// inputs have that length); for another vocabulary (the default model's, say), texts made of
// benchTexts' words that are single tokens in it.
func benchTextsFor(b *testing.B, bundle *Bundle, batch int) []string {
	b.Helper()
	tokens := func(t string) []textproc.Token {
		enc, err := bundle.Tokenizer().Encode(t)
		if err != nil {
			b.Fatal(err)
		}
		return enc.Tokens
	}
	source := benchTexts
	if slices.ContainsFunc(source, func(t string) bool { return len(tokens(t)) != benchTokens }) {
		source = singleTokenTexts(b, benchTokens, tokens)
	}
	texts := make([]string, batch)
	for i := range texts {
		texts[i] = source[i%len(source)]
	}
	return texts
}

// singleTokenTexts makes len(benchTexts) texts of n tokens, [CLS] and [SEP] included, from
// benchTexts' words that tokenize to one known token, each text starting at another word.
func singleTokenTexts(b *testing.B, n int, tokens func(string) []textproc.Token) []string {
	b.Helper()
	var words []string
	seen := map[string]bool{}
	for _, t := range benchTexts {
		for _, w := range strings.Fields(t) {
			if tk := tokens(w); !seen[w] && len(tk) == 3 && tk[1].Text != "[UNK]" {
				seen[w] = true
				words = append(words, w)
			}
		}
	}
	if len(words) < 4 {
		b.Fatalf("only %d of the benchmark texts' words are single tokens in this vocabulary: %v", len(words), words)
	}
	out := make([]string, len(benchTexts))
	for i := range out {
		text := make([]string, n-2)
		for j := range text {
			text[j] = words[(i*3+j)%len(words)]
		}
		out[i] = strings.Join(text, " ")
		if got := len(tokens(out[i])); got != n {
			b.Fatalf("%q has %d tokens, want %d", out[i], got, n)
		}
	}
	return out
}

// reportPairs reports throughput in pairs per second over the timed loop.
func reportPairs(b *testing.B, calls, batch int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(calls*batch)/s, "pairs/s")
	}
}

// BenchmarkEncoder times Bundle.Match, the full Go pipeline for one image and batch texts:
// tokenizer, region preparation, padded batching, ONNX Runtime, ITM and optimal-transport heads.
func BenchmarkEncoder(b *testing.B) {
	bundle := benchBundle(b)
	ctx := context.Background()
	regions := benchRegionsFor(bundle.Manifest.Model.FeatureDim)
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			texts := benchTextsFor(b, bundle, batch)
			out, err := bundle.Match(ctx, Input{Regions: &regions}, texts) // warm-up, and a sanity check
			if err != nil {
				b.Fatal(err)
			}
			for i, r := range out.Results {
				if r.Tokens != benchTokens || math.IsNaN(float64(r.Score)) || math.IsNaN(r.OTDistance) {
					b.Fatalf("result %d: %+v", i, r)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			calls := 0
			for b.Loop() {
				if _, err := bundle.Match(ctx, Input{Regions: &regions}, texts); err != nil {
					b.Fatal(err)
				}
				calls++
			}
			reportPairs(b, calls, batch)
		})
	}
}

// BenchmarkEncoderGraphOnly times only the encoder run (Bundle.encode: padded batching and
// ONNX Runtime) on pairs tokenized and prepared beforehand. Compared with BenchmarkEncoder it
// shows what the rest of the pipeline costs. On a bundle whose graph computes the transport
// (Bundle.OTInGraph) the run includes it, and the warm-up run checks every pair's distance and
// plan against heads.Align on the same run's hidden states (reported as ot-max-diff; over 1e-5
// fails).
func BenchmarkEncoderGraphOnly(b *testing.B) {
	bundle := benchBundle(b)
	ctx := context.Background()
	regions, err := bundle.prepare(benchRegionsFor(bundle.Manifest.Model.FeatureDim))
	if err != nil {
		b.Fatal(err)
	}
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			pairs := make([]Pair, batch)
			for i, t := range benchTextsFor(b, bundle, batch) {
				enc, err := bundle.tokenize("text", t)
				if err != nil {
					b.Fatal(err)
				}
				pairs[i] = Pair{Text: enc, Regions: regions}
			}
			e, err := bundle.Encode(ctx, pairs, false) // warm-up
			if err != nil {
				b.Fatal(err)
			}
			var otDiff float64
			if bundle.OTInGraph() {
				if otDiff, err = transportVsAlign(e); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			calls := 0
			for b.Loop() {
				if _, err := bundle.Encode(ctx, pairs, false); err != nil {
					b.Fatal(err)
				}
				calls++
			}
			reportPairs(b, calls, batch)
			if bundle.OTInGraph() {
				b.ReportMetric(otDiff, "ot-max-diff")
			}
		})
	}
}

// transportVsAlign is the largest difference, over e's pairs, between the graph's transport
// (distance and plan entries) and heads.Align's on the same hidden states; an error above 1e-5.
func transportVsAlign(e *Encoded) (float64, error) {
	var worst float64
	for i := range e.Pairs {
		got, err := e.Transport(i, true)
		if err != nil {
			return 0, err
		}
		want, err := heads.Align(e.TextHidden(i), e.RegionHidden(i), heads.DefaultOTOptions())
		if err != nil {
			return 0, err
		}
		worst = max(worst, math.Abs(got.Distance-want.Distance))
		for r, row := range want.Weights {
			for c, w := range row {
				worst = max(worst, math.Abs(got.Plan[r][c]-w))
			}
		}
	}
	if worst > 1e-5 {
		return worst, fmt.Errorf("the graph's transport differs from heads.Align's by %.2e", worst)
	}
	return worst, nil
}

// Serving defaults (cmd/uniter/config.go: limits.max_regions, detector.cache_bytes), for the
// cold-request benchmark.
const (
	servingMaxRegions = 100
	servingCacheBytes = 256 << 20
)

// benchJPEG is a 640×480 photo-like picture (sky and ground gradients, texture, sensor-like
// noise, a few shaded shapes), JPEG quality 90 with Go's encoder (4:2:0). It starts with a COM
// segment of 16 hex digits (initially all 0; see stampJPEG), so that a benchmark can make the
// bytes of every request unique without changing the pixels.
func benchJPEG(b *testing.B) []byte {
	b.Helper()
	const w, h = 640, 480
	rng := rand.New(rand.NewPCG(3, 4))
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	type disc struct {
		cx, cy, r float64
		c         [3]float64
	}
	discs := []disc{{170, 300, 70, [3]float64{200, 40, 40}}, {430, 250, 95, [3]float64{40, 80, 200}},
		{560, 390, 45, [3]float64{230, 200, 40}}}
	inRect := func(x, y int, x1, y1, x2, y2 int) bool { return x >= x1 && x < x2 && y >= y1 && y < y2 }
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x), float64(y)
			var c [3]float64
			if y < h*2/5 { // sky: vertical gradient with soft clouds
				t := fy / (h * 2 / 5)
				cloud := 25 * math.Max(0, math.Sin(fx/53+math.Sin(fy/19))*math.Cos(fy/31))
				c = [3]float64{110 + 60*t + cloud, 150 + 50*t + cloud, 230 - 20*t + cloud}
			} else { // ground: grass-like texture
				tex := 18*math.Sin(fx/3.1+fy/7.3) + 12*math.Cos(fx/11+fy/2.7)
				c = [3]float64{70 + tex, 120 + tex + 30*(fy/h), 50 + tex/2}
			}
			if inRect(x, y, 40, 120, 200, 250) { // a building-like block with windows
				c = [3]float64{150, 140, 130}
				if (x/16)%2 == 1 && (y/20)%2 == 1 {
					c = [3]float64{60, 70, 90}
				}
			}
			if y > 60 && y < 200 && float64(x-300) > -0.8*fy+80 && float64(x-300) < 0.8*fy-80 { // triangle
				c = [3]float64{240, 150, 30}
			}
			for _, d := range discs { // shaded discs
				dx, dy := fx-d.cx, fy-d.cy
				if r := math.Hypot(dx, dy); r < d.r {
					shade := 0.6 + 0.4*(1-r/d.r) - 0.2*(dx+dy)/(2*d.r)
					c = [3]float64{d.c[0] * shade, d.c[1] * shade, d.c[2] * shade}
				}
			}
			n := float64(rng.IntN(17) - 8)
			px := func(v float64) uint8 { return uint8(min(max(v+n, 0), 255)) }
			m.SetNRGBA(x, y, color.NRGBA{px(c[0]), px(c[1]), px(c[2]), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	// SOI, then COM (0xFFFE, length 2+16), then the rest of the file.
	com := append([]byte{0xff, 0xfe, 0, 2 + 16}, bytes.Repeat([]byte{'0'}, 16)...)
	return append(append(append([]byte{}, data[:2]...), com...), data[2:]...)
}

// stampJPEG writes i as 16 hex digits into benchJPEG's COM segment: other bytes (another
// SHA-256), the same pixels.
func stampJPEG(data []byte, i uint64) {
	const digits = "0123456789abcdef"
	for k := 15; k >= 0; k-- {
		data[6+k] = digits[i&15]
		i >>= 4
	}
}

// stageMS accumulates Timing over the timed iterations and reports each stage's mean in ms.
type stageMS struct {
	t Timing
	n int
}

func (s *stageMS) add(t Timing) {
	s.t.Decode += t.Decode
	s.t.Preprocess += t.Preprocess
	s.t.Detector += t.Detector
	s.t.Selection += t.Selection
	s.t.Encoder += t.Encoder
	s.t.OT += t.OT
	s.n++
}

func (s *stageMS) report(b *testing.B, withEncoder bool) {
	if s.n == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(s.n) }
	b.ReportMetric(ms(s.t.Decode), "decode-ms")
	b.ReportMetric(ms(s.t.Preprocess), "preprocess-ms")
	b.ReportMetric(ms(s.t.Detector), "detector-ms")
	b.ReportMetric(ms(s.t.Selection), "selection-ms")
	if withEncoder {
		b.ReportMetric(ms(s.t.Encoder), "encoder-ms")
		b.ReportMetric(ms(s.t.OT), "ot-ms")
	}
}

var printDetectorConfig sync.Once

// benchDetectorBundle skips b when the bundle has no detector.
func benchDetectorBundle(b *testing.B, opts Options) *Bundle {
	b.Helper()
	bundle := benchBundleWith(b, opts)
	if !bundle.HasDetector() {
		b.Skipf("bundle %s has no detector: nothing to time (the fixture bundle and `make bench`'s "+
			"bundle have one; an older .cache/bench bundle may not: run `make bench` to export it again)",
			bundle.Manifest.Name)
	}
	return bundle
}

// printDetectorInput writes, once per process, what the detector benchmarks feed the detector,
// as configuration lines for scripts/bench.sh.
func printDetectorInput(bundle *Bundle, data []byte, det *detector.Detection) {
	printDetectorConfig.Do(func() {
		p := bundle.Manifest.Detector.Preprocess
		fmt.Printf("detector-image: %dx%d %s, %d bytes, quality 90\n", det.Width, det.Height, strings.ToUpper(det.Format), len(data))
		fmt.Printf("detector-input: %dx%d (shorter side %d, longer side at most %d)\n",
			int(math.Round(float64(det.Width)*det.Scale)), int(math.Round(float64(det.Height)*det.Scale)),
			p.ShorterSide, p.LongerSideMax)
		fmt.Printf("detector-output: %d proposals, %d classes, %d-d features, %d attributes; %d regions selected\n",
			det.Proposals, det.ClassDim, bundle.Manifest.Model.FeatureDim, det.AttrDim, len(det.Regions))
	})
}

// BenchmarkDetector times the detector path of one image without the result cache
// (the bundle's detector.Detector: decode, preprocessing, the detector graph in ONNX Runtime, region selection)
// on benchJPEG, and reports images/s and each stage's mean time.
func BenchmarkDetector(b *testing.B) {
	bundle := benchDetectorBundle(b, Options{MaxRegions: servingMaxRegions})
	ctx := context.Background()
	data := benchJPEG(b)
	det, err := bundle.detector.Detect(ctx, data) // warm-up, and what the report describes
	if err != nil {
		b.Fatal(err)
	}
	printDetectorInput(bundle, data, det)
	timeDetector(b, bundle, data, det)
}

// timeDetector times bundle's detector on data (no cache) after the warm-up run that gave det,
// and reports images/s, each stage's mean time and det's proposals and regions.
func timeDetector(b *testing.B, bundle *Bundle, data []byte, det *detector.Detection) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var st stageMS
	for b.Loop() {
		d, err := bundle.detector.Detect(ctx, data)
		if err != nil {
			b.Fatal(err)
		}
		st.add(Timing{Timing: d.Timing})
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(st.n)/s, "images/s")
	}
	st.report(b, false)
	b.ReportMetric(float64(det.Proposals), "proposals")
	b.ReportMetric(float64(len(det.Regions)), "regions")
}

// BenchmarkColdMatch times what POST /v1/match does for an image the service has not seen:
// Bundle.Match with the image's bytes and 5 texts (20 tokens each), with the serving defaults
// (at most 100 regions, a 256 MiB detector cache). Every request's bytes are unique (a counter
// in a JPEG comment segment; the pixels stay the same), so each one misses the cache and pays
// what a real cold request pays: SHA-256 of the bytes, the cache lookup and insertion, decode,
// preprocessing, detector, selection, encoder and OT. Disabling the cache instead would leave
// the hashing and cache bookkeeping out and time a configuration the service does not run.
// Reports each stage's mean time, ms/request and what the stages leave over (other-ms:
// tokenizer, hashing, cache, region preparation).
func BenchmarkColdMatch(b *testing.B) {
	bundle := benchDetectorBundle(b, Options{MaxRegions: servingMaxRegions, CacheBytes: servingCacheBytes})
	ctx := context.Background()
	texts := benchTextsFor(b, bundle, 5)
	data := benchJPEG(b)
	var stamp uint64
	out, err := bundle.Match(ctx, Input{Image: data}, texts) // warm-up, and a sanity check
	if err != nil {
		b.Fatal(err)
	}
	if out.Timing.CacheHit || len(out.Results) != len(texts) {
		b.Fatalf("warm-up: cache hit %v, %d results", out.Timing.CacheHit, len(out.Results))
	}
	printDetectorInput(bundle, data, out.Image)
	b.ReportAllocs()
	b.ResetTimer()
	var st stageMS
	for b.Loop() {
		stamp++
		stampJPEG(data, stamp)
		out, err := bundle.Match(ctx, Input{Image: data}, texts)
		if err != nil {
			b.Fatal(err)
		}
		if out.Timing.CacheHit {
			b.Fatal("a request with new bytes hit the detector cache")
		}
		st.add(out.Timing)
	}
	if st.n == 0 {
		return
	}
	total := b.Elapsed().Seconds() * 1000 / float64(st.n)
	st.report(b, true)
	t := st.t
	stages := (t.Decode + t.Preprocess + t.Detector + t.Selection + t.Encoder + t.OT).Seconds() * 1000 / float64(st.n)
	b.ReportMetric(total, "ms/request")
	b.ReportMetric(total-stages, "other-ms")
	b.ReportMetric(float64(len(out.Image.Regions)), "regions")
}

// BenchmarkAlignBy times one text's word-region alignment on prepared regions (what each search
// hit's evidence costs) by the OT plan (the encoder graph, then IPOT) and by attention (the
// encoder_attention graph, which also returns every head's map, then heads.CrossAttention and
// the OT plan too), side by side.
func BenchmarkAlignBy(b *testing.B) {
	bundle := benchBundle(b)
	if !bundle.HasAttention() {
		b.Skip("the bundle has no attention graph")
	}
	ctx := context.Background()
	regions, err := bundle.prepare(benchRegionsFor(bundle.Manifest.Model.FeatureDim))
	if err != nil {
		b.Fatal(err)
	}
	const text = "a small red square left of a blue circle" // any bundle's vocabulary has these
	for _, by := range []string{AlignByOT, AlignByAttention} {
		b.Run("by="+by, func(b *testing.B) {
			opts := AlignOptions{Attention: by == AlignByAttention}
			a, err := bundle.AlignPrepared(ctx, regions, text, opts)
			if err != nil || (opts.Attention && len(a.AttentionWordRegions) == 0) {
				b.Fatalf("alignment %+v, %v", a, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := bundle.AlignPrepared(ctx, regions, text, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Task-head benchmark: what each official fine-tuned class's call costs over the encoder run it
// is built on, at UNITER-base size. The task bundles are exported by
// `python3 -m uniter.bench export-tasks` (scripts/bench.sh: `make bench`, or
// `BENCH_ONLY=heads bash scripts/bench.sh` for this part alone) into UNITER_BENCH_TASKS (default
// .cache/bench/tasks, one folder per layout); the baseline is the pre-training bundle of
// UNITER_BENCH_BUNDLE (default .cache/bench/uniter-base-random, `python3 -m uniter.bench
// export`). Without them BenchmarkTaskHeads is skipped: the tiny fixtures would time nothing
// worth reporting.

// taskBenchCase is one sub-benchmark of BenchmarkTaskHeads: the bundle's folder under the task
// bundles' directory ("" for the pre-training bundle) and the call timed on it, which checks
// what it got.
type taskBenchCase struct {
	name, layout string
	call         func(ctx context.Context, bundle *Bundle, in Input, text string) error
}

// taskBenchCases are BenchmarkTaskHeads' sub-benchmarks in the order they run and are reported.
var taskBenchCases = []taskBenchCase{
	{"encoder", "", func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		var t Timing // the pair path the task calls share: tokenizer, region preparation, encoder run
		e, _, err := bundle.encodeOne(ctx, in, "text", text, &t)
		if err == nil && (len(e.Pairs) != 1 || len(e.Pairs[0].Text.Tokens) != benchTokens) {
			err = fmt.Errorf("encoded %d pairs", len(e.Pairs))
		}
		return err
	}},
	{"vqa", "vqa", func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		out, err := bundle.VQA(ctx, in, text, 5)
		if err == nil && (len(out.Answers) != 5 || out.Question.Tokens != benchTokens || isNaN32(out.Answers[0].Score)) {
			err = fmt.Errorf("vqa: %+v", out)
		}
		return err
	}},
	{"ve", "ve", func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		out, err := bundle.Entail(ctx, in, text)
		if err == nil && (len(out.Probabilities) != 3 || out.Hypothesis.Tokens != benchTokens || isNaN32(out.Probabilities[0].Probability)) {
			err = fmt.Errorf("entailment: %+v", out)
		}
		return err
	}},
	{"re", "re", func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		out, err := bundle.Refer(ctx, in, text, 5)
		if err == nil && (len(out.Regions) != 5 || out.Expression.Tokens != benchTokens || isNaN32(out.Regions[0].Probability)) {
			err = fmt.Errorf("refer: %+v", out)
		}
		return err
	}},
	{"retrieval", "retrieval", func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		out, err := bundle.Match(ctx, in, []string{text})
		if err == nil && (len(out.Results) != 1 || out.Results[0].Head != MatchByRank || out.Results[0].Tokens != benchTokens ||
			isNaN32(out.Results[0].Score) || math.IsNaN(out.Results[0].OTDistance)) {
			err = fmt.Errorf("match: %+v", out)
		}
		return err
	}},
	{"nlvr2-paired", "nlvr2-paired", nlvr2BenchCall(NLVR2Paired)},
	{"nlvr2-triplet", "nlvr2-triplet", nlvr2BenchCall(NLVR2Triplet)},
	{"nlvr2-paired-attn", "nlvr2-paired-attn", nlvr2BenchCall(NLVR2PairedAttn)},
}

// nlvr2BenchCall is Bundle.NLVR2 on the same regions for both images, checking the layout.
func nlvr2BenchCall(layout string) func(ctx context.Context, bundle *Bundle, in Input, text string) error {
	return func(ctx context.Context, bundle *Bundle, in Input, text string) error {
		out, err := bundle.NLVR2(ctx, [2]Input{in, in}, text)
		if err == nil && (out.Layout != layout || out.Statement.Tokens != benchTokens || isNaN32(out.TrueProbability)) {
			err = fmt.Errorf("nlvr2 (want layout %s): %+v", layout, out)
		}
		return err
	}
}

func isNaN32(v float32) bool { return math.IsNaN(float64(v)) }

// benchDir is the folder $name names (a relative path is taken from the repository root), or
// def under the repository root.
func benchDir(b *testing.B, name string, def ...string) string {
	dir := os.Getenv(name)
	switch {
	case dir == "":
		return testenv.Path(b, def...)
	case !filepath.IsAbs(dir):
		return testenv.Path(b, dir)
	}
	return dir
}

// BenchmarkTaskHeads times, at batch 1 with BenchmarkEncoder's input (one text of 20 tokens, 36
// regions), the encoder run of the UNITER-base-sized pre-training bundle (Bundle.Encode of one
// pair, with its tokenizer and region preparation) as the baseline, then each fine-tuned task's
// call on its UNITER-base-sized bundle: VQA top 5 (3,129 answers), Entail, Refer top 5, Match of
// one text on the retrieval bundle (rank head, and the OT alignment Match always computes), and
// NLVR2 on the paired, triplet and paired-attention layouts with the same regions for both
// images. Each sub-benchmark loads its bundle (outside the timed loop), makes one untimed
// warm-up call, times the loop and closes the bundle, so one bundle is open at a time besides
// the environment; ns/op is the mean cost of one request, fastest-ms the quickest call's.
func BenchmarkTaskHeads(b *testing.B) {
	tasksDir := benchDir(b, "UNITER_BENCH_TASKS", ".cache", "bench", "tasks")
	baseDir := benchDir(b, "UNITER_BENCH_BUNDLE", ".cache", "bench", "uniter-base-random")
	dirs := map[string]string{}
	var missing []string
	for _, c := range taskBenchCases {
		dirs[c.name] = baseDir
		if c.layout != "" {
			dirs[c.name] = filepath.Join(tasksDir, c.layout)
		}
		if _, err := os.Stat(filepath.Join(dirs[c.name], "manifest.json")); err != nil {
			missing = append(missing, dirs[c.name])
		}
	}
	if len(missing) > 0 {
		b.Skipf("no UNITER-base-sized bundles to time the task heads on: %s missing (run "+
			"`BENCH_ONLY=heads bash scripts/bench.sh`, or python3 -m uniter.bench export and "+
			"export-tasks; UNITER_BENCH_BUNDLE and UNITER_BENCH_TASKS name other folders)",
			strings.Join(missing, ", "))
	}
	// Every bundle must have the baseline's encoder dimensions, or "added over the encoder"
	// compares different encoders.
	base, err := ReadManifest(baseDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range taskBenchCases[1:] {
		m, err := ReadManifest(dirs[c.name])
		if err != nil {
			b.Fatal(err)
		}
		if d, w := m.Model, base.Model; d.HiddenSize != w.HiddenSize || d.NumHiddenLayers != w.NumHiddenLayers ||
			d.NumAttentionHeads != w.NumAttentionHeads || d.IntermediateSize != w.IntermediateSize || d.FeatureDim != w.FeatureDim {
			b.Fatalf("%s: encoder %+v, the baseline %s has %+v: export both with python3 -m uniter.bench",
				dirs[c.name], d, baseDir, w)
		}
	}
	env := testenv.Env(b)
	printConfig.Do(func() {
		m := base.Model
		fmt.Printf("onnxruntime: %s\nbundle: %s (hidden %d, %d layers, feature dim %d)\n",
			env.Version(), base.Name, m.HiddenSize, m.NumHiddenLayers, m.FeatureDim)
	})
	fmt.Printf("task-bundles: %s\n", tasksDir)
	ctx := context.Background()
	regions := benchRegionsFor(base.Model.FeatureDim)
	for _, c := range taskBenchCases {
		b.Run("task="+c.name, func(b *testing.B) {
			bundle, err := Load(env, dirs[c.name], Options{MaxRegions: benchRegions})
			if err != nil {
				b.Fatalf("loading %s: %v", dirs[c.name], err)
			}
			b.Cleanup(func() {
				if err := bundle.Close(); err != nil {
					b.Errorf("closing %s: %v", dirs[c.name], err)
				}
			})
			text := benchTextsFor(b, bundle, 1)[0]
			in := Input{Regions: &regions}
			if err := c.call(ctx, bundle, in, text); err != nil { // warm-up, and a sanity check
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			fastest := time.Duration(math.MaxInt64)
			for b.Loop() {
				start := time.Now()
				if err := c.call(ctx, bundle, in, text); err != nil {
					b.Fatal(err)
				}
				fastest = min(fastest, time.Since(start))
			}
			// The quickest call: on a shared machine, the figure other jobs disturb least.
			b.ReportMetric(fastest.Seconds()*1000, "fastest-ms")
		})
	}
}
