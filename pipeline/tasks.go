package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/textproc"
)

// The downstream tasks UNITER was fine-tuned for, each read from its head as the official
// fine-tuning code trains it: VQA's answers with BCE (independent sigmoid scores), visual
// entailment's three classes with softmax, NLVR2's true/false with softmax over two logits,
// referring expressions' regions with softmax over the image's regions.

// TaskText is the text of a task request as the model read it.
type TaskText struct {
	Text         string // what the model read (cut when Truncated)
	Tokens       int    // tokens, [CLS] and [SEP] included
	Truncated    bool
	UnknownWords []textproc.UnknownWord // words outside the vocabulary (Bundle.UnknownWords); nil when none
}

func (b *Bundle) taskText(text string, enc *textproc.Encoding) TaskText {
	return TaskText{Text: enc.Read(text), Tokens: len(enc.Tokens), Truncated: enc.Truncated, UnknownWords: b.UnknownWords(enc)}
}

// Answer is one VQA answer with its score σ(logit).
type Answer struct {
	Answer string
	Score  float32
}

// VQAOutput answers a question about an image.
type VQAOutput struct {
	Question TaskText
	Answers  []Answer // the top-k, best first
	Image    *detector.Detection
	Timing   Timing
}

// LabelProbability is one class with its probability.
type LabelProbability struct {
	Label       string
	Probability float32
}

// EntailmentOutput says whether an image entails a hypothesis.
type EntailmentOutput struct {
	Hypothesis    TaskText
	Label         string             // the most probable class
	Probabilities []LabelProbability // every class, in the model's order
	Image         *detector.Detection
	Timing        Timing
}

// NLVR2Output says whether a statement is true of a pair of images.
type NLVR2Output struct {
	Statement       TaskText
	TrueProbability float32 // softmax(nlvr2_logits)[1]
	True            bool    // TrueProbability > 0.5 (the argmax of the two logits)
	Layout          string  // NLVR2Paired, NLVR2Triplet or NLVR2PairedAttn
	Images          [2]*detector.Detection
	CacheHits       [2]bool // whether each image's regions came from the detector cache
	Timing          Timing  // CacheHit: either did
}

// ReferredRegion is one region ranked for a referring expression.
type ReferredRegion struct {
	Index       int // into the image's regions
	Box         detector.Box
	Score       float32 // the re_output logit
	Probability float32 // softmax over the image's regions
}

// ReferOutput ranks an image's regions for a referring expression.
type ReferOutput struct {
	Expression TaskText
	Regions    []ReferredRegion // the top-k, best first
	Image      *detector.Detection
	Timing     Timing
}

// TaskLabels are the labels of the bundle's task head (VQA answers, entailment classes);
// nil for other tasks.
func (b *Bundle) TaskLabels() []string { return b.taskLabels }

// encodeOne tokenizes text (field names it in errors), resolves the image and runs the encoder
// on the pair.
func (b *Bundle) encodeOne(ctx context.Context, in Input, field, text string, t *Timing) (*Encoded, *detector.Detection, error) {
	enc, err := b.tokenize(field, text)
	if err != nil {
		return nil, nil, err
	}
	regions, det, err := b.resolve(ctx, in, t)
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	e, err := b.Encode(ctx, []Pair{{Text: enc, Regions: regions}}, false)
	t.Encoder = time.Since(start)
	return e, det, err
}

// VQA answers a question about the image: the topK answers by σ(vqa logit), ties by answer index.
func (b *Bundle) VQA(ctx context.Context, in Input, question string, topK int) (*VQAOutput, error) {
	if !b.Manifest.Heads.VQA {
		return nil, b.taskUnavailable("visual question answering", "vqa head")
	}
	out := &VQAOutput{}
	e, det, err := b.encodeOne(ctx, in, "question", question, &out.Timing)
	if err != nil {
		return nil, err
	}
	out.Image, out.Question = det, b.taskText(question, e.Pairs[0].Text)
	logits := e.headRow(outVQA, 0)
	if len(logits) != len(b.taskLabels) {
		return nil, fmt.Errorf("vqa head gave %d logits for %d answers", len(logits), len(b.taskLabels))
	}
	for _, i := range topIndices(logits, topK) {
		out.Answers = append(out.Answers, Answer{Answer: b.taskLabels[i], Score: heads.MatchFromRank(logits[i]).Score})
	}
	return out, nil
}

