package models

// Encoder throughput benchmarks. `make bench` runs them on a UNITER-base-sized random bundle
// (UNITER_BENCH_BUNDLE, exported by models/bench_reference.py) next to the PyTorch reference;
// without UNITER_BENCH_BUNDLE they run on the committed tiny fixture, so that
// `go test -bench . ./models` always measures something real.
//
// Every pair is 20 tokens ([CLS] and [SEP] included) and 36 regions, UNITER's usual sizes.
// The bundle is loaded once per top-level benchmark, outside any timed region, and each
// sub-benchmark warms up with one untimed call before timing.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

const (
	benchTokens  = 20 // per text, [CLS] and [SEP] included
	benchRegions = 36 // per image
)

var benchBatches = []int{1, 8, 32}

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
// the fixture bundle; both close when b ends.
func benchBundle(b *testing.B) *Bundle {
	b.Helper()
	dir := os.Getenv("UNITER_BENCH_BUNDLE")
	switch {
	case dir == "":
		dir = testenv.FixtureBundle(b)
	case !filepath.IsAbs(dir):
		dir = testenv.Path(b, dir)
	}
	env := testenv.Env(b)
	bundle, err := Load(env, dir, Options{MaxRegions: benchRegions})
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

// benchTextsFor returns batch texts (cycling benchTexts) after checking that each tokenizes
// to exactly benchTokens tokens with bundle's tokenizer.
func benchTextsFor(b *testing.B, bundle *Bundle, batch int) []string {
	b.Helper()
	for _, t := range benchTexts {
		enc, err := bundle.Tokenizer().Encode(t)
		if err != nil {
			b.Fatal(err)
		}
		if len(enc.Tokens) != benchTokens {
			b.Fatalf("%q has %d tokens with bundle %s's vocabulary, the benchmark needs %d",
				t, len(enc.Tokens), bundle.Manifest.Name, benchTokens)
		}
	}
	texts := make([]string, batch)
	for i := range texts {
		texts[i] = benchTexts[i%len(benchTexts)]
	}
	return texts
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
// shows what the rest of the pipeline costs.
func BenchmarkEncoderGraphOnly(b *testing.B) {
	bundle := benchBundle(b)
	ctx := context.Background()
	regions, err := bundle.prepare(benchRegionsFor(bundle.Manifest.Model.FeatureDim))
	if err != nil {
		b.Fatal(err)
	}
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			pairs := make([]pair, batch)
			for i, t := range benchTextsFor(b, bundle, batch) {
				enc, err := bundle.tokenize("text", t)
				if err != nil {
					b.Fatal(err)
				}
				pairs[i] = pair{text: enc, regions: regions}
			}
			if _, err := bundle.encode(ctx, pairs, false); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			calls := 0
			for b.Loop() {
				if _, err := bundle.encode(ctx, pairs, false); err != nil {
					b.Fatal(err)
				}
				calls++
			}
			reportPairs(b, calls, batch)
		})
	}
}
