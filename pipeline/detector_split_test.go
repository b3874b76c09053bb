package pipeline

// Split detectors (manifest detector.proposals, docs/detector-contract.md): a backbone and a
// heads graph with the proposal stage in Go (python3 -m uniter.detector_split) against the same
// weights in one graph.

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
	ort "github.com/uniter-serve/uniter/runtime"
)

// splitBundle writes the split twin of bundle src into a temporary folder: the tiny fixture's
// rebuilt from its seed (uniter.detector_split fixture), any other bundle's recovered from its
// detector.onnx (uniter.detector_split bundle).
func splitBundle(t *testing.T, src string) string {
	t.Helper()
	py := testenv.Python(t, "UNITER_BUTD_TEST", "torch, torchvision, onnx",
		"split detectors are exported by python3 -m uniter.detector_split")
	dst := filepath.Join(t.TempDir(), filepath.Base(src)+"-split")
	args := []string{"-m", "uniter.detector_split", "bundle", src, dst}
	if src == testenv.FixtureBundle(t) {
		args = []string{"-m", "uniter.detector_split", "fixture", "--bundle", src, "--out", dst}
	}
	cmd := exec.Command(py, args...)
	cmd.Dir = testenv.Path(t, "models")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+testenv.Path(t, "models"), "OMP_NUM_THREADS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python3 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dst
}

// noisePNG is a w×h image of independent random pixels: no two anchors see the same input,
// so no two proposals tie on objectness.
func noisePNG(t *testing.T, w, h int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSplitDetectorParity: a split detector's regions — proposals from Go, features and
// probabilities from the heads graph — are its single graph's, for the tiny fixture (rebuilt
// from its seed) and the default model (recovered from its detector.onnx).
func TestSplitDetectorParity(t *testing.T) {
	env := testenv.Env(t)
	for _, src := range []string{testenv.FixtureBundle(t), testenv.Path(t, "bundles", "shapes-uniter")} {
		t.Run(filepath.Base(src), func(t *testing.T) { checkSplitParity(t, env, src, splitBundle(t, src)) })
	}
}

func checkSplitParity(t *testing.T, env *ort.Environment, src, dir string) {
	opts := Options{MaxRegions: 100, VerifyChecksums: true}
	one, err := Load(env, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	split, err := Load(env, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer split.Close()
	if split.detectorHeads == nil || split.Manifest.Detector.Proposals == nil {
		t.Fatal("the split twin did not load as a split detector")
	}

	// Noise never ties two anchors' objectness; the fixture's pictures of flat shapes could.
	images := map[string][]byte{
		"noise 200x150": noisePNG(t, 200, 150, 1),
		"noise 90x300":  noisePNG(t, 90, 300, 2),
		"noise 640x480": noisePNG(t, 640, 480, 3),
	}
	files, err := filepath.Glob(testenv.Path(t, "testdata", "images", "*.png"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixture images: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		images[filepath.Base(f)] = data
	}
	ctx := context.Background()
	for name, data := range images {
		want, err := one.detector.Detect(ctx, data)
		if err != nil {
			t.Fatalf("%s: single graph: %v", name, err)
		}
		got, err := split.detector.Detect(ctx, data)
		if err != nil {
			t.Fatalf("%s: split: %v", name, err)
		}
		if got.Proposals != want.Proposals || len(got.Regions) != len(want.Regions) {
			t.Fatalf("%s: %d proposals, %d regions; the single graph: %d, %d", name, got.Proposals, len(got.Regions), want.Proposals, len(want.Regions))
		}
		for i := range want.Regions {
			g, w := got.Regions[i], want.Regions[i]
			for k := range 4 {
				if d := math.Abs(float64(g.Box[k] - w.Box[k])); d > 1e-3 {
					t.Errorf("%s: region %d box %v, want %v", name, i, g.Box, w.Box)
					break
				}
			}
			if g.Proposal != w.Proposal || math.Abs(float64(g.Confidence-w.Confidence)) > 1e-5 {
				t.Errorf("%s: region %d is proposal %d at %.6f, want %d at %.6f", name, i, g.Proposal, g.Confidence, w.Proposal, w.Confidence)
			}
		}
		closeTo := func(what string, a, b []float32, tol float64) {
			if len(a) != len(b) {
				t.Fatalf("%s: %s has %d values, want %d", name, what, len(a), len(b))
			}
			for i := range a {
				if math.Abs(float64(a[i]-b[i])) > tol {
					t.Fatalf("%s: %s[%d] = %v, want %v", name, what, i, a[i], b[i])
				}
			}
		}
		closeTo("features", got.Prepared.Features, want.Prepared.Features, 1e-4)
		closeTo("class probabilities", got.ClassProbs, want.ClassProbs, 1e-5)
		closeTo("attribute probabilities", got.AttrProbs, want.AttrProbs, 1e-5)
	}

	// The split bundle serves: a match through the whole pipeline gives the single graph's score.
	data := images["noise 200x150"]
	m1, err := one.Match(ctx, Input{Image: data}, []string{"a red circle"})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := split.Match(ctx, Input{Image: data}, []string{"a red circle"})
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(m1.Results[0].Score - m2.Results[0].Score)); d > 1e-5 {
		t.Errorf("match score %v through the split detector, %v through the single graph", m2.Results[0].Score, m1.Results[0].Score)
	}
}

// TestManifestSplitDetector: a broken proposals section is refused at load, naming the problem.
func TestManifestSplitDetector(t *testing.T) {
	dir := splitBundle(t, testenv.FixtureBundle(t))
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatalf("the split fixture's manifest: %v", err)
	}
	cases := []struct {
		name, want string
		edit       func(det, prop map[string]any)
	}{
		{"boxes named", "outputs.boxes", func(det, _ map[string]any) { det["outputs"].(map[string]any)["boxes"] = "boxes" }},
		{"no heads graph", `heads_graph "nope"`, func(_, p map[string]any) { p["heads_graph"] = "nope" }},
		{"both pooling ways", "give exactly one", func(_, p map[string]any) {
			p["roi_pool"] = map[string]any{"input": "pooled", "output_size": 7, "spatial_scale": 0.0625}
		}},
		{"neither pooling way", "give exactly one", func(_, p map[string]any) { delete(p, "rois") }},
		{"heads input misnamed", "takes", func(_, p map[string]any) { p["rois"] = "boxes" }},
		{"objectness missing", `objectness "scores"`, func(_, p map[string]any) { p["objectness"] = "scores" }},
		{"no anchors", "cell", func(_, p map[string]any) { p["cell_anchors"] = []any{} }},
		{"zero nms", "nms", func(_, p map[string]any) { p["nms_iou"] = 0 }},
		{"zero top-n", "post", func(_, p map[string]any) { p["post_nms_top_n"] = 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			det := doc["detector"].(map[string]any)
			c.edit(det, det["proposals"].(map[string]any))
			out, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, "manifest.json"), out, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = ReadManifest(d)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
