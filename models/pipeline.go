package models

import (
	"context"
	"fmt"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/textproc"
)

// pair is one (text, regions) input of an encoder batch.
type pair struct {
	text    *textproc.Encoding
	regions *detector.Prepared
}

// encoded holds one batch's encoder outputs in the padded layout [text T | regions N].
type encoded struct {
	pairs     []pair
	T, N, H   int
	itm       []float32 // B × 2
	hidden    []float32 // B × (T+N) × H
	attention []float32 // B × layers × heads × (T+N) × (T+N); nil unless asked for
}

// encode runs the encoder on pairs in one padded batch: ids and masks 0 on padding, features
// and locations 0 on padded regions (the layout the exporter and the goldens use).
func (b *Bundle) encode(ctx context.Context, pairs []pair, withAttention bool) (*encoded, error) {
	sess := b.encoder
	if withAttention {
		if b.attention == nil {
			return nil, inputErr(CodeUnsupported, "model %s has no attention graph", b.Manifest.Name)
		}
		sess = b.attention
	}
	B, D := len(pairs), b.Manifest.Model.FeatureDim
	T, N := 0, 0
	for _, p := range pairs {
		T = max(T, len(p.text.Tokens))
		N = max(N, p.regions.Len())
	}
	ids := make([]int64, B*T)
	tmask := make([]int64, B*T)
	feat := make([]float32, B*N*D)
	loc := make([]float32, B*N*detector.LocationDim)
	imask := make([]int64, B*N)
	for i, p := range pairs {
		for j, tok := range p.text.Tokens {
			ids[i*T+j] = tok.ID
			tmask[i*T+j] = 1
		}
		copy(feat[i*N*D:], p.regions.Features)
		for j, l := range p.regions.Locations {
			copy(loc[(i*N+j)*detector.LocationDim:], l[:])
			imask[i*N+j] = 1
		}
	}
	in := []ort.Tensor{
		{Shape: []int64{int64(B), int64(T)}, I64: ids},
		{Shape: []int64{int64(B), int64(T)}, I64: tmask},
		{Shape: []int64{int64(B), int64(N), int64(D)}, F32: feat},
		{Shape: []int64{int64(B), int64(N), detector.LocationDim}, F32: loc},
		{Shape: []int64{int64(B), int64(N)}, I64: imask},
	}
	if err := b.sched.Acquire(ctx); err != nil {
		return nil, err
	}
	out, err := sess.Run(ctx, in)
	b.sched.Release()
	if err != nil {
		return nil, err
	}
	idx := func(name string) []float32 {
		for i, o := range sess.Outputs() {
			if o.Name == name {
				return out[i].F32
			}
		}
		return nil
	}
	e := &encoded{pairs: pairs, T: T, N: N, H: b.Manifest.Model.HiddenSize,
		itm: idx("itm_logits"), hidden: idx("hidden")}
	if withAttention {
		e.attention = idx("attention")
	}
	if len(e.itm) != 2*B || len(e.hidden) != B*(T+N)*e.H {
		return nil, fmt.Errorf("encoder returned %d logits and %d hidden values for batch %d×(%d+%d)", len(e.itm), len(e.hidden), B, T, N)
	}
	return e, nil
}

// row is hidden state position s of pair i.
func (e *encoded) row(i, s int) []float32 {
	off := (i*(e.T+e.N) + s) * e.H
	return e.hidden[off : off+e.H]
}

// textHidden and regionHidden are pair i's unpadded hidden states.
func (e *encoded) textHidden(i int) [][]float32 {
	rows := make([][]float32, len(e.pairs[i].text.Tokens))
	for s := range rows {
		rows[s] = e.row(i, s)
	}
	return rows
}

func (e *encoded) regionHidden(i int) [][]float32 {
	rows := make([][]float32, e.pairs[i].regions.Len())
	for s := range rows {
		rows[s] = e.row(i, e.T+s)
	}
	return rows
}

func (e *encoded) match(i int) heads.Match {
	return heads.MatchFromLogits([2]float32{e.itm[2*i], e.itm[2*i+1]})
}

