package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/progress"
	"github.com/uniter-serve/uniter/offline"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
)

// evalCmd measures the served bundle on a Shapes World split through the serving pipeline.
func evalCmd(load loader) *cobra.Command {
	var split, splitDir, dataDir, out, task, modelName, reference string
	var asJSON, noRetrieval, quiet bool
	var workers, scoreBatch, scoreWorkers int
	cmd := &cobra.Command{
		Use:   "eval --split test-1k|test-100|NAME [--split-dir DIR] [--json] [--no-retrieval]",
		Short: "measure the model on a Shapes World split: ITM, minimal edits, retrieval R@K, grounding, MLM colour probe",
		Long: "Runs every image of the split through the detector pipeline and every caption through the\n" +
			"tokenizer, exactly as the API does, and reports:\n\n" +
			"  itm_accuracy              each caption with its own image and with one image it is false of\n" +
			"  minimal_edit_rejection    share of minimal-edit false captions (one colour, shape, size,\n" +
			"                            count or relation changed) rejected on their image, and per edit\n" +
			"  edit_probe                per kind of deterministic edit of every true caption (relation_swap,\n" +
			"                            color_swap, count, size; each false on the image): captions, the\n" +
			"                            share rejected, the share whose ITM logit is below the original's,\n" +
			"                            and the median logit change; ITM-head models only\n" +
			"  ir_r1/5/10, tr_r1/5/10    image and text retrieval over the split, every caption × image pair\n" +
			"                            scored by the cross-encoder; a hit is any image (caption) the\n" +
			"                            caption is true of (by its logical form)\n" +
			"  grounding_noun/_color     share of object-referring shape (colour) spans whose most-aligned\n" +
			"                            region in the OT plan has IoU ≥ 0.5 with a referred object\n" +
			"  mlm_color_with_image      accuracy of [MASK] in place of a colour word, with the image\n" +
			"  mlm_color_without_image   ... and with the image blanked (features and locations zero)\n" +
			"  pairs_per_second          cross-encoder pairs/s of the retrieval scoring\n\n" +
			"Retrieval scores every caption × image pair (5 million on test-1k) and takes most of the time;\n" +
			"--no-retrieval leaves it out and measures everything else.\n\n" +
			"--reference DIR scores every retrieval pair again with the bundle in DIR (the same regions and\n" +
			"token ids; it must have the same vocabulary and input sizes) and adds `agreement`: the share of\n" +
			"pairs with the same match decision, the largest and 99.9th-percentile logit difference, and both\n" +
			"bundles' pairs/s in the same run. It checks an int8, fused or fp16 export against its fp32 source.\n\n" +
			"A known split (test-1k, test-100, val, train) that is not on disk is generated first from its\n" +
			"fixed seed (as `uniter synth` does) into --split-dir (default DATA/shapes/NAME).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reference != "" && (task != "" || noRetrieval) {
				return fmt.Errorf("--reference compares the bundles on the retrieval pairs: not with --task or --no-retrieval")
			}
			if splitDir == "" {
				splitDir = filepath.Join(dataDir, "shapes", split)
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "split %s in %s (generated from its seed if missing)\n", split, splitDir)
			}
			if _, err := offline.EnsureSplit(cmd.Context(), splitDir, split); err != nil {
				return err
			}
			if task != "" {
				return evalTask(cmd, load, split, splitDir, task, modelName, out, asJSON, quiet, workers)
			}
			return withService(cmd, load, func(s *service) (err error) {
				stderr := cmd.ErrOrStderr()
				opts := offline.EvalOptions{Workers: workers, Retrieval: !noRetrieval, ScoreBatch: scoreBatch, ScoreWorkers: scoreWorkers}
				if reference != "" {
					ref, lerr := pipeline.Load(s.env, reference, s.bundle.Options())
					if lerr != nil {
						return fmt.Errorf("--reference: %w", lerr)
					}
					defer func() { err = closeAfter(err, ref) }() // err: the named result
					opts.Reference = ref
				}
				finish := func() {}
				if !quiet {
					fmt.Fprintf(stderr, "eval %s on %s\n", s.info.Name, splitDir)
					opts.Progress, finish = progress.Stages(stderr, "eval")
				}
				rep, err := offline.Evaluate(cmd.Context(), s.bundle, splitDir, opts)
				finish()
				if err != nil {
					return err
				}
				rep.Split = split
				return emitReport(cmd, rep, out, asJSON)
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
	f.StringVar(&reference, "reference", "", "a bundle to score the retrieval pairs with too, reporting how the two agree (an int8, fused or fp16 export against its fp32 source)")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images decoded and detected at once")
	f.IntVar(&scoreBatch, "score-batch", pipeline.DefaultScoreBatch, "pairs per encoder run")
	f.IntVar(&scoreWorkers, "score-workers", 1, "encoder runs in flight (also bounded by limits.max_concurrent)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	f.StringVar(&task, "task", "", "measure a fine-tuned model on a Shapes World task instead: qa, ve, nlvr2 or ref "+
		"(per-type accuracy, with the image blanked and the generator's text-only baselines)")
	f.StringVar(&modelName, "model-name", "", "with --task: the loaded model to measure (config bundle and models; default: bundle)")
	_ = cmd.MarkFlagRequired("split")
	return cmd
}

// evalTask is `uniter eval --task`: the task's items of the split (written beside it first if
// missing) through the model named.
func evalTask(cmd *cobra.Command, load loader, split, splitDir, task, modelName, out string, asJSON, quiet bool, workers int) error {
	if _, err := os.Stat(filepath.Join(splitDir, shapes.TaskFile(task))); err != nil {
		sp, known := shapes.KnownSplit(split)
		if !known || shapes.TaskFile(task) == "" {
			return fmt.Errorf("%s has no %s items and %q is not a known split and task to generate (uniter synth --task)", splitDir, task, split)
		}
		if _, err := shapes.WriteTasks(cmd.Context(), splitDir, sp, []string{task}, shapes.Options{}); err != nil {
			return err
		}
	}
	return withService(cmd, load, func(s *service) error {
		b, _, err := s.pick(modelName)
		if err != nil {
			return err
		}
		bar := progressBar(cmd, quiet, "eval "+task, "items")
		rep, err := offline.EvaluateTask(cmd.Context(), b, splitDir, task, workers, bar.Func())
		bar.Finish()
		if err != nil {
			return err
		}
		rep.Split = split
		return emitReport(cmd, rep, out, asJSON)
	})
}

// emitReport writes a measurement's report to the file out (JSON, when given) and prints it:
// as JSON with asJSON, else as its table.
func emitReport(cmd *cobra.Command, rep interface{ WriteTable(io.Writer) }, out string, asJSON bool) error {
	if out != "" {
		if err := writeJSONFile(out, rep); err != nil {
			return err
		}
	}
	if asJSON {
		return printJSON(cmd.OutOrStdout(), rep)
	}
	rep.WriteTable(cmd.OutOrStdout())
	return nil
}

func writeJSONFile(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

func evalGalleryCmd(load loader) *cobra.Command {
	var splitDir, mode, direction, out string
	var candidates, queries int
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "eval-gallery --split-dir DIR [--mode exact|two_stage|both] [--candidates K] [--queries N]",
		Short: "retrieval R@1/5/10, latency and throughput of gallery search, exact and two-stage",
		Long: "Searches the gallery of data_dir with the captions of a Shapes World split (text → image,\n" +
			"the default) or with its images (image → text, --direction tr; the gallery's texts must be\n" +
			"the split's captions, `uniter index-texts`). The split's images must be in the gallery\n" +
			"(`uniter index DIR/images`); they are found by the SHA-256 of their files. A hit is any\n" +
			"image (text) the caption is true of by its logical form, as in `uniter eval`; gallery items\n" +
			"that are not in the split count as false.\n\n" +
			"--mode both runs exact and two-stage search on every query, one after the other, and\n" +
			"compares them: latency, R@10 retained, the share of exact's top 10 that two-stage keeps,\n" +
			"and the cross-encoder passes it saves. --queries runs an evenly spaced subset.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			modes := map[string][]retrieval.Mode{"exact": {retrieval.Exact}, "two_stage": {retrieval.TwoStage},
				"both": {retrieval.Exact, retrieval.TwoStage}}[mode]
			if modes == nil {
				return fmt.Errorf("--mode %q: want exact, two_stage or both", mode)
			}
			return withGallery(cmd, load, func(_ *Config, s *service, g *galleryService) error {
				bar := progressBar(cmd, quiet, "queries", "")
				rep, err := offline.EvalGallery(cmd.Context(), g.service, splitDir, offline.GalleryEvalOptions{
					Modes: modes, Direction: direction, Candidates: candidates, Queries: queries, Progress: bar.Func()})
				bar.Finish()
				if err != nil {
					return err
				}
				rep.Model = s.info.Name
				return emitReport(cmd, rep, out, asJSON)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&splitDir, "split-dir", "", "a Shapes World split folder (annotations.jsonl, images/)")
	f.StringVar(&mode, "mode", "both", "exact, two_stage or both (compared)")
	f.StringVar(&direction, "direction", "ir", "ir: captions search images; tr: images search texts")
	f.IntVar(&candidates, "candidates", 0, "first-stage candidates of two-stage search (default: search.candidates)")
	f.IntVar(&queries, "queries", 0, "run this many queries, evenly spaced (0: all)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&out, "out", "", "also write the JSON report to this file")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split-dir")
	return cmd
}
