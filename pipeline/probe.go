package pipeline

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/detector"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/textproc"
)

// Probing heads: masked-word prediction (the MLM head) and region classes given a text (the
// MRC head), both on the encoder's hidden states of one (text, image) pair.

// TokenProb is a vocabulary token with its probability.
type TokenProb struct {
	Token       string
	ID          int64
	Probability float32
}

// MaskFill is the prediction for one [MASK] token of the text.
type MaskFill struct {
	Position int         // index in FillMaskOutput.Tokens
	Start    int         // the [MASK]'s span in the text (Unicode code points, [start, end))
	End      int         //
	Top      []TokenProb // the k most probable tokens, best first
	// TopWithoutImage is the same prediction with every region's features and location set
	// to zero (the image carries no information), when FillMaskOptions.WithoutImage is set.
	TopWithoutImage []TokenProb
}

// FillMaskOptions tune FillMask.
type FillMaskOptions struct {
	TopK         int  // tokens per mask; 0 means 5
	WithoutImage bool // also predict with the image blanked out (same batch)
}

// FillMaskOutput is FillMask's answer.
type FillMaskOutput struct {
	Text         string
	Tokens       []textproc.Token
	Truncated    bool
	UnknownWords []textproc.UnknownWord // words outside the vocabulary (Bundle.UnknownWords); nil when none
	Masks        []MaskFill
	Image        *detector.Detection // the detected regions when the input was an image
	Timing       Timing
}

// FillMask predicts each [MASK] token (written in capitals, as BERT's tokenizers expect) of text from the text and the image with the MLM head.
// Probabilities are a softmax over the whole vocabulary; special tokens ([CLS], [SEP], [PAD],
// [UNK], [MASK]) are never listed as predictions.
func (b *Bundle) FillMask(ctx context.Context, in Input, text string, opts FillMaskOptions) (*FillMaskOutput, error) {
	if b.mlm == nil {
		return nil, inputErr(CodeUnsupported, "model %s has no MLM head", b.Manifest.Name)
	}
	if opts.TopK <= 0 {
		opts.TopK = 5
	}
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	out := &FillMaskOutput{Text: enc.Read(text), Tokens: enc.Tokens, Truncated: enc.Truncated, UnknownWords: b.UnknownWords(enc)}
	var positions []int
	for i, t := range enc.Tokens {
		if t.ID == b.tokenizer.MaskID() {
			positions = append(positions, i)
		}
	}
	if len(positions) == 0 {
		if enc.Truncated && strings.Contains(text, "[MASK]") {
			return nil, inputErr(CodeInvalidText, "text: every [MASK] is beyond the model's %d-token limit", len(enc.Tokens))
		}
		return nil, inputErr(CodeInvalidText, "text: no [MASK] token to fill (write [MASK] where a word should be predicted)")
	}
	regions, det, err := b.resolve(ctx, in, &out.Timing)
	if err != nil {
		return nil, err
	}
	out.Image = det
	pairs := []Pair{{Text: enc, Regions: regions}}
	if opts.WithoutImage {
		pairs = append(pairs, Pair{Text: enc, Regions: regions.Blanked()})
	}
	start := time.Now()
	e, err := b.Encode(ctx, pairs, false)
	if err != nil {
		return nil, err
	}
	// The head runs on the mask positions only: [pairs, masks, hidden].
	hidden := make([]float32, 0, len(pairs)*len(positions)*e.H)
	for i := range pairs {
		for _, p := range positions {
			hidden = append(hidden, e.Row(i, p)...)
		}
	}
	logits, err := b.runHead(ctx, GraphMLMHead, b.mlm, []int64{int64(len(pairs)), int64(len(positions)), int64(e.H)}, hidden)
	if err != nil {
		return nil, err
	}
	out.Timing.Encoder = time.Since(start)
	V := b.Manifest.Model.VocabSize
	special := b.SpecialIDs()
	for k, p := range positions {
		t := enc.Tokens[p]
		m := MaskFill{Position: p, Start: t.Start, End: t.End}
		m.Top = b.topTokens(logits[k*V:(k+1)*V], opts.TopK, special)
		if opts.WithoutImage {
			off := (len(positions) + k) * V
			m.TopWithoutImage = b.topTokens(logits[off:off+V], opts.TopK, special)
		}
		out.Masks = append(out.Masks, m)
	}
	return out, nil
}

