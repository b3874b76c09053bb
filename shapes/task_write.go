package shapes

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Task files in a split folder.
const (
	QAFile        = "qa.jsonl"
	QAAnswersFile = "qa_answers.txt" // QAAnswers, one per line
	VEFile        = "ve.jsonl"
	NLVR2File     = "nlvr2.jsonl"
	RefFile       = "ref.jsonl"
	TasksFile     = "tasks.json"     // TasksInfo: what was written, with TaskStats
	TaskWordsFile = "task_words.txt" // TaskVocabulary, one word per line (make_vocab --words)
)

// TaskFile is the JSONL file of a task.
func TaskFile(task string) string {
	return map[string]string{TaskQA: QAFile, TaskVE: VEFile, TaskNLVR2: NLVR2File, TaskRef: RefFile}[task]
}

// QAItems makes the questions about image index of a split with the given seed; s is its scene
// (GenerateScene(seed, index)). IDs are left 0 (WriteTasks numbers the lines).
func QAItems(seed uint64, index int, s Scene) []QAItem {
	items := qaItems(s, imageRNG(seed, index, streamQA))
	for i := range items {
		items[i].ImageID, items[i].Image = index, ImageFile(index)
	}
	return items
}

// VEItems makes the hypotheses about image index (see QAItems).
func VEItems(seed uint64, index int, s Scene) []VEItem {
	items := veItems(s, imageRNG(seed, index, streamVE))
	for i := range items {
		items[i].ImageID, items[i].Image = index, ImageFile(index)
	}
	return items
}

// NLVR2Items makes the statements whose left image is image index and right image image partner
// (NLVR2Partner(index, count)), with their scenes.
func NLVR2Items(seed uint64, index, partner int, left, right Scene) []NLVR2Item {
	items := nlvr2Items(index, left, right, imageRNG(seed, index, streamNLVR2))
	for i := range items {
		it := &items[i]
		it.LeftID, it.Left, it.RightID, it.Right = index, ImageFile(index), partner, ImageFile(partner)
	}
	return items
}

// RefItems makes the referring expressions of image index (see QAItems).
func RefItems(seed uint64, index int, s Scene) []RefItem {
	items := refItems(s, imageRNG(seed, index, streamRef))
	for i := range items {
		items[i].ImageID, items[i].Image = index, ImageFile(index)
	}
	return items
}

// TasksInfo is the content of tasks.json.
type TasksInfo struct {
	Split
	Version      string            `json:"version"`
	ImageVersion string            `json:"image_version"` // the generator Version of the images
	Tasks        []string          `json:"tasks"`
	Files        map[string]string `json:"files"`
	Items        map[string]int    `json:"items"`
	Stats        TaskStats         `json:"stats"`
}

// taskItems are one image's items of every task written.
type taskItems struct {
	qa    []QAItem
	ve    []VEItem
	nlvr2 []NLVR2Item
	ref   []RefItem
}

