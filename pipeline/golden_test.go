package pipeline

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	ort "github.com/uniter-serve/uniter/runtime"
)

// golden is testdata/golden/tiny-random.json, written by python3 -m uniter.fixtures.tiny_random from PyTorch.
type golden struct {
	Pairs []struct {
		Text      string       `json:"text"`
		Width     int          `json:"width"`
		Height    int          `json:"height"`
		Boxes     [][4]float32 `json:"boxes"`
		Features  [][]float32  `json:"features"`
		IDs       []int64      `json:"ids"`
		Locations [][7]float64 `json:"locations"`
	} `json:"pairs"`
	Batches []struct {
		Pairs     []int             `json:"pairs"`
		TextLen   int               `json:"text_len"`
		ITMLogits [][]float64       `json:"itm_logits"`
		Pooled    [][]float64       `json:"pooled"`
		Hidden    [][][]float64     `json:"hidden"`
		Attention [][][][][]float64 `json:"attention"`
		MLMLogits [][][]float64     `json:"mlm_logits"`
		MRCLogits [][][]float64     `json:"mrc_logits"`
	} `json:"batches"`
}

func loadGolden(t *testing.T) *golden {
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "golden", "tiny-random.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

func loadFixture(t *testing.T, env *ort.Environment) *Bundle {
	t.Helper()
	b, err := Load(env, testenv.FixtureBundle(t), Options{MaxRegions: 100, MaxTexts: 8, VerifyChecksums: true})
	if err != nil {
		t.Fatalf("loading fixture bundle: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing bundle: %v", err)
		}
	})
	return b
}

// flatten turns nested JSON arrays into one row-major slice.
func flatten(v any) []float64 {
	switch x := v.(type) {
	case float64:
		return []float64{x}
	case []float64:
		return x
	case [][]float64:
		var out []float64
		for _, r := range x {
			out = append(out, r...)
		}
		return out
	case [][][]float64:
		var out []float64
		for _, r := range x {
			out = append(out, flatten(r)...)
		}
		return out
	case [][][][][]float64:
		var out []float64
		for _, a := range x {
			for _, b := range a {
				for _, c := range b {
					out = append(out, flatten(c)...)
				}
			}
		}
		return out
	}
	panic("flatten: unsupported type")
}

func maxAbsDiff(t *testing.T, name string, got []float32, want []float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
	}
	return worst
}

// TestGoldenParity runs the Go pipeline (tokenizer, 7-d locations, padded batching, ONNX
// Runtime) on the golden inputs and compares every output with PyTorch's.
func TestGoldenParity(t *testing.T) {
	g := loadGolden(t)
	env := testenv.Env(t)
	b := loadFixture(t, env)
	ctx := context.Background()

	prepared := make([]Pair, len(g.Pairs))
	for i, p := range g.Pairs {
		enc, err := b.tokenizer.Encode(p.Text)
		if err != nil {
			t.Fatal(err)
		}
		if ids := enc.IDs(); !slices.Equal(ids, p.IDs) {
			t.Fatalf("pair %d %q: Go token ids %v, Python WordPiece %v", i, p.Text, ids, p.IDs)
		}
		boxes := make([]detector.Box, len(p.Boxes))
		for j, bx := range p.Boxes {
			boxes[j] = detector.Box(bx)
		}
		reg, err := b.prepare(detector.Regions{Width: p.Width, Height: p.Height, Boxes: boxes, Features: p.Features})
		if err != nil {
			t.Fatal(err)
		}
		for j, loc := range reg.Locations {
			for k := range loc {
				if d := math.Abs(float64(loc[k]) - p.Locations[j][k]); d > 1e-6 {
					t.Fatalf("pair %d box %d location[%d]: got %v, want %v", i, j, k, loc[k], p.Locations[j][k])
				}
			}
		}
		prepared[i] = Pair{Text: &enc, Regions: reg}
	}

	const tol = 1e-4
	for _, gb := range g.Batches {
		var pairs []Pair
		for _, i := range gb.Pairs {
			pairs = append(pairs, prepared[i])
		}
		name := filepath.Base(t.Name()) + fmtPairs(gb.Pairs)
		e, err := b.Encode(ctx, pairs, false)
		if err != nil {
			t.Fatal(err)
		}
		check := func(what string, got []float32, want []float64) {
			if d := maxAbsDiff(t, what, got, want); d > tol {
				t.Errorf("%s %s: max abs diff %.3g, want ≤ %g", name, what, d, tol)
			} else {
				t.Logf("%s %s: max abs diff %.3g", name, what, d)
			}
		}
		check("itm_logits", e.heads[outITM], flatten(gb.ITMLogits))
		check("hidden", e.hidden, flatten(gb.Hidden))

		ea, err := b.Encode(ctx, pairs, true)
		if err != nil {
			t.Fatal(err)
		}
		check("attention", ea.attention, flatten(gb.Attention))
		check("attention graph itm_logits", ea.heads[outITM], flatten(gb.ITMLogits))

		// The heads take the encoder's hidden states: text positions for MLM, regions for MRC.
		B, T, N, H := int64(len(pairs)), int64(e.T), int64(e.N), int64(e.H)
		textHidden, regionHidden := splitHidden(e)
		out, err := b.RunGraph(ctx, GraphMLMHead, map[string]ort.Tensor{"hidden": {Shape: []int64{B, T, H}, F32: textHidden}})
		if err != nil {
			t.Fatal(err)
		}
		check("mlm_logits", out["mlm_logits"].F32, flatten(gb.MLMLogits))
		out, err = b.RunGraph(ctx, GraphMRCHead, map[string]ort.Tensor{"hidden": {Shape: []int64{B, N, H}, F32: regionHidden}})
		if err != nil {
			t.Fatal(err)
		}
		check("mrc_logits", out["mrc_logits"].F32, flatten(gb.MRCLogits))
	}
}

