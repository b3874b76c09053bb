package offline

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
	"github.com/uniter-serve/uniter/shapes"
	"github.com/uniter-serve/uniter/textproc"
)

// Evaluation of a bundle on a Shapes World split through the serving pipeline: every image goes
// through Detect (decode → preprocess → detector graph → selection), every caption through the
// tokenizer, every pair through the encoder and the heads — exactly what the API does.

// EvalOptions tune Evaluate.
type EvalOptions struct {
	Workers      int  // images decoded and detected at once; 0 means 1
	Retrieval    bool // score every caption × image pair (R@K); the expensive part
	ScoreBatch   int  // pairs per encoder run; 0 means pipeline.DefaultScoreBatch
	ScoreWorkers int  // encoder runs in flight; 0 means 1
	// GroundingIoU is the IoU at which a span's most-aligned region hits its object; 0 means 0.5.
	GroundingIoU float64
	// Progress reports each stage ("detect", "itm", "retrieval", "reference", "grounding", "mlm").
	Progress func(stage string, done, total int)
	// Reference, with Retrieval, scores every retrieval pair again with this bundle (the same
	// regions and token ids) and reports how the two agree (EvalReport.Agreement): an int8,
	// fused or fp16 export checked against the fp32 bundle it came from. It must read the same
	// inputs (sameInputs).
	Reference *pipeline.Bundle
}

// EvalReport is what Evaluate measured. Rates are fractions in [0, 1]; the retrieval fields are
// zero (and Retrieval false) when retrieval was not asked for.
type EvalReport struct {
	Model    string `json:"model"`
	Split    string `json:"split"`
	Images   int    `json:"images"`
	Captions int    `json:"captions"`
	Regions  int    `json:"regions"`

	// ITM: each caption with its own image and with one image it is false of (drawn by a fixed
	// seed), P(match) > 0.5 counted as "match".
	ITMAccuracy float64 `json:"itm_accuracy"`
	ITMPairs    int     `json:"itm_pairs"`

	// Minimal edits: each image's false captions that change one colour, shape, size, count or
	// relation of a true caption (shapes.FalseCaption), scored with that image; the share
	// rejected (P(match) ≤ 0.5), overall and per edit. Bag-of-words matching passes ITM on
	// random images but not these: they measure whether attributes are bound to objects.
	MinimalEditRejection float64            `json:"minimal_edit_rejection"`
	MinimalEditByKind    map[string]float64 `json:"minimal_edit_by_kind"`
	MinimalEditCaptions  int                `json:"minimal_edit_captions"`

	// Edit probe: every true caption's deterministic minimal edits (shapes.ProbeEdits: relation
	// swapped, the colours of its two objects exchanged, count one more or less, a size flipped or
	// added), each false on the caption's image, scored on that image beside the caption itself;
	// per kind (shapes.ProbeKinds). Unlike minimal_edit_*, which scores the split's one drawn false
	// caption per true caption, it takes every applicable edit and compares logits. Only for a
	// bundle that matches by its ITM head; EditProbeSkipped says why it did not run otherwise.
	EditProbe        map[string]EditProbeKind `json:"edit_probe,omitempty"`
	EditProbeSkipped string                   `json:"edit_probe_skipped,omitempty"`

	// Retrieval over the whole split, every pair scored by the cross-encoder and ranked by the
	// match logit. A hit at K: one of the top K images (captions) is one the caption is true of.
	Retrieval bool    `json:"retrieval"`
	IRR1      float64 `json:"ir_r1"`
	IRR5      float64 `json:"ir_r5"`
	IRR10     float64 `json:"ir_r10"`
	// Image retrieval R@1 of the captions of each caption template (shapes.Templates), and
	// how many captions each has: where retrieval fails.
	IRR1ByTemplate     map[string]float64 `json:"ir_r1_by_template,omitempty"`
	CaptionsByTemplate map[string]int     `json:"captions_by_template,omitempty"`
	TRR1               float64            `json:"tr_r1"`
	TRR5               float64            `json:"tr_r5"`
	TRR10              float64            `json:"tr_r10"`

	// Grounding: for each positive pair, the spans of shape words (nouns) and colour words that
	// refer to objects; a hit when the region holding most of the span's transport mass
	// overlaps a referred object with IoU ≥ GroundingIoU.
	GroundingNoun       float64 `json:"grounding_noun"`
	GroundingColor      float64 `json:"grounding_color"`
	GroundingNounSpans  int     `json:"grounding_noun_spans"`
	GroundingColorSpans int     `json:"grounding_color_spans"`
	// The same spans grounded by cross-modal attention (heads.CrossAttention) instead of the
	// transport plan; absent when the bundle has no attention graph.
	GroundingNounAttention  *float64 `json:"grounding_noun_attention,omitempty"`
	GroundingColorAttention *float64 `json:"grounding_color_attention,omitempty"`
	// Chance: the expected hit rate of a region drawn uniformly from the image's regions.
	GroundingNounChance  float64 `json:"grounding_noun_chance"`
	GroundingColorChance float64 `json:"grounding_color_chance"`

	// MLM probe: each colour word of each caption replaced by [MASK]; accuracy of the MLM
	// head's best token with the image and with the image blanked (features and locations 0).
	MLMColorWithImage    float64 `json:"mlm_color_with_image"`
	MLMColorWithoutImage float64 `json:"mlm_color_without_image"`
	MLMColorMasks        int     `json:"mlm_color_masks"`

	// PairsPerSecond: cross-encoder pairs per second of the retrieval scoring (of the ITM
	// scoring without retrieval), the encoder alone.
	PairsPerSecond float64 `json:"pairs_per_second"`
	ScoredPairs    int     `json:"scored_pairs"`

	// Agreement with EvalOptions.Reference over every retrieval pair; nil without one.
	Agreement *Agreement `json:"agreement,omitempty"`

	Seconds       float64             `json:"seconds"`
	StageSeconds  map[string]float64  `json:"stage_seconds"`
	DetectorCache pipeline.CacheStats `json:"-"`
}

