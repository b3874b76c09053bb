package tests

// The bottom-up-attention detector converted from the LXMERT demo's PyTorch port
// (models/uniter/butd.py, `python3 -m uniter.butd_export convert-butd`): random weights in the
// port's full-size layout go through the converter into a bundle, and the Go pipeline's
// decoding, preprocessing, ONNX Runtime run and region selection must give what PyTorch and the
// Python reference selection give. The Python side needs Debian's python3-torch,
// python3-torchvision, python3-onnx, python3-numpy and python3-pil ($UNITER_PYTHON names another
// interpreter); without them the test skips, or fails under UNITER_BUTD_TEST=require (as
// `make test` sets it).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
	ort "github.com/uniter-serve/uniter/runtime"
)

// butdPostNMS is the fixture's RPN post-NMS top-n. The port's test config keeps 300, but every
// proposal runs res5 on a 14×14 RoI (about 3 GMAC): 300 take about 20 s of CPU per image, twice
// (PyTorch and ONNX Runtime). 20 proposals exercise the same graph. $UNITER_BUTD_POST_NMS sets
// another count; at 300 the fixture's images hold exact ties (equal objectness logits, two
// proposals pooled from the same RoI cells) that ONNX Runtime and PyTorch may order differently,
// so rows and selections can differ there without anything being wrong (the fixture logs them).
const butdPostNMS = 20

// Parity bounds: boxes in resized-image pixels; probabilities absolute; features relative to
// the image's largest feature magnitude when that is above 1 (a few units with the fixture).
const (
	butdBoxTol     = 1e-3
	butdProbTol    = 1e-4
	butdFeatureTol = 1e-4
	butdInputTol   = 1e-3 // the preprocessed tensor, 0..255 scale less the means
)

type butdTensor struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

type butdGolden struct {
	Preprocess struct {
		ShorterSide   int    `json:"shorter_side"`
		LongerSideMax int    `json:"longer_side_max"`
		ResizeRule    string `json:"resize_rule"`
	} `json:"preprocess"`
	Images []struct {
		File          string     `json:"file"`
		Width         int        `json:"width"`
		Height        int        `json:"height"`
		Scale         float64    `json:"scale"`
		ResizedWidth  int        `json:"resized_width"`
		ResizedHeight int        `json:"resized_height"`
		Input         butdTensor `json:"input"`
		Boxes         butdTensor `json:"boxes"`
		ClassProbs    butdTensor `json:"class_probs"`
		Features      butdTensor `json:"features"`
		AttrProbs     butdTensor `json:"attr_probs"`
		Selected      []int      `json:"selected"`
		SelectedBoxes butdTensor `json:"selected_boxes"` // original-image pixels
		Branch        string     `json:"branch"`
		IoUMargin     float64    `json:"iou_margin"`
		// Ties float noise could order either way: the smallest gap between the proposals'
		// objectness logits, and proposals pooled from the very same RoI cells.
		MinObjectnessGap float64 `json:"min_objectness_gap"`
		DuplicateRoIs    int     `json:"duplicate_rois"`
	} `json:"images"`
}

// butdPython is the interpreter that runs the converter (testenv.Python); UNITER_BUTD_TEST=require
// turns its absence into a failure.
func butdPython(t *testing.T) string {
	return testenv.Python(t, "UNITER_BUTD_TEST", "torch, torchvision, onnx, numpy, PIL", "the BUTD converter")
}

func runButdPython(t *testing.T, py string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Dir = testenv.Path(t, "models")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+testenv.Path(t, "models"), "OMP_NUM_THREADS=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var kept []string // the commands' own progress lines, not the exporter's warnings
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "fixture:") || strings.HasPrefix(line, "convert-butd:") {
			kept = append(kept, line)
		}
	}
	t.Logf("python3 %s (%.1fs)\n%s", args[2], time.Since(start).Seconds(), strings.Join(kept, "\n"))
}

func readF32(t *testing.T, dir string, tensor butdTensor) []float32 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, tensor.File))
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for _, d := range tensor.Shape {
		n *= d
	}
	if len(raw) != 4*n {
		t.Fatalf("%s: %d bytes, want %d for shape %v", tensor.File, len(raw), 4*n, tensor.Shape)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// maxDiff is the largest |got − want| and the largest |want|.
func maxDiff(t *testing.T, what string, got, want []float32) (worst, scale float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i])-float64(want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	return worst, scale
}

