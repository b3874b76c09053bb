package retrieval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
)

var ctx = context.Background()

// fixture is the tiny random bundle with an empty gallery.
type fixture struct {
	bundle *pipeline.Bundle
	store  *gallery.Bolt
	svc    *Service
}

func bundleLabels(b *pipeline.Bundle) Labels {
	return Labels{Classes: b.RegionLabels(), Attributes: b.AttributeLabels(), Background: b.Manifest.Detector.BackgroundIndex, NoAttribute: 0}
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	b, err := pipeline.Load(testenv.Env(t), testenv.FixtureBundle(t), pipeline.Options{MaxRegions: 100, MaxTexts: 8, CacheBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	st, err := gallery.Open(t.TempDir(), gallery.Options{FeatureDim: b.Manifest.Model.FeatureDim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg.Labels = bundleLabels(b)
	cfg.Source = "detector:test"
	return &fixture{bundle: b, store: st, svc: New(st, b, cfg)}
}

// testPNG is a distinct picture per seed: a noisy background and a few coloured rectangles.
func testPNG(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	w, h := 64+rng.IntN(100), 64+rng.IntN(80)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		v := uint8(100 + rng.IntN(40))
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v, v, 255
	}
	for range 1 + rng.IntN(4) {
		c := color.NRGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
		x0, y0 := rng.IntN(w-10), rng.IntN(h-10)
		for y := y0; y < min(h, y0+8+rng.IntN(30)); y++ {
			for x := x0; x < min(w, x0+8+rng.IntN(30)); x++ {
				img.SetNRGBA(x, y, c)
			}
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func (f *fixture) addImages(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		a, err := f.svc.AddImage(ctx, testPNG(uint64(i)), fmt.Sprintf("img-%02d", i), json.RawMessage(fmt.Sprintf(`{"n": %d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	return ids
}

func inputCode(err error) string {
	var ie *pipeline.InputError
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func TestAddImage(t *testing.T) {
	f := newFixture(t, Config{ThumbnailSize: 48})
	raw := testPNG(1)
	a, err := f.svc.AddImage(ctx, raw, "", json.RawMessage(`{"k": "v"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ID) != 16 || a.Duplicate || a.Regions == 0 || a.SHA256[:16] != a.ID {
		t.Fatalf("added: %+v", a)
	}
	// The same bytes, with or without another ID: the stored image, not detected again.
	lookups := func() int64 { st := f.bundle.CacheStats(); return st.Hits + st.Misses }
	before := lookups()
	for _, id := range []string{"", "other"} {
		d, err := f.svc.AddImage(ctx, raw, id, nil)
		if err != nil || !d.Duplicate || d.ID != a.ID || d.Regions != a.Regions {
			t.Errorf("duplicate with id %q: got %+v %v", id, d, err)
		}
	}
	if got := lookups() - before; got != 0 {
		t.Errorf("duplicates went to the detector (%d cache lookups)", got)
	}
	// The stored regions are the detection's (features rounded to float16).
	det, _, err := f.bundle.Detect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	img, err := f.store.Image(ctx, a.ID, gallery.PartRegions|gallery.PartThumbnail)
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != det.Width || img.Height != det.Height || img.Format != "png" || img.Source != "detector:test" || string(img.Metadata) != `{"k":"v"}` {
		t.Errorf("record: %+v", img)
	}
	r := img.Regions
	if r.Len() != len(det.Regions) || r.Dim != det.Prepared.Dim || r.ClassDim != det.ClassDim || r.AttrDim != det.AttrDim {
		t.Fatalf("regions: %d×%d, detection %d×%d", r.Len(), r.Dim, len(det.Regions), det.Prepared.Dim)
	}
	for i, reg := range det.Regions {
		if r.Boxes[i] != reg.Box || r.Locations[i] != reg.Location || r.Confidence[i] != reg.Confidence {
			t.Errorf("region %d: box %v loc %v conf %v, detection %v %v %v", i, r.Boxes[i], r.Locations[i], r.Confidence[i], reg.Box, reg.Location, reg.Confidence)
		}
	}
	for i, v := range det.Prepared.Features {
		if r.Features[i] != gallery.RoundFloat16(v) {
			t.Fatalf("feature %d: %v, detection %v", i, r.Features[i], v)
		}
	}
	th, err := jpeg.DecodeConfig(bytes.NewReader(img.Thumbnail))
	if err != nil || max(th.Width, th.Height) != 48 {
		t.Errorf("thumbnail: %+v %v, want a JPEG 48 px on its longer side", th, err)
	}

	if _, err := f.svc.AddImage(ctx, testPNG(2), "x", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddImage(ctx, testPNG(3), "x", nil); !errors.Is(err, gallery.ErrConflict) {
		t.Errorf("taken id: got %v, want ErrConflict", err)
	}
	for name, c := range map[string]struct {
		data []byte
		id   string
		meta string
		code string
	}{
		"not an image": {[]byte("hello"), "", "", pipeline.CodeInvalidImage},
		"bad id":       {testPNG(4), "a b", "", "invalid_record"},
		"bad metadata": {testPNG(4), "", "[1, 2]", "invalid_record"},
	} {
		_, err := f.svc.AddImage(ctx, c.data, c.id, json.RawMessage(c.meta))
		if inputCode(err) != c.code {
			t.Errorf("%s: got %v, want input error %q", name, err, c.code)
		}
	}
	if st, _ := f.store.Stats(ctx); st.Images != 2 {
		t.Errorf("images stored: %d, want 2", st.Images)
	}
}

// independent scores a text against each stored image with Bundle.Match on the caller-side
// form of the stored regions (validated, prepared and batched afresh): logits by ID.
func (f *fixture) independent(t *testing.T, text string, ids []string) map[string]float32 {
	t.Helper()
	out := map[string]float32{}
	for _, id := range ids {
		img, err := f.store.Image(ctx, id, gallery.PartRegions)
		if err != nil {
			t.Fatal(err)
		}
		r := detector.Regions{Width: img.Width, Height: img.Height, Boxes: img.Regions.Boxes}
		for i := range r.Boxes {
			r.Features = append(r.Features, img.Regions.Features[i*img.Regions.Dim:(i+1)*img.Regions.Dim])
		}
		m, err := f.bundle.Match(ctx, pipeline.Input{Regions: &r}, []string{text})
		if err != nil {
			t.Fatal(err)
		}
		out[id] = m.Results[0].Logit
	}
	return out
}

// checkTopK checks hits against independent logits: each hit's logit agrees, hits are in
// ranking order, and nothing left out beats the last hit.
func checkTopK(t *testing.T, what string, hits []Hit, want map[string]float32, k int) {
	t.Helper()
	const tol = 1e-4
	if len(hits) != min(k, len(want)) {
		t.Fatalf("%s: %d hits, want %d", what, len(hits), min(k, len(want)))
	}
	in := map[string]bool{}
	for i, h := range hits {
		in[h.ID] = true
		if d := math.Abs(float64(h.Logit - want[h.ID])); d > tol {
			t.Errorf("%s: hit %d %s: logit %v, Match says %v", what, i, h.ID, h.Logit, want[h.ID])
		}
		if !(h.Score >= 0 && h.Score <= 1) {
			t.Errorf("%s: score %v outside [0, 1]", what, h.Score)
		}
		if i > 0 && better(hit{id: h.ID, logit: h.Logit, score: h.Score}, hit{id: hits[i-1].ID, logit: hits[i-1].Logit, score: hits[i-1].Score}) {
			t.Errorf("%s: hit %d ranks above hit %d", what, i, i-1)
		}
	}
	last := hits[len(hits)-1].Logit
	for id, l := range want {
		if !in[id] && l > last+tol {
			t.Errorf("%s: %s (logit %v) left out, but the last hit has %v", what, id, l, last)
		}
	}
}

func TestSearchImages(t *testing.T) {
	f := newFixture(t, Config{})
	ids := f.addImages(t, 14)
	const text = "a red circle left of two green squares"
	want := f.independent(t, text, ids)

	res, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Gallery != 14 || res.Candidates != 14 || res.Mode != Exact {
		t.Errorf("results: gallery %d, candidates %d, mode %s", res.Gallery, res.Candidates, res.Mode)
	}
	checkTopK(t, "exact", res.Hits, want, 20)
	for _, h := range res.Hits {
		var m struct{ N int }
		if err := json.Unmarshal(h.Metadata, &m); err != nil || fmt.Sprintf("img-%02d", m.N) != h.ID {
			t.Errorf("hit %s: metadata %s", h.ID, h.Metadata)
		}
	}
	top5, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	checkTopK(t, "exact top 5", top5.Hits, want, 5)

	// Other chunking, batching and workers rank identically; pages are slices of the ranking.
	for _, cfg := range []Config{{ChunkImages: 3, BatchPairs: 2, Workers: 3}, {ChunkBytes: 1, Workers: 1}} {
		cfg.Labels = f.svc.cfg.Labels
		g := New(f.store, f.bundle, cfg)
		page, err := g.SearchImages(ctx, Query{Text: text, Limit: 4, Offset: 3})
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range page.Hits {
			if h.ID != res.Hits[3+i].ID || math.Abs(float64(h.Logit-res.Hits[3+i].Logit)) > 1e-5 {
				t.Errorf("%+v: page hit %d: %s %v, full ranking has %s %v", cfg, i, h.ID, h.Logit, res.Hits[3+i].ID, res.Hits[3+i].Logit)
			}
		}
	}
	past, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 5, Offset: 12})
	if err != nil || len(past.Hits) != 2 {
		t.Errorf("offset near the end: %d hits, %v (want 2)", len(past.Hits), err)
	}

	// Two-stage with every image as a candidate is exact.
	all, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 14, Mode: TwoStage, Candidates: 14})
	if err != nil {
		t.Fatal(err)
	}
	checkTopK(t, "two-stage, all candidates", all.Hits, want, 20)
	if len(all.Mentions) == 0 {
		t.Errorf("the text names fixture labels (red, circle, green, square) but no mention was read")
	}
	// With 5 candidates: the cross-encoder ranks exactly the first stage's top 5.
	idx, err := f.store.ImageIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mentions := f.svc.Lexicon().Parse(text)
	first := rankLexical(len(idx), 5, func(i int) string { return idx[i].ID }, func(i int) float64 { return Score(mentions, &idx[i].Labels, idx[i].Regions) })
	wantTwo := map[string]float32{}
	for _, i := range first {
		wantTwo[idx[i].ID] = want[idx[i].ID]
	}
	two, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 5, Mode: TwoStage, Candidates: 5})
	if err != nil {
		t.Fatal(err)
	}
	if two.Candidates != 5 || two.Gallery != 14 {
		t.Errorf("two-stage: %d candidates of %d", two.Candidates, two.Gallery)
	}
	checkTopK(t, "two-stage, 5 candidates", two.Hits, wantTwo, 5)
	// A text without label words cannot be narrowed: everything is scored, and it says so.
	none, err := f.svc.SearchImages(ctx, Query{Text: "a sofa", Limit: 3, Mode: TwoStage, Candidates: 4})
	if err != nil || none.Candidates != 14 || none.FirstStage == "" {
		t.Errorf("no label words: %d candidates, %q, %v", none.Candidates, none.FirstStage, err)
	}

	// Evidence: content words only, regions of the hit image.
	ev, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 2, Evidence: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range ev.Hits {
		img, _ := f.store.Image(ctx, h.ID, 0)
		if h.Evidence == nil || len(h.Evidence.Words) == 0 {
			t.Fatalf("hit %s: no evidence", h.ID)
		}
		var words []string
		for _, w := range h.Evidence.Words {
			words = append(words, w.Word)
			total := 0.0
			for _, r := range w.Regions {
				if r.Region < 0 || r.Region >= img.NumRegions || r.Share < 0 || r.Label == "" || r.Label == "__background__" {
					t.Errorf("hit %s word %q: region %+v", h.ID, w.Word, r)
				}
				total += r.Share
			}
			if len(w.Regions) != 3 || total > 1+1e-9 {
				t.Errorf("hit %s word %q: %d regions with shares summing to %v", h.ID, w.Word, len(w.Regions), total)
			}
			if []rune(text)[w.Start] != []rune(w.Word)[0] {
				t.Errorf("word %q at %d: text has %q", w.Word, w.Start, string([]rune(text)[w.Start]))
			}
		}
		if want := []string{"red", "circle", "left", "two", "green", "squares"}; !slices.Equal(words, want) {
			t.Errorf("evidence words: got %v, want %v", words, want)
		}
		// By default evidence comes from attention (the fixture has the graph); "ot" asks for
		// the transport plan. Both must be the alignment's own top regions.
		if h.Evidence.By != EvidenceByAttention {
			t.Errorf("hit %s: evidence by %q, want %q by default", h.ID, h.Evidence.By, EvidenceByAttention)
		}
		checkEvidence(t, f, h, text, func(a *pipeline.Alignment) []heads.WordAlignment { return a.AttentionWordRegions })
	}
	byOT, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 2, Evidence: true, EvidenceBy: EvidenceByOT})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range byOT.Hits {
		if h.Evidence == nil || h.Evidence.By != EvidenceByOT {
			t.Fatalf("hit %s: evidence %+v, want by %q", h.ID, h.Evidence, EvidenceByOT)
		}
		checkEvidence(t, f, h, text, func(a *pipeline.Alignment) []heads.WordAlignment { return a.WordRegions })
	}

	// A deleted image disappears from the next search.
	if err := f.store.DeleteImage(ctx, res.Hits[0].ID); err != nil {
		t.Fatal(err)
	}
	after, err := f.svc.SearchImages(ctx, Query{Text: text, Limit: 20})
	if err != nil || after.Gallery != 13 || len(after.Hits) != 13 || after.Hits[0].ID == res.Hits[0].ID {
		t.Errorf("after a delete: gallery %d, %d hits, %v", after.Gallery, len(after.Hits), err)
	}
}

func TestSearchTexts(t *testing.T) {
	f := newFixture(t, Config{})
	ids := f.addImages(t, 2)
	texts := []string{"a red circle", "two green squares", "there is a blue star", "something yellow above a cross",
		"a small black heart", "three white hexagons", "no purple diamonds", "an orange triangle", "a circle", "squares"}
	var batch []*gallery.Text
	for i, s := range texts {
		batch = append(batch, &gallery.Text{ID: fmt.Sprintf("t%02d", i), Text: s, Metadata: json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))})
	}
	if _, err := f.svc.AddTexts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Independent: Match of the stored image against all texts (at most 8 per call).
	img, _ := f.store.Image(ctx, ids[1], gallery.PartRegions)
	r := detector.Regions{Width: img.Width, Height: img.Height, Boxes: img.Regions.Boxes}
	for i := range r.Boxes {
		r.Features = append(r.Features, img.Regions.Features[i*img.Regions.Dim:(i+1)*img.Regions.Dim])
	}
	want := map[string]float32{}
	for lo := 0; lo < len(texts); lo += 8 {
		m, err := f.bundle.Match(ctx, pipeline.Input{Regions: &r}, texts[lo:min(lo+8, len(texts))])
		if err != nil {
			t.Fatal(err)
		}
		for i, res := range m.Results {
			want[fmt.Sprintf("t%02d", lo+i)] = res.Logit
		}
	}
	res, err := f.svc.SearchTexts(ctx, Query{ImageID: ids[1], Limit: 10, Evidence: true})
	if err != nil {
		t.Fatal(err)
	}
	checkTopK(t, "texts", res.Hits, want, 10)
	for _, h := range res.Hits {
		var m struct{ I int }
		_ = json.Unmarshal(h.Metadata, &m)
		if h.Text != texts[m.I] || h.Evidence == nil {
			t.Errorf("hit %s: text %q, metadata %s, evidence %v", h.ID, h.Text, h.Metadata, h.Evidence)
		}
	}
	// The image's bytes (detected now, not stored) rank the texts as the stored image does,
	// up to float16 rounding of the stored features.
	byBytes, err := f.svc.SearchTexts(ctx, Query{Image: testPNG(1), Limit: 3})
	if err != nil || byBytes.Query == nil {
		t.Fatal(err)
	}
	for i, h := range byBytes.Hits {
		if d := math.Abs(float64(h.Logit - want[h.ID])); d > 5e-3 {
			t.Errorf("by bytes hit %d %s: logit %v, stored image %v", i, h.ID, h.Logit, want[h.ID])
		}
	}
	two, err := f.svc.SearchTexts(ctx, Query{ImageID: ids[1], Limit: 3, Mode: TwoStage, Candidates: 4})
	if err != nil || two.Candidates != 4 || len(two.Hits) != 3 {
		t.Errorf("two-stage texts: %+v %v", two, err)
	}
	if _, err := f.svc.SearchTexts(ctx, Query{ImageID: "missing"}); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("unknown image: got %v, want ErrNotFound", err)
	}
}

