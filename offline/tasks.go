package offline

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
)

// TaskEvalReport is what `uniter eval --task` measures: a fine-tuned model on one Shapes World
// task of a split, through the serving pipeline (detector, tokenizer, the task's head), with
// the same model on the image blanked out as a baseline, and the text-only baseline
// the generator computed (tasks.json).
type TaskEvalReport struct {
	Model    string               `json:"model"`
	Task     string               `json:"task"`
	Split    string               `json:"split"`
	Items    int                  `json:"items"`
	Accuracy float64              `json:"accuracy"`
	PerType  map[string]TypeScore `json:"per_type"`
	// Blanked is the accuracy with the image blanked out (every region's features and
	// location zeroed, as fill-mask's without_image): what the model gets from the text alone.
	Blanked float64 `json:"image_blanked_accuracy"`
	// TextOnly is the generator's text-only baseline: the most frequent answer per question
	// template, fitted on the other half of the images (tasks.json); 0 when not given.
	TextOnly float64 `json:"text_only_baseline,omitempty"`
	Machine  string  `json:"machine"`
}

// TypeScore is one item type's accuracy.
type TypeScore struct {
	Items    int     `json:"items"`
	Accuracy float64 `json:"accuracy"`
}

// taskItem is one item of any task, read generically: its inputs, its type and how to judge
// an answer.
type taskItem struct {
	images []string // files relative to the split folder (two for NLVR2)
	text   string
	kind   string // the item's type for the per-type table
	judge  func(ctx context.Context, b *pipeline.Bundle, in []pipeline.Input) (bool, error)
}

