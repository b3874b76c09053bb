package pipeline

// Int8 bundles (manifest precision "int8", python3 -m uniter.quantize): the manifest field, the
// quantized fixture against the fp32 one, and which kernels ONNX Runtime runs for it. The int8
// fixture is made in a temporary folder by the Python helper; the tests that need it skip when
// python3 with the onnx package is not there ($UNITER_PYTHON names another interpreter).

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// python is the interpreter that runs models/uniter (testenv.Python): the int8 tests here and
// the in-graph transport's in transport_test.go skip without one that imports onnx, unless
// UNITER_INT8_TEST=require (as `make test` sets it).
func python(t testing.TB) string {
	return testenv.Python(t, "UNITER_INT8_TEST", "onnx, numpy",
		"the int8 and in-graph transport bundles are made by python3 -m uniter.quantize and uniter.ot_graph")
}

// runPython runs python3 args from models/ (where the uniter package is) and fails on error.
func runPython(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(python(t), args...)
	cmd.Dir = testenv.Path(t, "models")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+testenv.Path(t, "models"), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// quantizeBundle writes the int8 copy of bundle src into a temporary folder.
func quantizeBundle(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src)+"-int8")
	runPython(t, "-m", "uniter.quantize", src, dst)
	return dst
}

func TestManifestPrecision(t *testing.T) {
	m, err := ReadManifest(testenv.FixtureBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Precision != "" || m.PrecisionName() != PrecisionFP32 {
		t.Fatalf("fixture precision %q (%s), want absent (fp32)", m.Precision, m.PrecisionName())
	}
	for _, p := range []string{"", PrecisionFP32, PrecisionInt8, PrecisionFP32Fused, PrecisionFP16} {
		m.Precision = p
		if err := m.Validate(); err != nil {
			t.Errorf("precision %q refused: %v", p, err)
		}
	}
	for _, p := range []string{"bf16", "INT8", "int4", "fp16-fused"} {
		m.Precision = p
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "precision") {
			t.Errorf("precision %q: error %v, want a precision error", p, err)
		}
	}
}

// goldenPairs tokenizes and prepares the golden pairs with bundle b.
func goldenPairs(t *testing.T, b *Bundle, g *golden) []Pair {
	t.Helper()
	pairs := make([]Pair, len(g.Pairs))
	for i, p := range g.Pairs {
		enc, err := b.tokenizer.Encode(p.Text)
		if err != nil {
			t.Fatal(err)
		}
		boxes := make([]detector.Box, len(p.Boxes))
		for j, bx := range p.Boxes {
			boxes[j] = detector.Box(bx)
		}
		reg, err := b.prepare(detector.Regions{Width: p.Width, Height: p.Height, Boxes: boxes, Features: p.Features})
		if err != nil {
			t.Fatal(err)
		}
		pairs[i] = Pair{Text: &enc, Regions: reg}
	}
	return pairs
}

func maxAbs32(a, b []float32) (worst, scale float64) {
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	return worst, scale
}

// Int8 vs fp32 tolerances on the fixture (hidden 32, 2 layers, random weights; ITM logits
// within ±0.6, pooled within ±1). Int8 weights per output channel and uint8 activations per
// tensor (over the whole padded batch) differ from fp32 by, measured with ONNX Runtime 1.29:
// itm_logits 0.057, pooled 0.089, hidden 0.094 (LayerNorm outputs up to ~4), attention 0.022.
// The bounds leave about 2× headroom. That the int8 graph computes exactly the intended
// quantization is checked tighter in Python (models/tests/test_quantize.py: ONNX Runtime's int8
// encoder equals PyTorch's fake-quantized model within 1e-3, measured 2e-7).
const (
	int8TolITM       = 0.1
	int8TolPooled    = 0.15
	int8TolHidden    = 0.2
	int8TolAttention = 0.05
)

