package models

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/models/shapes"
)

// Attention analysis: every head's self-attention map of one pair, labelled with the paper's
// six patterns (heads.PatternThresholds.Classify), for POST /v1/align with "attention": true,
// and the share of each pattern per layer over a Shapes World split (`uniter attention-stats`).
// Both run the bundle's encoder_attention graph, the encoder with its attention probabilities
// as an extra output.

// PairAttention is one pair's attention, without padding: S = Layout.Size() positions, the
// pair's tokens first ([CLS] … [SEP]) then its regions, in the order of Alignment.Tokens and
// Alignment.Regions.
type PairAttention struct {
	Layout        heads.AttentionLayout
	Layers, Heads int
	// Maps holds Layers × Heads maps of S × S, row-major; row q is query q's attention over
	// the S keys (each row sums to 1).
	Maps       []float32
	Patterns   []heads.Pattern           // Layers × Heads, layer-major (nil from pairMaps)
	Measures   []heads.AttentionMeasures // Layers × Heads, what each pattern was decided from
	Thresholds heads.PatternThresholds
}

// Map is head h of layer l, S × S row-major (a view into Maps: do not modify).
func (a *PairAttention) Map(l, h int) []float32 {
	S := a.Layout.Size()
	off := (l*a.Heads + h) * S * S
	return a.Maps[off : off+S*S]
}

// pairAttention is pairMaps with each head classified by th.
func (b *Bundle) pairAttention(e *encoded, i int, th heads.PatternThresholds) (*PairAttention, error) {
	a, err := b.pairMaps(e, i)
	if err != nil {
		return nil, err
	}
	a.Patterns, a.Measures, a.Thresholds = make([]heads.Pattern, a.Layers*a.Heads), make([]heads.AttentionMeasures, a.Layers*a.Heads), th
	for l := range a.Layers {
		for h := range a.Heads {
			p, am, err := heads.ClassifyAttention(a.Map(l, h), a.Layout, th)
			if err != nil {
				return nil, fmt.Errorf("layer %d head %d: %w", l, h, err)
			}
			a.Patterns[l*a.Heads+h], a.Measures[l*a.Heads+h] = p, am
		}
	}
	return a, nil
}

// pairMaps cuts pair i's unpadded maps out of the padded batch output (no patterns). The
// padded layout is [text T | regions N] per axis; the pair's own positions are its first t
// text positions and its first n region positions.
func (b *Bundle) pairMaps(e *encoded, i int) (*PairAttention, error) {
	L, H := b.Manifest.Model.NumHiddenLayers, b.Manifest.Model.NumAttentionHeads
	B, P := len(e.pairs), e.T+e.N
	if len(e.attention) != B*L*H*P*P {
		return nil, fmt.Errorf("attention output has %d values, want %d×%d×%d×%d×%d", len(e.attention), B, L, H, P, P)
	}
	t, n := len(e.pairs[i].text.Tokens), e.pairs[i].regions.Len()
	pos := make([]int, 0, t+n) // padded index of each unpadded position
	for s := range t {
		pos = append(pos, s)
	}
	for s := range n {
		pos = append(pos, e.T+s)
	}
	S := len(pos)
	a := &PairAttention{Layout: heads.AttentionLayout{Text: t, Regions: n}, Layers: L, Heads: H,
		Maps: make([]float32, L*H*S*S)}
	for l := range L {
		for h := range H {
			src := e.attention[((i*L+l)*H+h)*P*P:]
			dst := a.Map(l, h)
			for q, pq := range pos {
				row := src[pq*P : (pq+1)*P]
				for k, pk := range pos {
					dst[q*S+k] = row[pk]
				}
			}
		}
	}
	return a, nil
}

// HasAttention reports whether the bundle can return attention maps.
func (b *Bundle) HasAttention() bool { return b.attention != nil }