// EvaluateTask runs every item of task (qa, ve, nlvr2, ref) of the split in splitDir through b.
func EvaluateTask(ctx context.Context, b *pipeline.Bundle, splitDir, task string, workers int, progress func(done, total int)) (*TaskEvalReport, error) {
	items, err := readTaskItems(splitDir, task)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no %s items", splitDir, task)
	}
	rep := &TaskEvalReport{Model: b.Manifest.Name, Task: task, Split: filepath.Base(splitDir), Items: len(items),
		PerType: map[string]TypeScore{}, Machine: machineDescription()}
	rep.TextOnly = textOnlyBaseline(splitDir, task)
	// Detections once per image; the blanked copies (regions kept, features and locations
	// zeroed, as fill-mask's without_image) beside.
	type prepared struct{ full, blank *detector.Prepared }
	regions := map[string]prepared{}
	var mu sync.Mutex
	regionsOf := func(file string, blank bool) (pipeline.Input, error) {
		mu.Lock()
		p, ok := regions[file]
		mu.Unlock()
		if !ok {
			raw, err := os.ReadFile(filepath.Join(splitDir, file))
			if err != nil {
				return pipeline.Input{}, err
			}
			det, _, err := b.Detect(ctx, raw)
			if err != nil {
				return pipeline.Input{}, fmt.Errorf("%s: %w", file, err)
			}
			p = prepared{full: det.Prepared, blank: det.Prepared.Blanked()}
			mu.Lock()
			regions[file] = p
			mu.Unlock()
		}
		if blank {
			return pipeline.Input{Prepared: p.blank}, nil
		}
		return pipeline.Input{Prepared: p.full}, nil
	}
	right := make([]bool, len(items))
	blankRight := make([]bool, len(items))
	err = forEach(ctx, len(items), workers, func(i int) error {
		it := items[i]
		for pass, out := range [][]bool{right, blankRight} {
			var in []pipeline.Input
			for _, f := range it.images {
				x, err := regionsOf(f, pass == 1)
				if err != nil {
					return err
				}
				in = append(in, x)
			}
			ok, err := it.judge(ctx, b, in)
			if err != nil {
				return fmt.Errorf("%s item %d: %w", task, i, err)
			}
			out[i] = ok
		}
		if progress != nil {
			progress(i+1, len(items))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	counts := map[string][2]int{}
	for i, it := range items {
		c := counts[it.kind]
		c[0]++
		c[1] += boolInt(right[i])
		counts[it.kind] = c
		rep.Accuracy += float64(boolInt(right[i]))
		rep.Blanked += float64(boolInt(blankRight[i]))
	}
	rep.Accuracy /= float64(len(items))
	rep.Blanked /= float64(len(items))
	for k, c := range counts {
		rep.PerType[k] = TypeScore{Items: c[0], Accuracy: float64(c[1]) / float64(c[0])}
	}
	return rep, nil
}

// forEach calls fn(0) … fn(n−1) on workers goroutines and returns the first error.
func forEach(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, max(workers, 1))
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// readTaskItems reads a task's JSONL file of the split into judged items.
func readTaskItems(dir, task string) ([]taskItem, error) {
	file := shapes.TaskFile(task)
	if file == "" {
		return nil, fmt.Errorf("task %q: want one of %s", task, strings.Join(shapes.Tasks(), ", "))
	}
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return nil, fmt.Errorf("%w (generate it with `uniter synth --task %s`)", err, task)
	}
	defer f.Close()
	var out []taskItem
	err = eachLine(f, func(line []byte) error {
		switch task {
		case shapes.TaskQA:
			var q shapes.QAItem
			if err := json.Unmarshal(line, &q); err != nil {
				return err
			}
			out = append(out, taskItem{images: []string{q.Image}, text: q.Question, kind: q.Type,
				judge: func(ctx context.Context, b *pipeline.Bundle, in []pipeline.Input) (bool, error) {
					a, err := b.VQA(ctx, in[0], q.Question, 1)
					return err == nil && a.Answers[0].Answer == q.Answer, err
				}})
		case shapes.TaskVE:
			var v shapes.VEItem
			if err := json.Unmarshal(line, &v); err != nil {
				return err
			}
			out = append(out, taskItem{images: []string{v.Image}, text: v.Hypothesis, kind: v.Label,
				judge: func(ctx context.Context, b *pipeline.Bundle, in []pipeline.Input) (bool, error) {
					e, err := b.Entail(ctx, in[0], v.Hypothesis)
					return err == nil && e.Label == v.Label, err
				}})
		case shapes.TaskNLVR2:
			var n shapes.NLVR2Item
			if err := json.Unmarshal(line, &n); err != nil {
				return err
			}
			out = append(out, taskItem{images: []string{n.Left, n.Right}, text: n.Statement, kind: n.Type,
				judge: func(ctx context.Context, b *pipeline.Bundle, in []pipeline.Input) (bool, error) {
					o, err := b.NLVR2(ctx, [2]pipeline.Input{in[0], in[1]}, n.Statement)
					return err == nil && o.True == n.Label, err
				}})
		case shapes.TaskRef:
			var r shapes.RefItem
			if err := json.Unmarshal(line, &r); err != nil {
				return err
			}
			kind := "attributes"
			if r.WithRelation {
				kind = "with_relation"
			}
			out = append(out, taskItem{images: []string{r.Image}, text: r.Expression, kind: kind,
				judge: func(ctx context.Context, b *pipeline.Bundle, in []pipeline.Input) (bool, error) {
					o, err := b.Refer(ctx, in[0], r.Expression, 1)
					return err == nil && boxIoU(o.Regions[0].Box, r.Box) >= shapes.RefIoU, err
				}})
		}
		return nil
	})
	return out, err
}

func eachLine(r io.Reader, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// textOnlyBaseline reads the generator's text-only baseline of a task from tasks.json.
func textOnlyBaseline(dir, task string) float64 {
	raw, err := os.ReadFile(filepath.Join(dir, "tasks.json"))
	if err != nil {
		return 0
	}
	var info struct {
		Stats map[string]json.RawMessage `json:"stats"`
	}
	if json.Unmarshal(raw, &info) != nil {
		return 0
	}
	var s struct {
		TextOnly float64 `json:"text_only"`
	}
	if json.Unmarshal(info.Stats[task], &s) != nil {
		return 0
	}
	return s.TextOnly
}

// WriteTable writes the report as a table.
func (r *TaskEvalReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "model %s, task %s on %s: %d items\n", r.Model, r.Task, r.Split, r.Items)
	fmt.Fprintf(w, "%-24s %7s %9s\n", "type", "items", "accuracy")
	keys := slices.Collect(func(yield func(string) bool) {
		for k := range r.PerType {
			if !yield(k) {
				return
			}
		}
	})
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%-24s %7d %8.1f%%\n", k, r.PerType[k].Items, 100*r.PerType[k].Accuracy)
	}
	fmt.Fprintf(w, "%-24s %7d %8.1f%%\n", "all", r.Items, 100*r.Accuracy)
	fmt.Fprintf(w, "baselines: image blanked %.1f%%", 100*r.Blanked)
	if r.TextOnly > 0 {
		fmt.Fprintf(w, ", text only (generator) %.1f%%", 100*r.TextOnly)
	}
	fmt.Fprintf(w, "\nmachine: %s\n", r.Machine)
}