// EditProbeKind is what the edit probe measured for one kind of edit.
type EditProbeKind struct {
	Captions int `json:"captions"` // edited captions scored
	// Rejected is the share of edited captions with P(match) ≤ 0.5 on their image.
	Rejected float64 `json:"rejected"`
	// Lowered is the share whose ITM logit on the image (itm_logits[1], the logit /v1/match
	// returns and retrieval ranks by) is below the original caption's.
	Lowered float64 `json:"lowered"`
	// MedianLogitChange is the median of (edited − original) ITM logit on the image.
	MedianLogitChange float64 `json:"median_logit_change"`
}

// Agreement compares the evaluated bundle's scores with a reference bundle's on the same pairs.
type Agreement struct {
	Reference          string `json:"reference"`           // the reference bundle's name
	ReferencePrecision string `json:"reference_precision"` // and its precision
	Precision          string `json:"precision"`           // the evaluated bundle's precision
	Pairs              int    `json:"pairs"`
	// SameDecision is the share of pairs whose match decision (P(match) > 0.5) is the same.
	SameDecision float64 `json:"same_decision"`
	// The absolute difference of the match logits (itm_logits[1]): largest, and 99.9th percentile.
	MaxLogitDiff  float64 `json:"max_logit_diff"`
	P999LogitDiff float64 `json:"p999_logit_diff"`
	// The reference's pairs/s on the same pairs in the same run (PairsPerSecond is the
	// evaluated bundle's), so that the two speeds are side by side.
	ReferencePairsPerSecond float64 `json:"reference_pairs_per_second"`
}

