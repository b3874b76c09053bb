package gallery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/x448/float16"
	bolt "go.etcd.io/bbolt"

	"github.com/uniter-serve/uniter/detector"
)

var ctx = context.Background()

func openTest(t *testing.T, dir string, opts Options) *Bolt {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// randomImage is an image with n random regions of feature dimension dim, 9 classes and 5
// attributes; its hash derives from seed.
func randomImage(id string, seed uint64, n, dim int) *Image {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := &Regions{Dim: dim, ClassDim: 9, AttrDim: 5}
	for range n {
		x1, y1 := rng.Float32()*100, rng.Float32()*80
		box := detector.Box{x1, y1, x1 + 1 + rng.Float32()*50, y1 + 1 + rng.Float32()*40}
		r.Boxes = append(r.Boxes, box)
		r.Locations = append(r.Locations, detector.Location(box, 160, 130))
		r.Confidence = append(r.Confidence, rng.Float32())
		for range dim {
			r.Features = append(r.Features, float32(rng.NormFloat64()*3))
		}
		for _, d := range []int{r.ClassDim, r.AttrDim} {
			row := make([]float32, d)
			var sum float32
			for j := range row {
				row[j] = rng.Float32()
				sum += row[j]
			}
			for j := range row {
				row[j] /= sum
			}
			if d == r.ClassDim {
				r.ClassProbs = append(r.ClassProbs, row...)
			} else {
				r.AttrProbs = append(r.AttrProbs, row...)
			}
		}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "image %d", seed))
	return &Image{ID: id, SHA256: hex.EncodeToString(sum[:]), Source: "test", Width: 160, Height: 130, Format: "png",
		Metadata: json.RawMessage(fmt.Sprintf(`{"seed": %d, "tags": ["a", "b"]}`, seed)), Regions: r,
		Thumbnail: []byte{0xff, 0xd8, byte(seed)}, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func f16(v float32) float32 { return float16.Fromfloat32(v).Float32() }

// wantStored checks got against the image that was put: features and distributions rounded
// to float16, everything else exact.
func wantStored(t *testing.T, got *Image, put *Image) {
	t.Helper()
	if got.ID != put.ID || got.SHA256 != put.SHA256 || got.Width != put.Width || got.Height != put.Height ||
		got.Format != put.Format || got.Source != put.Source || !got.Created.Equal(put.Created) || got.NumRegions != put.Regions.Len() {
		t.Fatalf("summary: got %+v, want %+v", got, put)
	}
	var gm, pm any
	_ = json.Unmarshal(got.Metadata, &gm)
	_ = json.Unmarshal(put.Metadata, &pm)
	if fmt.Sprint(gm) != fmt.Sprint(pm) {
		t.Errorf("metadata: got %s, want %s", got.Metadata, put.Metadata)
	}
	if string(got.Thumbnail) != string(put.Thumbnail) || !got.HasThumbnail {
		t.Errorf("thumbnail: got %v, want %v", got.Thumbnail, put.Thumbnail)
	}
	g, p := got.Regions, put.Regions
	if !slices.Equal(g.Boxes, p.Boxes) || !slices.Equal(g.Locations, p.Locations) || !slices.Equal(g.Confidence, p.Confidence) {
		t.Errorf("boxes, locations or confidences differ")
	}
	if g.Dim != p.Dim || g.ClassDim != p.ClassDim || g.AttrDim != p.AttrDim {
		t.Fatalf("dims: got %d/%d/%d, want %d/%d/%d", g.Dim, g.ClassDim, g.AttrDim, p.Dim, p.ClassDim, p.AttrDim)
	}
	for name, pair := range map[string][2][]float32{"features": {g.Features, p.Features},
		"class probs": {g.ClassProbs, p.ClassProbs}, "attr probs": {g.AttrProbs, p.AttrProbs}} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("%s: %d values, want %d", name, len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			if pair[0][i] != f16(pair[1][i]) {
				t.Fatalf("%s[%d]: got %v, want float16(%v) = %v", name, i, pair[0][i], pair[1][i], f16(pair[1][i]))
			}
		}
	}
}

func TestRoundFloat16(t *testing.T) {
	for _, c := range []struct{ in, want float32 }{
		{1, 1}, {0, 0}, {-2.5, -2.5}, {1.0 / 3, 0.333251953125}, {65504, 65504}, {1e6, float32Inf()},
		{5.960464477539063e-08, 5.960464477539063e-08}, // smallest subnormal
		{2049, 2048}, // ties to even
	} {
		if got := RoundFloat16(c.in); got != c.want {
			t.Errorf("RoundFloat16(%v): got %v, want %v", c.in, got, c.want)
		}
	}
}

func float32Inf() float32 { return float32(1) / float32(zero) }

var zero float32

func TestImageRoundTripAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	imgs := []*Image{randomImage("b", 1, 12, 16), randomImage("a", 2, 3, 16)}
	res, err := s.PutImages(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []PutResult{{ID: "b"}, {ID: "a"}}; !slices.Equal(res, want) {
		t.Fatalf("results: got %v, want %v", res, want)
	}
	check := func(s *Bolt) {
		for _, put := range imgs {
			got, err := s.Image(ctx, put.ID, PartRegions|PartThumbnail)
			if err != nil {
				t.Fatal(err)
			}
			wantStored(t, got, put)
			id, err := s.ImageBySHA256(ctx, put.SHA256)
			if err != nil || id != put.ID {
				t.Errorf("ImageBySHA256: got %q %v, want %q", id, err, put.ID)
			}
		}
		regs, err := s.Regions(ctx, []string{"a", "b"})
		if err != nil || len(regs) != 2 || regs[0].Len() != 3 || regs[1].Len() != 12 {
			t.Fatalf("Regions: got %v %v", regs, err)
		}
		st, err := s.Stats(ctx)
		if err != nil || st.Images != 2 || st.FeatureDim != 16 || st.Schema != SchemaVersion || st.Generation == 0 {
			t.Errorf("stats: got %+v %v", st, err)
		}
		if err := s.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, dir, Options{FeatureDim: 16}))
}

