package pipeline

// The word-region transport computed in the encoder graph (ot_distance, ot_plan; python3 -m
// uniter.ot_graph) against heads.Align on the same encoder outputs. The bundle is the fixture
// with the transport appended, made in a temporary folder by the Python helper (onnx and numpy
// only); the tests skip when no such python3 is there, or fail with UNITER_INT8_TEST=require,
// as the int8 tests do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/textproc"
)

// otParityTol is the bound: the graph's float32 IPOT against heads.Align's float64.
const otParityTol = 1e-5

// otBundle writes the fixture bundle with the transport in its encoder graphs into a temporary
// folder.
func otBundle(t testing.TB) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "tiny-random-ot")
	runPython(t, "-m", "uniter.ot_graph", testenv.FixtureBundle(t), dst)
	return dst
}

// otPairs are texts of different lengths on region sets of different sizes: a padded batch in
// which every pair is padded differently.
func otPairs(t testing.TB, b *Bundle) []Pair {
	t.Helper()
	texts := []string{"a red square", "two green triangles left of a blue circle", "a circle",
		"three small yellow hearts and a black cross below a large white diamond", "something orange above a star"}
	pairs := make([]Pair, len(texts))
	for i, text := range texts {
		enc, err := b.Tokenize(text)
		if err != nil {
			t.Fatal(err)
		}
		regions, err := b.Prepare(*batchRegions([]int{3, 7, 1, 5, 2}[i], b.Manifest.Model.FeatureDim, i))
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = Pair{Text: enc, Regions: regions}
	}
	return pairs
}

// checkTransport compares every pair's Transport (from the graph) with heads.Align on the same
// Encoded's hidden states, and checks that the graph's plan has no mass on padding. It returns
// the largest differences of the distance and of a plan entry.
func checkTransport(t *testing.T, e *Encoded, what string) (dDist, dPlan float64) {
	t.Helper()
	if e.otPlan == nil {
		t.Fatalf("%s: the encoder run carries no transport", what)
	}
	for i, p := range e.Pairs {
		got, err := e.Transport(i, true)
		if err != nil {
			t.Fatalf("%s: pair %d: %v", what, i, err)
		}
		want, err := heads.Align(e.TextHidden(i), e.RegionHidden(i), heads.DefaultOTOptions())
		if err != nil {
			t.Fatal(err)
		}
		dDist = max(dDist, math.Abs(got.Distance-want.Distance))
		M, N := len(p.Text.Tokens), p.Regions.Len()
		if len(got.Plan) != M {
			t.Fatalf("%s: pair %d: plan of %d rows for %d tokens", what, i, len(got.Plan), M)
		}
		for r := range M {
			if len(got.Plan[r]) != N {
				t.Fatalf("%s: pair %d: plan row of %d for %d regions", what, i, len(got.Plan[r]), N)
			}
			for c := range N {
				dPlan = max(dPlan, math.Abs(got.Plan[r][c]-want.Weights[r][c]))
			}
		}
		for r := range e.T {
			for c := range e.N {
				if (r >= M || c >= N) && e.otPlan[(i*e.T+r)*e.N+c] != 0 {
					t.Fatalf("%s: pair %d: mass %g on padded (%d, %d)", what, i, e.otPlan[(i*e.T+r)*e.N+c], r, c)
				}
			}
		}
		if d, err := e.Transport(i, false); err != nil || d.Plan != nil || d.Distance != got.Distance {
			t.Fatalf("%s: pair %d: distance only: %+v, %v", what, i, d, err)
		}
	}
	if dDist > otParityTol || dPlan > otParityTol {
		t.Errorf("%s: graph vs heads.Align: distance %.2e, plan %.2e, want <= %g", what, dDist, dPlan, otParityTol)
	}
	t.Logf("%s: %d pairs padded to %d tokens × %d regions: graph vs heads.Align: distance %.2e, plan %.2e",
		what, len(e.Pairs), e.T, e.N, dDist, dPlan)
	return dDist, dPlan
}

