package main

import (
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/offline"
)

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
			generated, err := offline.EnsureSplit(cmd.Context(), splitDir, split)
			if err != nil {
				return err
			}
			if generated && !quiet {
				fmt.Fprintf(stderr, "generated split %s in %s\n", split, splitDir)
			}
			return withService(cmd, load, func(s *service) error {
				opts := offline.AttentionStatsOptions{Images: images, Captions: captions, Workers: workers,
					Thresholds: heads.DefaultPatternThresholds()}
				if !quiet {
					fmt.Fprintf(stderr, "attention-stats %s with %s\n", splitDir, s.info.Name)
				}
				bar := progressBar(cmd, quiet, "attention-stats", "images")
				opts.Progress = bar.Func()
				st, err := offline.AttentionPatterns(cmd.Context(), s.bundle, splitDir, opts)
				bar.Finish()
				if err != nil {
					return err
				}
				st.Split = split
				if asJSON {
					return printJSON(cmd.OutOrStdout(), st)
				}
				return st.WriteTable(cmd.OutOrStdout())
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
