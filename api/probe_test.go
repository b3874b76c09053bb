package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/pipeline"
)

func TestFillMaskEndpoint(t *testing.T) {
	s, b := newServerBundle(t)
	h := s.Handler()
	png := fixturePNG(t)
	const text = "a red [MASK] left of a blue [MASK]"
	ctype, body := multipartBody(t, png, map[string][]string{"text": {text}, "top_k": {"3"}, "without_image": {"true"}})
	rec := do(t, h, http.MethodPost, "/v1/fill-mask", ctype, body)
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var resp api.FillMaskResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Text != text || len(resp.Masks) != 2 || resp.Image == nil || resp.Image.Regions < 10 {
		t.Fatalf("response %+v", resp)
	}
	// The same request through the model directly gives the same predictions.
	want, err := b.FillMask(context.Background(), pipeline.Input{Image: png}, text, pipeline.FillMaskOptions{TopK: 3, WithoutImage: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range resp.Masks {
		if got := string([]rune(text)[m.Start:m.End]); got != "[MASK]" || resp.Tokens[m.Position].Text != "[MASK]" {
			t.Errorf("mask %d: span %q, token %+v", i, got, resp.Tokens[m.Position])
		}
		if len(m.Predictions) != 3 || len(m.PredictionsWithoutImage) != 3 {
			t.Fatalf("mask %d: %d and %d predictions, want 3 each", i, len(m.Predictions), len(m.PredictionsWithoutImage))
		}
		for k, p := range m.Predictions {
			w := want.Masks[i].Top[k]
			if p.Token != w.Token || p.ID != w.ID || p.Probability != w.Probability {
				t.Errorf("mask %d #%d: got %+v, want %+v", i, k, p, w)
			}
			if k > 0 && p.Probability > m.Predictions[k-1].Probability {
				t.Errorf("mask %d: predictions not sorted: %+v", i, m.Predictions)
			}
		}
	}

	// JSON with regions and the defaults: 5 predictions, none without the image.
	rec = postJSON(t, h, "/v1/fill-mask", map[string]any{"regions": fixtureRegions(3), "text": "two [MASK] triangles"})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	resp = api.FillMaskResponse{}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Masks) != 1 || len(resp.Masks[0].Predictions) != 5 || resp.Masks[0].PredictionsWithoutImage != nil || resp.Image != nil {
		t.Fatalf("response %+v", resp)
	}
}

func TestFillMaskErrors(t *testing.T) {
	_, h := newServer(t)
	png := fixturePNG(t)
	img := map[string]string{"data": base64.StdEncoding.EncodeToString(png)}
	cases := []struct {
		name          string
		body          map[string]any
		status        int
		code, message string
	}{
		{"no mask", map[string]any{"image": img, "text": "a red square"}, 400, "invalid_text", "no [MASK]"},
		{"empty text", map[string]any{"image": img, "text": ""}, 400, "empty_text", "text"},
		{"top_k too large", map[string]any{"image": img, "text": "a [MASK]", "top_k": 51}, 400, "invalid_top_k", "out of range [1, 50]"},
		{"top_k negative", map[string]any{"image": img, "text": "a [MASK]", "top_k": -2}, 400, "invalid_top_k", "-2"},
		{"no image", map[string]any{"text": "a [MASK]"}, 400, "missing_input", ""},
		{"unknown field", map[string]any{"image": img, "text": "a [MASK]", "k": 3}, 400, "unknown_field", `"k"`},
	}
	for _, c := range cases {
		rec := postJSON(t, h, "/v1/fill-mask", c.body)
		var body api.ErrorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != c.status || body.Error.Code != c.code || !strings.Contains(body.Error.Message, c.message) {
			t.Errorf("%s: got %d %s, want %d %q containing %q", c.name, rec.Code, rec.Body, c.status, c.code, c.message)
		}
	}
	ctype, body := multipartBody(t, png, map[string][]string{"text": {"a [MASK]"}, "without_image": {"maybe"}})
	if rec := do(t, h, http.MethodPost, "/v1/fill-mask", ctype, body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "invalid_without_image") {
		t.Errorf("without_image=maybe: got %d %s", rec.Code, rec.Body)
	}
	ctype, body = multipartBody(t, png, map[string][]string{"text": {"a [MASK]", "the [MASK]"}})
	if rec := do(t, h, http.MethodPost, "/v1/fill-mask", ctype, body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "exactly one text") {
		t.Errorf("two texts: got %d %s", rec.Code, rec.Body)
	}
}

func TestRegionsGivenText(t *testing.T) {
	_, h := newServer(t)
	png := fixturePNG(t)
	ctype, body := multipartBody(t, png, map[string][]string{"text": {"a red square"}, "top_labels": {"2"}})
	rec := do(t, h, http.MethodPost, "/v1/regions", ctype, body)
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var resp api.RegionsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Text != "a red square" || len(resp.Regions) < 10 {
		t.Fatalf("response text %q, %d regions", resp.Text, len(resp.Regions))
	}
	for _, r := range resp.Regions {
		if len(r.ClassesGivenText) != 2 || r.ClassesGivenText[0].Probability < r.ClassesGivenText[1].Probability {
			t.Fatalf("region %d: classes given text %+v", r.Index, r.ClassesGivenText)
		}
	}
	// Without a text: no MRC classes.
	rec = postJSON(t, h, "/v1/regions", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(png)}})
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "classes_given_text") {
		t.Fatalf("without text: got %d %s", rec.Code, rec.Body)
	}
}