// HasMLM reports whether the bundle has the masked-word head.
func (b *Bundle) HasMLM() bool { return b.mlm != nil }

// SpecialIDs are the tokenizer's special tokens, never predicted for a [MASK].
func (b *Bundle) SpecialIDs() []int64 {
	t := b.tokenizer
	return []int64{t.CLSID(), t.SEPID(), t.PadID(), t.UNKID(), t.MaskID()}
}

// topTokens is the softmax of logits over the vocabulary, its k best non-special tokens.
func (b *Bundle) topTokens(logits []float32, k int, special []int64) []TokenProb {
	probs := softmax(logits)
	ids := make([]int64, 0, len(probs))
	for id := range probs {
		if !slices.Contains(special, int64(id)) {
			ids = append(ids, int64(id))
		}
	}
	slices.SortStableFunc(ids, func(x, y int64) int {
		switch px, py := probs[x], probs[y]; {
		case px > py:
			return -1
		case px < py:
			return 1
		}
		return 0
	})
	out := make([]TokenProb, 0, k)
	for _, id := range ids[:min(k, len(ids))] {
		s, _ := b.tokenizer.TokenText(id)
		out = append(out, TokenProb{Token: s, ID: id, Probability: probs[id]})
	}
	return out
}

// softmax in float64 for stability; the result is float32 like the model's outputs.
func softmax(logits []float32) []float32 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	sum := 0.0
	exp := make([]float64, len(logits))
	for i, v := range logits {
		exp[i] = math.Exp(float64(v) - m)
		sum += exp[i]
	}
	out := make([]float32, len(logits))
	for i := range exp {
		out[i] = float32(exp[i] / sum)
	}
	return out
}

// runHead runs a head graph (one float32 input [batch, positions, hidden], one output) under
// the scheduler and returns its output.
func (b *Bundle) runHead(ctx context.Context, role string, sess *ort.Session, shape []int64, hidden []float32) ([]float32, error) {
	out, err := b.runGraph(ctx, role, sess, []ort.Tensor{{Shape: shape, F32: hidden}}, int(shape[0]))
	if err != nil {
		return nil, err
	}
	return out[0].F32, nil
}

// MaskedWordLogits runs the MLM head on n hidden states (n × H, row-major, one per masked
// position) and returns n × vocabulary logits.
func (b *Bundle) MaskedWordLogits(ctx context.Context, hidden []float32, n int) ([]float32, error) {
	if b.mlm == nil {
		return nil, inputErr(CodeUnsupported, "model %s has no MLM head", b.Manifest.Name)
	}
	return b.runHead(ctx, GraphMLMHead, b.mlm, []int64{int64(n), 1, int64(b.Manifest.Model.HiddenSize)}, hidden)
}

// RegionClasses is the MRC head's class distribution for every region of the image given a
// text: the encoder reads the pair unmasked and the head classifies each region's hidden state.
// probs[r*LabelDim+c] is region r's probability of class c (background at 0).
func (b *Bundle) RegionClasses(ctx context.Context, regions *detector.Prepared, text string) (*RegionClassesOutput, error) {
	if b.mrc == nil {
		return nil, inputErr(CodeUnsupported, "model %s has no MRC head", b.Manifest.Name)
	}
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	e, err := b.Encode(ctx, []Pair{{Text: enc, Regions: regions}}, false)
	if err != nil {
		return nil, err
	}
	rows := e.RegionHidden(0)
	hidden := make([]float32, 0, len(rows)*e.H)
	for _, r := range rows {
		hidden = append(hidden, r...)
	}
	logits, err := b.runHead(ctx, GraphMRCHead, b.mrc, []int64{1, int64(len(rows)), int64(e.H)}, hidden)
	if err != nil {
		return nil, err
	}
	C := b.Manifest.Model.LabelDim
	out := &RegionClassesOutput{Text: enc.Read(text), Truncated: enc.Truncated, Probs: make([]float32, 0, len(logits))}
	for r := range len(rows) {
		out.Probs = append(out.Probs, softmax(logits[r*C:(r+1)*C])...)
	}
	return out, nil
}

// RegionClassesOutput is each region's class distribution given a text (regions × classes,
// row-major), and the part of the text the model read.
type RegionClassesOutput struct {
	Probs     []float32
	Text      string
	Truncated bool
}