func TestDuplicatesAndConflicts(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	a := randomImage("a", 1, 4, 8)
	if _, err := s.PutImages(ctx, []*Image{a}); err != nil {
		t.Fatal(err)
	}
	gen := func() uint64 { st, _ := s.Stats(ctx); return st.Generation }
	g0 := gen()

	// The same bytes under another ID: a duplicate of "a"; nothing written.
	again := randomImage("other", 1, 4, 8)
	res, err := s.PutImages(ctx, []*Image{again})
	if err != nil || res[0] != (PutResult{ID: "a", Duplicate: true}) {
		t.Fatalf("duplicate: got %v %v, want a duplicate of a", res, err)
	}
	if _, err := s.Image(ctx, "other", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a duplicate was stored under its own id: %v", err)
	}
	// Two images of one hash in a call: the second is a duplicate of the first.
	res, err = s.PutImages(ctx, []*Image{randomImage("c", 3, 2, 8), randomImage("d", 3, 2, 8)})
	if err != nil || res[0] != (PutResult{ID: "c"}) || res[1] != (PutResult{ID: "c", Duplicate: true}) {
		t.Fatalf("duplicate in one call: got %v %v", res, err)
	}
	g1 := gen()
	if g1 == g0 {
		t.Errorf("generation did not change after a write")
	}
	// A taken ID with other bytes: conflict, and the whole call writes nothing.
	_, err = s.PutImages(ctx, []*Image{randomImage("new", 4, 2, 8), randomImage("a", 5, 2, 8)})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("taken id: got %v, want ErrConflict", err)
	}
	if _, err := s.Image(ctx, "new", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed call left image %q behind (%v)", "new", err)
	}
	// Another feature dimension: invalid, nothing written.
	_, err = s.PutImages(ctx, []*Image{randomImage("e", 6, 2, 8), randomImage("f", 7, 2, 9)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "dimension 9") {
		t.Fatalf("other dimension: got %v, want ErrInvalid naming the dimension", err)
	}
	if gen() != g1 {
		t.Errorf("failed calls changed the generation")
	}
	st, _ := s.Stats(ctx)
	if st.Images != 2 {
		t.Errorf("images: got %d, want 2", st.Images)
	}
}

