package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/shapes"
)

// synthCmd writes a Shapes World split. It needs no config, bundle or ONNX Runtime.
func synthCmd() *cobra.Command {
	var split, out string
	var count, workers int
	var seed uint64
	var quiet bool
	var names []string
	for _, s := range shapes.KnownSplits() {
		names = append(names, fmt.Sprintf("%s (seed %d, %d images)", s.Name, s.Seed, s.Count))
	}
	cmd := &cobra.Command{
		Use:   "synth --split NAME --out DIR [--count N] [--seed S] [--workers W]",
		Short: "generate a Shapes World split: PNG images and JSONL annotations with captions and logical forms",
		Long: "Writes DIR/images/NNNNN.png, DIR/annotations.jsonl (one image per line: objects with boxes,\n" +
			"shape, colour and size; true captions and false captions with logical forms and spans) and\n" +
			"DIR/split.json. The output depends only on the seed and the count.\n\nKnown splits: " +
			strings.Join(names, ", ") + ".\nOther names need --seed and --count.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			sp, known := shapes.KnownSplit(split)
			switch {
			case known && flags.Changed("seed") && seed != sp.Seed:
				return fmt.Errorf("split %s has the fixed seed %d: use another split name for seed %d", split, sp.Seed, seed)
			case !known && (!flags.Changed("seed") || !flags.Changed("count")):
				return fmt.Errorf("split %q is not a known split: give --seed and --count", split)
			case !known:
				sp = shapes.Split{Name: split, Seed: seed}
			}
			if flags.Changed("count") {
				if count < 0 {
					return fmt.Errorf("--count must not be negative")
				}
				sp.Count = count
			}
			stderr := cmd.ErrOrStderr()
			if !quiet {
				fmt.Fprintf(stderr, "synth %s: seed %d, %d images, %d workers → %s\n", sp.Name, sp.Seed, sp.Count, workers, out)
			}
			start := time.Now()
			bar := progressBar(cmd, quiet, "synth "+sp.Name, "images")
			sum, err := shapes.WriteSplit(cmd.Context(), out, sp, shapes.Options{Workers: workers, Progress: bar.Func()})
			bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d images, %d objects, %d captions, %d false captions in %.1fs → %s\n",
				sp.Name, sum.Images, sum.Objects, sum.Captions, sum.FalseCaptions, time.Since(start).Seconds(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&split, "split", "", "split name: train, val, test-1k, test-100, or a new name with --seed and --count")
	f.StringVar(&out, "out", "", "output folder")
	f.IntVar(&count, "count", 0, "number of images (default: the known split's size)")
	f.Uint64Var(&seed, "seed", 0, "seed (fixed for the known splits)")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images made in parallel (the output does not depend on it)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress on stderr")
	_ = cmd.MarkFlagRequired("split")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