func TestQueryErrors(t *testing.T) {
	f := newFixture(t, Config{MaxLimit: 50, MaxOffset: 100, MaxCandidates: 500})
	f.addImages(t, 1)
	for name, c := range map[string]struct {
		q    Query
		code string
	}{
		"limit negative":         {Query{Text: "a", Limit: -1}, "invalid_limit"},
		"limit above max":        {Query{Text: "a", Limit: 51}, "invalid_limit"},
		"offset negative":        {Query{Text: "a", Offset: -1}, "invalid_offset"},
		"offset above max":       {Query{Text: "a", Offset: 101}, "invalid_offset"},
		"mode":                   {Query{Text: "a", Mode: "fast"}, "invalid_mode"},
		"candidates for exact":   {Query{Text: "a", Candidates: 5}, "invalid_candidates"},
		"candidates below page":  {Query{Text: "a", Mode: TwoStage, Candidates: 5, Limit: 4, Offset: 2}, "invalid_candidates"},
		"candidates above max":   {Query{Text: "a", Mode: TwoStage, Candidates: 501}, "invalid_candidates"},
		"empty text":             {Query{Text: "  "}, pipeline.CodeEmptyText},
		"image for image search": {Query{Text: "a", ImageID: "x"}, "invalid_input"},
		"evidence_by unknown":    {Query{Text: "a", Evidence: true, EvidenceBy: "gradcam"}, "invalid_evidence_by"},
		"evidence_by alone":      {Query{Text: "a", EvidenceBy: EvidenceByOT}, "invalid_evidence_by"},
	} {
		_, err := f.svc.SearchImages(ctx, c.q)
		if got := inputCode(err); got != c.code {
			t.Errorf("%s: got %v (code %q), want code %q", name, err, got, c.code)
		}
	}
	if _, err := f.svc.SearchTexts(ctx, Query{}); inputCode(err) != "invalid_input" {
		t.Errorf("text search without an image: got %v", err)
	}
	if _, err := f.svc.SearchTexts(ctx, Query{Image: []byte("x"), ImageID: "y"}); inputCode(err) != "invalid_input" {
		t.Errorf("text search with two images: got %v", err)
	}
	if _, err := f.svc.AddTexts(ctx, []*gallery.Text{{Text: ""}}); inputCode(err) != "empty_text" {
		t.Errorf("empty text: got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.svc.SearchImages(cctx, Query{Text: "a red circle"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled search: got %v, want context.Canceled", err)
	}
}

