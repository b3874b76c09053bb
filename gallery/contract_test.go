package gallery

// The contract every Store implementation keeps, run against each backend (TestBoltContract in
// bolt_test.go, TestPostgresContract in postgres_test.go against a real server).

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

	"github.com/uniter-serve/uniter/detector"
)

var ctx = context.Background()

// backend is what the contract needs of a Store implementation.
type backend struct {
	schema int // the schema version this build writes
	// create makes an empty place for a gallery (a directory, a database) and names it.
	create func(t *testing.T) string
	open   func(loc string, opts Options) (Store, error)
	// openAs opens loc as a build whose schema is current, with one migration from current-1
	// that writes a marker in its transaction and then returns step's error (step may be nil).
	openAs func(loc string, current int, step func() error) (Store, error)
	// marked reports whether the marker of openAs's migration is at loc (no store open on it).
	marked func(t *testing.T, loc string) bool
}

// openStore opens loc, closing the store when t ends.
func (b backend) openStore(t *testing.T, loc string, opts Options) Store {
	t.Helper()
	s, err := b.open(loc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fresh opens a new, empty gallery.
func (b backend) fresh(t *testing.T) (Store, string) {
	t.Helper()
	loc := b.create(t)
	return b.openStore(t, loc, Options{}), loc
}

// checkStore runs the backend's own consistency check, where it has one.
func checkStore(t *testing.T, s Store) {
	t.Helper()
	if c, ok := s.(interface{ Check() error }); ok {
		if err := c.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
	}
}

func generation(t *testing.T, s Store) uint64 {
	t.Helper()
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Generation
}

func mustPut(t *testing.T, s Store, imgs ...*Image) []PutResult {
	t.Helper()
	res, err := s.PutImages(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	return res
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

var zero float32

// wantStored checks got against the image that was put: features and distributions rounded
// to float16, everything else exact (metadata as ValidMetadata keeps it).
func wantStored(t *testing.T, got *Image, put *Image) {
	t.Helper()
	if got.ID != put.ID || got.SHA256 != put.SHA256 || got.Width != put.Width || got.Height != put.Height ||
		got.Format != put.Format || got.Source != put.Source || !got.Created.Equal(put.Created) || got.NumRegions != put.Regions.Len() {
		t.Fatalf("summary: got %+v, want %+v", got, put)
	}
	if got.Created.Location() != time.UTC {
		t.Errorf("created: got %v, want UTC", got.Created)
	}
	if want, _ := ValidMetadata(put.Metadata); string(got.Metadata) != string(want) {
		t.Errorf("metadata: got %s, want %s", got.Metadata, want)
	}
	if string(got.Thumbnail) != string(put.Thumbnail) || got.HasThumbnail != (len(put.Thumbnail) > 0) {
		t.Errorf("thumbnail: got %v (has %v), want %v", got.Thumbnail, got.HasThumbnail, put.Thumbnail)
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

// runStoreContract runs the contract against one backend.
func runStoreContract(t *testing.T, b backend) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, backend)
	}{
		{"RoundTripAndReopen", contractRoundTrip},
		{"DuplicatesAndConflicts", contractDuplicates},
		{"InvalidImages", contractInvalidImages},
		{"NoPartialWrites", contractNoPartialWrites},
		{"DeleteAndList", contractDeleteAndList},
		{"Regions", contractRegions},
		{"Index", contractIndex},
		{"Texts", contractTexts},
		{"Generation", contractGeneration},
		{"ConcurrentWriters", contractConcurrentWriters},
		{"Migrations", contractMigrations},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, b) })
	}
}