// agreement compares got with the reference's scores of the same pairs.
func agreement(got, ref []heads.Match) (same, maxDiff, p999 float64) {
	diffs := make([]float64, len(got))
	n := 0
	for i := range got {
		if (got[i].Score > 0.5) == (ref[i].Score > 0.5) {
			n++
		}
		diffs[i] = math.Abs(float64(got[i].Logit) - float64(ref[i].Logit))
	}
	if len(diffs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(diffs)
	return ratio(n, len(got)), diffs[len(diffs)-1], diffs[min(len(diffs)-1, int(math.Ceil(0.999*float64(len(diffs))))-1)]
}

// sameInputs is nil when ref reads what b reads: the same vocabulary (file and case), region
// features and locations, so that b's token ids and regions mean the same to it.
func sameInputs(b, ref *pipeline.Bundle) error {
	bm, rm := b.Manifest, ref.Manifest
	if bm.Model.FeatureDim != rm.Model.FeatureDim || bm.Model.LocationDim != rm.Model.LocationDim ||
		bm.Model.VocabSize != rm.Model.VocabSize || bm.Text.Lowercase != rm.Text.Lowercase {
		return fmt.Errorf("eval: reference %s reads other inputs than %s (features %d/%d, locations %d/%d, vocabulary %d/%d, lowercase %v/%v)",
			rm.Name, bm.Name, rm.Model.FeatureDim, bm.Model.FeatureDim, rm.Model.LocationDim, bm.Model.LocationDim,
			rm.Model.VocabSize, bm.Model.VocabSize, rm.Text.Lowercase, bm.Text.Lowercase)
	}
	bv, err := os.ReadFile(filepath.Join(b.Dir, bm.Text.Vocab))
	if err != nil {
		return err
	}
	rv, err := os.ReadFile(filepath.Join(ref.Dir, rm.Text.Vocab))
	if err != nil {
		return err
	}
	if !bytes.Equal(bv, rv) {
		return fmt.Errorf("eval: reference %s has another vocabulary than %s: token ids would mean other words", rm.Name, bm.Name)
	}
	return nil
}

// WriteTable writes the report as a two-column table.
func (r *EvalReport) WriteTable(w io.Writer) {
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
	if r.EditProbe != nil {
		for _, kind := range shapes.ProbeKinds() {
			k := r.EditProbe[kind]
			rows = append(rows, [2]string{"edit_probe " + kind, fmt.Sprintf("%s rejected, %s lowered, median logit change %+.3f  (%d captions)",
				strings.TrimSpace(pct(k.Rejected)), strings.TrimSpace(pct(k.Lowered)), k.MedianLogitChange, k.Captions)})
		}
	} else if r.EditProbeSkipped != "" {
		rows = append(rows, [2]string{"edit_probe", "skipped: " + r.EditProbeSkipped})
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
	if a := r.Agreement; a != nil {
		rows = append(rows, [2]string{"agreement with " + a.Reference,
			fmt.Sprintf("%s same decisions, logit diff max %.2e, 99.9th percentile %.2e  (%d pairs; %s vs %s; reference %.0f pairs/s)",
				strings.TrimSpace(pct(a.SameDecision)), a.MaxLogitDiff, a.P999LogitDiff, a.Pairs, a.Precision,
				a.ReferencePrecision, a.ReferencePairsPerSecond)})
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

// evalCaption is one caption of the split with what the evaluation needs.
type evalCaption struct {
	image int
	cap   shapes.Caption
	enc   *textproc.Encoding
}

// Evaluate measures the bundle on the Shapes World split in splitDir (written by `uniter synth`).
func Evaluate(ctx context.Context, b *pipeline.Bundle, splitDir string, opts EvalOptions) (*EvalReport, error) {
	start := time.Now()
	if !b.HasDetector() {
		return nil, fmt.Errorf("eval: model %s has no detector", b.Manifest.Name)
	}
	if opts.Reference != nil {
		if !opts.Retrieval {
			return nil, fmt.Errorf("eval: a reference bundle is compared on the retrieval pairs: drop --no-retrieval")
		}
		if err := sameInputs(b, opts.Reference); err != nil {
			return nil, err
		}
	}
	if opts.GroundingIoU <= 0 {
		opts.GroundingIoU = 0.5
	}
	progress := func(stage string) func(done, total int) {
		if opts.Progress == nil {
			return nil
		}
		return func(done, total int) { opts.Progress(stage, done, total) }
	}
	recs, err := shapes.ReadRecords(splitDir)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("eval: %s has no images", splitDir)
	}
	rep := &EvalReport{Model: b.Manifest.Name, Split: filepath.Base(filepath.Clean(splitDir)), Images: len(recs),
		StageSeconds: map[string]float64{}}
	stage := func(name string, t0 time.Time) { rep.StageSeconds[name] = time.Since(t0).Seconds() }

	// Detect every image (the serving pipeline), keep the encoder input and boxes.
	t0 := time.Now()
	images := make([]*detector.Prepared, len(recs))
	report := progress("detect")
	err = detectAll(ctx, b, splitDir, recs, max(opts.Workers, 1), func(i int, det *detector.Detection) error {
		images[i] = det.Prepared
		rep.Regions += det.Prepared.Len()
		if report != nil {
			report(i+1, len(recs))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	stage("detect", t0)

	var caps []evalCaption
	var lines []captionLine
	var texts []*textproc.Encoding
	for i, r := range recs {
		for k, c := range r.Captions {
			enc, err := tokenize(b, fmt.Sprintf("image %d caption %d", r.ID, k), c.Text)
			if err != nil {
				return nil, err
			}
			caps = append(caps, evalCaption{image: i, cap: c, enc: enc})
			texts = append(texts, enc)
			lines = append(lines, captionLine{Image: i, Text: c.Text, LF: c.LF, CaptionID: fmt.Sprintf("img%d-c%d", r.ID, k)})
		}
	}
	rep.Captions = len(caps)
	t0 = time.Now()
	truth, _, _, _, err := truthMatrix(ctx, recs, lines, max(opts.Workers, 1), false)
	if err != nil {
		return nil, err
	}
	stage("truth", t0)
	N := len(recs)
	sopts := pipeline.ScoreOptions{BatchPairs: opts.ScoreBatch, Workers: opts.ScoreWorkers}

	// ITM pairs: own image, and an image the caption is false of (fixed seed, per caption).
	itm := make([]pipeline.ScorePair, 0, 2*len(caps))
	for c, ec := range caps {
		itm = append(itm, pipeline.ScorePair{Image: ec.image, Text: c})
		if neg := falseImage(truth[c*N:(c+1)*N], uint64(c)); neg >= 0 {
			itm = append(itm, pipeline.ScorePair{Image: neg, Text: c})
		}
	}
	var matrix []heads.Match
	if opts.Retrieval {
		t0 = time.Now()
		sopts.Progress = progress("retrieval")
		if matrix, err = b.ScoreMatrix(ctx, images, texts, sopts); err != nil {
			return nil, err
		}
		stage("retrieval", t0)
		rep.Retrieval, rep.ScoredPairs = true, len(matrix)
		rep.PairsPerSecond = float64(len(matrix)) / rep.StageSeconds["retrieval"]
		rep.IRR1, rep.IRR5, rep.IRR10, rep.TRR1, rep.TRR5, rep.TRR10 = recallAtK(matrix, truth, len(caps), N)
		rep.IRR1ByTemplate, rep.CaptionsByTemplate = irR1ByTemplate(matrix, truth, caps, N)
		if ref := opts.Reference; ref != nil {
			t0 = time.Now()
			sopts.Progress = progress("reference")
			want, err := ref.ScoreMatrix(ctx, images, texts, sopts)
			if err != nil {
				return nil, fmt.Errorf("eval: reference %s: %w", ref.Manifest.Name, err)
			}
			stage("reference", t0)
			a := &Agreement{Reference: ref.Manifest.Name, ReferencePrecision: ref.Manifest.PrecisionName(),
				Precision: b.Manifest.PrecisionName(), Pairs: len(matrix),
				ReferencePairsPerSecond: float64(len(want)) / rep.StageSeconds["reference"]}
			a.SameDecision, a.MaxLogitDiff, a.P999LogitDiff = agreement(matrix, want)
			rep.Agreement = a
		}
	}
	t0 = time.Now()
	var itmScores []heads.Match
	if matrix != nil {
		for _, p := range itm {
			itmScores = append(itmScores, matrix[p.Text*N+p.Image])
		}
	} else {
		sopts.Progress = progress("itm")
		if itmScores, err = b.ScorePairs(ctx, images, texts, itm, sopts); err != nil {
			return nil, err
		}
		stage("itm", t0)
		rep.ScoredPairs = len(itm)
		rep.PairsPerSecond = float64(len(itm)) / rep.StageSeconds["itm"]
	}
	correct := 0
	for k, p := range itm {
		if (itmScores[k].Score > 0.5) == (truth[p.Text*N+p.Image] == 1) {
			correct++
		}
	}
	rep.ITMPairs, rep.ITMAccuracy = len(itm), ratio(correct, len(itm))
	if err := evalMinimalEdits(ctx, b, recs, images, sopts, rep); err != nil {
		return nil, err
	}
	t0 = time.Now()
	if err := evalEditProbe(ctx, b, recs, images, sopts, rep); err != nil {
		return nil, err
	}
	stage("edit_probe", t0)

	t0 = time.Now()
	if err := evalGrounding(ctx, b, recs, images, caps, opts, rep, progress("grounding")); err != nil {
		return nil, err
	}
	stage("grounding", t0)
	t0 = time.Now()
	if err := evalMLMColor(ctx, b, images, caps, opts, rep, progress("mlm")); err != nil {
		return nil, err
	}
	stage("mlm", t0)
	rep.DetectorCache = b.CacheStats()
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// imageText is a text to score on one image of the split.
type imageText struct {
	image int    // index into the split's images
	what  string // names the text in a tokenizer error
	text  string
}

// scoreOnImages tokenizes each text and scores it on its image with the match head (one
// ScorePairs call; no progress reported); out[k] is items[k]'s match.
func scoreOnImages(ctx context.Context, b *pipeline.Bundle, images []*detector.Prepared, items []imageText,
	sopts pipeline.ScoreOptions) ([]heads.Match, error) {
	if len(items) == 0 {
		return nil, nil
	}
	texts := make([]*textproc.Encoding, len(items))
	pairs := make([]pipeline.ScorePair, len(items))
	for k, it := range items {
		enc, err := tokenize(b, it.what, it.text)
		if err != nil {
			return nil, err
		}
		texts[k], pairs[k] = enc, pipeline.ScorePair{Image: it.image, Text: k}
	}
	sopts.Progress = nil
	return b.ScorePairs(ctx, images, texts, pairs, sopts)
}

// evalMinimalEdits scores every minimal-edit false caption of the split with its own image.
func evalMinimalEdits(ctx context.Context, b *pipeline.Bundle, recs []shapes.Record, images []*detector.Prepared,
	sopts pipeline.ScoreOptions, rep *EvalReport) error {
	var items []imageText
	var kinds []string
	for i, r := range recs {
		for k, f := range r.FalseCaptions {
			if f.Edit == shapes.EditRandom {
				continue
			}
			items = append(items, imageText{image: i, what: fmt.Sprintf("image %d false caption %d", r.ID, k), text: f.Text})
			kinds = append(kinds, f.Edit)
		}
	}
	rep.MinimalEditCaptions = len(items)
	if len(items) == 0 {
		return nil
	}
	scores, err := scoreOnImages(ctx, b, images, items, sopts)
	if err != nil {
		return err
	}
	rejected, total := map[string]int{}, map[string]int{}
	all := 0
	for k, m := range scores {
		total[kinds[k]]++
		if m.Score <= 0.5 {
			rejected[kinds[k]]++
			all++
		}
	}
	rep.MinimalEditRejection = ratio(all, len(items))
	rep.MinimalEditByKind = map[string]float64{}
	for kind, n := range total {
		rep.MinimalEditByKind[kind] = ratio(rejected[kind], n)
	}
	return nil
}

// evalEditProbe scores the edit probe: every true caption that has probe edits
// (shapes.ProbeEdits) on its own image, and each of its edits on that image, in one scoring run.
func evalEditProbe(ctx context.Context, b *pipeline.Bundle, recs []shapes.Record, images []*detector.Prepared,
	sopts pipeline.ScoreOptions, rep *EvalReport) error {
	if head := b.MatchHead(); head != pipeline.MatchByITM {
		rep.EditProbeSkipped = fmt.Sprintf("model %s matches by its %q head, not ITM: the probe reads the ITM head's P(match) and logit", b.Manifest.Name, head)
		if head == "" {
			rep.EditProbeSkipped = fmt.Sprintf("model %s has no ITM head", b.Manifest.Name)
		}
		return nil
	}
	type probe struct {
		kind       string
		orig, edit int // indices into items
	}
	var items []imageText
	var probes []probe
	for i, r := range recs {
		s := r.Scene()
		for k, c := range r.Captions {
			edits := shapes.ProbeEdits(s, c)
			if len(edits) == 0 {
				continue
			}
			orig := len(items)
			items = append(items, imageText{image: i, what: fmt.Sprintf("image %d caption %d", r.ID, k), text: c.Text})
			for j, e := range edits {
				probes = append(probes, probe{kind: e.Edit, orig: orig, edit: len(items)})
				items = append(items, imageText{image: i, what: fmt.Sprintf("image %d caption %d probe edit %d", r.ID, k, j), text: e.Text})
			}
		}
	}
	scores, err := scoreOnImages(ctx, b, images, items, sopts)
	if err != nil {
		return err
	}
	changes := map[string][]float64{}
	rejected, lowered := map[string]int{}, map[string]int{}
	for _, p := range probes {
		orig, edit := scores[p.orig], scores[p.edit]
		changes[p.kind] = append(changes[p.kind], float64(edit.Logit)-float64(orig.Logit))
		rejected[p.kind] += boolInt(edit.Score <= 0.5)
		lowered[p.kind] += boolInt(edit.Logit < orig.Logit)
	}
	rep.EditProbe = map[string]EditProbeKind{}
	for _, kind := range shapes.ProbeKinds() {
		n := len(changes[kind])
		rep.EditProbe[kind] = EditProbeKind{Captions: n, Rejected: ratio(rejected[kind], n), Lowered: ratio(lowered[kind], n),
			MedianLogitChange: median(changes[kind])}
	}
	return nil
}

// median is the middle value of xs (the mean of the two middle ones for an even count), 0 for none;
// xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// falseImage draws an image index whose truth cell is 0, by a generator seeded with seed; -1
// when the caption is true of every image.
func falseImage(row []byte, seed uint64) int {
	rng := rand.New(rand.NewPCG(0x5eed, seed))
	for range 64 {
		if j := rng.IntN(len(row)); row[j] == 0 {
			return j
		}
	}
	var negs []int
	for j, v := range row {
		if v == 0 {
			negs = append(negs, j)
		}
	}
	if len(negs) == 0 {
		return -1
	}
	return negs[rng.IntN(len(negs))]
}

// recallAtK computes image retrieval (each caption ranks the images) and text retrieval (each
// image ranks the captions) Recall@1/5/10 from the logits matrix (captions-major). Ties are
// broken by the lower index, so the result is deterministic.
func recallAtK(m []heads.Match, truth []byte, C, N int) (ir1, ir5, ir10, tr1, tr5, tr10 float64) {
	hits := func(scores func(k int) float32, true_ func(k int) bool, n int) (h1, h5, h10 int) {
		idx := make([]int, n)
		for k := range idx {
			idx[k] = k
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores(b), scores(a)) })
		first := math.MaxInt // no true item: a miss at every K
		for r, k := range idx {
			if true_(k) {
				first = r
				break
			}
		}
		return boolInt(first < 1), boolInt(first < 5), boolInt(first < 10)
	}
	var i1, i5, i10, t1, t5, t10 int
	for c := range C {
		a, b, d := hits(func(i int) float32 { return m[c*N+i].Logit }, func(i int) bool { return truth[c*N+i] == 1 }, N)
		i1, i5, i10 = i1+a, i5+b, i10+d
	}
	for i := range N {
		a, b, d := hits(func(c int) float32 { return m[c*N+i].Logit }, func(c int) bool { return truth[c*N+i] == 1 }, C)
		t1, t5, t10 = t1+a, t5+b, t10+d
	}
	return ratio(i1, C), ratio(i5, C), ratio(i10, C), ratio(t1, N), ratio(t5, N), ratio(t10, N)
}

// irR1ByTemplate is image retrieval R@1 per caption template: a caption's hit is its top image
// (the first of the highest logits, as recallAtK ranks) being one it is true of.
func irR1ByTemplate(m []heads.Match, truth []byte, caps []evalCaption, N int) (map[string]float64, map[string]int) {
	hits, counts := map[string]int{}, map[string]int{}
	for c, ec := range caps {
		best := 0
		for i := 1; i < N; i++ {
			if m[c*N+i].Logit > m[c*N+best].Logit {
				best = i
			}
		}
		counts[ec.cap.Template]++
		hits[ec.cap.Template] += int(truth[c*N+best])
	}
	r1 := make(map[string]float64, len(counts))
	for t, n := range counts {
		r1[t] = ratio(hits[t], n)
	}
	return r1, counts
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// encodeEach runs the encoder (with its attention maps when withAttention) over pairs in
// batches and calls fn for each batch with the index of its first pair.
func encodeEach(ctx context.Context, b *pipeline.Bundle, pairs []pipeline.Pair, batch int, withAttention bool, fn func(e *pipeline.Encoded, first int) error) error {
	if batch <= 0 {
		batch = pipeline.DefaultScoreBatch
	}
	for lo := 0; lo < len(pairs); lo += batch {
		e, err := b.Encode(ctx, pairs[lo:min(lo+batch, len(pairs))], withAttention)
		if err != nil {
			return err
		}
		if err := fn(e, lo); err != nil {
			return err
		}
	}
	return nil
}

// spanTokens are the tokens inside the text span [start, end) (code points).
func spanTokens(tokens []textproc.Token, start, end int) []int {
	var out []int
	for i, t := range tokens {
		if !t.Special && t.Start >= start && t.End <= end && t.Start < t.End {
			out = append(out, i)
		}
	}
	return out
}

// evalGrounding aligns every caption with its own image by optimal transport (as /v1/align
// does) and checks, for each shape and colour span that refers to objects, the region with
// most of the span's transport mass against the objects' boxes. When the bundle has an
// attention graph, the same spans are also grounded by cross-modal attention.
func evalGrounding(ctx context.Context, b *pipeline.Bundle, recs []shapes.Record, images []*detector.Prepared, caps []evalCaption,
	opts EvalOptions, rep *EvalReport, report func(done, total int)) error {
	pairs := make([]pipeline.Pair, len(caps))
	for c, ec := range caps {
		pairs[c] = pipeline.Pair{Text: ec.enc, Regions: images[ec.image]}
	}
	withAttention := b.HasAttention()
	var hits [2][2]int    // [by attention][colour span]
	var chance [2]float64 // [colour span]: summed share of the image's regions that hit
	err := encodeEach(ctx, b, pairs, opts.ScoreBatch, withAttention, func(e *pipeline.Encoded, first int) error {
		for k := range e.Pairs {
			ec := caps[first+k]
			ot, err := e.Transport(k, true)
			if err != nil {
				return err
			}
			alignments := [][][]float64{ot.Plan}
			if withAttention {
				a, err := b.AttentionMaps(e, k)
				if err != nil {
					return err
				}
				cross, err := heads.CrossAttention(a.Maps, a.Layers, a.Heads, a.Layout)
				if err != nil {
					return err
				}
				alignments = append(alignments, cross)
			}
			reg := images[ec.image]
			for _, sp := range ec.cap.Spans {
				if (sp.Kind != shapes.KindShape && sp.Kind != shapes.KindColor) || len(sp.Objects) == 0 {
					continue
				}
				toks := spanTokens(ec.enc.Tokens, sp.Start, sp.End)
				if len(toks) == 0 { // cut by truncation
					continue
				}
				color := sp.Kind == shapes.KindColor
				if color {
					rep.GroundingColorSpans++
				} else {
					rep.GroundingNounSpans++
				}
				hit := func(r int) bool {
					for _, o := range sp.Objects {
						if boxIoU(reg.Boxes[r], recs[ec.image].Objects[o].Box) >= opts.GroundingIoU {
							return true
						}
					}
					return false
				}
				for by, w := range alignments {
					hits[by][boolInt(color)] += boolInt(hit(mostAligned(w, toks)))
				}
				good := 0
				for r := range reg.Len() {
					good += boolInt(hit(r))
				}
				chance[boolInt(color)] += float64(good) / float64(reg.Len())
			}
		}
		if report != nil {
			report(first+len(e.Pairs), len(pairs))
		}
		return nil
	})
	rep.GroundingNoun = ratio(hits[0][0], rep.GroundingNounSpans)
	rep.GroundingColor = ratio(hits[0][1], rep.GroundingColorSpans)
	if rep.GroundingNounSpans > 0 {
		rep.GroundingNounChance = chance[0] / float64(rep.GroundingNounSpans)
	}
	if rep.GroundingColorSpans > 0 {
		rep.GroundingColorChance = chance[1] / float64(rep.GroundingColorSpans)
	}
	if withAttention {
		noun, color := ratio(hits[1][0], rep.GroundingNounSpans), ratio(hits[1][1], rep.GroundingColorSpans)
		rep.GroundingNounAttention, rep.GroundingColorAttention = &noun, &color
	}
	return err
}

// mostAligned is the region holding most of the tokens' weight in a tokens × regions alignment
// (the first on ties).
func mostAligned(weights [][]float64, toks []int) int {
	best, bestMass := 0, math.Inf(-1)
	for r := range weights[toks[0]] {
		mass := 0.0
		for _, t := range toks {
			mass += weights[t][r]
		}
		if mass > bestMass {
			best, bestMass = r, mass
		}
	}
	return best
}

// boxIoU is the intersection over union of a detected box and an annotated one (pixels).
func boxIoU(a detector.Box, b [4]float64) float64 {
	ix := min(float64(a[2]), b[2]) - max(float64(a[0]), b[0])
	iy := min(float64(a[3]), b[3]) - max(float64(a[1]), b[1])
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := ix * iy
	areaA := float64(a[2]-a[0]) * float64(a[3]-a[1])
	areaB := (b[2] - b[0]) * (b[3] - b[1])
	return inter / (areaA + areaB - inter)
}

// evalMLMColor masks each colour word of each caption (one at a time) and checks the MLM head's
// best non-special token against it, with the caption's image and with the image blanked.
func evalMLMColor(ctx context.Context, b *pipeline.Bundle, images []*detector.Prepared, caps []evalCaption,
	opts EvalOptions, rep *EvalReport, report func(done, total int)) error {
	if !b.HasMLM() {
		return nil
	}
	type probe struct {
		pos    int   // the [MASK] token
		target int64 // the colour's token id
	}
	var pairs []pipeline.Pair
	var probes []probe
	for _, ec := range caps {
		for _, sp := range ec.cap.Spans {
			if sp.Kind != shapes.KindColor {
				continue
			}
			target, ok := b.Tokenizer().TokenID(strings.ToLower(sp.Text))
			if !ok { // a colour that is not one vocabulary token cannot be one [MASK]
				continue
			}
			masked := ec.cap.Text[:sp.Start] + "[MASK]" + ec.cap.Text[sp.End:]
			enc, err := tokenize(b, "masked caption", masked)
			if err != nil {
				return err
			}
			pos := slices.IndexFunc(enc.Tokens, func(t textproc.Token) bool { return t.ID == b.Tokenizer().MaskID() })
			if pos < 0 {
				continue // truncated away
			}
			reg := images[ec.image]
			pairs = append(pairs, pipeline.Pair{Text: enc, Regions: reg}, pipeline.Pair{Text: enc, Regions: reg.Blanked()})
			probes = append(probes, probe{pos: pos, target: target})
		}
	}
	special := b.SpecialIDs()
	V := b.Manifest.Model.VocabSize
	var withHit, withoutHit int
	batch := opts.ScoreBatch
	if batch <= 0 {
		batch = pipeline.DefaultScoreBatch
	}
	batch -= batch % 2 // keep each probe's two pairs in one batch
	err := encodeEach(ctx, b, pairs, max(batch, 2), false, func(e *pipeline.Encoded, first int) error {
		hidden := make([]float32, 0, len(e.Pairs)*e.H)
		for k := range e.Pairs {
			hidden = append(hidden, e.Row(k, probes[(first+k)/2].pos)...)
		}
		logits, err := b.MaskedWordLogits(ctx, hidden, len(e.Pairs))
		if err != nil {
			return err
		}
		for k := range e.Pairs {
			best, bestLogit := int64(-1), float32(0)
			for id, l := range logits[k*V : (k+1)*V] {
				if !slices.Contains(special, int64(id)) && (best < 0 || l > bestLogit) {
					best, bestLogit = int64(id), l
				}
			}
			if best == probes[(first+k)/2].target {
				if k%2 == 0 {
					withHit++
				} else {
					withoutHit++
				}
			}
		}
		if report != nil {
			report(first+len(e.Pairs), len(pairs))
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.MLMColorMasks = len(probes)
	rep.MLMColorWithImage, rep.MLMColorWithoutImage = ratio(withHit, len(probes)), ratio(withoutHit, len(probes))
	return nil
}