// AttentionStatsOptions tune AttentionStats.
type AttentionStatsOptions struct {
	Images     int // the split's first Images images; 0: all
	Captions   int // true captions per image; 0: all
	Workers    int // images decoded and detected at once; 0 means 1
	Thresholds heads.PatternThresholds
	Progress   func(done, total int) // after each image, from the calling goroutine
}

// AttentionStats counts the attention patterns of every head over a split: for each image, its
// true captions are encoded with it in one batch and every head of every pair is classified.
type AttentionStats struct {
	Counts  *heads.PatternCounts // Layers[l][p]: heads of layer l with pattern p, over all pairs
	Images  int
	Pairs   int
	Heads   int // heads per layer
	Seconds float64
}

// AttentionStats analyses the split in splitDir (as `uniter synth` writes it).
func (b *Bundle) AttentionStats(ctx context.Context, splitDir string, opts AttentionStatsOptions) (*AttentionStats, error) {
	if b.attention == nil {
		return nil, inputErr(CodeUnsupported, "model %s has no attention graph", b.Manifest.Name)
	}
	if !b.HasDetector() {
		return nil, inputErr(CodeUnsupported, "model %s has no detector: attention statistics need images", b.Manifest.Name)
	}
	if err := opts.Thresholds.Validate(); err != nil {
		return nil, err
	}
	recs, err := readAnnotations(filepath.Join(splitDir, "annotations.jsonl"))
	if err != nil {
		return nil, err
	}
	if opts.Images > 0 && opts.Images < len(recs) {
		recs = recs[:opts.Images]
	}
	workers := max(opts.Workers, 1)
	start := time.Now()
	st := &AttentionStats{Counts: heads.NewPatternCounts(b.Manifest.Model.NumHiddenLayers),
		Heads: b.Manifest.Model.NumAttentionHeads}
	err = b.detectAll(ctx, splitDir, recs, workers, func(i int, det *DetectedImage) error {
		pairs, err := b.captionPairs(recs[i], det, opts.Captions)
		if err != nil {
			return err
		}
		e, err := b.encode(ctx, pairs, true)
		if err != nil {
			return err
		}
		for p := range pairs {
			a, err := b.pairAttention(e, p, opts.Thresholds)
			if err != nil {
				return fmt.Errorf("image %d caption %d: %w", recs[i].ID, p, err)
			}
			for j, pat := range a.Patterns {
				st.Counts.Add(j/a.Heads, pat)
			}
		}
		st.Images++
		st.Pairs += len(pairs)
		if opts.Progress != nil {
			opts.Progress(st.Images, len(recs))
		}
		return nil
	})
	st.Seconds = time.Since(start).Seconds()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// captionPairs pairs an image's first n true captions (all when n <= 0) with its regions.
func (b *Bundle) captionPairs(r shapes.Record, det *DetectedImage, n int) ([]pair, error) {
	caps := r.Captions
	if n > 0 && n < len(caps) {
		caps = caps[:n]
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("image %d has no captions", r.ID)
	}
	pairs := make([]pair, len(caps))
	for j, c := range caps {
		enc, err := b.tokenize(fmt.Sprintf("image %d caption %d", r.ID, j), c.Text)
		if err != nil {
			return nil, err
		}
		pairs[j] = pair{text: enc, regions: det.Prepared}
	}
	return pairs, nil
}

// EnsureSplit makes sure dir holds a Shapes World split: when dir/annotations.jsonl is missing
// and name is a known split, the split is generated there from its fixed seed (generated is
// then true); an unknown name without the file is an error.
func EnsureSplit(ctx context.Context, dir, name string) (generated bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, "annotations.jsonl")); err == nil {
		return false, nil
	}
	sp, ok := shapes.KnownSplit(name)
	if !ok {
		return false, fmt.Errorf("%s has no annotations.jsonl and %q is not a known split to generate", dir, name)
	}
	if _, err := shapes.WriteSplit(ctx, dir, sp, shapes.Options{}); err != nil {
		return false, fmt.Errorf("generating split %s in %s: %w", name, dir, err)
	}
	return true, nil
}