func contractRoundTrip(t *testing.T, b backend) {
	loc := b.create(t)
	s := b.openStore(t, loc, Options{})
	bare := randomImage("c", 3, 1, 16) // no thumbnail, no metadata, unknown size
	bare.Thumbnail, bare.Metadata, bare.Width, bare.Height, bare.Format = nil, nil, 0, 0, ""
	imgs := []*Image{randomImage("b", 1, 12, 16), randomImage("a", 2, 3, 16), bare}
	res := mustPut(t, s, imgs...)
	if want := []PutResult{{ID: "b"}, {ID: "a"}, {ID: "c"}}; !slices.Equal(res, want) {
		t.Fatalf("results: got %v, want %v", res, want)
	}
	now := time.Now()
	unstamped := &Text{ID: "now", Text: "no time given"}
	texts := []*Text{{ID: "t1", Text: "a red square", Metadata: json.RawMessage(`{"b": [1, {"z": 2, "y": "<&>"}], "a": 1.5e300}`),
		Created: time.Date(2025, 5, 6, 7, 8, 9, 123456000, time.FixedZone("X", 3600))}, unstamped}
	if _, err := s.PutTexts(ctx, texts); err != nil {
		t.Fatal(err)
	}
	check := func(s Store) {
		t.Helper()
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
			// Without parts: the summary only.
			got, err = s.Image(ctx, put.ID, 0)
			if err != nil || got.Regions != nil || got.Thumbnail != nil || got.HasThumbnail != (len(put.Thumbnail) > 0) || got.NumRegions != put.Regions.Len() {
				t.Errorf("summary of %s: got %+v %v", put.ID, got, err)
			}
		}
		st, err := s.Stats(ctx)
		if err != nil || st.Images != 3 || st.Texts != 2 || st.FeatureDim != 16 || st.Schema != b.schema || st.Generation == 0 {
			t.Errorf("stats: got %+v %v", st, err)
		}
		got, err := s.Text(ctx, "t1")
		if err != nil || got.Text != texts[0].Text || !got.Created.Equal(texts[0].Created) || got.Created.Location() != time.UTC ||
			string(got.Metadata) != `{"a":1.5e+300,"b":[1,{"y":"\u003c\u0026\u003e","z":2}]}` {
			t.Errorf("text: got %+v %v (metadata %s)", got, err, got.Metadata)
		}
		got, err = s.Text(ctx, "now")
		if err != nil || got.Metadata != nil || got.Created.Sub(now).Abs() > time.Minute {
			t.Errorf("text stamped by the store: got %+v %v, want created about %v", got, err, now)
		}
		checkStore(t, s)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(b.openStore(t, loc, Options{FeatureDim: 16}))
}

func contractDuplicates(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	a := randomImage("a", 1, 4, 8)
	mustPut(t, s, a)
	g0 := generation(t, s)

	// The same bytes under another ID: a duplicate of "a"; nothing written.
	res, err := s.PutImages(ctx, []*Image{randomImage("other", 1, 4, 8)})
	if err != nil || res[0] != (PutResult{ID: "a", Duplicate: true}) {
		t.Fatalf("duplicate: got %v %v, want a duplicate of a", res, err)
	}
	if _, err := s.Image(ctx, "other", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a duplicate was stored under its own id: %v", err)
	}
	// The same image again, and the same bytes with features of another dimension (the hash
	// decides): duplicates.
	res, err = s.PutImages(ctx, []*Image{a, randomImage("a2", 1, 2, 4)})
	if err != nil || res[0] != (PutResult{ID: "a", Duplicate: true}) || res[1] != (PutResult{ID: "a", Duplicate: true}) {
		t.Fatalf("same image again: got %v %v", res, err)
	}
	if generation(t, s) != g0 {
		t.Errorf("a call of duplicates only changed the generation")
	}
	// Two images of one hash in a call: the second is a duplicate of the first.
	res, err = s.PutImages(ctx, []*Image{randomImage("c", 3, 2, 8), randomImage("d", 3, 2, 8)})
	if err != nil || res[0] != (PutResult{ID: "c"}) || res[1] != (PutResult{ID: "c", Duplicate: true}) {
		t.Fatalf("duplicate in one call: got %v %v", res, err)
	}
	g1 := generation(t, s)
	if g1 == g0 {
		t.Errorf("generation did not change after a write")
	}
	// A taken ID with other bytes, in the store or earlier in the call: conflict.
	if _, err := s.PutImages(ctx, []*Image{randomImage("a", 5, 2, 8)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("taken id: got %v, want ErrConflict", err)
	}
	if _, err := s.PutImages(ctx, []*Image{randomImage("x", 6, 2, 8), randomImage("x", 7, 2, 8)}); !errors.Is(err, ErrConflict) {
		t.Fatalf("one id twice in a call: got %v, want ErrConflict", err)
	}
	if id, err := s.ImageBySHA256(ctx, randomImage("", 3, 1, 1).SHA256); err != nil || id != "c" {
		t.Errorf("ImageBySHA256: got %q %v, want c", id, err)
	}
	if _, err := s.ImageBySHA256(ctx, randomImage("", 99, 1, 1).SHA256); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hash: got %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("g", 64), strings.Repeat("a", 62)} {
		if _, err := s.ImageBySHA256(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ImageBySHA256(%q): got %v, want ErrInvalid", bad, err)
		}
	}
	if generation(t, s) != g1 {
		t.Errorf("failed calls changed the generation")
	}
	if st, _ := s.Stats(ctx); st.Images != 2 {
		t.Errorf("images: got %d, want 2", st.Images)
	}
	checkStore(t, s)
}

