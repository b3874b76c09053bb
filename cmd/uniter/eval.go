package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/models"
	"github.com/uniter-serve/uniter/models/shapes"
)

// evalCmd measures the served bundle on a Shapes World split through the serving pipeline.
func evalCmd(load loader) *cobra.Command {
	var split, splitDir, dataDir, out string
	var asJSON, noRetrieval, quiet bool
	var workers, scoreBatch, scoreWorkers int
	cmd := &cobra.Command{
		Use:   "eval --split test-1k|test-100|NAME [--split-dir DIR] [--json] [--no-retrieval]",
		Short: "measure the model on a Shapes World split: ITM, retrieval R@K, grounding, MLM colour probe",
		Long: "Runs every image of the split through the detector pipeline and every caption through the\n" +
			"tokenizer, exactly as the API does, and reports:\n\n" +
			"  itm_accuracy              each caption with its own image and with one image it is false of\n" +
			"  minimal_edit_rejection    share of minimal-edit false captions (one colour, shape, size,\n" +
			"                            count or relation changed) rejected on their image, and per edit\n" +
			"  ir_r1/5/10, tr_r1/5/10    image and text retrieval over the split, every caption × image pair\n" +
			"                            scored by the cross-encoder; a hit is any image (caption) the\n" +
			"                            caption is true of (by its logical form)\n" +
			"  grounding_noun/_color     share of object-referring shape (colour) spans whose most-aligned\n" +
			"                            region in the OT plan has IoU ≥ 0.5 with a referred object\n" +
			"  mlm_color_with_image      accuracy of [MASK] in place of a colour word, with the image\n" +
			"  mlm_color_without_image   ... and with the image blanked (features and locations zero)\n" +
			"  pairs_per_second          cross-encoder pairs/s of the retrieval scoring\n\n" +
			"A known split (test-1k, test-100, val, train) that is not on disk is generated first from its\n" +
			"fixed seed (as `uniter synth` does) into --split-dir (default DATA/shapes/NAME).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if splitDir == "" {
				splitDir = filepath.Join(dataDir, "shapes", split)
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "split %s in %s (generated from its seed if missing)\n", split, splitDir)
			}
			if _, err := models.EnsureSplit(cmd.Context(), splitDir, split); err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				stderr := cmd.ErrOrStderr()
				opts := models.EvalOptions{Workers: workers, Retrieval: !noRetrieval, ScoreBatch: scoreBatch, ScoreWorkers: scoreWorkers}
				if !quiet {
					fmt.Fprintf(stderr, "eval %s on %s\n", s.info.Name, splitDir)
					opts.Progress = evalProgress(stderr)
				}
				rep, err := s.bundle.Evaluate(cmd.Context(), splitDir, opts)
				if !quiet {
					fmt.Fprintln(stderr)
				}
				if err != nil {
					return err
				}
				rep.Split = split
				if out != "" {
					if err := writeJSONFile(out, rep); err != nil {
						return err
					}
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				printEvalTable(cmd.OutOrStdout(), rep)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&split, "split", "", "split name: test-1k, test-100, val, train, or a folder's name with --split-dir")
	f.StringVar(&splitDir, "split-dir", "", "the split's folder (default DATA/shapes/NAME)")
	f.StringVar(&dataDir, "data", "data", "where known splits are generated when missing (DATA/shapes/NAME)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&out, "out", "", "also write the JSON report to this file")
	f.BoolVar(&noRetrieval, "no-retrieval", false, "skip retrieval (the captions × images scoring)")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images decoded and detected at once")
	f.IntVar(&scoreBatch, "score-batch", models.DefaultScoreBatch, "pairs per encoder run")
	f.IntVar(&scoreWorkers, "score-workers", 1, "encoder runs in flight (also bounded by limits.max_concurrent)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split")
	return cmd
}

// evalProgress is a progress line per stage of the evaluation.
func evalProgress(w io.Writer) func(stage string, done, total int) {
	cur := ""
	var line func(done, total int)
	return func(stage string, done, total int) {
		if stage != cur {
			if cur != "" {
				fmt.Fprintln(w)
			}
			cur, line = stage, progressLine(w, "eval "+stage, "", time.Now(), nil)
		}
		line(done, total)
	}
}

func printEvalTable(w io.Writer, r *models.EvalReport) {
	pct := func(v float64) string { return fmt.Sprintf("%6.2f%%", 100*v) }
	fmt.Fprintf(w, "model %s, split %s: %d images, %d captions, %d regions\n", r.Model, r.Split, r.Images, r.Captions, r.Regions)
	rows := [][2]string{{"itm_accuracy", pct(r.ITMAccuracy) + fmt.Sprintf("  (%d pairs)", r.ITMPairs)}}
	if r.MinimalEditCaptions > 0 {
		kinds := make([]string, 0, len(r.MinimalEditByKind))
		for k := range r.MinimalEditByKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		by := make([]string, len(kinds))
		for i, k := range kinds {
			by[i] = fmt.Sprintf("%s %.0f%%", k, 100*r.MinimalEditByKind[k])
		}
		rows = append(rows, [2]string{"minimal_edit_rejection", pct(r.MinimalEditRejection) +
			fmt.Sprintf("  (%d captions; %s)", r.MinimalEditCaptions, strings.Join(by, ", "))})
	}
	if r.Retrieval {
		rows = append(rows,
			[2]string{"image retrieval R@1/5/10", strings.Join([]string{pct(r.IRR1), pct(r.IRR5), pct(r.IRR10)}, " ")},
			[2]string{"text retrieval R@1/5/10", strings.Join([]string{pct(r.TRR1), pct(r.TRR5), pct(r.TRR10)}, " ")})
		var by []string
		for _, t := range shapes.Templates() {
			if n := r.CaptionsByTemplate[t]; n > 0 {
				by = append(by, fmt.Sprintf("%s %.0f%% (%d)", t, 100*r.IRR1ByTemplate[t], n))
			}
		}
		rows = append(rows, [2]string{"image R@1 by template", strings.Join(by, ", ")})
	}
	rows = append(rows,
		[2]string{"grounding_noun", pct(r.GroundingNoun) + fmt.Sprintf("  (%d spans; a random region: %s)", r.GroundingNounSpans, strings.TrimSpace(pct(r.GroundingNounChance)))},
		[2]string{"grounding_color", pct(r.GroundingColor) + fmt.Sprintf("  (%d spans; a random region: %s)", r.GroundingColorSpans, strings.TrimSpace(pct(r.GroundingColorChance)))})
	if r.GroundingNounAttention != nil && r.GroundingColorAttention != nil {
		rows = append(rows,
			[2]string{"grounding_noun_attention", pct(*r.GroundingNounAttention)},
			[2]string{"grounding_color_attention", pct(*r.GroundingColorAttention)})
	}
	rows = append(rows,
		[2]string{"mlm_color_with_image", pct(r.MLMColorWithImage) + fmt.Sprintf("  (%d masks)", r.MLMColorMasks)},
		[2]string{"mlm_color_without_image", pct(r.MLMColorWithoutImage)},
		[2]string{"pairs_per_second", fmt.Sprintf("%.0f  (%d pairs scored)", r.PairsPerSecond, r.ScoredPairs)},
		[2]string{"seconds", fmt.Sprintf("%.1f", r.Seconds)})
	for _, row := range rows {
		fmt.Fprintf(w, "  %-26s %s\n", row[0], row[1])
	}
}

func writeJSONFile(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
