package pipeline

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/textproc"
)

// goldenImages returns the golden pairs' regions as prepared images, and their texts.
func goldenImages(t *testing.T, b *Bundle) ([]*detector.Prepared, []string) {
	t.Helper()
	g := loadGolden(t)
	var images []*detector.Prepared
	var texts []string
	for _, p := range g.Pairs {
		boxes := make([]detector.Box, len(p.Boxes))
		for j, bx := range p.Boxes {
			boxes[j] = detector.Box(bx)
		}
		reg, err := b.Prepare(detector.Regions{Width: p.Width, Height: p.Height, Boxes: boxes, Features: p.Features})
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, reg)
		texts = append(texts, p.Text)
	}
	return images, texts
}

// TestScoreMatrixEqualsMatch checks every cell of ScoreMatrix, under several batchings and
// worker counts, against Match on one image at a time (an independent batching).
func TestScoreMatrixEqualsMatch(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	ctx := context.Background()
	images, texts := goldenImages(t, b)
	texts = append(texts, "a", "the dog and the cat and the bird")
	encs := make([]*textproc.Encoding, len(texts))
	for i, s := range texts {
		e, err := b.Tokenize(s)
		if err != nil {
			t.Fatal(err)
		}
		encs[i] = e
	}
	want := make([][]float32, len(images)) // [image][text] logits from Match
	for i, img := range images {
		r := regionsOf(img)
		out, err := b.Match(ctx, Input{Regions: &r}, texts)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range out.Results {
			want[i] = append(want[i], res.Logit)
		}
	}
	for _, o := range []ScoreOptions{{}, {BatchPairs: 1}, {BatchPairs: 3, Workers: 3}} {
		calls, last := 0, 0
		o.Progress = func(done, total int) {
			calls++
			if done <= last || total != len(texts)*len(images) {
				t.Errorf("progress %d/%d after %d", done, total, last)
			}
			last = done
		}
		got, err := b.ScoreMatrix(ctx, images, encs, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(texts)*len(images) || last != len(got) || calls == 0 {
			t.Fatalf("%+v: %d cells, progress ended at %d after %d calls", o, len(got), last, calls)
		}
		for ti := range texts {
			for i := range images {
				m := got[ti*len(images)+i]
				if d := math.Abs(float64(m.Logit - want[i][ti])); d > 1e-4 {
					t.Errorf("batch %d workers %d: text %d image %d: logit %v, Match says %v", o.BatchPairs, o.Workers, ti, i, m.Logit, want[i][ti])
				}
			}
		}
	}
}

func TestScoreMatrixCancelled(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	images, texts := goldenImages(t, b)
	e, err := b.Tokenize(texts[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.ScoreMatrix(ctx, images, []*textproc.Encoding{e}, ScoreOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: got %v", err)
	}
}

// regionsOf turns prepared regions back into the caller-side form Match takes.
func regionsOf(p *detector.Prepared) detector.Regions {
	r := detector.Regions{Width: p.Width, Height: p.Height, Boxes: p.Boxes}
	for i := range p.Boxes {
		r.Features = append(r.Features, p.Features[i*p.Dim:(i+1)*p.Dim])
	}
	return r
}

// TestScorePairsEqualsMatrix: ScorePairs on a shuffled list with repeats equals the matrix.
func TestScorePairsEqualsMatrix(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	ctx := context.Background()
	images, texts := goldenImages(t, b)
	var encs []*textproc.Encoding
	for _, s := range append(texts, "a dog") {
		e, err := b.Tokenize(s)
		if err != nil {
			t.Fatal(err)
		}
		encs = append(encs, e)
	}
	matrix, err := b.ScoreMatrix(ctx, images, encs, ScoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pairs := []ScorePair{{2, 3}, {0, 0}, {1, 2}, {2, 3}, {0, 3}, {1, 0}, {2, 1}}
	got, err := b.ScorePairs(ctx, images, encs, pairs, ScoreOptions{BatchPairs: 2, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	for k, p := range pairs {
		if d := math.Abs(float64(got[k].Logit - matrix[p.Text*len(images)+p.Image].Logit)); d > 1e-4 {
			t.Errorf("pair %+v: logit %v, matrix %v", p, got[k].Logit, matrix[p.Text*len(images)+p.Image].Logit)
		}
	}
	if _, err := b.ScorePairs(ctx, images, encs, []ScorePair{{3, 0}}, ScoreOptions{}); err == nil {
		t.Error("image index out of range: no error")
	}
}
