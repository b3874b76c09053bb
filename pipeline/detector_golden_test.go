package pipeline

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// detectorGolden is testdata/golden/detector-tiny-random.json, written by
// python3 -m uniter.fixtures.detector: PyTorch preprocessing, graph outputs and an independent
// Python implementation of the selection contract.
type detectorGolden struct {
	Images []struct {
		File          string  `json:"file"`
		Width         int     `json:"width"`
		Height        int     `json:"height"`
		Scale         float64 `json:"scale"`
		ResizedWidth  int     `json:"resized_width"`
		ResizedHeight int     `json:"resized_height"`
		Input         struct {
			Sum     float64      `json:"sum"`
			Min     float64      `json:"min"`
			Max     float64      `json:"max"`
			Samples [][4]float64 `json:"samples"` // c, y, x, value
		} `json:"input"`
		Outputs struct {
			Proposals int `json:"proposals"`
		} `json:"outputs"`
		Selections []struct {
			Name      string `json:"name"`
			Selection struct {
				NMSIoU        float32 `json:"nms_iou"`
				MinConfidence float32 `json:"min_confidence"`
				MinBoxes      int     `json:"min_boxes"`
				MaxBoxes      int     `json:"max_boxes"`
			} `json:"selection"`
			Regions struct {
				Indices     []int        `json:"indices"`
				Boxes       [][4]float64 `json:"boxes"`
				Confidences []float64    `json:"confidences"`
				SoftLabels  [][]float64  `json:"soft_labels"`
				Features    [][]float64  `json:"features"`
				AttrProbs   [][]float64  `json:"attribute_probs"`
				Locations   [][7]float64 `json:"locations"`
			} `json:"regions"`
		} `json:"selections"`
	} `json:"images"`
}

func within(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if worst := maxAbsDiff(t, what, got, want); worst > tol {
		t.Errorf("%s: max abs diff %.3g, want ≤ %g", what, worst, tol)
	}
}

