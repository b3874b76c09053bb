package main

import (
	"fmt"
	"math"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/uniter-serve/uniter/offline"
)

// extractCmd turns a Shapes World split into a pre-training split (models/uniter/data.py's
// format) with the serving pipeline, so that train-time region features are serve-time ones.
func extractCmd(load loader) *cobra.Command {
	var splitDir, out string
	var workers int
	var truthMax float64
	var quiet bool
	cmd := &cobra.Command{
		Use:   "extract --split-dir DIR --out OUT [--workers N] [--truth-max CELLS]",
		Short: "detect a Shapes World split's images with the bundle and write a pre-training split",
		Long: "Runs the serving pipeline (decode → preprocess → detector graph → region selection, as\n" +
			"`uniter regions` and the API do) over every image of a split written by `uniter synth`\n" +
			"and writes OUT in the format models/uniter/data.py reads:\n\n" +
			"  regions.npz     features/soft_labels (float16), locations/boxes (float32), offsets (int64)\n" +
			"  captions.jsonl  every true caption, tokenised by the bundle's tokenizer, with its logical form\n" +
			"  false_captions.jsonl  each image's minimal-edit false captions (text-side ITM negatives)\n" +
			"  truth.npz       truth[c, i]: caption c is true of image i (shapes.Eval); near[c, i]:\n" +
			"                  image i is a near miss of caption c (shapes.NearMiss), when\n" +
			"                  captions × images ≤ --truth-max\n" +
			"  vocab.txt       the bundle's vocabulary\n" +
			"  extract.json    bundle, provenance, split, selection settings, counts, timings\n\n" +
			"Every file but extract.json depends only on the split, the bundle and the selection\n" +
			"settings, not on --workers.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tm := int64(-1) // 0 or negative: never
			switch {
			case math.IsNaN(truthMax) || math.IsInf(truthMax, 0):
				return fmt.Errorf("--truth-max must be a number of cells")
			case truthMax >= 1:
				tm = int64(min(truthMax, math.MaxInt64/2))
			}
			return withService(cmd, load, func(s *service) error {
				stderr := cmd.ErrOrStderr()
				if !quiet {
					fmt.Fprintf(stderr, "extract %s with %s → %s\n", splitDir, s.info.Name, out)
				}
				bar := progressBar(cmd, quiet, "extract", "images")
				st, err := offline.ExtractSplit(cmd.Context(), s.bundle, splitDir, out,
					offline.ExtractOptions{Workers: workers, TruthMax: tm, Progress: bar.Func()})
				bar.Finish()
				if err != nil {
					return err
				}
				if st.TruthSkipped != "" {
					fmt.Fprintf(stderr, "no %s: %s\n", offline.ExtractTruthFile, st.TruthSkipped)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d images (%.1f img/s, %d workers), %d regions (%d–%d per image), %d captions, truth %s, %.1fs → %s\n",
					st.Images, st.ImagesPerSecond, st.Workers, st.Regions, st.RegionsMin, st.RegionsMax, st.Captions,
					map[bool]string{true: "written", false: "not written"}[st.TruthWritten], st.Seconds, out)
				if st.TruncatedCaptions > 0 {
					fmt.Fprintf(stderr, "warning: %d captions were truncated to the tokenizer's max length\n", st.TruncatedCaptions)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&splitDir, "split-dir", "", "a Shapes World split folder (annotations.jsonl, images/, split.json)")
	f.StringVar(&out, "out", "", "output folder")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images read and detected at once (graph runs are bounded by limits.max_concurrent)")
	f.Float64Var(&truthMax, "truth-max", offline.DefaultTruthMax, "write truth.npz only when captions × images ≤ this (cells); 0: never")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split-dir")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