// WriteTasks writes the items of tasks (names from Tasks; see ParseTasks) for a split into dir:
// dir/qa.jsonl with dir/qa_answers.txt, dir/ve.jsonl, dir/nlvr2.jsonl, dir/ref.jsonl (one item per
// line, images in id order, lines numbered by id), dir/task_words.txt and dir/tasks.json. The
// items refer to the images WriteSplit writes for the same split (by file name: images/NNNNN.png)
// and are made from the same scenes; like them, they depend only on the seed and the count.
// Progress counts images.
func WriteTasks(ctx context.Context, dir string, sp Split, tasks []string, opt Options) (TasksInfo, error) {
	info := TasksInfo{Split: sp, Version: TaskVersion, ImageVersion: Version, Files: map[string]string{}, Items: map[string]int{}}
	tasks, err := ParseTasks(tasks)
	if err != nil {
		return info, err
	}
	if len(tasks) == 0 {
		return info, fmt.Errorf("shapes: no task to write")
	}
	if sp.Count < 0 {
		return info, fmt.Errorf("shapes: negative count %d", sp.Count)
	}
	info.Tasks = tasks
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return info, err
	}
	scenes := make([]Scene, sp.Count)
	if err := parallelFor(ctx, sp.Count, workers, func(i int) { scenes[i] = GenerateScene(sp.Seed, i) }, nil); err != nil {
		return info, err
	}
	want := func(t string) bool { return slices.Contains(tasks, t) }
	per := make([]taskItems, sp.Count)
	err = parallelFor(ctx, sp.Count, workers, func(i int) {
		s := scenes[i]
		if want(TaskQA) {
			per[i].qa = QAItems(sp.Seed, i, s)
		}
		if want(TaskVE) {
			per[i].ve = VEItems(sp.Seed, i, s)
		}
		if want(TaskNLVR2) {
			if j := NLVR2Partner(i, sp.Count); j >= 0 {
				per[i].nlvr2 = NLVR2Items(sp.Seed, i, j, s, scenes[j])
			}
		}
		if want(TaskRef) {
			per[i].ref = RefItems(sp.Seed, i, s)
		}
	}, opt.Progress)
	if err != nil {
		return info, err
	}
	var qa []QAItem
	var ve []VEItem
	var nl []NLVR2Item
	var ref []RefItem
	for i := range per {
		qa = append(qa, per[i].qa...)
		ve = append(ve, per[i].ve...)
		nl = append(nl, per[i].nlvr2...)
		ref = append(ref, per[i].ref...)
	}
	for i := range qa {
		qa[i].ID = i
	}
	for i := range ve {
		ve[i].ID = i
	}
	for i := range nl {
		nl[i].ID = i
	}
	for i := range ref {
		ref[i].ID = i
	}
	for _, t := range tasks {
		var n int
		switch t {
		case TaskQA:
			n, err = len(qa), writeJSONL(filepath.Join(dir, QAFile), qa)
			if err == nil {
				err = writeLines(filepath.Join(dir, QAAnswersFile), QAAnswers())
			}
			info.Stats.QA = qaStats(qa)
		case TaskVE:
			n, err = len(ve), writeJSONL(filepath.Join(dir, VEFile), ve)
			info.Stats.VE = veStats(ve)
		case TaskNLVR2:
			n, err = len(nl), writeJSONL(filepath.Join(dir, NLVR2File), nl)
			info.Stats.NLVR2 = nlvr2Stats(nl)
		case TaskRef:
			n, err = len(ref), writeJSONL(filepath.Join(dir, RefFile), ref)
			info.Stats.Ref = refStats(ref, scenes)
		}
		if err != nil {
			return info, err
		}
		info.Files[t] = TaskFile(t)
		info.Items[t] = n
	}
	if want(TaskQA) {
		info.Files["qa_answers"] = QAAnswersFile
	}
	info.Files["words"] = TaskWordsFile
	if err := writeLines(filepath.Join(dir, TaskWordsFile), TaskVocabulary()); err != nil {
		return info, err
	}
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, err
	}
	return info, writeAtomic(filepath.Join(dir, TasksFile), append(raw, '\n'))
}

