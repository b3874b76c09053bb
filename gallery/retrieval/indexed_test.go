package retrieval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/internal/pgtest"
)

// labelledImage is an image whose regions show Shapes World labels: each region one peaked
// class and attribute distribution (a shape of a colour, sometimes uncertain).
func labelledImage(rng *rand.Rand, id string) *gallery.Image {
	n := 1 + rng.IntN(6)
	r := &gallery.Regions{Dim: 4, ClassDim: len(shapesLabels.Classes), AttrDim: len(shapesLabels.Attributes)}
	peaked := func(dim int) []float32 {
		row := make([]float32, dim)
		for j := range row {
			row[j] = rng.Float32() * 0.2
		}
		row[rng.IntN(dim)] += 0.5 + 4*rng.Float32()
		if rng.IntN(3) == 0 { // uncertain between two
			row[rng.IntN(dim)] += 1 + 2*rng.Float32()
		}
		var sum float32
		for _, v := range row {
			sum += v
		}
		for j := range row {
			row[j] /= sum
		}
		return row
	}
	for range n {
		x, y := rng.Float32()*80, rng.Float32()*80
		box := detector.Box{x, y, x + 10, y + 10}
		r.Boxes = append(r.Boxes, box)
		r.Locations = append(r.Locations, detector.Location(box, 100, 100))
		r.Confidence = append(r.Confidence, 0.9)
		r.Features = append(r.Features, 1, 2, 3, 4)
		r.ClassProbs = append(r.ClassProbs, peaked(r.ClassDim)...)
		r.AttrProbs = append(r.AttrProbs, peaked(r.AttrDim)...)
	}
	sum := sha256.Sum256([]byte(id))
	return &gallery.Image{ID: id, SHA256: hex.EncodeToString(sum[:]), Source: "test", Width: 100, Height: 100, Format: "png", Regions: r}
}

// showing is an image with one sure region per (class, attribute) pair.
func showing(pairs ...int) *gallery.Image {
	img := labelledImage(rand.New(rand.NewPCG(1, 1)), "showing")
	r := img.Regions
	n := len(pairs) / 2
	r.Boxes, r.Locations, r.Confidence, r.Features = r.Boxes[:1], r.Locations[:1], r.Confidence[:1], r.Features[:4]
	for len(r.Boxes) < n {
		r.Boxes, r.Locations, r.Confidence = append(r.Boxes, r.Boxes[0]), append(r.Locations, r.Locations[0]), append(r.Confidence, 1)
		r.Features = append(r.Features, 1, 2, 3, 4)
	}
	r.ClassProbs, r.AttrProbs = make([]float32, n*r.ClassDim), make([]float32, n*r.AttrDim)
	for i := range n {
		r.ClassProbs[i*r.ClassDim+pairs[2*i]] = 0.95
		r.ClassProbs[i*r.ClassDim] = 0.05
		r.AttrProbs[i*r.AttrDim+pairs[2*i+1]] = 0.9
		r.AttrProbs[i*r.AttrDim] = 0.1
	}
	return img
}

// queryTexts cover every kind of mention: colour+shape, counts, negation, attribute alone,
// several mentions, a count above gallery.MaxTermCount, and no label at all.
var queryTexts = []string{
	"a red circle", "a green square left of a blue star", "two yellow triangles", "there are no purple hearts",
	"something orange above a hexagon", "five white diamonds", "a red circle and a red circle", "three crosses",
	"a black heart with no green star", "a small blue square", "a red green circle", "a dog on a sofa",
}

