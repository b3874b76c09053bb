package pipeline

// Int8 bundles (manifest precision "int8", python3 -m uniter.quantize): the manifest field, the
// quantized fixture against the fp32 one, and which kernels ONNX Runtime runs for it. The int8
// fixture is made in a temporary folder by the Python helper; the tests that need it skip when
// python3 with the onnx package is not there ($UNITER_PYTHON names another interpreter).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// python finds the interpreter that runs models/uniter: $UNITER_PYTHON, else /usr/bin/python3,
// else python3 on PATH; the test skips when none imports onnx.
func python(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("UNITER_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if exec.Command(p, "-c", "import onnx, numpy").Run() == nil {
			return p
		}
	}
	t.Skip("int8 bundles are made by python3 -m uniter.quantize: no python3 with the onnx and numpy " +
		"packages found (set UNITER_PYTHON)")
	return ""
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
	for _, p := range []string{"", PrecisionFP32, PrecisionInt8} {
		m.Precision = p
		if err := m.Validate(); err != nil {
			t.Errorf("precision %q refused: %v", p, err)
		}
	}
	for _, p := range []string{"fp16", "INT8", "int4"} {
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

// profileEvent is one entry of ONNX Runtime's profile (Chrome trace format).
type profileEvent struct {
	Cat  string `json:"cat"`
	Name string `json:"name"`
	Dur  int64  `json:"dur"` // µs
	Args struct {
		OpName   string `json:"op_name"`
		Provider string `json:"provider"`
	} `json:"args"`
}

// opProfile is the time ONNX Runtime spent per operator type over the profiled runs.
type opProfile struct {
	Op       string
	Provider string
	Nodes    int     // distinct nodes of this type
	Micros   float64 // per run
}

// profileGraph runs the ONNX file at path runs+1 times with ONNX Runtime's profiler on the CPU
// provider (the environment's intra-op threads) and returns the kernel time per run and operator
// type, largest first; the first run is a warm-up and is not counted.
func profileGraph(t testing.TB, path string, inputs map[string]ortgo.Value, order []string, outputs []string, runs int) []opProfile {
	t.Helper()
	opts, err := ortgo.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if n := testenv.CPUConfig(t).IntraOpThreads; n > 0 {
		if err := opts.SetIntraOpNumThreads(n); err != nil {
			t.Fatal(err)
		}
	}
	prefix := filepath.Join(t.TempDir(), "profile")
	if err := opts.EnableProfiling(prefix); err != nil {
		t.Fatal(err)
	}
	s, err := ortgo.NewDynamicAdvancedSession(path, order, outputs, opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	in := make([]ortgo.Value, len(order))
	for i, n := range order {
		in[i] = inputs[n]
	}
	for range runs + 1 {
		out := make([]ortgo.Value, len(outputs))
		if err := s.Run(in, out); err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			o.Destroy()
		}
	}
	if err := s.Destroy(); err != nil { // writes the profile
		t.Fatal(err)
	}
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) != 1 {
		t.Fatalf("profile files %v, want one", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var events []profileEvent
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatalf("%s: %v", files[0], err)
	}
	// Per node: the kernel time of every run; the first (warm-up) run is dropped.
	type nodeTimes struct {
		op, provider string
		durs         []int64
	}
	nodes := map[string]*nodeTimes{}
	for _, e := range events {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		n := nodes[e.Name]
		if n == nil {
			n = &nodeTimes{op: e.Args.OpName, provider: e.Args.Provider}
			nodes[e.Name] = n
		}
		n.durs = append(n.durs, e.Dur)
	}
	byOp := map[string]*opProfile{}
	for _, n := range nodes {
		key := n.op + "\x00" + n.provider
		p := byOp[key]
		if p == nil {
			p = &opProfile{Op: n.op, Provider: n.provider}
			byOp[key] = p
		}
		p.Nodes++
		var sum int64
		for _, d := range n.durs[min(1, len(n.durs)-1):] {
			sum += d
		}
		p.Micros += float64(sum) / float64(max(1, len(n.durs)-1))
	}
	var out []opProfile
	for _, p := range byOp {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b opProfile) int {
		if a.Micros != b.Micros {
			if a.Micros > b.Micros {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Op, b.Op)
	})
	return out
}

// encoderInputsFor makes the encoder's five inputs for batch pairs of tokens text tokens and
// regions regions (random ids, all positions real, non-negative features, valid locations).
func encoderInputsFor(t testing.TB, m *Manifest, batch, tokens, regions int) map[string]ortgo.Value {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	B, T, N, F := int64(batch), int64(tokens), int64(regions), int64(m.Model.FeatureDim)
	ids := make([]int64, B*T)
	for i := range ids {
		ids[i] = 5 + rng.Int64N(int64(m.Model.VocabSize-5))
	}
	ones := func(n int64) []int64 {
		v := make([]int64, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	feat := make([]float32, B*N*F)
	for i := range feat {
		feat[i] = float32(rng.ExpFloat64())
	}
	loc := make([]float32, B*N*7)
	for i := 0; i < len(loc); i += 7 {
		x1, y1 := rng.Float32()*0.6, rng.Float32()*0.6
		w, h := 0.05+rng.Float32()*0.35, 0.05+rng.Float32()*0.35
		copy(loc[i:], []float32{x1, y1, x1 + w, y1 + h, w, h, w * h})
	}
	mk := func(v ortgo.Value, err error) ortgo.Value {
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Destroy() })
		return v
	}
	return map[string]ortgo.Value{
		"input_ids": mk(ortgo.NewTensor(ortgo.NewShape(B, T), ids)),
		"text_mask": mk(ortgo.NewTensor(ortgo.NewShape(B, T), ones(B*T))),
		"img_feat":  mk(ortgo.NewTensor(ortgo.NewShape(B, N, F), feat)),
		"img_loc":   mk(ortgo.NewTensor(ortgo.NewShape(B, N, 7), loc)),
		"img_mask":  mk(ortgo.NewTensor(ortgo.NewShape(B, N), ones(B*N))),
	}
}

// integerMatMulOps are the kernels ONNX Runtime runs a rewritten MatMul with: MatMulInteger as
// written, or its CPU fusions with the Cast and Mul after it (MatMulIntegerToFloat) and with the
// DynamicQuantizeLinear before it (DynamicQuantizeMatMul).
var integerMatMulOps = []string{"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}

func encoderOutputNames(m *Manifest) []string {
	var out []string
	for _, o := range m.Graphs[GraphEncoder].Outputs {
		out = append(out, o.Name)
	}
	return out
}

// TestInt8RunsIntegerMatMulsOnCPU profiles the int8 fixture encoder: every MatMul the
// quantizer rewrote runs as an integer kernel on the CPU provider.
func TestInt8RunsIntegerMatMulsOnCPU(t *testing.T) {
	qdir := quantizeBundle(t, testenv.FixtureBundle(t))
	testenv.Env(t)
	m, err := ReadManifest(qdir)
	if err != nil {
		t.Fatal(err)
	}
	quant, _ := m.Provenance["quantization"].(map[string]any)
	graphs, _ := quant["graphs"].(map[string]any)
	enc, _ := graphs[GraphEncoder].(map[string]any)
	want, ok := enc["quantized_nodes"].(float64)
	if !ok || want < 1 {
		t.Fatalf("provenance.quantization.graphs.encoder.quantized_nodes missing: %v", m.Provenance["quantization"])
	}
	in := encoderInputsFor(t, m, 2, 7, 5)
	prof := profileGraph(t, filepath.Join(qdir, m.Graphs[GraphEncoder].File), in, encoderInputs, encoderOutputNames(m), 2)
	integer := 0
	for _, p := range prof {
		t.Logf("%-24s %-22s %2d nodes %8.1f µs/run", p.Op, p.Provider, p.Nodes, p.Micros)
		if slices.Contains(integerMatMulOps, p.Op) {
			if p.Provider != "CPUExecutionProvider" {
				t.Errorf("%s runs on %s, want the CPU provider", p.Op, p.Provider)
			}
			integer += p.Nodes
		}
	}
	if integer != int(want) {
		t.Errorf("%d integer MatMul kernels (%v) ran, the quantizer rewrote %d MatMul/Gemm nodes", integer, integerMatMulOps, int(want))
	}
}

// matMulIntegerProbe writes a graph Y = MatMulInteger(A, B, a_zero_point, b_zero_point) with
// A uint8 [M, K] an input, B int8 [K, N], a scalar a_zero_point and a per-column b_zero_point
// of shape [N] (non-zero), all initializers, and returns its path.
const matMulIntegerProbe = `
import sys, numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
b = rng.integers(-127, 128, size=(5, 3)).astype(np.int8)
nodes = [helper.make_node("MatMulInteger", ["a", "b", "a_zp", "b_zp"], ["y"])]
inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(131, np.uint8), "a_zp"),
         numpy_helper.from_array(np.array([3, -7, 0], np.int8), "b_zp")]
g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 5])],
                      [helper.make_tensor_value_info("y", TensorProto.INT32, [None, 3])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1])
print(" ".join(str(int(v)) for v in b.reshape(-1)))
`

// TestMatMulIntegerPerColumnZeroPoint answers whether this ONNX Runtime's CPU MatMulInteger
// takes a per-column b_zero_point of shape [N] (the ONNX spec allows it): it does, and computes
// Σ_k (A-a_zp)(B-b_zp[n]). The quantizer does not need it (its weights are symmetric, zero point
// 0, with the per-column scale applied after the integer product), but an asymmetric per-column
// scheme could use it.
func TestMatMulIntegerPerColumnZeroPoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "probe.onnx")
	out := strings.Fields(runPython(t, "-c", matMulIntegerProbe, path))
	testenv.Env(t)
	const M, K, N = 2, 5, 3
	var b [K * N]int32
	for i, s := range out {
		fmt.Sscan(s, &b[i])
	}
	a := []uint8{0, 255, 131, 7, 200, 90, 131, 250, 1, 13}
	bzp := [N]int32{3, -7, 0}
	at, err := ortgo.NewTensor(ortgo.NewShape(M, K), a)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Destroy()
	yt, err := ortgo.NewEmptyTensor[int32](ortgo.NewShape(M, N))
	if err != nil {
		t.Fatal(err)
	}
	defer yt.Destroy()
	s, err := ortgo.NewDynamicAdvancedSession(path, []string{"a"}, []string{"y"}, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime %s refuses MatMulInteger with a [N] b_zero_point: %v", ortgo.GetVersion(), err)
	}
	defer s.Destroy()
	if err := s.Run([]ortgo.Value{at}, []ortgo.Value{yt}); err != nil {
		t.Fatalf("ONNX Runtime %s: MatMulInteger with a [N] b_zero_point: %v", ortgo.GetVersion(), err)
	}
	got := yt.GetData()
	for i := range M {
		for n := range N {
			var want int32
			for k := range K {
				want += (int32(a[i*K+k]) - 131) * (b[k*N+n] - bzp[n])
			}
			if got[i*N+n] != want {
				t.Errorf("y[%d,%d] = %d, want %d", i, n, got[i*N+n], want)
			}
		}
	}
}

