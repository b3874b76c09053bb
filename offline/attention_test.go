package offline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
)

// loadFixture opens the committed tiny random-weight bundle for one test.
func loadFixture(t *testing.T) *pipeline.Bundle {
	t.Helper()
	b, err := pipeline.Load(testenv.Env(t), testenv.FixtureBundle(t), pipeline.Options{MaxRegions: 100, MaxTexts: 8})
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

// TestAttentionStats counts every head of every (image, caption) pair of a small split.
func TestAttentionStats(t *testing.T) {
	b := loadFixture(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "split")
	if _, err := shapes.WriteSplit(ctx, dir, shapes.Split{Name: "attn", Seed: 11, Count: 3}, shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	var progress []int
	st, err := AttentionPatterns(ctx, b, dir, AttentionStatsOptions{Captions: 2, Workers: 2,
		Thresholds: heads.DefaultPatternThresholds(), Progress: func(done, total int) {
			if total != 3 {
				t.Errorf("progress total %d, want 3", total)
			}
			progress = append(progress, done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Images != 3 || st.Pairs != 6 || st.Heads != b.Manifest.Model.NumAttentionHeads {
		t.Errorf("got %d images, %d pairs, %d heads; want 3, 6, %d", st.Images, st.Pairs, st.Heads, b.Manifest.Model.NumAttentionHeads)
	}
	if len(progress) != 3 || progress[2] != 3 {
		t.Errorf("progress calls %v, want 1, 2, 3", progress)
	}
	if len(st.Counts.Layers) != b.Manifest.Model.NumHiddenLayers {
		t.Fatalf("%d layers counted, want %d", len(st.Counts.Layers), b.Manifest.Model.NumHiddenLayers)
	}
	for l, counts := range st.Counts.Layers {
		n := 0
		for _, c := range counts {
			n += c
		}
		if n != st.Pairs*st.Heads {
			t.Errorf("layer %d: %d heads counted, want %d pairs × %d heads", l, n, st.Pairs, st.Heads)
		}
	}

	// Bad thresholds and a folder without a split are errors, not panics.
	bad := heads.DefaultPatternThresholds()
	bad.Block = 2
	if _, err := AttentionPatterns(ctx, b, dir, AttentionStatsOptions{Thresholds: bad}); err == nil {
		t.Error("invalid thresholds: got no error")
	}
	if _, err := AttentionPatterns(ctx, b, t.TempDir(), AttentionStatsOptions{Thresholds: heads.DefaultPatternThresholds()}); err == nil {
		t.Error("folder without annotations: got no error")
	}
}

func TestEnsureSplit(t *testing.T) {
	ctx := context.Background()
	if _, err := EnsureSplit(ctx, t.TempDir(), "no-such-split"); err == nil {
		t.Error("unknown split without annotations: got no error")
	}
	dir := t.TempDir()
	if _, err := shapes.WriteSplit(ctx, dir, shapes.Split{Name: "x", Seed: 1, Count: 1}, shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	gen, err := EnsureSplit(ctx, dir, "no-such-split")
	if err != nil || gen {
		t.Errorf("existing split: generated %v, err %v; want false, nil", gen, err)
	}
}
