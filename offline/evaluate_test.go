package offline

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
	"github.com/uniter-serve/uniter/textproc"
)

func TestRecallAtK(t *testing.T) {
	// 3 captions × 12 images; logits row-major by caption.
	const C, N = 3, 12
	logits := [C][N]float32{
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -2}, // true image 0 is first: R@1
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1, -2}, // true image 6 is 7th: R@10 only
		{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},   // all tied: index order; true image 11 is 12th: miss
	}
	truth := make([]byte, C*N)
	truth[0*N+0] = 1
	truth[1*N+6] = 1
	truth[2*N+11] = 1
	m := make([]heads.Match, C*N)
	for c := range C {
		for i := range N {
			m[c*N+i] = heads.Match{Logit: logits[c][i]}
		}
	}
	ir1, ir5, ir10, tr1, tr5, tr10 := recallAtK(m, truth, C, N)
	if ir1 != 1.0/3 || ir5 != 1.0/3 || ir10 != 2.0/3 {
		t.Errorf("image retrieval %v %v %v, want 1/3 1/3 2/3", ir1, ir5, ir10)
	}
	// Text retrieval: image 0 ranks captions 0 (9), 1 (9, tie → index 0 first), 2 (5): caption 0
	// true → R@1. Image 6: captions 2 (5), 0 (3), 1 (3): caption 1 true, 3rd → R@5. Image 11:
	// caption 2 (5) first → R@1. The other 9 images have no true caption: misses.
	if tr1 != 2.0/12 || tr5 != 3.0/12 || tr10 != 3.0/12 {
		t.Errorf("text retrieval %v %v %v, want 2/12 3/12 3/12", tr1, tr5, tr10)
	}
}

func TestFalseImage(t *testing.T) {
	row := []byte{1, 0, 1, 1, 0}
	for seed := range uint64(50) {
		j := falseImage(row, seed)
		if j != 1 && j != 4 {
			t.Fatalf("seed %d: image %d is not false", seed, j)
		}
		if falseImage(row, seed) != j {
			t.Fatal("not deterministic")
		}
	}
	if j := falseImage([]byte{1, 1}, 3); j != -1 {
		t.Fatalf("all true: got %d", j)
	}
	// Only one false image among many: still found (the fallback scan).
	big := make([]byte, 10000)
	for i := range big {
		big[i] = 1
	}
	big[7777] = 0
	if j := falseImage(big, 1); j != 7777 {
		t.Fatalf("got %d, want 7777", j)
	}
}

func TestBoxIoUAndSpanTokens(t *testing.T) {
	if v := boxIoU(detector.Box{0, 0, 10, 10}, [4]float64{5, 0, 15, 10}); math.Abs(v-1.0/3) > 1e-9 {
		t.Errorf("IoU %v, want 1/3", v)
	}
	if v := boxIoU(detector.Box{0, 0, 10, 10}, [4]float64{10, 0, 20, 10}); v != 0 {
		t.Errorf("touching boxes: IoU %v", v)
	}
	toks := []textproc.Token{{Special: true}, {Start: 0, End: 1}, {Start: 2, End: 5}, {Start: 5, End: 8}, {Start: 9, End: 15}, {Start: 15, End: 15, Special: true}}
	if got := spanTokens(toks, 2, 8); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("span [2,8): tokens %v, want [2 3]", got)
	}
}