func TestInvalidImages(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	for name, mutate := range map[string]func(*Image){
		"empty id":       func(m *Image) { m.ID = "" },
		"slash in id":    func(m *Image) { m.ID = "a/b" },
		"space in id":    func(m *Image) { m.ID = "a b" },
		"long id":        func(m *Image) { m.ID = strings.Repeat("x", 201) },
		"dot id":         func(m *Image) { m.ID = ".." },
		"bad sha":        func(m *Image) { m.SHA256 = "xyz" },
		"no regions":     func(m *Image) { m.Regions = nil },
		"zero regions":   func(m *Image) { m.Regions = &Regions{Dim: 8} },
		"short features": func(m *Image) { m.Regions.Features = m.Regions.Features[1:] },
		"NaN feature":    func(m *Image) { m.Regions.Features[3] = float32(zero / zero) },
		"metadata array": func(m *Image) { m.Metadata = json.RawMessage(`[1]`) },
		"metadata junk":  func(m *Image) { m.Metadata = json.RawMessage(`{`) },
		"half size":      func(m *Image) { m.Width = 0 },
	} {
		img := randomImage("ok", 1, 3, 8)
		mutate(img)
		if _, err := s.PutImages(ctx, []*Image{img}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if st, _ := s.Stats(ctx); st.Images != 0 || st.Generation != 0 {
		t.Errorf("invalid images changed the store: %+v", st)
	}
}

func TestDeleteAndList(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("img-%02d", 24-i)
		if _, err := s.PutImages(ctx, []*Image{randomImage(id, uint64(i), 2, 4)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	slices.Sort(want)
	var got []string
	pages := 0
	for after := ""; ; pages++ {
		page, next, err := s.ListImages(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			got = append(got, m.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) || pages != 2 {
		t.Fatalf("listing: got %v in %d pages, want %v in 3", got, pages+1, want)
	}
	sha := randomImage("x", 3, 2, 4).SHA256 // the hash of img-21
	if err := s.DeleteImage(ctx, "img-21"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(ctx, "img-21", PartRegions); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted image: got %v, want ErrNotFound", err)
	}
	if _, err := s.ImageBySHA256(ctx, sha); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted image's hash: got %v, want ErrNotFound", err)
	}
	if _, err := s.Regions(ctx, []string{"img-20", "img-21"}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "img-21") {
		t.Errorf("regions of a deleted image: got %v", err)
	}
	if err := s.DeleteImage(ctx, "img-21"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: got %v, want ErrNotFound", err)
	}
	// A cursor naming a deleted image still continues after it.
	page, _, err := s.ListImages(ctx, "img-21", 2)
	if err != nil || len(page) != 2 || page[0].ID != "img-22" {
		t.Errorf("list after a deleted id: got %v %v", page, err)
	}
	idx, err := s.ImageIndex(ctx)
	if err != nil || len(idx) != 24 {
		t.Fatalf("index: %d entries, %v", len(idx), err)
	}
	// The same bytes can be added again once deleted.
	if res, err := s.PutImages(ctx, []*Image{randomImage("again", 3, 2, 4)}); err != nil || res[0].Duplicate {
		t.Errorf("re-adding deleted bytes: got %v %v", res, err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	img := randomImage("a", 9, 6, 4)
	s := Summarize(img.Regions)
	if s.PerRegionClasses != SummaryTop || s.PerRegionAttrs != SummaryTop {
		t.Fatalf("per region: got %d/%d, want %d", s.PerRegionClasses, s.PerRegionAttrs, SummaryTop)
	}
	for i := range img.Regions.Len() {
		for name, c := range map[string]struct {
			got  []LabelProb
			row  []float32
			keep int
		}{
			"classes": {s.RegionClasses(i), img.Regions.ClassProbs[i*9 : (i+1)*9], 5},
			"attrs":   {s.RegionAttrs(i), img.Regions.AttrProbs[i*5 : (i+1)*5], 5},
		} {
			// Brute force: the entry at rank k has exactly k larger probabilities.
			for k, lp := range c.got {
				larger := 0
				for _, p := range c.row {
					if p > c.row[lp.Index] {
						larger++
					}
				}
				if larger != k || lp.Prob != f16(c.row[lp.Index]) {
					t.Errorf("region %d %s rank %d: index %d has %d larger, prob %v", i, name, k, lp.Index, larger, lp.Prob)
				}
			}
		}
	}
	// The stored index gives back the same summary.
	st := openTest(t, t.TempDir(), Options{})
	if _, err := st.PutImages(ctx, []*Image{img}); err != nil {
		t.Fatal(err)
	}
	idx, err := st.ImageIndex(ctx)
	if err != nil || len(idx) != 1 || idx[0].Regions != 6 || !slices.Equal(idx[0].Labels.Classes, s.Classes) || !slices.Equal(idx[0].Labels.Attrs, s.Attrs) {
		t.Errorf("index: got %+v %v", idx, err)
	}
}

func TestTexts(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	texts := []*Text{{ID: "t2", Text: "a red square", Metadata: json.RawMessage(`{"image_id": "x", "n": 1}`)}, {ID: "t1", Text: "two stars"}}
	res, err := s.PutTexts(ctx, texts)
	if err != nil || res[0] != (PutResult{ID: "t2"}) || res[1] != (PutResult{ID: "t1"}) {
		t.Fatalf("put: got %v %v", res, err)
	}
	// Same content (metadata keys in another order, other spacing): duplicates.
	res, err = s.PutTexts(ctx, []*Text{{ID: "t2", Text: "a red square", Metadata: json.RawMessage(`{ "n": 1, "image_id": "x" }`)}})
	if err != nil || !res[0].Duplicate {
		t.Fatalf("same text again: got %v %v", res, err)
	}
	// Other content under a taken ID: conflict; the batch writes nothing.
	_, err = s.PutTexts(ctx, []*Text{{ID: "t3", Text: "new"}, {ID: "t1", Text: "three stars"}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("taken id: got %v, want ErrConflict", err)
	}
	if _, err := s.Text(ctx, "t3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed batch left t3 behind: %v", err)
	}
	for name, bad := range map[string]*Text{"empty": {ID: "e", Text: ""}, "bad id": {ID: "a/b", Text: "x"},
		"bad utf8": {ID: "u", Text: "\xff"}, "metadata": {ID: "m", Text: "x", Metadata: json.RawMessage(`"s"`)}} {
		if _, err := s.PutTexts(ctx, []*Text{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	all, err := s.AllTexts(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "t1" || all[1].Text != "a red square" || string(all[1].Metadata) != `{"image_id":"x","n":1}` {
		t.Fatalf("all: got %+v %v", all, err)
	}
	if err := s.DeleteText(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteText(ctx, "t1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: got %v", err)
	}
	if st, _ := s.Stats(ctx); st.Texts != 1 {
		t.Errorf("texts: got %d, want 1", st.Texts)
	}
}

func TestOpenRules(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	// The file lock: a second opener fails with a message that says why.
	if _, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second open: got %v", err)
	}
	if _, err := s.PutImages(ctx, []*Image{randomImage("a", 1, 2, 8)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{FeatureDim: 2048}); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "dimension 8") {
		t.Errorf("other model's dimension: got %v", err)
	}
	// A newer schema is refused.
	if _, err := openWith(dir, Options{}, SchemaVersion-1, nil); !errors.Is(err, ErrIncompatible) {
		t.Errorf("newer schema: got %v", err)
	}
	// A migration runs once, in order, and the version moves on.
	calls := 0
	mig := []migration{{from: SchemaVersion, apply: func(tx *bolt.Tx) error {
		calls++
		return tx.Bucket(bucketMeta).Put([]byte("migrated"), []byte("yes"))
	}}}
	for range 2 {
		s2, err := openWith(dir, Options{}, SchemaVersion+1, mig)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := s2.Stats(ctx)
		_ = s2.Close()
		if st.Schema != SchemaVersion+1 {
			t.Errorf("schema after migration: got %d, want %d", st.Schema, SchemaVersion+1)
		}
	}
	if calls != 1 {
		t.Errorf("migration ran %d times, want 1", calls)
	}
	// A failing migration leaves the gallery as it was.
	dir2 := t.TempDir()
	s3 := openTest(t, dir2, Options{})
	_ = s3.Close()
	failing := []migration{{from: SchemaVersion, apply: func(tx *bolt.Tx) error {
		_ = tx.Bucket(bucketMeta).Put([]byte("half"), []byte("done"))
		return errors.New("boom")
	}}}
	if _, err := openWith(dir2, Options{}, SchemaVersion+1, failing); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing migration: got %v", err)
	}
	s4 := openTest(t, dir2, Options{})
	if st, _ := s4.Stats(ctx); st.Schema != SchemaVersion {
		t.Errorf("schema after a failed migration: got %d", st.Schema)
	}
}

// TestConcurrentPuts runs many writers and readers at once (under -race in make test): every
// image is stored exactly once, duplicates resolve to one ID.
func TestConcurrentPuts(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	var wg sync.WaitGroup
	ids := make([]string, 40)
	for i := range 40 {
		wg.Go(func() {
			res, err := s.PutImages(ctx, []*Image{randomImage(fmt.Sprintf("w%02d", i), uint64(i%20), 3, 8)})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = res[0].ID
			if _, err := s.ImageIndex(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st, _ := s.Stats(ctx)
	if st.Images != 20 {
		t.Errorf("images: got %d, want 20 (40 puts of 20 distinct images)", st.Images)
	}
	for i := range 20 {
		if ids[i] != ids[i+20] {
			t.Errorf("image %d: stored as %q and %q", i, ids[i], ids[i+20])
		}
	}
}
