package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
)

// TestAlignAttention: "attention": true adds every head's map (compact uint8 form) with its
// pattern; the decoded maps match the pipeline's to the quantisation step.
func TestAlignAttention(t *testing.T) {
	s, b := newServerBundle(t)
	h := s.Handler()
	text := "a red square left of a blue circle"

	rec := postJSON(t, h, "/v1/align", map[string]any{"regions": fixtureRegions(3), "text": text})
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"attention"`) {
		t.Fatalf("without attention: got %d with an attention field? %.300s", rec.Code, rec.Body.String())
	}

	png := fixturePNG(t)
	ctype, body := multipartBody(t, png, map[string][]string{"text": {text}, "attention": {"true"}})
	rec = do(t, h, http.MethodPost, "/v1/align", ctype, body)
	if rec.Code != http.StatusOK {
		t.Fatalf("multipart with attention: got %d, want 200: %s", rec.Code, rec.Body.String())
	}
	var resp api.AlignResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	a := resp.Attention
	L, H := b.Manifest.Model.NumHiddenLayers, b.Manifest.Model.NumAttentionHeads
	if a == nil || a.Layers != L || a.Heads != H || a.Text != len(resp.Tokens) || a.Regions != len(resp.Regions) ||
		a.Encoding != api.AttentionEncoding || len(a.Maps) != L*H || len(a.PatternCounts) != L {
		t.Fatalf("attention block: got %+v; want %d layers × %d heads over %d tokens and %d regions", a, L, H, len(resp.Tokens), len(resp.Regions))
	}
	if a.Thresholds != heads.DefaultPatternThresholds() {
		t.Errorf("thresholds %+v, want the defaults", a.Thresholds)
	}

	want, err := b.Align(context.Background(), pipeline.Input{Image: png}, text, pipeline.AlignOptions{Attention: true})
	if err != nil {
		t.Fatal(err)
	}
	S := a.Text + a.Regions
	for i, m := range a.Maps {
		l, hd := i/H, i%H
		if m.Layer != l || m.Head != hd || m.Pattern != want.Attention.Patterns[i] {
			t.Errorf("map %d: layer %d head %d pattern %v; want %d, %d, %v", i, m.Layer, m.Head, m.Pattern, l, hd, want.Attention.Patterns[i])
		}
		raw, err := base64.StdEncoding.DecodeString(m.Data)
		if err != nil || len(raw) != S*S {
			t.Fatalf("map %d: %d bytes (%v), want %d", i, len(raw), err, S*S)
		}
		full := want.Attention.Map(l, hd)
		for k, q := range raw {
			got := float64(q) / 255 * float64(m.Scale)
			if d := math.Abs(got - float64(full[k])); d > float64(m.Scale)/510+1e-6 {
				t.Fatalf("map %d entry %d: decodes to %v, want %v within half a step", i, k, got, full[k])
			}
		}
	}
	for l, counts := range a.PatternCounts {
		n := 0
		for _, p := range heads.Patterns() {
			c, ok := counts[p]
			if !ok {
				t.Errorf("layer %d: pattern %v missing from pattern_counts", l, p)
			}
			n += c
		}
		if n != H {
			t.Errorf("layer %d: pattern counts sum to %d, want %d heads", l, n, H)
		}
	}

	// The attention alignment: the cross-attention of the full maps, and its word regions.
	cross, err := heads.CrossAttention(want.Attention.Maps, L, H, want.Attention.Layout)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.CrossAttention) != a.Text {
		t.Fatalf("cross_attention has %d rows, want %d tokens", len(a.CrossAttention), a.Text)
	}
	for i, row := range a.CrossAttention {
		if len(row) != a.Regions {
			t.Fatalf("cross_attention row %d has %d entries, want %d regions", i, len(row), a.Regions)
		}
		for r, v := range row {
			if math.Abs(v-cross[i][r]) > 1e-12 {
				t.Fatalf("cross_attention[%d][%d] = %v, want %v", i, r, v, cross[i][r])
			}
		}
	}
	if len(a.WordRegions) != len(resp.WordRegions) || len(a.WordRegions) == 0 {
		t.Fatalf("attention word_regions: %d words, want %d (as the OT word_regions)", len(a.WordRegions), len(resp.WordRegions))
	}
	for k, w := range a.WordRegions {
		ref := want.AttentionWordRegions[k]
		if w.Word != ref.Word || w.Text != resp.WordRegions[k].Text || len(w.Regions) != len(ref.Regions) ||
			w.Regions[0].Region != ref.Regions[0].Region {
			t.Errorf("attention word_regions[%d] = %+v, want word %d with regions %+v", k, w, ref.Word, ref.Regions)
		}
	}

	ctype, body = multipartBody(t, png, map[string][]string{"text": {text}, "attention": {"maybe"}})
	rec = do(t, h, http.MethodPost, "/v1/align", ctype, body)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid_attention") {
		t.Errorf("attention=maybe: got %d %s, want 400 invalid_attention", rec.Code, rec.Body.String())
	}
	rec = postJSON(t, h, "/v1/align", map[string]any{"regions": fixtureRegions(3), "text": text, "attention": "yes"})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "attention") {
		t.Errorf(`"attention": "yes": got %d %s, want 400 naming the field`, rec.Code, rec.Body.String())
	}
}