// recordingGraph runs the bundle's detector graph through the pipeline (RunGraph: its session
// and scheduler) and keeps the input and the raw outputs for comparison.
type recordingGraph struct {
	b      *pipeline.Bundle
	pixels []float32
	out    map[string]ort.Tensor
}

func (g *recordingGraph) Run(ctx context.Context, pixels []float32, height, width int) (detector.Outputs, error) {
	g.pixels = pixels
	out, err := g.b.RunGraph(ctx, pipeline.GraphDetector, map[string]ort.Tensor{
		"image": {Shape: []int64{1, 3, int64(height), int64(width)}, F32: pixels}})
	if err != nil {
		return detector.Outputs{}, err
	}
	g.out = out
	names := g.b.Manifest.Detector.Outputs
	return detector.Outputs{Boxes: out[names.Boxes].F32, ClassProbs: out[names.ClassProbs].F32,
		Features: out[names.Features].F32, AttrProbs: out[names.AttributeProbs].F32}, nil
}

func TestBUTDConvertedDetectorParity(t *testing.T) {
	py := butdPython(t)
	postNMS := butdPostNMS
	if v := os.Getenv("UNITER_BUTD_POST_NMS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("UNITER_BUTD_POST_NMS=%q: want a count ≥ 10 (the selection's min_boxes)", v)
		}
		postNMS = n
	}
	start := time.Now()
	dir := t.TempDir()
	runButdPython(t, py, "-m", "uniter.butd_export", "fixture", "--out", dir,
		"--post-nms-topk", strconv.Itoa(postNMS), "--split")
	port := filepath.Join(dir, "port")
	bundleDir := filepath.Join(dir, "bundle")
	runButdPython(t, py, "-m", "uniter.butd_export", "convert-butd",
		filepath.Join(port, "pytorch_model.bin"), filepath.Join(port, "config.yaml"),
		"--vocab", filepath.Join(port, "objects_vocab.txt"),
		"--attributes", filepath.Join(port, "attributes_vocab.txt"), "--into", bundleDir)

	raw, err := os.ReadFile(filepath.Join(dir, "golden", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g butdGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	loadStart := time.Now()
	env := testenv.Env(t)
	b, err := pipeline.Load(env, bundleDir, pipeline.Options{MaxRegions: 100, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	t.Logf("bundle loaded in %.1fs", time.Since(loadStart).Seconds())

	m := b.Manifest
	d := m.Detector
	if d == nil || m.Model.LabelDim != 1601 || m.Model.FeatureDim != 2048 || len(b.AttributeLabels()) != 401 {
		t.Fatalf("manifest: detector %v, label_dim %d, feature_dim %d, %d attributes; want 1601, 2048, 401",
			d != nil, m.Model.LabelDim, m.Model.FeatureDim, len(b.AttributeLabels()))
	}
	if labels := b.RegionLabels(); labels[0] != "__background__" || labels[1] != "object0" ||
		b.AttributeLabels()[0] != "__no_attribute__" || b.AttributeLabels()[1] != "attribute0" {
		t.Errorf("labels start %q %q, attributes %q %q", labels[0], labels[1], b.AttributeLabels()[0], b.AttributeLabels()[1])
	}
	pre := d.Preprocess
	if pre.ChannelOrder != "BGR" || pre.ShorterSide != g.Preprocess.ShorterSide || pre.LongerSideMax != g.Preprocess.LongerSideMax ||
		!slices.Equal(pre.PixelMeans, []float32{102.9801, 115.9465, 122.7717}) || !slices.Equal(pre.PixelStd, []float32{1, 1, 1}) {
		t.Errorf("preprocess %+v, want BGR, the port's means, std 1, %d/%d", pre, g.Preprocess.ShorterSide, g.Preprocess.LongerSideMax)
	}
	if pre.ResizeRule != detector.ResizeDetectron2 || g.Preprocess.ResizeRule != detector.ResizeDetectron2 {
		t.Errorf("resize_rule %q in the manifest, %q in the golden; want %q (the port's resize and box mapping)",
			pre.ResizeRule, g.Preprocess.ResizeRule, detector.ResizeDetectron2)
	}
	if sel := b.SelectionSpec(); sel.NMSIoU != 0.3 || sel.MinConfidence != 0.2 || sel.MinBoxes != 10 || sel.MaxBoxes != 100 {
		t.Errorf("selection %+v, want bottom-up-attention's 0.3 / 0.2 / 10 / 100", sel)
	}

	// One image takes the capped branch on a .5 tie (models/uniter/butd_export.py,
	// FIXTURE_IMAGES): the port's size, which the default rule would round the other way.
	ties := 0
	for _, im := range g.Images {
		_, wr, hr := detector.ResizeScale(im.Width, im.Height, detector.PreprocessSpec{
			ShorterSide: pre.ShorterSide, LongerSideMax: pre.LongerSideMax, ResizeRule: detector.ResizeShorterSide})
		if wr != im.ResizedWidth || hr != im.ResizedHeight {
			ties++
			t.Logf("%s: %d×%d → %d×%d by the port's rule, %d×%d by the default rule", im.File, im.Width, im.Height,
				im.ResizedWidth, im.ResizedHeight, wr, hr)
		}
	}
	if ties == 0 {
		t.Errorf("no fixture image resizes differently under the two rules: the tie case is not covered")
	}

	ctx := context.Background()
	gdir := filepath.Join(dir, "golden")
	worst := map[string]float64{}
	// check compares one raw output with PyTorch's; relative divides by the largest |value|
	// when that is above 1.
	check := func(name, what string, got []float32, want butdTensor, tol float64, relative bool) {
		t.Helper()
		w, scale := maxDiff(t, name+" "+what, got, readF32(t, gdir, want))
		if relative {
			w /= math.Max(scale, 1)
		}
		worst[what] = math.Max(worst[what], w)
		if w > tol {
			t.Errorf("%s: %s differ by %.3g (max |value| %.3g), want ≤ %g", name, what, w, scale, tol)
		}
	}
	for _, im := range g.Images {
		data, err := os.ReadFile(filepath.Join(dir, im.File))
		if err != nil {
			t.Fatal(err)
		}
		// The pipeline's detector, with the graph run recorded: Go decoding, preprocessing and
		// selection around the bundle's session, as Bundle.Detect builds it.
		rec := &recordingGraph{b: b}
		det := &detector.Detector{Graph: rec, Preprocess: b.PreprocessSpec(),
			Selection: b.SelectionSpec(), MinBoxSize: b.MinBoxSize(), MaxRegions: b.MaxRegions(),
			ClassDim: m.Model.LabelDim, FeatureDim: m.Model.FeatureDim, AttrDim: len(b.AttributeLabels())}
		runStart := time.Now()
		res, err := det.Detect(ctx, data)
		if err != nil {
			t.Fatalf("%s: %v", im.File, err)
		}
		name := fmt.Sprintf("%s (%dx%d → %dx%d)", im.File, im.Width, im.Height, im.ResizedWidth, im.ResizedHeight)
		if res.Scale != im.Scale || len(rec.pixels) != 3*im.ResizedWidth*im.ResizedHeight {
			t.Fatalf("%s: scale %v, %d input values; want %v, %d (the port's resize)", name, res.Scale, len(rec.pixels), im.Scale, 3*im.ResizedWidth*im.ResizedHeight)
		}
		check(name, "input", rec.pixels, im.Input, butdInputTol, false)
		P := im.Boxes.Shape[0]
		if res.Proposals != P {
			t.Fatalf("%s: %d proposals, want %d", name, res.Proposals, P)
		}
		out := d.Outputs
		check(name, "boxes", rec.out[out.Boxes].F32, im.Boxes, butdBoxTol, false)
		check(name, "class probabilities", rec.out[out.ClassProbs].F32, im.ClassProbs, butdProbTol, false)
		check(name, "attribute probabilities", rec.out[out.AttributeProbs].F32, im.AttrProbs, butdProbTol, false)
		check(name, "features", rec.out[out.Features].F32, im.Features, butdFeatureTol, true)

		got, boxes := selected(res)
		if !slices.Equal(got, im.Selected) {
			t.Errorf("%s: selected proposals %v, want %v (Python reference, %s branch)", name, got, im.Selected, im.Branch)
		} else {
			check(name, "region boxes", boxes, im.SelectedBoxes, butdBoxTol, false)
		}
		t.Logf("%s: %d proposals, %d regions (%s branch; IoU margin %.2g, objectness gap %.2g, %d duplicate RoIs), graph + selection %.1fs",
			name, P, len(got), im.Branch, im.IoUMargin, im.MinObjectnessGap, im.DuplicateRoIs, time.Since(runStart).Seconds())
	}
	// Bundle.Detect itself (its own detector and cache) on the smallest image.
	im := g.Images[len(g.Images)-1]
	data, err := os.ReadFile(filepath.Join(dir, im.File))
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := b.Detect(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range res.Regions {
		got = append(got, r.Proposal)
	}
	if !slices.Equal(got, im.Selected) {
		t.Errorf("%s through Bundle.Detect: selected proposals %v, want %v", im.File, got, im.Selected)
	}
	// An image resized to a 1-px side ends the process in ONNX Runtime (SIGFPE) and a 2-px one
	// fails there: the converted manifest's min_input_side refuses both as input errors first.
	if pre.MinInputSide != 16 {
		t.Errorf("preprocess.min_input_side %d, want 16 (the backbone's stride)", pre.MinInputSide)
	}
	for _, size := range [][2]int{{3000, 1}, {2, 1000}} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, size[0], size[1]))); err != nil {
			t.Fatal(err)
		}
		_, _, err := b.Detect(ctx, buf.Bytes())
		var ie *pipeline.InputError
		if !errors.As(err, &ie) || ie.Code != pipeline.CodeImageTooSmall {
			t.Errorf("a %d×%d image: %v, want the input error %s", size[0], size[1], err, pipeline.CodeImageTooSmall)
		}
	}
	splitStart := time.Now()
	checkButdSplit(t, env, dir, &g)
	t.Logf("the split detector (bundle-split) checked on %d images in %.1fs", len(g.Images), time.Since(splitStart).Seconds())
	t.Logf("parity maxima over %d images: input %.3g, boxes %.3g px, region boxes %.3g px, class probs %.3g, attribute probs %.3g, features %.3g (relative to max |feature|); total %.1fs",
		len(g.Images), worst["input"], worst["boxes"], worst["region boxes"], worst["class probabilities"],
		worst["attribute probabilities"], worst["features"], time.Since(start).Seconds())
}

// selected are a detection's regions: their proposal rows and their boxes, flattened.
func selected(res *detector.Detection) (rows []int, boxes []float32) {
	for _, r := range res.Regions {
		rows = append(rows, r.Proposal)
		boxes = append(boxes, r.Box[:]...)
	}
	return rows, boxes
}

// checkButdSplit compares the fixture's split twin (bundle-split: the same weights as a backbone
// graph and a heads graph, proposals and RoI max pooling in Go) with PyTorch's goldens: the same
// proposals, selection and rows.
func checkButdSplit(t *testing.T, env *ort.Environment, dir string, g *butdGolden) {
	b, err := pipeline.Load(env, filepath.Join(dir, "bundle-split"), pipeline.Options{MaxRegions: 100, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := b.Manifest.Detector.Proposals
	if p == nil || p.RoIPool == nil || p.RoIPool.OutputSize != 14 || p.MinSize == nil {
		t.Fatalf("bundle-split's proposals section %+v: want bottom-up-attention's, pooled in Go at 14×14 with min_size", p)
	}
	// The pooled heads input is counted at the image-memory gate: post_nms_top_n × C × 14 × 14
	// floats, C from the heads graph (the res4 feature map: 1,024 channels).
	if got, want := b.PooledInputBytes(), int64(p.PostNMSTopN)*1024*14*14*4; got != want || want == 0 {
		t.Errorf("PooledInputBytes %d, want %d", got, want)
	}
	ctx := context.Background()
	gdir := filepath.Join(dir, "golden")
	for _, im := range g.Images {
		data, err := os.ReadFile(filepath.Join(dir, im.File))
		if err != nil {
			t.Fatal(err)
		}
		res, _, err := b.Detect(ctx, data)
		if err != nil {
			t.Fatalf("%s: %v", im.File, err)
		}
		if res.Proposals != im.Boxes.Shape[0] {
			t.Fatalf("%s: %d proposals through the split detector, want %d", im.File, res.Proposals, im.Boxes.Shape[0])
		}
		got, boxes := selected(res)
		if !slices.Equal(got, im.Selected) {
			t.Errorf("%s: the split detector selected %v, want %v", im.File, got, im.Selected)
			continue
		}
		if w, _ := maxDiff(t, im.File+" region boxes", boxes, readF32(t, gdir, im.SelectedBoxes)); w > butdBoxTol {
			t.Errorf("%s: split region boxes differ by %.3g px", im.File, w)
		}
		want := readF32(t, gdir, im.Features)
		D := b.Manifest.Model.FeatureDim
		var rows []float32
		for _, i := range got {
			rows = append(rows, want[i*D:(i+1)*D]...)
		}
		if w, scale := maxDiff(t, im.File+" split features", res.Prepared.Features, rows); w/math.Max(scale, 1) > butdFeatureTol {
			t.Errorf("%s: split features differ by %.3g (max |value| %.3g)", im.File, w, scale)
		}
	}
}