// TestOTInGraph: on a bundle whose encoder graphs compute the transport, every pair of a padded
// batch gets heads.Align's distance and plan within 1e-5, through Encode (with and without
// attention), Match, Align and the batcher's row views; the fixture itself (no transport
// outputs) keeps computing it in Go.
func TestOTInGraph(t *testing.T) {
	dir := otBundle(t)
	env := testenv.Env(t)
	ctx := context.Background()
	ot, err := Load(env, dir, Options{MaxRegions: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ot.Close()
	plain, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !ot.OTInGraph() || plain.OTInGraph() {
		t.Fatalf("OTInGraph: %v with the outputs, %v without", ot.OTInGraph(), plain.OTInGraph())
	}
	pairs := otPairs(t, ot)

	t.Run("encode", func(t *testing.T) {
		for _, attention := range []bool{false, true} {
			e, err := ot.Encode(ctx, pairs, attention)
			if err != nil {
				t.Fatal(err)
			}
			checkTransport(t, e, fmt.Sprintf("encoder (attention %v)", attention))
		}
		e, err := plain.Encode(ctx, pairs, false)
		if err != nil {
			t.Fatal(err)
		}
		if e.otPlan != nil || e.otDistance != nil {
			t.Fatal("the fixture's encoder run carries a transport")
		}
	})

	t.Run("match", func(t *testing.T) {
		regions := batchRegions(6, ot.Manifest.Model.FeatureDim, 9)
		texts := []string{"a red square", "two green triangles left of a blue circle above a yellow star", "a star"}
		got, err := ot.Match(ctx, Input{Regions: regions}, texts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := plain.Match(ctx, Input{Regions: regions}, texts)
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i := range texts {
			g, w := got.Results[i], want.Results[i]
			worst = max(worst, math.Abs(g.OTDistance-w.OTDistance))
			if math.Abs(g.OTDistance-w.OTDistance) > otParityTol || math.Abs(float64(g.Logit-w.Logit)) > 1e-5 {
				t.Errorf("text %d: graph's transport %+v, Go's %+v", i, g, w)
			}
		}
		t.Logf("Match: %d texts: OT distance from the graph vs heads.Align (the fixture's Match): %.2e", len(texts), worst)
	})

	t.Run("align", func(t *testing.T) {
		regions, err := ot.Prepare(*batchRegions(5, ot.Manifest.Model.FeatureDim, 4))
		if err != nil {
			t.Fatal(err)
		}
		for _, attention := range []bool{false, true} {
			opts := AlignOptions{Attention: attention}
			got, err := ot.AlignPrepared(ctx, regions, "a small red square left of a blue circle", opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := plain.AlignPrepared(ctx, regions, "a small red square left of a blue circle", opts)
			if err != nil {
				t.Fatal(err)
			}
			var d float64
			for r := range want.Plan {
				for c := range want.Plan[r] {
					d = max(d, math.Abs(got.Plan[r][c]-want.Plan[r][c]))
				}
			}
			if len(got.Plan) != len(want.Plan) || d > otParityTol || math.Abs(got.OTDistance-want.OTDistance) > otParityTol {
				t.Errorf("attention %v: plan differs by %.2e, distance %v vs %v", attention, d, got.OTDistance, want.OTDistance)
			}
			t.Logf("Align (attention %v): plan from the graph vs heads.Align: %.2e, distance %.2e", attention, d, math.Abs(got.OTDistance-want.OTDistance))
			if len(got.WordRegions) != len(want.WordRegions) {
				t.Fatalf("attention %v: %d words, Go's %d", attention, len(got.WordRegions), len(want.WordRegions))
			}
			for w, g := range got.WordRegions {
				ww := want.WordRegions[w]
				if g.Word != ww.Word || len(g.Regions) != len(ww.Regions) {
					t.Fatalf("attention %v: word %d: %+v, Go's %+v", attention, w, g, ww)
				}
				for k, r := range g.Regions {
					if r.Region != ww.Regions[k].Region || math.Abs(r.Share-ww.Regions[k].Share) > otParityTol {
						t.Errorf("attention %v: word %d: %+v, Go's %+v", attention, w, g, ww)
					}
				}
			}
		}
	})

	t.Run("batcher", func(t *testing.T) {
		b, err := Load(env, dir, Options{MaxRegions: 100, BatchPairs: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		obs := &batchSizes{}
		b.Observe(obs)
		// Hold the only slot so that every caller queues, then let them run as one batch.
		if err := b.sched.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		got := make([]*Encoded, len(pairs))
		errs := make([]error, len(pairs))
		for i := range pairs {
			wg.Go(func() { got[i], errs[i] = b.Encode(ctx, pairs[i:i+1], false) })
		}
		deadline := time.Now().Add(10 * time.Second)
		for b.batcher.pending() < len(pairs) && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		b.sched.Release()
		wg.Wait()
		for i := range pairs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			checkTransport(t, got[i], fmt.Sprintf("batcher caller %d", i))
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if len(obs.sizes) != 1 || obs.sizes[0] != len(pairs) {
			t.Errorf("encoder runs %v, want one of %d pairs", obs.sizes, len(pairs))
		}
	})
}

// TestOTFromGraphManifest: which bundles take the transport from the graph, and which are
// refused for declaring it inconsistently.
func TestOTFromGraphManifest(t *testing.T) {
	env := testenv.Env(t)
	b, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	settings := map[string]any{"beta": 0.5, "iterations": 50, "inner_iterations": 1, "norm_eps": 1e-5, "dtype": "float32"}
	outs := func(names ...string) []Tensor {
		var ts []Tensor
		for _, n := range names {
			ts = append(ts, Tensor{Name: n, DType: "float32", Shape: []json.RawMessage{json.RawMessage(`"batch"`)}})
		}
		return ts
	}
	for _, c := range []struct {
		name       string
		enc, attn  []string // OT outputs added to each graph
		provenance map[string]any
		want       bool
		err        string // a part of the error; "" for none
	}{
		{name: "none", want: false},
		{name: "both graphs", enc: []string{outOTDistance, outOTPlan}, attn: []string{outOTDistance, outOTPlan}, provenance: settings, want: true},
		{name: "encoder only", enc: []string{outOTDistance, outOTPlan}, provenance: settings, want: true},
		{name: "one output", enc: []string{outOTDistance}, provenance: settings, err: "only one of"},
		{name: "attention only", attn: []string{outOTDistance, outOTPlan}, provenance: settings, err: "graph encoder does not"},
		{name: "no provenance", enc: []string{outOTDistance, outOTPlan}, err: "provenance.ot_in_graph"},
		{name: "other beta", enc: []string{outOTDistance, outOTPlan}, provenance: map[string]any{"beta": 0.3, "iterations": 50, "inner_iterations": 1, "norm_eps": 1e-5}, err: "this build computes"},
		{name: "other iterations", enc: []string{outOTDistance, outOTPlan}, provenance: map[string]any{"beta": 0.5, "iterations": 10, "inner_iterations": 1, "norm_eps": 1e-5}, err: "this build computes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := ReadManifest(testenv.FixtureBundle(t))
			if err != nil {
				t.Fatal(err)
			}
			for role, add := range map[string][]string{GraphEncoder: c.enc, GraphEncoderAttention: c.attn} {
				g := m.Graphs[role]
				g.Outputs = append(g.Outputs, outs(add...)...)
				m.Graphs[role] = g
			}
			if c.provenance != nil {
				m.Provenance[provenanceOT] = c.provenance
			}
			got, err := otFromGraph(m, env, b.encoder)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			case got != c.want:
				t.Fatalf("from graph %v, want %v", got, c.want)
			}
		})
	}
}

// TestTransportErrors: the graph path reports what heads.Align would.
func TestTransportErrors(t *testing.T) {
	text := &textproc.Encoding{Tokens: make([]textproc.Token, 2)}
	e := &Encoded{T: 2, N: 1, Pairs: []Pair{{Text: text, Regions: &detector.Prepared{}}},
		otDistance: []float32{float32(math.NaN())}, otPlan: make([]float32, 2)}
	if _, err := e.Transport(0, false); !errors.Is(err, heads.ErrEmptyRegions) {
		t.Fatalf("no regions: %v", err)
	}
	e.Pairs[0].Regions = &detector.Prepared{Boxes: []detector.Box{{0, 0, 1, 1}}}
	if _, err := e.Transport(0, false); !errors.Is(err, heads.ErrNonFinite) {
		t.Fatalf("NaN distance: %v", err)
	}
	e.otDistance[0] = 0.5
	e.otPlan[1] = float32(math.Inf(1))
	if _, err := e.Transport(0, true); !errors.Is(err, heads.ErrNonFinite) {
		t.Fatalf("Inf in the plan: %v", err)
	}
	e.Pairs[0].Text.Tokens = nil
	if _, err := e.Transport(0, false); !errors.Is(err, heads.ErrEmptyText) {
		t.Fatalf("no tokens: %v", err)
	}
}