func contractInvalidImages(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	for name, mutate := range map[string]func(*Image){
		"empty id":        func(m *Image) { m.ID = "" },
		"slash in id":     func(m *Image) { m.ID = "a/b" },
		"space in id":     func(m *Image) { m.ID = "a b" },
		"long id":         func(m *Image) { m.ID = strings.Repeat("x", 201) },
		"dot id":          func(m *Image) { m.ID = ".." },
		"bad sha":         func(m *Image) { m.SHA256 = "xyz" },
		"upper-case sha":  func(m *Image) { m.SHA256 = strings.ToUpper(m.SHA256) },
		"no regions":      func(m *Image) { m.Regions = nil },
		"zero regions":    func(m *Image) { m.Regions = &Regions{Dim: 8} },
		"short features":  func(m *Image) { m.Regions.Features = m.Regions.Features[1:] },
		"NaN feature":     func(m *Image) { m.Regions.Features[3] = float32(zero / zero) },
		"metadata array":  func(m *Image) { m.Metadata = json.RawMessage(`[1]`) },
		"metadata junk":   func(m *Image) { m.Metadata = json.RawMessage(`{`) },
		"half size":       func(m *Image) { m.Width = 0 },
		"big thumbnail":   func(m *Image) { m.Thumbnail = make([]byte, MaxThumbnailBytes+1) },
		"short locations": func(m *Image) { m.Regions.Locations = m.Regions.Locations[1:] },
	} {
		img := randomImage("ok", 1, 3, 8)
		mutate(img)
		if _, err := s.PutImages(ctx, []*Image{img}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := s.ListImages(ctx, "", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("list limit 0: got %v, want ErrInvalid", err)
	}
	if _, _, err := s.ListTexts(ctx, "", -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("list limit -1: got %v, want ErrInvalid", err)
	}
	if st, _ := s.Stats(ctx); st.Images != 0 || st.Generation != 0 || st.FeatureDim != 0 {
		t.Errorf("invalid images changed the store: %+v", st)
	}
}

// contractNoPartialWrites: a call that fails, whichever record fails it and why, writes nothing.
func contractNoPartialWrites(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	mustPut(t, s, randomImage("a", 1, 2, 8))
	if _, err := s.PutTexts(ctx, []*Text{{ID: "t", Text: "taken"}}); err != nil {
		t.Fatal(err)
	}
	g := generation(t, s)
	bad := randomImage("z", 9, 2, 8)
	bad.Regions.Confidence[1] = float32(zero / zero)
	for name, c := range map[string]struct {
		imgs []*Image
		want error
	}{
		"invalid last":      {[]*Image{randomImage("x", 2, 2, 8), randomImage("y", 3, 2, 8), bad}, ErrInvalid},
		"taken id last":     {[]*Image{randomImage("x", 2, 2, 8), randomImage("a", 4, 2, 8)}, ErrConflict},
		"other dimension":   {[]*Image{randomImage("x", 2, 2, 8), randomImage("y", 3, 2, 9)}, ErrInvalid},
		"id twice, invalid": {[]*Image{randomImage("x", 2, 2, 8), randomImage("x", 3, 2, 8)}, ErrConflict},
	} {
		if _, err := s.PutImages(ctx, c.imgs); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
		for _, img := range c.imgs {
			if img.ID == "a" {
				continue
			}
			if _, err := s.Image(ctx, img.ID, 0); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: the failed call left image %q behind (%v)", name, img.ID, err)
			}
			if _, err := s.ImageBySHA256(ctx, img.SHA256); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: the failed call left the hash of %q behind (%v)", name, img.ID, err)
			}
		}
	}
	if _, err := s.PutTexts(ctx, []*Text{{ID: "new", Text: "x"}, {ID: "t", Text: "other"}}); !errors.Is(err, ErrConflict) {
		t.Errorf("texts with a taken id: got %v, want ErrConflict", err)
	}
	if _, err := s.PutTexts(ctx, []*Text{{ID: "new", Text: "x"}, {ID: "bad", Text: ""}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("texts with an empty one: got %v, want ErrInvalid", err)
	}
	if _, err := s.Text(ctx, "new"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed call left text %q behind (%v)", "new", err)
	}
	st, _ := s.Stats(ctx)
	if st.Images != 1 || st.Texts != 1 || st.Generation != g || st.FeatureDim != 8 {
		t.Errorf("failed calls changed the store: %+v (generation was %d)", st, g)
	}
	checkStore(t, s)
}

func contractDeleteAndList(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("img-%02d", 24-i)
		mustPut(t, s, randomImage(id, uint64(i), 2, 4))
		want = append(want, id)
	}
	// IDs sort byte-wise: upper case before lower, punctuation by its code.
	odd := []string{"Z", "a", "a.b", "a_b", "a-b", "a~", "A:b", "@x", "+y"}
	for i, id := range odd {
		mustPut(t, s, randomImage(id, uint64(100+i), 1, 4))
	}
	want = append(want, odd...)
	slices.Sort(want)
	for _, limit := range []int{1, 7, 10, len(want), len(want) + 5} {
		var got []string
		pages := 0
		for after := ""; ; {
			page, next, err := s.ListImages(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(page) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page))
			}
			for _, m := range page {
				got = append(got, m.ID)
				if m.Regions != nil || m.Thumbnail != nil || !m.HasThumbnail || m.NumRegions == 0 || m.SHA256 == "" {
					t.Errorf("listed image %s: %+v", m.ID, m)
				}
			}
			if next == "" {
				break
			}
			if next != page[len(page)-1].ID {
				t.Fatalf("limit %d: next %q is not the page's last id", limit, next)
			}
			after = next
		}
		wantPages := (len(want) + limit - 1) / limit
		if !slices.Equal(got, want) || pages != wantPages {
			t.Fatalf("limit %d: got %v in %d pages, want %v in %d", limit, got, pages, want, wantPages)
		}
	}
	sha := randomImage("x", 3, 2, 4).SHA256 // the hash of img-21
	if err := s.DeleteImage(ctx, "img-21"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(ctx, "img-21", PartRegions|PartThumbnail); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted image: got %v, want ErrNotFound", err)
	}
	if _, err := s.ImageBySHA256(ctx, sha); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted image's hash: got %v, want ErrNotFound", err)
	}
	if _, err := s.Regions(ctx, []string{"img-20", "img-21"}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "img-21") {
		t.Errorf("regions of a deleted image: got %v", err)
	}
	for _, id := range []string{"img-21", "never", "", "a/b"} {
		if err := s.DeleteImage(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting %q: got %v, want ErrNotFound", id, err)
		}
	}
	// A cursor naming a deleted image, or no image, still continues after it.
	page, _, err := s.ListImages(ctx, "img-21", 2)
	if err != nil || len(page) != 2 || page[0].ID != "img-22" {
		t.Errorf("list after a deleted id: got %v %v", page, err)
	}
	page, next, err := s.ListImages(ctx, "img-235", 5)
	if err != nil || len(page) != 1 || page[0].ID != "img-24" || next != "" {
		t.Errorf("list after an unknown id: got %v %q %v", page, next, err)
	}
	if page, next, err := s.ListImages(ctx, "~", 5); err != nil || len(page) != 0 || next != "" {
		t.Errorf("list past the end: got %v %q %v", page, next, err)
	}
	idx, err := s.ImageIndex(ctx)
	if err != nil || len(idx) != len(want)-1 {
		t.Fatalf("index: %d entries, %v", len(idx), err)
	}
	// The same bytes can be added again once deleted; the ID too, with its own thumbnail (the
	// deleted one's went with it).
	if res, err := s.PutImages(ctx, []*Image{randomImage("again", 3, 2, 4)}); err != nil || res[0].Duplicate {
		t.Errorf("re-adding deleted bytes: got %v %v", res, err)
	}
	reused := randomImage("img-21", 500, 2, 4)
	reused.Thumbnail = nil
	mustPut(t, s, reused)
	got, err := s.Image(ctx, "img-21", PartThumbnail)
	if err != nil || got.HasThumbnail || got.Thumbnail != nil || got.SHA256 != reused.SHA256 {
		t.Errorf("a reused id: got %+v %v, want no thumbnail", got, err)
	}
	// Deleting every image empties the store; the next image may have any dimension.
	all, _, err := s.ListImages(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if err := s.DeleteImage(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := s.Stats(ctx); st.Images != 0 {
		t.Errorf("images after deleting all: %d", st.Images)
	}
	if idx, err := s.ImageIndex(ctx); err != nil || len(idx) != 0 {
		t.Errorf("index of an empty gallery: %v %v", idx, err)
	}
	mustPut(t, s, randomImage("wide", 1000, 2, 32))
	if st, _ := s.Stats(ctx); st.Images != 1 || st.FeatureDim != 32 {
		t.Errorf("stats after refilling: %+v", st)
	}
	checkStore(t, s)
}

func contractRegions(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	imgs := []*Image{randomImage("a", 1, 5, 8), randomImage("b", 2, 1, 8), randomImage("c", 3, 9, 8)}
	mustPut(t, s, imgs...)
	regs, err := s.Regions(ctx, []string{"c", "a", "c", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*Image{imgs[2], imgs[0], imgs[2], imgs[1]} {
		got := &Image{ID: want.ID, SHA256: want.SHA256, Source: want.Source, Width: want.Width, Height: want.Height,
			Format: want.Format, Created: want.Created, NumRegions: want.Regions.Len(), Regions: regs[i],
			Thumbnail: want.Thumbnail, HasThumbnail: true}
		got.Metadata, _ = ValidMetadata(want.Metadata)
		wantStored(t, got, want)
	}
	if regs, err := s.Regions(ctx, nil); err != nil || len(regs) != 0 {
		t.Errorf("no ids: got %v %v", regs, err)
	}
	for _, ids := range [][]string{{"a", "missing", "b"}, {"missing"}, {"a", "missing", "other"}} {
		_, err := s.Regions(ctx, ids)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"missing"`) {
			t.Errorf("Regions(%v): got %v, want ErrNotFound naming the first missing one", ids, err)
		}
	}
	if _, err := s.Regions(ctx, []string{"a", "bad/id"}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "bad/id") {
		t.Errorf("an impossible id: got %v, want ErrNotFound", err)
	}
}

func contractIndex(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	imgs := []*Image{randomImage("b", 9, 6, 4), randomImage("a", 10, 1, 4)}
	noLabels := randomImage("c", 11, 2, 4)
	noLabels.Regions.ClassDim, noLabels.Regions.ClassProbs, noLabels.Regions.AttrDim, noLabels.Regions.AttrProbs = 0, nil, 0, nil
	imgs = append(imgs, noLabels)
	mustPut(t, s, imgs...)
	idx, err := s.ImageIndex(ctx)
	if err != nil || len(idx) != 3 {
		t.Fatalf("index: got %v %v", idx, err)
	}
	for i, want := range []*Image{imgs[1], imgs[0], imgs[2]} {
		sum := Summarize(want.Regions)
		e := idx[i]
		if e.ID != want.ID || e.Regions != want.Regions.Len() || e.Labels.PerRegionClasses != sum.PerRegionClasses ||
			e.Labels.PerRegionAttrs != sum.PerRegionAttrs || !slices.Equal(e.Labels.Classes, sum.Classes) || !slices.Equal(e.Labels.Attrs, sum.Attrs) {
			t.Errorf("entry %d: got %+v, want %s with %+v", i, e, want.ID, sum)
		}
	}
}

func contractTexts(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	texts := []*Text{{ID: "t2", Text: "a red square", Metadata: json.RawMessage(`{"image_id": "x", "n": 1}`)}, {ID: "t1", Text: "two stars ★"}}
	res, err := s.PutTexts(ctx, texts)
	if err != nil || res[0] != (PutResult{ID: "t2"}) || res[1] != (PutResult{ID: "t1"}) {
		t.Fatalf("put: got %v %v", res, err)
	}
	// Same content (metadata keys in another order, other spacing): duplicates, also twice in
	// one call.
	same := &Text{ID: "t2", Text: "a red square", Metadata: json.RawMessage(`{ "n": 1, "image_id": "x" }`)}
	res, err = s.PutTexts(ctx, []*Text{same, same})
	if err != nil || !res[0].Duplicate || !res[1].Duplicate || res[0].ID != "t2" {
		t.Fatalf("same text again: got %v %v", res, err)
	}
	res, err = s.PutTexts(ctx, []*Text{{ID: "t3", Text: "three"}, {ID: "t3", Text: "three"}})
	if err != nil || res[0] != (PutResult{ID: "t3"}) || res[1] != (PutResult{ID: "t3", Duplicate: true}) {
		t.Fatalf("a new text twice in a call: got %v %v", res, err)
	}
	// Other content under a taken ID (other text, other or no metadata): conflict.
	for _, c := range []*Text{{ID: "t1", Text: "three stars"}, {ID: "t2", Text: "a red square"},
		{ID: "t1", Text: "two stars ★", Metadata: json.RawMessage(`{"n": 2}`)}} {
		if _, err := s.PutTexts(ctx, []*Text{c}); !errors.Is(err, ErrConflict) {
			t.Errorf("taken id %s: got %v, want ErrConflict", c.ID, err)
		}
	}
	if _, err := s.PutTexts(ctx, []*Text{{ID: "t4", Text: "x"}, {ID: "t4", Text: "y"}}); !errors.Is(err, ErrConflict) {
		t.Errorf("one id twice in a call with two texts: got %v, want ErrConflict", err)
	}
	for name, bad := range map[string]*Text{"empty": {ID: "e", Text: ""}, "bad id": {ID: "a/b", Text: "x"},
		"bad utf8": {ID: "u", Text: "\xff"}, "metadata": {ID: "m", Text: "x", Metadata: json.RawMessage(`"s"`)},
		"long": {ID: "l", Text: strings.Repeat("x", MaxTextBytes+1)}} {
		if _, err := s.PutTexts(ctx, []*Text{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	all, err := s.AllTexts(ctx)
	if err != nil || len(all) != 3 || all[0].ID != "t1" || all[1].Text != "a red square" || string(all[1].Metadata) != `{"image_id":"x","n":1}` ||
		all[0].Text != "two stars ★" || all[0].Metadata != nil {
		t.Fatalf("all: got %+v %v", all, err)
	}
	page, next, err := s.ListTexts(ctx, "", 2)
	if err != nil || len(page) != 2 || page[1].ID != "t2" || next != "t2" {
		t.Fatalf("first page: got %v %q %v", page, next, err)
	}
	page, next, err = s.ListTexts(ctx, next, 2)
	if err != nil || len(page) != 1 || page[0].ID != "t3" || next != "" {
		t.Fatalf("last page: got %v %q %v", page, next, err)
	}
	if err := s.DeleteText(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t1", "never", ""} {
		if err := s.DeleteText(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting %q: got %v", id, err)
		}
		if _, err := s.Text(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("reading %q: got %v", id, err)
		}
	}
	if st, _ := s.Stats(ctx); st.Texts != 2 || st.Images != 0 {
		t.Errorf("stats: got %+v, want 2 texts", st)
	}
	// A deleted text's ID takes new content.
	if res, err := s.PutTexts(ctx, []*Text{{ID: "t1", Text: "new"}}); err != nil || res[0].Duplicate {
		t.Errorf("reusing a deleted id: got %v %v", res, err)
	}
	checkStore(t, s)
}

// contractGeneration: every committed change moves the generation; reads, duplicates and
// failed calls do not.
func contractGeneration(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	last := generation(t, s)
	step := func(what string, changes bool, op func() error) {
		t.Helper()
		_ = op()
		g := generation(t, s)
		if changes && g == last || !changes && g != last {
			t.Errorf("%s: generation %d → %d", what, last, g)
		}
		last = g
	}
	step("put an image", true, func() error { _, err := s.PutImages(ctx, []*Image{randomImage("a", 1, 2, 4)}); return err })
	step("put a duplicate", false, func() error { _, err := s.PutImages(ctx, []*Image{randomImage("b", 1, 2, 4)}); return err })
	step("put no images", false, func() error { _, err := s.PutImages(ctx, nil); return err })
	step("put a text", true, func() error { _, err := s.PutTexts(ctx, []*Text{{ID: "t", Text: "x"}}); return err })
	step("put a duplicate text", false, func() error { _, err := s.PutTexts(ctx, []*Text{{ID: "t", Text: "x"}}); return err })
	step("a conflict", false, func() error { _, err := s.PutTexts(ctx, []*Text{{ID: "t", Text: "y"}}); return err })
	step("reads", false, func() error {
		_, err := s.ImageIndex(ctx)
		_, _, _ = s.ListImages(ctx, "", 10)
		_, _ = s.AllTexts(ctx)
		_, _ = s.Image(ctx, "a", PartRegions|PartThumbnail)
		return err
	})
	step("delete a missing image", false, func() error { return s.DeleteImage(ctx, "zz") })
	step("delete an image", true, func() error { return s.DeleteImage(ctx, "a") })
	step("delete a text", true, func() error { return s.DeleteText(ctx, "t") })
	step("delete a missing text", false, func() error { return s.DeleteText(ctx, "t") })
}

// contractConcurrentWriters runs 8 writers at once, with readers: identical images under other
// IDs resolve to one stored ID (Duplicate, never an error); one ID sought by all with
// different bytes is stored once, the others get ErrConflict; counts add up.
func contractConcurrentWriters(t *testing.T, b backend) {
	s, _ := b.fresh(t)
	const writers, rounds = 8, 10
	type outcome struct {
		res PutResult
		err error
	}
	got := make([][]outcome, writers)   // [writer][round]
	contested := make([]error, writers) // putting the ID "contested"
	texts := make([]PutResult, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for k := range rounds {
				seed := uint64(k) // even rounds: the same image in every writer
				if k%2 == 1 {
					seed = uint64(1000 + 100*w + k)
				}
				res, err := s.PutImages(ctx, []*Image{randomImage(fmt.Sprintf("w%d-%02d", w, k), seed, 3, 8)})
				var r PutResult
				if err == nil {
					r = res[0]
				}
				got[w] = append(got[w], outcome{r, err})
				if k == rounds/2 {
					_, contested[w] = s.PutImages(ctx, []*Image{randomImage("contested", uint64(5000+w), 2, 8)})
					res, err := s.PutTexts(ctx, []*Text{{ID: "shared", Text: "the same text"}, {ID: fmt.Sprintf("own-%d", w), Text: "mine"}})
					if err != nil {
						t.Errorf("writer %d: texts: %v", w, err)
					} else {
						texts[w] = res[0]
					}
				}
				if _, err := s.ImageIndex(ctx); err != nil {
					t.Errorf("writer %d: index: %v", w, err)
				}
				if _, _, err := s.ListImages(ctx, "", 5); err != nil {
					t.Errorf("writer %d: list: %v", w, err)
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		for k, o := range got[w] {
			if o.err != nil {
				t.Fatalf("writer %d round %d: %v", w, k, o.err)
			}
			if k%2 == 1 && o.res != (PutResult{ID: fmt.Sprintf("w%d-%02d", w, k)}) {
				t.Errorf("writer %d round %d (a distinct image): got %+v", w, k, o.res)
			}
		}
	}
	for k := 0; k < rounds; k += 2 {
		stored := map[string]bool{}
		fresh := 0
		for w := range writers {
			r := got[w][k].res
			stored[r.ID] = true
			if !r.Duplicate {
				fresh++
			}
		}
		id, err := s.ImageBySHA256(ctx, randomImage("", uint64(k), 1, 1).SHA256)
		if len(stored) != 1 || fresh != 1 || err != nil || !stored[id] {
			t.Errorf("round %d (one image in every writer): stored as %v, %d not duplicates; by hash %q %v", k, stored, fresh, id, err)
		}
	}
	won := 0
	for w, err := range contested {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Errorf("writer %d: contested id: got %v, want nil or ErrConflict", w, err)
		}
	}
	fresh := 0
	for _, r := range texts {
		if r.ID == "shared" && !r.Duplicate {
			fresh++
		}
	}
	if won != 1 || fresh != 1 {
		t.Errorf("contested id stored %d times, shared text %d times; want once each", won, fresh)
	}
	st, err := s.Stats(ctx)
	wantImages := rounds/2 + writers*rounds/2 + 1
	if err != nil || st.Images != wantImages || st.Texts != writers+1 {
		t.Errorf("stats: got %+v %v, want %d images, %d texts", st, err, wantImages, writers+1)
	}
	if idx, err := s.ImageIndex(ctx); err != nil || len(idx) != wantImages {
		t.Errorf("index: %d entries %v, want %d", len(idx), err, wantImages)
	}
	checkStore(t, s)
}

func contractMigrations(t *testing.T, b backend) {
	loc := b.create(t)
	s := b.openStore(t, loc, Options{})
	mustPut(t, s, randomImage("a", 1, 2, 8))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The current schema reopens, with the model's dimension or none given.
	for _, opts := range []Options{{}, {FeatureDim: 8}} {
		s := b.openStore(t, loc, opts)
		if st, err := s.Stats(ctx); err != nil || st.Schema != b.schema || st.Images != 1 {
			t.Errorf("reopened with %+v: %+v %v", opts, st, err)
		}
		_ = s.Close()
	}
	if s, err := b.open(loc, Options{FeatureDim: 2048}); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "dimension 8") {
		t.Errorf("other model's dimension: got %v", err)
		if err == nil {
			_ = s.Close()
		}
	}
	// A newer schema than this build knows is refused, and left as it was.
	if s, err := b.openAs(loc, b.schema-1, nil); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "schema") {
		t.Errorf("newer schema: got %v", err)
		if err == nil {
			_ = s.Close()
		}
	}
	// A migration runs once, and the version moves on.
	calls := 0
	for range 2 {
		s, err := b.openAs(loc, b.schema+1, func() error { calls++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		st, _ := s.Stats(ctx)
		_ = s.Close()
		if st.Schema != b.schema+1 || st.Images != 1 {
			t.Errorf("after migration: got %+v, want schema %d and the image", st, b.schema+1)
		}
	}
	if calls != 1 || !b.marked(t, loc) {
		t.Errorf("migration ran %d times (marked: %v), want once", calls, b.marked(t, loc))
	}
	// This build now finds a newer schema there.
	if s, err := b.open(loc, Options{}); !errors.Is(err, ErrIncompatible) {
		t.Errorf("migrated gallery opened by the older build: got %v, want ErrIncompatible", err)
		if err == nil {
			_ = s.Close()
		}
	}
	// A failing migration leaves the gallery as it was.
	loc2 := b.create(t)
	s2 := b.openStore(t, loc2, Options{})
	mustPut(t, s2, randomImage("a", 1, 2, 8))
	_ = s2.Close()
	if s, err := b.openAs(loc2, b.schema+1, func() error { return errors.New("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing migration: got %v", err)
		if err == nil {
			_ = s.Close()
		}
	}
	if b.marked(t, loc2) {
		t.Errorf("a failed migration left its marker")
	}
	s3 := b.openStore(t, loc2, Options{})
	if st, _ := s3.Stats(ctx); st.Schema != b.schema || st.Images != 1 {
		t.Errorf("after a failed migration: %+v", st)
	}
}