// TestIndexedFirstStage checks the first stage that PostgreSQL's term index drives against
// the in-memory one (rankLexical over every image's summary, independent of the index): for
// each query and k, the same exact scores at every rank, and the same IDs wherever the score
// does not tie with a neighbour. Then deletes and a lexicon change.
func TestIndexedFirstStage(t *testing.T) {
	ctx := context.Background()
	store, err := gallery.OpenPostgres(ctx, pgtest.Start(t), gallery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	var images []*gallery.Image
	for i := range 400 {
		images = append(images, labelledImage(rng, fmt.Sprintf("img-%03d", (i*157)%400)))
	}
	if _, err := store.PutImages(ctx, images); err != nil {
		t.Fatal(err)
	}
	var texts []*gallery.Text
	for i := range 300 {
		texts = append(texts, &gallery.Text{ID: fmt.Sprintf("txt-%03d", i), Text: fmt.Sprintf("%s %d", queryTexts[i%len(queryTexts)], i/len(queryTexts))})
	}
	for i := range 200 { // texts with other words, so that ties are broken by more than their text
		texts = append(texts, &gallery.Text{ID: fmt.Sprintf("mix-%03d", i), Text: queryTexts[rng.IntN(len(queryTexts))] + " near " + queryTexts[rng.IntN(len(queryTexts))]})
	}
	if _, err := store.PutTexts(ctx, texts); err != nil {
		t.Fatal(err)
	}
	svc := New(store, nil, Config{Labels: shapesLabels})

	compareImages := func(what string) {
		t.Helper()
		idx, err := store.ImageIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range queryTexts {
			mentions := svc.lex.Parse(text)
			if !informative(mentions) {
				continue
			}
			score := func(e gallery.IndexEntry) float64 { return Score(mentions, &e.Labels, e.Regions) }
			for _, k := range []int{1, 5, 37, 150} {
				got, err := svc.indexedImages(ctx, store, mentions, k)
				if err != nil {
					t.Fatal(err)
				}
				want := rankLexical(len(idx), k, func(i int) string { return idx[i].ID }, func(i int) float64 { return score(idx[i]) })
				if len(got) != len(want) {
					t.Fatalf("%s: %q k=%d: %d candidates, want %d", what, text, k, len(got), len(want))
				}
				wantScores := make([]float64, len(want))
				for r, i := range want {
					wantScores[r] = score(idx[i])
				}
				for r := range want {
					if s := score(got[r]); s != wantScores[r] {
						t.Fatalf("%s: %q k=%d rank %d: %s scores %v, want %s at %v", what, text, k, r, got[r].ID, s, idx[want[r]].ID, wantScores[r])
					}
					tied := r > 0 && wantScores[r-1] == wantScores[r] || r+1 < len(want) && wantScores[r+1] == wantScores[r]
					if !tied && got[r].ID != idx[want[r]].ID {
						t.Fatalf("%s: %q k=%d rank %d: %s, want %s", what, text, k, r, got[r].ID, idx[want[r]].ID)
					}
				}
			}
		}
	}
	compareTexts := func(what string, lex *Lexicon) {
		t.Helper()
		all, err := store.AllTexts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := New(store, nil, Config{Labels: shapesLabels})
		s.lex = lex
		queries := []*gallery.Image{showing(7, 6, 4, 2), showing(7, 6, 7, 8, 4, 2, 1, 1)} // purple heart, green star, …: negations fail
		for range 8 {
			queries = append(queries, labelledImage(rng, "query"))
		}
		for q, img := range queries {
			summary := gallery.Summarize(img.Regions)
			n := img.Regions.Len()
			score := func(t *gallery.Text) float64 { return Score(lex.Parse(t.Text), &summary, n) }
			for _, k := range []int{1, 10, 64} {
				got, err := s.indexedTexts(ctx, store, &summary, n, k)
				if err != nil {
					t.Fatal(err)
				}
				want := rankLexical(len(all), k, func(i int) string { return all[i].ID }, func(i int) float64 { return score(all[i]) })
				if len(got) != len(want) {
					t.Fatalf("%s: query %d k=%d: %d candidates, want %d", what, q, k, len(got), len(want))
				}
				for r, i := range want {
					if a, b := score(got[r]), score(all[i]); a != b || math.IsNaN(a) {
						t.Fatalf("%s: query %d k=%d rank %d: %s scores %v, want %s at %v", what, q, k, r, got[r].ID, a, all[i].ID, b)
					}
				}
			}
		}
	}
	compareImages("fresh")
	compareTexts("fresh", svc.lex)

	// Deleted rows leave the index with their postings.
	for i := 0; i < 400; i += 3 {
		if err := store.DeleteImage(ctx, fmt.Sprintf("img-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 300; i += 4 {
		if err := store.DeleteText(ctx, fmt.Sprintf("txt-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Check(); err != nil {
		t.Fatal(err)
	}
	compareImages("after deletes")
	compareTexts("after deletes", svc.lex)

	// Another lexicon (colours read as shapes' synonyms are gone: "red" names nothing) reads
	// every text again, once.
	other := shapesLabels
	other.Attributes = append([]string{}, shapesLabels.Attributes...)
	other.Attributes[1] = "crimson"
	lex2 := NewLexicon(other)
	if lex2.Key() == svc.lex.Key() {
		t.Fatal("two lexicons share a key")
	}
	n, err := store.IndexTexts(ctx, lex2.Key(), func(text string) ([]int64, float64) { return keyTerms(lex2.Parse(text)) })
	if err != nil || n != 425 {
		t.Fatalf("new lexicon: read %d texts (%v), want 425", n, err)
	}
	if n, err := store.IndexTexts(ctx, lex2.Key(), func(string) ([]int64, float64) { panic("read again") }); err != nil || n != 0 {
		t.Fatalf("same lexicon: read %d texts (%v), want 0", n, err)
	}
	compareTexts("another lexicon", lex2)
	if err := store.Check(); err != nil {
		t.Fatal(err)
	}
}