// TestInt8FixtureMatchesFP32 quantizes the fixture bundle and compares the int8 encoder's
// outputs (through Bundle.Encode: tokenizer, padded batching, ONNX Runtime) with the fp32
// bundle's on the golden pairs, in the golden batches (padding included).
func TestInt8FixtureMatchesFP32(t *testing.T) {
	qdir := quantizeBundle(t, testenv.FixtureBundle(t))
	env := testenv.Env(t)
	fp := loadFixture(t, env)
	q, err := Load(env, qdir, Options{MaxRegions: 100, MaxTexts: 8, VerifyChecksums: true})
	if err != nil {
		t.Fatalf("loading the int8 fixture: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	if got := q.Manifest.PrecisionName(); got != PrecisionInt8 {
		t.Fatalf("int8 bundle precision %q", got)
	}
	g := loadGolden(t)
	ctx := context.Background()
	fpPairs, qPairs := goldenPairs(t, fp, g), goldenPairs(t, q, g)
	worst := map[string]float64{}
	for _, gb := range g.Batches {
		var a, b []Pair
		for _, i := range gb.Pairs {
			a, b = append(a, fpPairs[i]), append(b, qPairs[i])
		}
		for _, attn := range []bool{false, true} {
			ef, err := fp.Encode(ctx, a, attn)
			if err != nil {
				t.Fatal(err)
			}
			eq, err := q.Encode(ctx, b, attn)
			if err != nil {
				t.Fatal(err)
			}
			graph := map[bool]string{false: GraphEncoder, true: GraphEncoderAttention}[attn]
			check := func(what string, got, want []float32, tol float64) {
				if len(got) != len(want) {
					t.Fatalf("%s %s: %d values, fp32 has %d", graph, what, len(got), len(want))
				}
				d, scale := maxAbs32(got, want)
				worst[graph+" "+what] = math.Max(worst[graph+" "+what], d)
				if d > tol {
					t.Errorf("batch %v %s %s: int8 differs from fp32 by %.3g (fp32 values up to %.3g), want ≤ %g",
						gb.Pairs, graph, what, d, scale, tol)
				}
			}
			check(outITM, eq.heads[outITM], ef.heads[outITM], int8TolITM)
			check("pooled", eq.pooled, ef.pooled, int8TolPooled)
			check("hidden", eq.hidden, ef.hidden, int8TolHidden)
			if attn {
				check("attention", eq.attention, ef.attention, int8TolAttention)
			}
		}
	}
	if worst[GraphEncoder+" "+outITM] == 0 {
		t.Errorf("the int8 encoder's itm_logits equal the fp32 ones exactly: was anything quantized?")
	}
	keys := make([]string, 0, len(worst))
	for k := range worst {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("int8 vs fp32, worst over the golden batches: %-32s %.3g", k, worst[k])
	}
}

// TestInt8TaskFixtures quantizes every fine-tuned task fixture (the NLVR2 ones have a third
// encoder graph, nlvr2) and checks that each loads with its checksums and runs (Warmup runs the
// encoder and, for NLVR2, the nlvr2 graph) with exactly its encoder graphs quantized.
func TestInt8TaskFixtures(t *testing.T) {
	env := testenv.Env(t)
	ctx := context.Background()
	for _, name := range []string{"tiny-retrieval", "tiny-vqa", "tiny-ve", "tiny-re", "tiny-nlvr2-paired",
		"tiny-nlvr2-triplet", "tiny-nlvr2-paired-attn"} {
		t.Run(name, func(t *testing.T) {
			src := testenv.Path(t, "testdata", "bundles", name)
			qdir := quantizeBundle(t, src)
			q, err := Load(env, qdir, Options{MaxRegions: 100, VerifyChecksums: true})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			if q.Manifest.PrecisionName() != PrecisionInt8 {
				t.Fatalf("precision %q", q.Manifest.Precision)
			}
			if err := q.Warmup(ctx); err != nil {
				t.Fatal(err)
			}
			quant, _ := q.Manifest.Provenance["quantization"].(map[string]any)
			graphs, _ := quant["graphs"].(map[string]any)
			for role := range q.Manifest.Graphs {
				_, done := graphs[role]
				want := role == GraphEncoder || role == GraphEncoderAttention || role == GraphNLVR2
				if done != want {
					t.Errorf("graph %s quantized: %v, want %v", role, done, want)
				}
			}
		})
	}
}