// TestScoreIsSortable guards the independence of checkTopK's expectations: logits of the
// fixture are distinct enough that ranking by them is meaningful.
func TestScoreIsSortable(t *testing.T) {
	f := newFixture(t, Config{})
	ids := f.addImages(t, 6)
	want := f.independent(t, "a red circle", ids)
	var ls []float64
	for _, l := range want {
		ls = append(ls, float64(l))
	}
	sort.Float64s(ls)
	distinct := 0
	for i := 1; i < len(ls); i++ {
		if ls[i]-ls[i-1] > 1e-4 {
			distinct++
		}
	}
	if distinct < 3 {
		t.Errorf("the fixture's logits barely differ (%v): the ranking tests would check little", ls)
	}
}

// checkEvidence compares a hit's evidence with the word regions (chosen by pick) of the
// model's own alignment of the text with the hit image's stored regions.
func checkEvidence(t *testing.T, f *fixture, h Hit, text string, pick func(*pipeline.Alignment) []heads.WordAlignment) {
	t.Helper()
	img, err := f.store.Image(ctx, h.ID, gallery.PartRegions)
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.bundle.AlignPrepared(ctx, img.Regions.Prepared(img.Width, img.Height), text, pipeline.AlignOptions{Attention: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	for _, w := range pick(a) {
		for _, r := range w.Regions {
			want[a.Words[w.Word].Text] = append(want[a.Words[w.Word].Text], r.Region)
		}
	}
	for _, w := range h.Evidence.Words {
		var got []int
		for _, r := range w.Regions {
			got = append(got, r.Region)
		}
		if !slices.Equal(got, want[w.Word]) {
			t.Errorf("hit %s word %q (by %s): regions %v, the alignment's top regions %v", h.ID, w.Word, h.Evidence.By, got, want[w.Word])
		}
	}
}

// noAttention is a model without an attention graph.
type noAttention struct{ *pipeline.Bundle }

func (noAttention) HasAttention() bool { return false }

// Without an attention graph evidence comes from the transport plan, and asking for attention
// is a clear input error.
func TestEvidenceWithoutAttention(t *testing.T) {
	f := newFixture(t, Config{})
	f.addImages(t, 2)
	svc := New(f.store, noAttention{f.bundle}, Config{Labels: bundleLabels(f.bundle), Source: "detector:test"})
	res, err := svc.SearchImages(ctx, Query{Text: "a red circle", Limit: 1, Evidence: true})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Evidence == nil || res.Hits[0].Evidence.By != EvidenceByOT {
		t.Fatalf("default evidence without attention: %+v, %v; want by %q", res, err, EvidenceByOT)
	}
	_, err = svc.SearchImages(ctx, Query{Text: "a red circle", Evidence: true, EvidenceBy: EvidenceByAttention})
	if code := inputCode(err); code != "invalid_evidence_by" || !strings.Contains(err.Error(), "attention graph") {
		t.Errorf("evidence by attention without the graph: %v, want invalid_evidence_by naming the graph", err)
	}
}
