package offline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
	"github.com/uniter-serve/uniter/textproc"
)

// AttentionStatsOptions tune AttentionPatterns.
type AttentionStatsOptions struct {
	Images     int // the split's first Images images; 0: all
	Captions   int // true captions per image; 0: all
	Workers    int // images decoded and detected at once; 0 means 1
	Thresholds heads.PatternThresholds
	Progress   func(done, total int) // after each image, from the calling goroutine
}

// AttentionStats counts the attention patterns of every head over a split: for each image, its
// true captions are encoded with it in one batch and every head of every pair is classified.
// Its JSON form (`uniter attention-stats --json`) adds each layer's shares.
type AttentionStats struct {
	Split      string                  `json:"split"`
	Model      string                  `json:"model"`
	Images     int                     `json:"images"`
	Pairs      int                     `json:"pairs"`
	Heads      int                     `json:"heads_per_layer"`
	Thresholds heads.PatternThresholds `json:"thresholds"`
	Counts     *heads.PatternCounts    `json:"-"` // Layers[l][p]: heads of layer l with pattern p, over all pairs
	Seconds    float64                 `json:"seconds"`
}

// MarshalJSON writes the stats with the patterns in order and, per layer, their shares and
// counts in that order.
func (st *AttentionStats) MarshalJSON() ([]byte, error) {
	type plain AttentionStats
	out := struct {
		*plain
		Patterns []heads.Pattern              `json:"patterns"`
		Shares   [][heads.NumPatterns]float64 `json:"shares"`
		Counts   [][heads.NumPatterns]int     `json:"counts"`
	}{plain: (*plain)(st), Patterns: heads.Patterns(), Counts: st.Counts.Layers}
	for l := range st.Counts.Layers {
		out.Shares = append(out.Shares, st.Counts.Shares(l))
	}
	return json.Marshal(out)
}

// patternHeaders are the table's column titles, in heads.Patterns() order.
var patternHeaders = [heads.NumPatterns]string{"VERTICAL", "DIAGONAL", "VERT+DIAG", "BLOCK", "HETEROG.", "REV. BLOCK"}

// WriteTable writes the share of each pattern per layer, and over all layers, as a table.
func (st *AttentionStats) WriteTable(w io.Writer) error {
	th := st.Thresholds
	fmt.Fprintf(w, "%s on %s: %d images, %d pairs, %d heads per layer (%.1fs)\n", st.Model, st.Split, st.Images, st.Pairs, st.Heads, st.Seconds)
	fmt.Fprintf(w, "thresholds: strong %.2f, partial %.2f, combined %.2f, block %.2f, reversed %.2f, band %d\n\n",
		th.Strong, th.Partial, th.Combined, th.Block, th.Reversed, th.Band)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "LAYER\t")
	for _, h := range patternHeaders {
		fmt.Fprintf(tw, "%s\t", h)
	}
	fmt.Fprintln(tw)
	all := heads.NewPatternCounts(1)
	for l, counts := range st.Counts.Layers {
		fmt.Fprintf(tw, "%d\t", l+1)
		for _, s := range st.Counts.Shares(l) {
			fmt.Fprintf(tw, "%.1f%%\t", 100*s)
		}
		fmt.Fprintln(tw)
		for p, n := range counts {
			all.Layers[0][p] += n
		}
	}
	fmt.Fprint(tw, "all\t")
	for _, s := range all.Shares(0) {
		fmt.Fprintf(tw, "%.1f%%\t", 100*s)
	}
	fmt.Fprintln(tw)
	return tw.Flush()
}

// AttentionPatterns analyses the split in splitDir (as `uniter synth` writes it).
func AttentionPatterns(ctx context.Context, b *pipeline.Bundle, splitDir string, opts AttentionStatsOptions) (*AttentionStats, error) {
	if !b.HasAttention() {
		return nil, fmt.Errorf("attention-stats: model %s has no attention graph", b.Manifest.Name)
	}
	if !b.HasDetector() {
		return nil, fmt.Errorf("attention-stats: model %s has no detector: attention statistics need images", b.Manifest.Name)
	}
	if err := opts.Thresholds.Validate(); err != nil {
		return nil, err
	}
	recs, err := shapes.ReadRecords(splitDir)
	if err != nil {
		return nil, err
	}
	if opts.Images > 0 && opts.Images < len(recs) {
		recs = recs[:opts.Images]
	}
	workers := max(opts.Workers, 1)
	start := time.Now()
	st := &AttentionStats{Split: filepath.Base(filepath.Clean(splitDir)), Model: b.Manifest.Name,
		Counts: heads.NewPatternCounts(b.Manifest.Model.NumHiddenLayers), Heads: b.Manifest.Model.NumAttentionHeads,
		Thresholds: opts.Thresholds}
	err = detectAll(ctx, b, splitDir, recs, workers, func(i int, det *detector.Detection) error {
		pairs, err := captionPairs(b, recs[i], det, opts.Captions)
		if err != nil {
			return err
		}
		e, err := b.Encode(ctx, pairs, true)
		if err != nil {
			return err
		}
		for p := range pairs {
			a, err := b.ClassifyAttention(e, p, opts.Thresholds)
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
func captionPairs(b *pipeline.Bundle, r shapes.Record, det *detector.Detection, n int) ([]pipeline.Pair, error) {
	caps := r.Captions
	if n > 0 && n < len(caps) {
		caps = caps[:n]
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("image %d has no captions", r.ID)
	}
	pairs := make([]pipeline.Pair, len(caps))
	for j, c := range caps {
		enc, err := tokenize(b, fmt.Sprintf("image %d caption %d", r.ID, j), c.Text)
		if err != nil {
			return nil, err
		}
		pairs[j] = pipeline.Pair{Text: enc, Regions: det.Prepared}
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

// tokenize is Bundle.Tokenize with the caption named in its error.
func tokenize(b *pipeline.Bundle, what, text string) (*textproc.Encoding, error) {
	enc, err := b.Tokenize(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return enc, nil
}