// TestEvaluateFixture runs the whole evaluation on a 4-image split with the fixture bundle
// (random weights: only the bookkeeping is checked, against counts from the annotations).
func TestEvaluateFixture(t *testing.T) {
	b := loadFixture(t)
	dir := filepath.Join(t.TempDir(), "tiny")
	if _, err := shapes.WriteSplit(context.Background(), dir, shapes.Split{Name: "tiny", Seed: 77, Count: 4}, shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	recs, err := shapes.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	var captions, nouns, colors int
	for _, r := range recs {
		captions += len(r.Captions)
		for _, c := range r.Captions {
			for _, s := range c.Spans {
				if len(s.Objects) > 0 && s.Kind == shapes.KindShape {
					nouns++
				} else if len(s.Objects) > 0 && s.Kind == shapes.KindColor {
					colors++
				}
			}
		}
	}
	stages := map[string]int{}
	// A low IoU bar, so that the random detector's boxes hit objects and the grounding checks
	// below compare non-zero rates.
	const iou = 0.05
	rep, err := Evaluate(context.Background(), b, dir, EvalOptions{Retrieval: true, ScoreBatch: 7, Workers: 2, GroundingIoU: iou,
		Progress: func(stage string, done, total int) { stages[stage] = done }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images != 4 || rep.Captions != captions || rep.ITMPairs != 2*captions || !rep.Retrieval || rep.ScoredPairs != 4*captions {
		t.Errorf("report %+v: want 4 images, %d captions, %d ITM pairs, %d scored", rep, captions, 2*captions, 4*captions)
	}
	if rep.GroundingNounSpans != nouns || rep.GroundingColorSpans != colors {
		t.Errorf("grounding spans %d nouns %d colours, annotations have %d and %d", rep.GroundingNounSpans, rep.GroundingColorSpans, nouns, colors)
	}
	for _, v := range []float64{rep.ITMAccuracy, rep.IRR1, rep.IRR5, rep.IRR10, rep.TRR1, rep.TRR10, rep.GroundingNoun, rep.GroundingColor} {
		if v < 0 || v > 1 || math.IsNaN(v) {
			t.Errorf("rate %v out of [0, 1]", v)
		}
	}
	// R@1 by template adds up to R@1 over all captions.
	n, hits := 0, 0.0
	for tmpl, c := range rep.CaptionsByTemplate {
		n += c
		hits += rep.IRR1ByTemplate[tmpl] * float64(c)
	}
	if n != captions || math.Abs(hits/float64(n)-rep.IRR1) > 1e-9 {
		t.Errorf("R@1 by template %v over %v captions gives %v, R@1 is %v over %d", rep.IRR1ByTemplate, rep.CaptionsByTemplate, hits/float64(n), rep.IRR1, captions)
	}
	if rep.IRR1 > rep.IRR5 || rep.IRR5 > rep.IRR10 || rep.TRR1 > rep.TRR5 || rep.TRR5 > rep.TRR10 {
		t.Errorf("recall not monotone in K: %+v", rep)
	}
	if stages["detect"] != 4 || stages["retrieval"] != 4*captions || stages["grounding"] != captions {
		t.Errorf("progress %v", stages)
	}

	// Minimal edits, recomputed through the API's path: each image's non-random false captions
	// scored by Match on the image file.
	rejected, total := map[string]int{}, map[string]int{}
	all, n := 0, 0
	for _, r := range recs {
		data, err := os.ReadFile(filepath.Join(dir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range r.FalseCaptions {
			if f.Edit == shapes.EditRandom {
				continue
			}
			out, err := b.Match(context.Background(), pipeline.Input{Image: data}, []string{f.Text})
			if err != nil {
				t.Fatal(err)
			}
			n++
			total[f.Edit]++
			if out.Results[0].Score <= 0.5 {
				rejected[f.Edit]++
				all++
			}
		}
	}
	if n == 0 || rep.MinimalEditCaptions != n || len(rep.MinimalEditByKind) != len(total) {
		t.Fatalf("minimal edits: report %d captions %v, annotations %d %v", rep.MinimalEditCaptions, rep.MinimalEditByKind, n, total)
	}
	if rep.MinimalEditRejection != float64(all)/float64(n) {
		t.Errorf("minimal-edit rejection %v, Match gives %d/%d", rep.MinimalEditRejection, all, n)
	}
	for kind, c := range total {
		if got := rep.MinimalEditByKind[kind]; got != float64(rejected[kind])/float64(c) {
			t.Errorf("%s edits: rejection %v, Match gives %d/%d", kind, got, rejected[kind], c)
		}
	}

	checkEditProbe(t, b, dir, recs, rep)

	// Grounding, recomputed through /v1/align's path: each true caption aligned one at a time
	// by Align with attention, each span's word looked up in its word regions (OT and
	// attention), and chance counted over the alignment's regions.
	if !b.HasAttention() || rep.GroundingNounAttention == nil || rep.GroundingColorAttention == nil {
		t.Fatalf("the fixture has an attention graph but the report has no attention grounding")
	}
	var hit [2][2]int // [by attention][colour]
	var chance [2]float64
	var spans [2]int
	for _, r := range recs {
		data, err := os.ReadFile(filepath.Join(dir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.Captions {
			a, err := b.Align(context.Background(), pipeline.Input{Image: data}, c.Text, pipeline.AlignOptions{Attention: true, TopRegions: 1})
			if err != nil {
				t.Fatal(err)
			}
			covers := func(reg int, sp shapes.Span) bool {
				for _, o := range sp.Objects {
					if boxIoU(a.Regions.Boxes[reg], r.Objects[o].Box) >= iou {
						return true
					}
				}
				return false
			}
			for _, sp := range c.Spans {
				if len(sp.Objects) == 0 || (sp.Kind != shapes.KindShape && sp.Kind != shapes.KindColor) {
					continue
				}
				k := boolInt(sp.Kind == shapes.KindColor)
				spans[k]++
				for by, words := range [][]heads.WordAlignment{a.WordRegions, a.AttentionWordRegions} {
					for _, w := range words {
						if a.Words[w.Word].Start == sp.Start && a.Words[w.Word].End == sp.End {
							hit[by][k] += boolInt(covers(w.Regions[0].Region, sp))
						}
					}
				}
				good := 0
				for reg := range a.Regions.Len() {
					good += boolInt(covers(reg, sp))
				}
				chance[k] += float64(good) / float64(a.Regions.Len())
			}
		}
	}
	if spans[0] != rep.GroundingNounSpans || spans[1] != rep.GroundingColorSpans || spans[0] == 0 || spans[1] == 0 {
		t.Fatalf("Align path saw %v noun/colour spans, the report %d/%d", spans, rep.GroundingNounSpans, rep.GroundingColorSpans)
	}
	if hit[0][0]+hit[0][1] == 0 || hit[1][0]+hit[1][1] == 0 || chance[0] == 0 || chance[1] == 0 {
		t.Fatalf("no grounding hits (OT %v, attention %v) or zero chance %v: the comparison below would be vacuous", hit[0], hit[1], chance)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"noun by OT", rep.GroundingNoun, float64(hit[0][0]) / float64(spans[0])},
		{"colour by OT", rep.GroundingColor, float64(hit[0][1]) / float64(spans[1])},
		{"noun by attention", *rep.GroundingNounAttention, float64(hit[1][0]) / float64(spans[0])},
		{"colour by attention", *rep.GroundingColorAttention, float64(hit[1][1]) / float64(spans[1])},
		{"noun chance", rep.GroundingNounChance, chance[0] / float64(spans[0])},
		{"colour chance", rep.GroundingColorChance, chance[1] / float64(spans[1])},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("grounding %s: report %v, Align gives %v", c.name, c.got, c.want)
		}
	}
}

// mostAligned sums the span's token rows and keeps the first region on ties.
func TestMostAligned(t *testing.T) {
	w := [][]float64{
		{0.5, 0, 0},
		{0.1, 0.3, 0.3},
		{0, 0.3, 0.3},
	}
	for _, c := range []struct {
		toks []int
		want int
	}{{[]int{0}, 0}, {[]int{1, 2}, 1}, {[]int{0, 1}, 0}, {[]int{2}, 1}} {
		if got := mostAligned(w, c.toks); got != c.want {
			t.Errorf("tokens %v: region %d, want %d", c.toks, got, c.want)
		}
	}
}

// checkEditProbe checks the report's edit probe against the probes shapes.ProbeEdits makes for
// the split's true captions, each recomputed through the API's path: Match of the caption and its
// edit on the image file. Pairs within tieEps of a decision (P(match) at 0.5, equal logits) may
// fall either way between the two paths' batches.
func checkEditProbe(t *testing.T, b *pipeline.Bundle, dir string, recs []shapes.Record, rep *EvalReport) {
	t.Helper()
	const tieEps = 1e-4
	if rep.EditProbeSkipped != "" || len(rep.EditProbe) != len(shapes.ProbeKinds()) {
		t.Fatalf("edit probe %v skipped %q: want every kind of %v", rep.EditProbe, rep.EditProbeSkipped, shapes.ProbeKinds())
	}
	type tally struct{ n, rejected, lowered, ties int }
	want := map[string]*tally{}
	changes := map[string][]float64{}
	for _, kind := range shapes.ProbeKinds() {
		want[kind] = &tally{}
	}
	for _, r := range recs {
		data, err := os.ReadFile(filepath.Join(dir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.Captions {
			for _, p := range shapes.ProbeEdits(r.Scene(), c) {
				out, err := b.Match(context.Background(), pipeline.Input{Image: data}, []string{c.Text, p.Text})
				if err != nil {
					t.Fatal(err)
				}
				orig, edit := out.Results[0], out.Results[1]
				w := want[p.Edit]
				if w == nil {
					t.Fatalf("probe %q: unknown kind %q", p.Text, p.Edit)
				}
				w.n++
				w.rejected += boolInt(edit.Score <= 0.5)
				w.lowered += boolInt(edit.Logit < orig.Logit)
				change := float64(edit.Logit) - float64(orig.Logit)
				if math.Abs(float64(edit.Score)-0.5) < tieEps || math.Abs(change) < tieEps {
					w.ties++
				}
				changes[p.Edit] = append(changes[p.Edit], change)
			}
		}
	}
	total := 0
	for kind, w := range want {
		got := rep.EditProbe[kind]
		total += got.Captions
		if got.Captions != w.n {
			t.Errorf("edit probe %s: %d captions, ProbeEdits makes %d", kind, got.Captions, w.n)
			continue
		}
		for _, v := range []float64{got.Rejected, got.Lowered} {
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Errorf("edit probe %s: rate %v out of [0, 1]", kind, v)
			}
		}
		rejected, lowered := int(math.Round(got.Rejected*float64(w.n))), int(math.Round(got.Lowered*float64(w.n)))
		if abs(rejected-w.rejected) > w.ties || abs(lowered-w.lowered) > w.ties {
			t.Errorf("edit probe %s: %d rejected, %d lowered of %d; Match gives %d and %d (%d near ties)",
				kind, rejected, lowered, w.n, w.rejected, w.lowered, w.ties)
		}
		if m := median(changes[kind]); math.Abs(got.MedianLogitChange-m) > tieEps {
			t.Errorf("edit probe %s: median logit change %v, Match gives %v", kind, got.MedianLogitChange, m)
		}
	}
	if total == 0 {
		t.Errorf("edit probe scored no captions")
	}
	t.Logf("edit probe: %+v", rep.EditProbe)
	var table strings.Builder
	rep.WriteTable(&table)
	for _, kind := range shapes.ProbeKinds() {
		if !strings.Contains(table.String(), "edit_probe "+kind) {
			t.Errorf("the table has no edit_probe %s row:\n%s", kind, table.String())
		}
	}
}

func abs(x int) int { return max(x, -x) }

// TestEditProbeSkipped: a bundle that matches by a rank head gets no edit probe, and says why.
func TestEditProbeSkipped(t *testing.T) {
	b, err := pipeline.Load(testenv.Env(t), testenv.Path(t, "testdata", "bundles", "tiny-retrieval"), pipeline.Options{MaxRegions: 100, MaxTexts: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	rep := &EvalReport{}
	if err := evalEditProbe(context.Background(), b, nil, nil, pipeline.ScoreOptions{}, rep); err != nil {
		t.Fatal(err)
	}
	if rep.EditProbe != nil || !strings.Contains(rep.EditProbeSkipped, "not ITM") {
		t.Errorf("rank-head bundle: edit probe %v, skipped %q", rep.EditProbe, rep.EditProbeSkipped)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "edit_probe") || !strings.Contains(table.String(), "skipped") {
		t.Errorf("the table does not say the probe was skipped:\n%s", table.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, -1, 2}, 2}, {[]float64{4, 1, -2, 3}, 2}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestAgreement(t *testing.T) {
	got := []heads.Match{{Score: 0.9, Logit: 2}, {Score: 0.4, Logit: -0.5}, {Score: 0.6, Logit: 0.4}, {Score: 0.1, Logit: -2}}
	ref := []heads.Match{{Score: 0.8, Logit: 1.5}, {Score: 0.45, Logit: -0.25}, {Score: 0.4, Logit: -0.4}, {Score: 0.1, Logit: -2}}
	same, maxDiff, p999 := agreement(got, ref)
	// decisions: same, same, differ, same; logit differences 0.5, 0.25, 0.8, 0
	if same != 0.75 || math.Abs(maxDiff-0.8) > 1e-6 || math.Abs(p999-0.8) > 1e-6 {
		t.Errorf("agreement = %v, %v, %v; want 0.75, 0.8, 0.8", same, maxDiff, p999)
	}
	if s, m, p := agreement(nil, nil); s != 0 || m != 0 || p != 0 {
		t.Errorf("no pairs: %v %v %v", s, m, p)
	}
}

func TestEvaluateReference(t *testing.T) {
	env := testenv.Env(t)
	load := func(dir string) *pipeline.Bundle {
		b, err := pipeline.Load(env, dir, pipeline.Options{MaxRegions: 100, MaxTexts: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	b, ref := load(testenv.FixtureBundle(t)), load(testenv.FixtureBundle(t))
	dir := filepath.Join(t.TempDir(), "tiny")
	if _, err := shapes.WriteSplit(context.Background(), dir, shapes.Split{Name: "tiny", Seed: 78, Count: 3}, shapes.Options{}); err != nil {
		t.Fatal(err)
	}
	rep, err := Evaluate(context.Background(), b, dir, EvalOptions{Retrieval: true, ScoreBatch: 5, Reference: ref})
	if err != nil {
		t.Fatal(err)
	}
	// The same graphs on the same pairs (batched alike): identical scores.
	a := rep.Agreement
	if a == nil || a.Pairs != rep.ScoredPairs || a.SameDecision != 1 || a.MaxLogitDiff != 0 || a.Precision != "fp32" ||
		a.ReferencePairsPerSecond <= 0 {
		t.Errorf("agreement with itself: %+v (%d pairs scored)", a, rep.ScoredPairs)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "agreement with "+ref.Manifest.Name) {
		t.Errorf("the table has no agreement line:\n%s", table.String())
	}
	if _, err := Evaluate(context.Background(), b, dir, EvalOptions{Reference: ref}); err == nil || !strings.Contains(err.Error(), "--no-retrieval") {
		t.Errorf("a reference without retrieval: %v, want an error naming --no-retrieval", err)
	}

	// A bundle with another vocabulary would read b's token ids as other words: refused.
	other := testenv.FixtureCopy(t, func(name string, raw []byte) []byte {
		if name != b.Manifest.Text.Vocab {
			return raw
		}
		lines := strings.SplitAfter(string(raw), "\n")
		lines[len(lines)-2], lines[len(lines)-3] = lines[len(lines)-3], lines[len(lines)-2]
		return []byte(strings.Join(lines, ""))
	})
	swapped := load(other)
	if _, err := Evaluate(context.Background(), b, dir, EvalOptions{Retrieval: true, Reference: swapped}); err == nil ||
		!strings.Contains(err.Error(), "another vocabulary") {
		t.Errorf("a reference with another vocabulary: %v, want refused", err)
	}
}