func fmtPairs(p []int) string {
	raw, _ := json.Marshal(p)
	return string(raw)
}

func splitHidden(e *Encoded) (text, regions []float32) {
	for i := range e.Pairs {
		for s := 0; s < e.T; s++ {
			text = append(text, e.Row(i, s)...)
		}
		for s := 0; s < e.N; s++ {
			regions = append(regions, e.Row(i, e.T+s)...)
		}
	}
	return text, regions
}

// TestScoreAloneEqualsInBatch: padding other pairs into a batch must not change a pair's
// score, logit or OT distance.
func TestScoreAloneEqualsInBatch(t *testing.T) {
	g := loadGolden(t)
	env := testenv.Env(t)
	b := loadFixture(t, env)
	ctx := context.Background()
	p := g.Pairs[2] // the pair with the most regions; texts of different lengths pad it
	boxes := make([]detector.Box, len(p.Boxes))
	for j, bx := range p.Boxes {
		boxes[j] = detector.Box(bx)
	}
	r := detector.Regions{Width: p.Width, Height: p.Height, Boxes: boxes, Features: p.Features}
	texts := []string{"a star", g.Pairs[0].Text, "something orange above a star near two large blue circles and a small red square"}
	batchOut, err := b.Match(ctx, Input{Regions: &r}, texts)
	if err != nil {
		t.Fatal(err)
	}
	batch := batchOut.Results
	for i, text := range texts {
		aloneOut, err := b.Match(ctx, Input{Regions: &r}, []string{text})
		if err != nil {
			t.Fatal(err)
		}
		a, in := aloneOut.Results[0], batch[i]
		if d := math.Abs(float64(a.Score - in.Score)); d > 1e-5 {
			t.Errorf("text %d score: alone %v, in batch %v", i, a.Score, in.Score)
		}
		if d := math.Abs(float64(a.Logit - in.Logit)); d > 1e-5 {
			t.Errorf("text %d logit: alone %v, in batch %v", i, a.Logit, in.Logit)
		}
		if d := math.Abs(a.OTDistance - in.OTDistance); d > 1e-5 {
			t.Errorf("text %d OT distance: alone %v, in batch %v", i, a.OTDistance, in.OTDistance)
		}
	}
	// Results differ between texts: the model is not returning a constant.
	if batch[0].Logit == batch[1].Logit && batch[1].Logit == batch[2].Logit {
		t.Errorf("all logits equal (%v): outputs do not depend on the text", batch[0].Logit)
	}
}

// fixtureCopy copies the fixture bundle into a temporary folder with its manifest rewritten
// by edit (raw JSON in, raw JSON out).
func fixtureCopy(t *testing.T, edit func(manifest []byte) []byte) string {
	t.Helper()
	return testenv.FixtureCopy(t, func(name string, raw []byte) []byte {
		if name == "manifest.json" {
			return edit(raw)
		}
		return raw
	})
}

// TestLoadFailureClosesCleanly: a graph that disagrees with its manifest fails Load with an
// error naming it (and closes what was opened) instead of panicking.
func TestLoadFailureClosesCleanly(t *testing.T) {
	env := testenv.Env(t)
	dir := fixtureCopy(t, func(raw []byte) []byte { // the MRC head's output width, declared wrongly
		return []byte(strings.Replace(string(raw), `"mrc_logits",
          "dtype": "float32",
          "shape": [
            "batch",
            "regions",
            11`, `"mrc_logits",
          "dtype": "float32",
          "shape": [
            "batch",
            "regions",
            12`, 1))
	})
	_, err := Load(env, dir, Options{MaxRegions: 10})
	if err == nil || !strings.Contains(err.Error(), "mrc_logits") {
		t.Fatalf("got %v, want an error about mrc_logits", err)
	}
}
