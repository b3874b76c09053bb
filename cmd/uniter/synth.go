package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/shapes"
)

// synthCmd writes a Shapes World split. It needs no config, bundle or ONNX Runtime.
func synthCmd() *cobra.Command {
	var split, out string
	var count, workers int
	var seed uint64
	var quiet, stats bool
	var names, tasks []string
	for _, s := range shapes.KnownSplits() {
		names = append(names, fmt.Sprintf("%s (seed %d, %d images)", s.Name, s.Seed, s.Count))
	}
	cmd := &cobra.Command{
		Use:   "synth --split NAME --out DIR [--count N] [--seed S] [--workers W] [--task qa,ve,nlvr2,ref|all [--stats]]",
		Short: "generate a Shapes World split: PNG images and JSONL annotations with captions and logical forms",
		Long: "Writes DIR/images/NNNNN.png, DIR/annotations.jsonl (one image per line: objects with boxes,\n" +
			"shape, colour and size; true captions and false captions with logical forms and spans) and\n" +
			"DIR/split.json. The output depends only on the seed and the count.\n\n" +
			"--task also writes downstream-task items about the same images, their answers computed from\n" +
			"the scenes: qa (DIR/qa.jsonl, DIR/qa_answers.txt), ve (DIR/ve.jsonl), nlvr2 (DIR/nlvr2.jsonl:\n" +
			"pairs of the split's images), ref (DIR/ref.jsonl), or all; with DIR/tasks.json (counts, answer\n" +
			"distributions, text-only baselines; --stats prints them) and DIR/task_words.txt.\n\nKnown splits: " +
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
			taskList, err := shapes.ParseTasks(tasks)
			if err != nil {
				return err
			}
			if stats && len(taskList) == 0 {
				return fmt.Errorf("--stats needs --task")
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
			if len(taskList) == 0 {
				return nil
			}
			start = time.Now()
			bar = progressBar(cmd, quiet, "tasks "+sp.Name, "images")
			info, err := shapes.WriteTasks(cmd.Context(), out, sp, taskList, shapes.Options{Workers: workers, Progress: bar.Func()})
			bar.Finish()
			if err != nil {
				return err
			}
			var counts []string
			for _, t := range info.Tasks {
				counts = append(counts, fmt.Sprintf("%d %s", info.Items[t], t))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s items in %.1fs → %s\n", sp.Name, strings.Join(counts, ", "),
				time.Since(start).Seconds(), out)
			if stats {
				printTaskStats(cmd.OutOrStdout(), info.Stats)
			}
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
	f.StringSliceVar(&tasks, "task", nil, "also write task items: qa, ve, nlvr2, ref (comma-separated or repeated) or all")
	f.BoolVar(&stats, "stats", false, "print the tasks' item counts, answer distributions and text-only baselines")
	_ = cmd.MarkFlagRequired("split")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// printTaskStats prints, per task and type, the items, the labels (answers) with their counts and
// the accuracies of the majority and the text-only (most frequent answer per template) guesses.
func printTaskStats(w io.Writer, st shapes.TaskStats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	group := func(task, typeName string, g *shapes.GroupStats, types []string) {
		if g == nil {
			return
		}
		fmt.Fprintf(tw, "%s\t%s\titems\tmajority\ttext-only\tby text\tfit\tlabels\n", task, typeName)
		row := func(name string, ls shapes.LabelStats) {
			keys := make([]string, 0, len(ls.Labels))
			for k := range ls.Labels {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				if ls.Labels[keys[i]] != ls.Labels[keys[j]] {
					return ls.Labels[keys[i]] > ls.Labels[keys[j]]
				}
				return keys[i] < keys[j]
			})
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, ls.Labels[k]))
			}
			fmt.Fprintf(tw, "\t%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%s\n", name, ls.Items, ls.Majority, ls.TextOnly,
				ls.TextOnlyText, ls.TextOnlyFit, strings.Join(parts, ", "))
		}
		for _, t := range types {
			if ls, ok := g.ByType[t]; ok {
				row(t, ls)
			}
		}
		row("all", g.LabelStats)
	}
	group("qa", "type", st.QA, shapes.QATypes())
	group("ve", "rule", st.VE, []string{shapes.RuleHolds, shapes.RuleFails, shapes.RuleHoldsAnyMaterial,
		shapes.RuleFailsAnyMaterial, shapes.RuleMaterialDecides})
	group("nlvr2", "type", st.NLVR2, shapes.NLVR2Types())
	if r := st.Ref; r != nil {
		fmt.Fprintf(tw, "ref\titems %d\twith relation %d (%.3f)\trandom object %.3f\n", r.Items, r.WithRelation,
			r.RelationShare, r.RandomObject)
	}
	tw.Flush()
}