// parallelFor runs fn(0 … n−1) on workers goroutines; progress (if not nil) is called with the
// number done so far, from one goroutine at a time, in increasing order.
func parallelFor(ctx context.Context, n, workers int, fn func(i int), progress func(done, total int)) error {
	var next, done atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
				if progress != nil {
					mu.Lock()
					progress(int(done.Add(1)), n)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func writeJSONL[T any](path string, items []T) error {
	var b strings.Builder
	for _, it := range items {
		line, err := json.Marshal(it)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return writeAtomic(path, []byte(b.String()))
}

func writeLines(path string, lines []string) error {
	return writeAtomic(path, []byte(strings.Join(lines, "\n")+"\n"))
}

// writeAtomic writes a file through a temporary file renamed into place.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op once renamed
	w := bufio.NewWriterSize(f, 1<<20)
	_, err = w.Write(data)
	if err2 := w.Flush(); err == nil {
		err = err2
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LabelStats describes the labels (answers) of a set of items and the baselines that do not look
// at the image.
type LabelStats struct {
	Items  int            `json:"items"`
	Labels map[string]int `json:"labels"` // how often each label (answer) is right
	// Majority is the accuracy of always giving the most frequent label.
	Majority float64 `json:"majority"`
	// TextOnly is the accuracy of the best text-only guess by template: the most frequent label of
	// the text's template (the text with its attribute words replaced by {slot}; the type's most
	// frequent label for a template not seen), fitted on the other half of the images (two folds:
	// the pairs of images 0–1, 4–5, … and 2–3, 6–7, …) so that it measures what a text-only model
	// could learn, not what it could memorise.
	TextOnly float64 `json:"text_only"`
	// TextOnlyText is the same by the exact text (falling back to the template, then the type).
	TextOnlyText float64 `json:"text_only_text"`
	// TextOnlyFit is TextOnly fitted on the items themselves: an upper bound, above TextOnly by
	// chance where templates are many and rare.
	TextOnlyFit float64 `json:"text_only_fit"`
}

// GroupStats are a task's LabelStats overall and per type (QA: question type; VE: the rule that
// decided the label; NLVR2: statement type).
type GroupStats struct {
	LabelStats
	ByType map[string]LabelStats `json:"by_type"`
}

// RefStats describe a Ref split.
type RefStats struct {
	Items         int     `json:"items"`
	WithRelation  int     `json:"with_relation"`
	RelationShare float64 `json:"relation_share"`
	// RandomObject is the expected accuracy of picking one of the image's objects at random (a
	// region-level chance baseline, with perfect boxes).
	RandomObject float64 `json:"random_object"`
	// SubjectMatches counts the items by the number of objects the subject's attributes match.
	SubjectMatches map[string]int `json:"subject_matches"`
}

// TaskStats are the statistics of the tasks written (tasks.json, uniter synth --stats).
type TaskStats struct {
	QA    *GroupStats `json:"qa,omitempty"`
	VE    *GroupStats `json:"ve,omitempty"`
	NLVR2 *GroupStats `json:"nlvr2,omitempty"`
	Ref   *RefStats   `json:"ref,omitempty"`
}

// labeled is what the statistics need of an item: its type and fold (0 or 1, by image), its
// template and text, and its label.
type labeled struct {
	typ                   string
	fold                  int
	template, text, label string
}

// statsFold is the fold of an item about image id: pairs of images alternate (NLVR2 pairs stay in
// one fold).
func statsFold(id int) int { return id / 2 % 2 }

func groupStats(items []labeled, groupBy func(labeled) string) *GroupStats {
	g := &GroupStats{LabelStats: labelStats(items), ByType: map[string]LabelStats{}}
	byType := map[string][]labeled{}
	for _, it := range items {
		byType[groupBy(it)] = append(byType[groupBy(it)], it)
	}
	for typ, its := range byType {
		g.ByType[typ] = labelStats(its)
	}
	return g
}

// counter counts labels by key.
type counter map[string]map[string]int

func (c counter) add(key, label string) {
	if c[key] == nil {
		c[key] = map[string]int{}
	}
	c[key][label]++
}

// best is the most frequent label of key (ties: the first in sort order), "" if unseen.
func (c counter) best(key string) string {
	best, n := "", 0
	for l, k := range c[key] {
		if k > n || (k == n && l < best) {
			best, n = l, k
		}
	}
	return best
}

func labelStats(items []labeled) LabelStats {
	st := LabelStats{Items: len(items), Labels: map[string]int{}}
	if len(items) == 0 {
		return st
	}
	byType, byTmpl, byText := [2]counter{{}, {}}, [2]counter{{}, {}}, [2]counter{{}, {}}
	all, both := counter{}, counter{}
	for _, it := range items {
		st.Labels[it.label]++
		all.add("", it.label)
		tk := it.typ + "\x00" + it.template
		both.add(tk, it.label)
		byType[it.fold].add(it.typ, it.label)
		byTmpl[it.fold].add(tk, it.label)
		byText[it.fold].add(tk+"\x00"+it.text, it.label)
	}
	var fit, tmpl, text int
	for _, it := range items {
		tk := it.typ + "\x00" + it.template
		if both.best(tk) == it.label {
			fit++
		}
		o := 1 - it.fold // fitted on the other fold
		guess := byTmpl[o].best(tk)
		if guess == "" {
			guess = byType[o].best(it.typ)
		}
		if guess == it.label {
			tmpl++
		}
		if g := byText[o].best(tk + "\x00" + it.text); g != "" {
			guess = g
		}
		if guess == it.label {
			text++
		}
	}
	n := float64(len(items))
	st.Majority = round4(float64(all[""][all.best("")]) / n)
	st.TextOnlyFit = round4(float64(fit) / n)
	st.TextOnly = round4(float64(tmpl) / n)
	st.TextOnlyText = round4(float64(text) / n)
	return st
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func qaStats(items []QAItem) *GroupStats {
	ls := make([]labeled, len(items))
	for i, it := range items {
		ls[i] = labeled{it.Type, statsFold(it.ImageID), it.Template, it.Question, it.Answer}
	}
	return groupStats(ls, func(l labeled) string { return l.typ })
}

func veStats(items []VEItem) *GroupStats {
	ls := make([]labeled, len(items))
	for i, it := range items {
		// The rule is not in the text: the baselines group by template alone.
		ls[i] = labeled{"", statsFold(it.ImageID), it.Template, it.Hypothesis, it.Label}
	}
	byRule := map[string][]labeled{}
	for i, it := range items {
		byRule[it.Rule] = append(byRule[it.Rule], ls[i])
	}
	g := &GroupStats{LabelStats: labelStats(ls), ByType: map[string]LabelStats{}}
	for r, l := range byRule {
		g.ByType[r] = labelStats(l)
	}
	return g
}

func nlvr2Stats(items []NLVR2Item) *GroupStats {
	ls := make([]labeled, len(items))
	for i, it := range items {
		ls[i] = labeled{it.Type, statsFold(min(it.LeftID, it.RightID)), it.Template, it.Statement, fmt.Sprint(it.Label)}
	}
	return groupStats(ls, func(l labeled) string { return l.typ })
}

func refStats(items []RefItem, scenes []Scene) *RefStats {
	st := &RefStats{Items: len(items), SubjectMatches: map[string]int{}}
	var chance float64
	for _, it := range items {
		if it.WithRelation {
			st.WithRelation++
		}
		st.SubjectMatches[fmt.Sprint(it.SubjectMatches)]++
		chance += 1 / float64(len(scenes[it.ImageID].Objects))
	}
	if len(items) > 0 {
		st.RelationShare = round4(float64(st.WithRelation) / float64(len(items)))
		st.RandomObject = round4(chance / float64(len(items)))
	}
	return st
}