// TestDetectorGoldenParity: Go decoding + preprocessing + ONNX Runtime + Go selection give
// PyTorch's regions: the same proposals, boxes, confidences and features within 1e-4.
func TestDetectorGoldenParity(t *testing.T) {
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "detector-tiny-random.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g detectorGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	env := testenv.Env(t)
	ctx := context.Background()
	bundles := map[string]*Bundle{}
	bundleFor := func(name string, nms, minConf float32, minBoxes, maxBoxes int) *Bundle {
		if b, ok := bundles[name]; ok {
			return b
		}
		b, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100, Selection: SelectionOverride{
			NMSIoU: &nms, MinConfidence: &minConf, MinBoxes: &minBoxes, MaxBoxes: &maxBoxes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bundles[name] = b
		return b
	}
	for _, im := range g.Images {
		data, err := os.ReadFile(testenv.Path(t, "testdata", im.File))
		if err != nil {
			t.Fatal(err)
		}
		// Preprocessing: Go's tensor against PyTorch's statistics and samples.
		img, err := detector.Decode(data, detector.DecodeLimits{})
		if err != nil {
			t.Fatal(err)
		}
		b0 := bundleFor("fixture", 0.3, 0.2, 10, 100)
		pixels, info, err := detector.Preprocess(img, b0.detector.Preprocess)
		if err != nil {
			t.Fatal(err)
		}
		if info.ResizedWidth != im.ResizedWidth || info.ResizedHeight != im.ResizedHeight || math.Abs(info.Scale-im.Scale) > 1e-12 {
			t.Fatalf("%s: resized to %dx%d scale %v, want %dx%d scale %v", im.File, info.ResizedWidth, info.ResizedHeight, info.Scale, im.ResizedWidth, im.ResizedHeight, im.Scale)
		}
		sum, lo, hi := 0.0, math.Inf(1), math.Inf(-1)
		for _, v := range pixels {
			sum += float64(v)
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
		if math.Abs(sum-im.Input.Sum) > 1e-6*math.Abs(im.Input.Sum)+1 || math.Abs(lo-im.Input.Min) > 5e-3 || math.Abs(hi-im.Input.Max) > 5e-3 {
			t.Errorf("%s: tensor sum/min/max %v %v %v, want %v %v %v", im.File, sum, lo, hi, im.Input.Sum, im.Input.Min, im.Input.Max)
		}
		for _, s := range im.Input.Samples {
			c, y, x := int(s[0]), int(s[1]), int(s[2])
			if got := pixels[(c*info.ResizedHeight+y)*info.ResizedWidth+x]; math.Abs(float64(got)-s[3]) > 5e-3 {
				t.Errorf("%s: pixel c%d y%d x%d = %v, want %v", im.File, c, y, x, got, s[3])
			}
		}

		for _, sel := range im.Selections {
			s := sel.Selection
			b := bundleFor(sel.Name, s.NMSIoU, s.MinConfidence, s.MinBoxes, s.MaxBoxes)
			det, _, err := b.Detect(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			name := im.File + " " + sel.Name
			if det.Proposals != im.Outputs.Proposals {
				t.Errorf("%s: %d proposals, want %d", name, det.Proposals, im.Outputs.Proposals)
			}
			var got []int
			for _, r := range det.Regions {
				got = append(got, r.Proposal)
			}
			if !slices.Equal(got, sel.Regions.Indices) {
				t.Errorf("%s: selected proposals %v, want %v", name, got, sel.Regions.Indices)
				continue
			}
			var boxes, conf, locs []float32
			for _, r := range det.Regions {
				boxes = append(boxes, r.Box[:]...)
				conf = append(conf, r.Confidence)
				locs = append(locs, r.Location[:]...)
			}
			flat := func(rows [][]float64) []float64 { return slices.Concat(rows...) }
			var wantBoxes, wantLocs []float64
			for i := range sel.Regions.Boxes {
				wantBoxes = append(wantBoxes, sel.Regions.Boxes[i][:]...)
				wantLocs = append(wantLocs, sel.Regions.Locations[i][:]...)
			}
			within(t, name+" boxes", boxes, wantBoxes, 1e-3)
			within(t, name+" confidences", conf, sel.Regions.Confidences, 1e-4)
			within(t, name+" features", det.Prepared.Features, flat(sel.Regions.Features), 1e-4)
			within(t, name+" soft labels", det.ClassProbs, flat(sel.Regions.SoftLabels), 1e-4)
			within(t, name+" attributes", det.AttrProbs, flat(sel.Regions.AttrProbs), 1e-4)
			within(t, name+" locations", locs, wantLocs, 1e-5)
		}
	}
}

// TestDetectorMinBoxSizeGolden: with a min_box_size override, Go (ONNX Runtime graph, the size
// converted to resized pixels by the image's scale, Go selection) selects the proposals the
// Python reference selects from PyTorch's outputs (testdata/golden/detector-min-box-size.json,
// python3 -m uniter.fixtures.min_box), and no selected box is smaller than the size.
func TestDetectorMinBoxSizeGolden(t *testing.T) {
	var g struct {
		Selection struct {
			NMSIoU        float32 `json:"nms_iou"`
			MinConfidence float32 `json:"min_confidence"`
			MinBoxes      int     `json:"min_boxes"`
			MaxBoxes      int     `json:"max_boxes"`
			MinBoxSize    float32 `json:"min_box_size"`
		} `json:"selection"`
		Images []struct {
			File    string `json:"file"`
			Indices []int  `json:"indices"`
			Dropped []int  `json:"dropped"`
			Changed bool   `json:"changed"`
		} `json:"images"`
	}
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "detector-min-box-size.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	sel := g.Selection
	size := sel.MinBoxSize
	b, err := Load(testenv.Env(t), testenv.FixtureBundle(t), Options{MaxRegions: 100, Selection: SelectionOverride{
		NMSIoU: &sel.NMSIoU, MinConfidence: &sel.MinConfidence, MinBoxes: &sel.MinBoxes, MaxBoxes: &sel.MaxBoxes, MinBoxSize: &size}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.MinBoxSize() != size || size <= 0 {
		t.Fatalf("MinBoxSize %v, want the override %v > 0", b.MinBoxSize(), size)
	}
	changed := 0
	for _, im := range g.Images {
		data, err := os.ReadFile(testenv.Path(t, "testdata", im.File))
		if err != nil {
			t.Fatal(err)
		}
		det, _, err := b.Detect(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, r := range det.Regions {
			got = append(got, r.Proposal)
			if w, h := r.Box[2]-r.Box[0], r.Box[3]-r.Box[1]; w < size-1e-3 || h < size-1e-3 {
				t.Errorf("%s: region of proposal %d is %v×%v, smaller than %v", im.File, r.Proposal, w, h, size)
			}
			if slices.Contains(im.Dropped, r.Proposal) {
				t.Errorf("%s: proposal %d should have been dropped", im.File, r.Proposal)
			}
		}
		if !slices.Equal(got, im.Indices) {
			t.Errorf("%s: selected %v, the reference %v", im.File, got, im.Indices)
		}
		if im.Changed {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("the golden's min_box_size changes no selection: the test would not test it")
	}
}

// The manifest's selection.min_box_size: read as MinBoxSize (an override wins), and a negative
// or non-numeric value fails Load naming the key.
func TestManifestMinBoxSize(t *testing.T) {
	env := testenv.Env(t)
	withSize := func(v any) string {
		return fixtureCopy(t, func(raw []byte) []byte {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m["detector"].(map[string]any)["selection"].(map[string]any)["min_box_size"] = v
			out, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return out
		})
	}
	b, err := Load(env, withSize(4.5), Options{MaxRegions: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.MinBoxSize(); got != 4.5 {
		t.Errorf("MinBoxSize %v, want the manifest's 4.5", got)
	}
	b.Close()
	zero := float32(0)
	if b, err = Load(env, withSize(4.5), Options{MaxRegions: 10, Selection: SelectionOverride{MinBoxSize: &zero}}); err != nil {
		t.Fatal(err)
	}
	if got := b.MinBoxSize(); got != 0 {
		t.Errorf("MinBoxSize %v, want the override 0", got)
	}
	b.Close()
	for _, bad := range []any{-1, "large"} {
		if _, err := Load(env, withSize(bad), Options{MaxRegions: 10}); err == nil || !strings.Contains(err.Error(), "min_box_size") {
			t.Errorf("min_box_size %v: got %v, want an error naming min_box_size", bad, err)
		}
	}
}
