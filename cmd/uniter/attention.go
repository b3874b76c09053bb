package main

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/models"
)

// patternHeaders are the table's column titles, in heads.Patterns() order.
var patternHeaders = [heads.NumPatterns]string{"VERTICAL", "DIAGONAL", "VERT+DIAG", "BLOCK", "HETEROG.", "REV. BLOCK"}

// attentionStatsCmd prints the share of each attention pattern per layer over a Shapes World
// split: the paper's Figure 3 analysis.
func attentionStatsCmd(load loader) *cobra.Command {
	var split, splitDir string
	var images, captions, workers int
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "attention-stats --split NAME [--split-dir DIR] [--images N] [--captions K]",
		Short: "share of each attention pattern (vertical, diagonal, block, …) per layer over a Shapes World split",
		Long: "Runs every image of the split with its true captions through the encoder with attention\n" +
			"outputs, labels each head's map with one of the paper's six patterns (heads/attention.go\n" +
			"documents the measures and thresholds) and prints, per layer, the share of heads × pairs\n" +
			"with each pattern.\n\n" +
			"The split is read from --split-dir (default data/shapes/NAME); a known split (train, val,\n" +
			"test-1k, test-100) that is not there is generated there first from its fixed seed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if images < 0 || captions < 0 {
				return fmt.Errorf("--images and --captions must not be negative")
			}
			if splitDir == "" {
				splitDir = filepath.Join("data", "shapes", split)
			}
			stderr := cmd.ErrOrStderr()
			generated, err := models.EnsureSplit(cmd.Context(), splitDir, split)
			if err != nil {
				return err
			}
			if generated && !quiet {
				fmt.Fprintf(stderr, "generated split %s in %s\n", split, splitDir)
			}
			return withService(cmd, load, func(s *service) error {
				opts := models.AttentionStatsOptions{Images: images, Captions: captions, Workers: workers,
					Thresholds: heads.DefaultPatternThresholds()}
				printed := false
				if !quiet {
					fmt.Fprintf(stderr, "attention-stats %s with %s\n", splitDir, s.info.Name)
					opts.Progress = progressLine(stderr, "attention-stats", "images", time.Now(), &printed)
				}
				st, err := s.bundle.AttentionStats(cmd.Context(), splitDir, opts)
				if printed {
					fmt.Fprintln(stderr)
				}
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), newStatsJSON(split, s.info.Name, st, opts.Thresholds))
				}
				return printStats(cmd.OutOrStdout(), split, s.info.Name, st, opts.Thresholds)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&split, "split", "", "split name: train, val, test-1k, test-100 (generated when missing), or any split folder's name")
	f.StringVar(&splitDir, "split-dir", "", "the split's folder (default data/shapes/NAME)")
	f.IntVar(&images, "images", 0, "analyse the split's first N images; 0: all")
	f.IntVar(&captions, "captions", 0, "true captions per image; 0: all")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images decoded and detected at once")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split")
	return cmd
}

// statsJSON is attention-stats --json.
type statsJSON struct {
	Split      string                  `json:"split"`
	Model      string                  `json:"model"`
	Images     int                     `json:"images"`
	Pairs      int                     `json:"pairs"`
	Heads      int                     `json:"heads_per_layer"`
	Thresholds heads.PatternThresholds `json:"thresholds"`
	Patterns   []heads.Pattern         `json:"patterns"`
	// Layers[l] are layer l's shares in Patterns order, Counts[l] its head counts.
	Layers  [][heads.NumPatterns]float64 `json:"shares"`
	Counts  [][heads.NumPatterns]int     `json:"counts"`
	Seconds float64                      `json:"seconds"`
}

func newStatsJSON(split, model string, st *models.AttentionStats, th heads.PatternThresholds) statsJSON {
	out := statsJSON{Split: split, Model: model, Images: st.Images, Pairs: st.Pairs, Heads: st.Heads,
		Thresholds: th, Patterns: heads.Patterns(), Counts: st.Counts.Layers, Seconds: st.Seconds}
	for l := range st.Counts.Layers {
		out.Layers = append(out.Layers, st.Counts.Shares(l))
	}
	return out
}

func printStats(w io.Writer, split, model string, st *models.AttentionStats, th heads.PatternThresholds) error {
	fmt.Fprintf(w, "%s on %s: %d images, %d pairs, %d heads per layer (%.1fs)\n", model, split, st.Images, st.Pairs, st.Heads, st.Seconds)
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