// Entail classifies whether the image entails the hypothesis (visual entailment, SNLI-VE).
func (b *Bundle) Entail(ctx context.Context, in Input, hypothesis string) (*EntailmentOutput, error) {
	if !b.Manifest.Heads.VE {
		return nil, b.taskUnavailable("visual entailment", "ve head")
	}
	out := &EntailmentOutput{}
	e, det, err := b.encodeOne(ctx, in, "hypothesis", hypothesis, &out.Timing)
	if err != nil {
		return nil, err
	}
	out.Image, out.Hypothesis = det, b.taskText(hypothesis, e.Pairs[0].Text)
	logits := e.headRow(outVE, 0)
	if len(logits) != len(b.taskLabels) {
		return nil, fmt.Errorf("ve head gave %d logits for %d classes", len(logits), len(b.taskLabels))
	}
	probs := softmax(logits)
	best := topIndices(logits, 1)[0]
	out.Label = b.taskLabels[best]
	for i, p := range probs {
		out.Probabilities = append(out.Probabilities, LabelProbability{Label: b.taskLabels[i], Probability: p})
	}
	return out, nil
}

// Refer ranks the image's regions for a referring expression: the topK by re_output score.
func (b *Bundle) Refer(ctx context.Context, in Input, expression string, topK int) (*ReferOutput, error) {
	if !b.Manifest.Heads.RE {
		return nil, b.taskUnavailable("referring expression comprehension", "re head")
	}
	out := &ReferOutput{}
	e, det, err := b.encodeOne(ctx, in, "expression", expression, &out.Timing)
	if err != nil {
		return nil, err
	}
	out.Image, out.Expression = det, b.taskText(expression, e.Pairs[0].Text)
	regions := e.Pairs[0].Regions
	scores := e.headRow(outRE, 0)[:regions.Len()] // the rest is padding
	probs := softmax(scores)
	for _, i := range topIndices(scores, topK) {
		out.Regions = append(out.Regions, ReferredRegion{Index: i, Box: regions.Boxes[i], Score: scores[i], Probability: probs[i]})
	}
	return out, nil
}

// NLVR2 decides whether a statement is true of two images (left, right), through the bundle's
// nlvr2 graph, which builds the official layout's inputs (paired, triplet, paired-attention).
func (b *Bundle) NLVR2(ctx context.Context, in [2]Input, statement string) (*NLVR2Output, error) {
	if b.nlvr2 == nil {
		return nil, b.taskUnavailable("NLVR2", "nlvr2 head")
	}
	out := &NLVR2Output{Layout: b.Manifest.Task.Layout}
	enc, err := b.tokenize("statement", statement)
	if err != nil {
		return nil, err
	}
	out.Statement = b.taskText(statement, enc)
	var regions [2]*detector.Prepared
	for k := range in {
		var t Timing
		if regions[k], out.Images[k], err = b.resolve(ctx, in[k], &t); err != nil {
			return nil, prefixed(fmt.Sprintf("images[%d]", k), err)
		}
		out.Timing.Decode += t.Decode
		out.Timing.Preprocess += t.Preprocess
		out.Timing.Detector += t.Detector
		out.Timing.Selection += t.Selection
		out.CacheHits[k] = t.CacheHit
		out.Timing.CacheHit = out.Timing.CacheHit || t.CacheHit
	}
	T, D, N := len(enc.Tokens), b.Manifest.Model.FeatureDim, max(regions[0].Len(), regions[1].Len())
	ids, tmask := make([]int64, T), make([]int64, T)
	for j, tok := range enc.Tokens {
		ids[j], tmask[j] = tok.ID, 1
	}
	feat := make([]float32, 2*N*D)
	loc := make([]float32, 2*N*detector.LocationDim)
	imask := make([]int64, 2*N)
	for k, r := range regions {
		copy(feat[k*N*D:], r.Features)
		for j, l := range r.Locations {
			copy(loc[(k*N+j)*detector.LocationDim:], l[:])
			imask[k*N+j] = 1
		}
	}
	start := time.Now()
	res, err := b.runGraph(ctx, GraphNLVR2, b.nlvr2, []ort.Tensor{
		{Shape: []int64{1, int64(T)}, I64: ids},
		{Shape: []int64{1, int64(T)}, I64: tmask},
		{Shape: []int64{1, 2, int64(N), int64(D)}, F32: feat},
		{Shape: []int64{1, 2, int64(N), detector.LocationDim}, F32: loc},
		{Shape: []int64{1, 2, int64(N)}, I64: imask},
	}, 1)
	out.Timing.Encoder = time.Since(start)
	if err != nil {
		return nil, err
	}
	logits := res[0].F32
	if len(logits) != 2 {
		return nil, fmt.Errorf("nlvr2 graph gave %d logits, want 2", len(logits))
	}
	out.TrueProbability = softmax(logits)[1]
	out.True = logits[1] > logits[0]
	return out, nil
}

// prefixed names the field of an input error (an image of a pair).
func prefixed(field string, err error) error {
	if ie, ok := err.(*InputError); ok {
		return &InputError{Code: ie.Code, Message: field + ": " + ie.Message, Err: ie.Err}
	}
	return err
}

// topIndices are the indices of the k largest values, largest first, ties by lower index.
func topIndices(v []float32, k int) []int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(v[b], v[a]) })
	return idx[:min(max(k, 1), len(idx))]
}
