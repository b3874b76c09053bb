package api_test

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
)

// TestRegionsRoundTrip: the answer of POST /v1/regions with float32 features, sent back to
// /v1/match and /v1/align as regions, is accepted and scores exactly as the image does;
// float16 features decode to the same shape within float16 precision.
func TestRegionsRoundTrip(t *testing.T) {
	_, h := newServer(t)
	png := fixturePNG(t)
	image := map[string]string{"data": base64.StdEncoding.EncodeToString(png)}
	rec := postJSON(t, h, "/v1/regions", map[string]any{"image": image, "features": true, "feature_dtype": "float32"})
	if rec.Code != 200 {
		t.Fatalf("regions: %d %s", rec.Code, rec.Body)
	}
	resp := decode[api.RegionsResponse](t, rec)
	if f := resp.Features; f == nil || f.DType != "float32" || f.Shape[0] != len(resp.Regions) || f.Shape[1] != 64 {
		t.Fatalf("features block %+v", f)
	}
	regions, err := resp.RegionsInput()
	if err != nil {
		t.Fatal(err)
	}
	if regions.Width != 160 || regions.Height != 128 || len(regions.Boxes) != len(resp.Regions) {
		t.Fatalf("regions input %dx%d with %d boxes", regions.Width, regions.Height, len(regions.Boxes))
	}
	texts := []string{"a red square left of a blue circle", "two green triangles", "something"}
	byImage := decode[api.MatchResponse](t, postJSON(t, h, "/v1/match", map[string]any{"image": image, "texts": texts}))
	rec = postJSON(t, h, "/v1/match", map[string]any{"regions": regions, "texts": texts})
	if rec.Code != 200 {
		t.Fatalf("match with the regions answer: %d %s", rec.Code, rec.Body)
	}
	byRegions := decode[api.MatchResponse](t, rec)
	for i := range texts {
		g, w := byRegions.Results[i], byImage.Results[i]
		if math.Abs(float64(g.Score-w.Score)) > 1e-5 || math.Abs(float64(g.Logit-w.Logit)) > 1e-5 || math.Abs(g.OTDistance-w.OTDistance) > 1e-5 {
			t.Errorf("text %d: regions %+v, image %+v", i, g, w)
		}
	}
	alignImage := decode[api.AlignResponse](t, postJSON(t, h, "/v1/align", map[string]any{"image": image, "text": texts[0]}))
	alignRegions := decode[api.AlignResponse](t, postJSON(t, h, "/v1/align", map[string]any{"regions": regions, "text": texts[0]}))
	for i, r := range alignRegions.Regions {
		if r.Box != alignImage.Regions[i].Box || r.Location != alignImage.Regions[i].Location {
			t.Errorf("region %d: box %v location %v from regions, %v %v from the image", i, r.Box, r.Location, alignImage.Regions[i].Box, alignImage.Regions[i].Location)
		}
	}
	if math.Abs(float64(alignRegions.Logit-alignImage.Logit)) > 1e-5 {
		t.Errorf("align logit %v from regions, %v from the image", alignRegions.Logit, alignImage.Logit)
	}

	// The default, float16: the same shape, values within float16's precision.
	half := decode[api.RegionsResponse](t, postJSON(t, h, "/v1/regions", map[string]any{"image": image, "features": true}))
	if half.Features == nil || half.Features.DType != "float16" {
		t.Fatalf("default features %+v, want float16", half.Features)
	}
	rows, err := half.Features.Rows()
	if err != nil {
		t.Fatal(err)
	}
	for i, row := range rows {
		for j, v := range row {
			if w := regions.Features[i][j]; math.Abs(float64(v-w)) > 1e-3*max(1, math.Abs(float64(w))) {
				t.Fatalf("feature [%d][%d]: float16 %v, float32 %v", i, j, v, w)
			}
		}
	}
	// Without features there is nothing to send back.
	bare := decode[api.RegionsResponse](t, postJSON(t, h, "/v1/regions", map[string]any{"image": image}))
	if _, err := bare.RegionsInput(); err == nil {
		t.Error("RegionsInput of an answer without features: no error")
	}
	// Multipart takes feature_dtype too.
	ct, body := multipartBody(t, png, map[string][]string{"features": {"true"}, "feature_dtype": {"float32"}})
	rec = do(t, h, "POST", "/v1/regions", ct, body)
	if mp := decode[api.RegionsResponse](t, rec); mp.Features == nil || mp.Features.Data != resp.Features.Data {
		t.Errorf("multipart feature_dtype float32: %d, features %+v", rec.Code, mp.Features)
	}
}