// TestInt8OpProfile prints where the encoder's time goes, per operator type, for the fp32 and
// int8 versions of a bundle: UNITER_QUANT_PROFILE_BUNDLE=DIR (fp32; its int8 copy is made in a
// temporary folder, or UNITER_QUANT_PROFILE_INT8=DIR names one), batch
// UNITER_QUANT_PROFILE_BATCH (8), 20 tokens and 36 regions as the benchmarks. Skipped without it.
func TestInt8OpProfile(t *testing.T) {
	dir := os.Getenv("UNITER_QUANT_PROFILE_BUNDLE")
	if dir == "" {
		t.Skip("set UNITER_QUANT_PROFILE_BUNDLE to an fp32 bundle to profile it and its int8 copy")
	}
	if !filepath.IsAbs(dir) {
		dir = testenv.Path(t, dir)
	}
	qdir := os.Getenv("UNITER_QUANT_PROFILE_INT8")
	switch {
	case qdir == "":
		qdir = quantizeBundle(t, dir)
	case !filepath.IsAbs(qdir):
		qdir = testenv.Path(t, qdir)
	}
	batch := 8
	if v := os.Getenv("UNITER_QUANT_PROFILE_BATCH"); v != "" {
		fmt.Sscan(v, &batch)
	}
	testenv.Env(t)
	for _, d := range []string{dir, qdir} {
		m, err := ReadManifest(d)
		if err != nil {
			t.Fatal(err)
		}
		in := encoderInputsFor(t, m, batch, benchTokens, benchRegions)
		prof := profileGraph(t, filepath.Join(d, m.Graphs[GraphEncoder].File), in, encoderInputs, encoderOutputNames(m), 5)
		var total float64
		for _, p := range prof {
			total += p.Micros
		}
		fmt.Printf("%s (%s), batch %d: %.1f ms/run in kernels\n", m.Name, m.PrecisionName(), batch, total/1000)
		for _, p := range prof {
			fmt.Printf("  %-24s %3d nodes %9.2f ms/run %5.1f%%\n", p.Op, p.Nodes, p.Micros/1000, 100*p.Micros/total)
		}
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