// MatchResult scores one text against an image's regions.
type MatchResult struct {
	Text       string
	Score      float32 // P(match) = softmax(itm_logits)[1]
	Logit      float32 // raw match logit, what zero-shot retrieval ranks by
	OTDistance float64 // optimal-transport distance, lower = better aligned
	Tokens     int     // tokens scored, [CLS] and [SEP] included
	Truncated  bool    // the text was longer than the model's maximum and was cut
}

func (b *Bundle) prepare(r detector.Regions) (*detector.Prepared, error) {
	p, err := detector.Prepare(r, b.Manifest.Model.FeatureDim, b.opts.MaxRegions)
	if err != nil {
		return nil, classify("regions", err)
	}
	return p, nil
}

func (b *Bundle) tokenize(field, text string) (*textproc.Encoding, error) {
	enc, err := b.tokenizer.Encode(text)
	if err != nil {
		return nil, classify(field, err)
	}
	return &enc, nil
}

// Match scores every text against the regions in one batch; results follow the texts' order.
func (b *Bundle) Match(ctx context.Context, r detector.Regions, texts []string) ([]MatchResult, error) {
	if len(texts) == 0 {
		return nil, inputErr(CodeNoTexts, "texts: at least one text is needed")
	}
	if max := b.opts.MaxTexts; max > 0 && len(texts) > max {
		return nil, inputErr(CodeTooManyTexts, "texts: %d texts, at most %d per request", len(texts), max)
	}
	regions, err := b.prepare(r)
	if err != nil {
		return nil, err
	}
	pairs := make([]pair, len(texts))
	for i, t := range texts {
		enc, err := b.tokenize(fmt.Sprintf("texts[%d]", i), t)
		if err != nil {
			return nil, err
		}
		pairs[i] = pair{text: enc, regions: regions}
	}
	e, err := b.encode(ctx, pairs, false)
	if err != nil {
		return nil, err
	}
	results := make([]MatchResult, len(texts))
	for i := range pairs {
		plan, err := heads.Align(e.textHidden(i), e.regionHidden(i), heads.DefaultOTOptions())
		if err != nil {
			return nil, err
		}
		m := e.match(i)
		results[i] = MatchResult{Text: texts[i], Score: m.Score, Logit: m.Logit, OTDistance: plan.Distance,
			Tokens: len(pairs[i].text.Tokens), Truncated: pairs[i].text.Truncated}
	}
	return results, nil
}

// AlignOptions tune Align.
type AlignOptions struct {
	TopRegions int // regions listed per word; 0 means 3
}

// Alignment is the word-region alignment of one (text, image) pair.
type Alignment struct {
	Text        string
	Tokens      []textproc.Token
	Words       []textproc.Word
	Truncated   bool
	Regions     *detector.Prepared
	Plan        [][]float64 // tokens × regions transport plan, entries sum to 1
	WordRegions []heads.WordAlignment
	OTDistance  float64
	Score       float32
	Logit       float32
}

// Align scores one text against the regions and returns the optimal-transport alignment.
func (b *Bundle) Align(ctx context.Context, r detector.Regions, text string, opts AlignOptions) (*Alignment, error) {
	if opts.TopRegions <= 0 {
		opts.TopRegions = 3
	}
	regions, err := b.prepare(r)
	if err != nil {
		return nil, err
	}
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	e, err := b.encode(ctx, []pair{{text: enc, regions: regions}}, false)
	if err != nil {
		return nil, err
	}
	plan, err := heads.Align(e.textHidden(0), e.regionHidden(0), heads.DefaultOTOptions())
	if err != nil {
		return nil, err
	}
	words := make([]int, len(enc.Tokens))
	for i, t := range enc.Tokens {
		words[i] = t.Word
	}
	m := e.match(0)
	return &Alignment{
		Text: text, Tokens: enc.Tokens, Words: enc.Words, Truncated: enc.Truncated, Regions: regions,
		Plan: plan.Weights, WordRegions: heads.WordRegions(plan.Weights, words, opts.TopRegions),
		OTDistance: plan.Distance, Score: m.Score, Logit: m.Logit,
	}, nil
}