// TestRegionBoxRule: the one rule for boxes sent as regions. Zero width or height is valid,
// on the border too; an inverted box, or one outside the image, is a 400 naming the box.
func TestRegionBoxRule(t *testing.T) {
	_, h := newServer(t)
	withBoxes := func(boxes ...[]float32) map[string]any {
		r := fixtureRegions(len(boxes))
		r["boxes"] = boxes
		return r
	}
	valid := map[string]map[string]any{
		"zero width on the right border": withBoxes([]float32{200, 0, 200, 120}, []float32{10, 10, 50, 40}),
		"zero height on the bottom":      withBoxes([]float32{10, 10, 50, 40}, []float32{0, 120, 200, 120}),
		"a point":                        withBoxes([]float32{30.5, 20.25, 30.5, 20.25}),
		"the whole image":                withBoxes([]float32{0, 0, 200, 120}),
	}
	for name, r := range valid {
		for _, path := range []string{"/v1/match", "/v1/align"} {
			body := map[string]any{"regions": r, "texts": []string{"a red square"}}
			if path == "/v1/align" {
				body = map[string]any{"regions": r, "text": "a red square"}
			}
			if rec := postJSON(t, h, path, body); rec.Code != 200 {
				t.Errorf("%s, %s: %d %s", name, path, rec.Code, rec.Body)
			}
		}
	}
	invalid := []struct {
		name    string
		regions map[string]any
		message string
	}{
		{"inverted x", withBoxes([]float32{10, 10, 50, 40}, []float32{60, 10, 59, 40}), "box 1 [60 10 59 40] is inverted"},
		{"inverted y", withBoxes([]float32{10, 40, 50, 39.5}), "box 0 [10 40 50 39.5] is inverted"},
		{"outside, zero width", withBoxes([]float32{201, 0, 201, 10}), "box 0 [201 0 201 10] lies outside the 200×120 image"},
		{"outside, negative", withBoxes([]float32{-0.5, 0, 10, 10}), "box 0 [-0.5 0 10 10] lies outside"},
	}
	for _, c := range invalid {
		rec := postJSON(t, h, "/v1/match", map[string]any{"regions": c.regions, "texts": []string{"a red square"}})
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 400 || body.Error.Code != "invalid_regions" ||
			!strings.Contains(body.Error.Message, c.message) {
			t.Errorf("%s: %d %s, want 400 invalid_regions saying %q", c.name, rec.Code, rec.Body, c.message)
		}
	}
}

// TestUnknownWordsAPI: a text's words outside the vocabulary are listed with their spans in
// match, align, fill-mask and the task answers, and absent when there are none. The fixture's
// vocabulary is open (BERT's rule): only [UNK] words count, a word in pieces does not.
func TestUnknownWordsAPI(t *testing.T) {
	ts := newTestServer(t, serverOptions{tasks: true})
	h := ts.Handler()
	regions := fixtureRegions(3)
	want := []api.UnknownWord{{Word: "✿", Start: 6, End: 7}}
	const text = "a red ✿ circle"
	rec := postJSON(t, h, "/v1/match", map[string]any{"regions": regions, "texts": []string{"a red circle", text, "a redish circle"}})
	if rec.Code != 200 {
		t.Fatalf("match: %d %s", rec.Code, rec.Body)
	}
	if strings.Count(rec.Body.String(), `"unknown_words"`) != 1 {
		t.Errorf("unknown_words should appear once, for the second text only: %s", rec.Body)
	}
	m := decode[api.MatchResponse](t, rec)
	if !equalUnknown(m.Results[1].UnknownWords, want) || m.Results[0].UnknownWords != nil || m.Results[2].UnknownWords != nil {
		t.Errorf("match unknown words: %+v, %+v, %+v; want none, %+v, none", m.Results[0].UnknownWords, m.Results[1].UnknownWords, m.Results[2].UnknownWords, want)
	}
	a := decode[api.AlignResponse](t, postJSON(t, h, "/v1/align", map[string]any{"regions": regions, "text": text}))
	if !equalUnknown(a.UnknownWords, want) {
		t.Errorf("align unknown words %+v, want %+v", a.UnknownWords, want)
	}
	f := decode[api.FillMaskResponse](t, postJSON(t, h, "/v1/fill-mask", map[string]any{"regions": regions, "text": "a [MASK] ✿ circle"}))
	if !equalUnknown(f.UnknownWords, []api.UnknownWord{{Word: "✿", Start: 9, End: 10}}) {
		t.Errorf("fill-mask unknown words %+v, want ✿ at 9–10 (and no [MASK])", f.UnknownWords)
	}
	v := decode[api.VQAResponse](t, postJSON(t, h, "/v1/vqa", map[string]any{"regions": regions, "question": "what colour is the ✿?", "model": "tiny-vqa"}))
	if !equalUnknown(v.Question.UnknownWords, []api.UnknownWord{{Word: "✿", Start: 19, End: 20}}) {
		t.Errorf("VQA question unknown words %+v", v.Question.UnknownWords)
	}
	e := decode[api.EntailmentResponse](t, postJSON(t, h, "/v1/entailment", map[string]any{"regions": regions, "hypothesis": "there is a red square", "model": "tiny-ve"}))
	if e.Hypothesis.UnknownWords != nil {
		t.Errorf("entailment hypothesis unknown words %+v, want none", e.Hypothesis.UnknownWords)
	}

	// GET /v1/models says what the vocabulary and the detector are.
	models := decode[api.ModelsResponse](t, do(t, h, "GET", "/v1/models", "", nil))
	first := models.Models[0]
	if v := first.Vocabulary; v.Size != 243 || v.Cased || v.Closed || v.Domain != "" {
		t.Errorf("fixture vocabulary %+v, want 243 tokens, uncased, open, no domain", v)
	}
	if d := first.Detector; d == nil || d.Description != "" || d.Domain != "" || d.Classes == 0 {
		t.Errorf("fixture detector %+v, want one with classes and no description or domain", d)
	}
}

func equalUnknown(got, want []api.UnknownWord) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
