package pipeline

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	ort "github.com/uniter-serve/uniter/runtime"
	"github.com/uniter-serve/uniter/textproc"
)

// Pair is one (text, regions) input of an encoder batch.
type Pair struct {
	Text    *textproc.Encoding
	Regions *detector.Prepared
}

// Encoded holds one batch's encoder outputs in the padded layout [text T | regions N]. Its
// fields are read-only for callers.
type Encoded struct {
	Pairs     []Pair
	T, N, H   int                  // padded text length, padded region count, hidden size
	heads     map[string][]float32 // each head's output by name (outITM, outRank, …), B rows
	pooled    []float32            // B × H
	hidden    []float32            // B × (T+N) × H
	attention []float32            // B × layers × heads × (T+N) × (T+N); nil unless asked for
	// The graph's word-region transport (transport.go), nil unless the bundle takes it from the
	// graph (Bundle.OTInGraph) and the graph that ran computes it.
	otDistance []float32 // B
	otPlan     []float32 // B × T × N
}

// Encode runs the encoder on pairs in one padded batch: ids and masks 0 on padding, features
// and locations 0 on padded regions (the layout the exporter and the goldens use). The run
// waits for the bundle's scheduler. With batching on (Options.BatchPairs), a run without
// attention joins concurrent callers' pairs in one batch (batcher.go); the outputs are those
// of the padded layout either way.
func (b *Bundle) Encode(ctx context.Context, pairs []Pair, withAttention bool) (*Encoded, error) {
	if b.batcher != nil && !withAttention {
		return b.batcher.encode(ctx, pairs)
	}
	return b.encode(ctx, pairs, withAttention, nil)
}

// encodeHeld is Encode for a caller that holds a scheduler slot already (the batcher), since
// waited.
func (b *Bundle) encodeHeld(ctx context.Context, pairs []Pair, withAttention bool, waited time.Duration) (*Encoded, error) {
	return b.encode(ctx, pairs, withAttention, &waited)
}

// encode runs the encoder; held is nil when it must take a scheduler slot, else the time the
// holder waited for one.
func (b *Bundle) encode(ctx context.Context, pairs []Pair, withAttention bool, held *time.Duration) (*Encoded, error) {
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
		T = max(T, len(p.Text.Tokens))
		N = max(N, p.Regions.Len())
	}
	ids := make([]int64, B*T)
	tmask := make([]int64, B*T)
	feat := make([]float32, B*N*D)
	loc := make([]float32, B*N*detector.LocationDim)
	imask := make([]int64, B*N)
	for i, p := range pairs {
		for j, tok := range p.Text.Tokens {
			ids[i*T+j] = tok.ID
			tmask[i*T+j] = 1
		}
		copy(feat[i*N*D:], p.Regions.Features)
		for j, l := range p.Regions.Locations {
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
	role := GraphEncoder
	if withAttention {
		role = GraphEncoderAttention
	}
	var out []ort.Tensor
	var err error
	if held == nil {
		out, err = b.runGraph(ctx, role, sess, in, B)
	} else {
		out, err = b.runHeld(ctx, role, sess, in, B, *held)
	}
	if err != nil {
		return nil, err
	}
	e := &Encoded{Pairs: pairs, T: T, N: N, H: b.Manifest.Model.HiddenSize, heads: map[string][]float32{}}
	for i, o := range sess.Outputs() {
		switch o.Name {
		case "hidden":
			e.hidden = out[i].F32
		case "pooled":
			e.pooled = out[i].F32
		case "attention":
			e.attention = out[i].F32
		case outOTDistance, outOTPlan:
			if !b.otInGraph {
				continue // heads.Align computes the transport (transport.go: otFromGraph)
			}
			if o.Name == outOTDistance {
				e.otDistance = out[i].F32
			} else {
				e.otPlan = out[i].F32
			}
		default:
			e.heads[o.Name] = out[i].F32
		}
	}
	if len(e.hidden) != B*(T+N)*e.H || len(e.pooled) != B*e.H {
		return nil, fmt.Errorf("encoder returned %d pooled and %d hidden values for batch %d×(%d+%d)", len(e.pooled), len(e.hidden), B, T, N)
	}
	if (e.otDistance == nil) != (e.otPlan == nil) || e.otDistance != nil && (len(e.otDistance) != B || len(e.otPlan) != B*T*N) {
		return nil, fmt.Errorf("encoder returned %d %s and %d %s values for batch %d×(%d+%d)", len(e.otDistance), outOTDistance, len(e.otPlan), outOTPlan, B, T, N)
	}
	for name, v := range e.heads {
		if len(v)%B != 0 || name == outITM && len(v) != 2*B || name == outRank && len(v) != B || name == outRE && len(v) != B*N {
			return nil, fmt.Errorf("encoder output %s has %d values for batch %d×(%d+%d)", name, len(v), B, T, N)
		}
	}
	return e, nil
}

// headRow is pair i's row of a head's output (a view: do not modify); nil without the head.
func (e *Encoded) headRow(name string, i int) []float32 {
	v := e.heads[name]
	if v == nil {
		return nil
	}
	w := len(v) / len(e.Pairs)
	return v[i*w : (i+1)*w]
}

// Row is the hidden state at padded position s of pair i (a view: do not modify).
func (e *Encoded) Row(i, s int) []float32 {
	off := (i*(e.T+e.N) + s) * e.H
	return e.hidden[off : off+e.H]
}

// TextHidden and RegionHidden are pair i's unpadded hidden states (views: do not modify).
func (e *Encoded) TextHidden(i int) [][]float32 {
	rows := make([][]float32, len(e.Pairs[i].Text.Tokens))
	for s := range rows {
		rows[s] = e.Row(i, s)
	}
	return rows
}

func (e *Encoded) RegionHidden(i int) [][]float32 {
	rows := make([][]float32, e.Pairs[i].Regions.Len())
	for s := range rows {
		rows[s] = e.Row(i, e.T+s)
	}
	return rows
}

// The heads that can score a match (MatchResult.Head).
const (
	MatchByRank = "rank" // the image-text retrieval head of a fine-tuned checkpoint
	MatchByITM  = "itm"  // the pre-training ITM head
)

// MatchHead is the head that scores matches: the retrieval head when the bundle has one
// (what the checkpoint was fine-tuned to rank with), else ITM; "" when it has neither.
func (b *Bundle) MatchHead() string {
	switch {
	case b.Manifest.Heads.Rank:
		return MatchByRank
	case b.Manifest.Heads.ITM:
		return MatchByITM
	}
	return ""
}

// needMatchHead refuses a match on a bundle that cannot score one.
func (b *Bundle) needMatchHead() error {
	if b.MatchHead() == "" {
		return b.taskUnavailable("image-text matching", "an itm or rank head")
	}
	return nil
}

// taskUnavailable is the error for a request the bundle's heads cannot answer.
func (b *Bundle) taskUnavailable(what, needs string) error {
	return inputErr(CodeTaskUnavailable, "model %s (task %s) cannot do %s: it has no %s", b.Manifest.Name, b.Manifest.TaskName(), what, needs)
}

// Match is pair i's match score by MatchHead; the zero Match when the bundle has no match head.
func (e *Encoded) Match(i int) heads.Match {
	if r := e.headRow(outRank, i); r != nil {
		return heads.MatchFromRank(r[0])
	}
	if l := e.headRow(outITM, i); l != nil {
		return heads.MatchFromLogits([2]float32{l[0], l[1]})
	}
	return heads.Match{}
}

// MatchResult scores one text against an image's regions.
type MatchResult struct {
	Text       string
	Score      float32 // ITM: P(match) = softmax(itm_logits)[1]; rank: σ(rank logit), a ranking score
	Logit      float32 // the raw match logit retrieval ranks by (itm_logits[1] or the rank score)
	Head       string  // MatchByRank or MatchByITM
	OTDistance float64 // optimal-transport distance, lower = better aligned
	Tokens     int     // tokens scored, [CLS] and [SEP] included
	Truncated  bool    // the text was longer than the model's maximum and was cut
	// UnknownWords are the text's words outside the model's vocabulary (Bundle.UnknownWords);
	// nil when none.
	UnknownWords []textproc.UnknownWord
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

// UnknownWords are the words of an encoded text that the bundle's vocabulary does not know
// (textproc.Tokenizer.UnknownWords): words that became [UNK] and, when the manifest declares
// its vocabulary closed (text.closed_vocabulary), words spelt in word pieces. Every answer
// that reports unknown words takes them from here.
func (b *Bundle) UnknownWords(enc *textproc.Encoding) []textproc.UnknownWord {
	return b.tokenizer.UnknownWords(*enc)
}

// Timing splits a request's model work: the detection's steps (zero for regions input and for
// a cache hit), the encoder and optimal transport. When the encoder graph computes the transport
// (Bundle.OTInGraph), its cost is in Encoder and OT only reads the graph's outputs.
type Timing struct {
	detector.Timing
	Encoder, OT time.Duration
	CacheHit    bool // the image's regions came from the cache
}

// Input is an image: encoded bytes that go through the detector, or regions with features
// that the caller computed. Exactly one is set.
type Input struct {
	Image   []byte
	Regions *detector.Regions
	// Prepared are regions already prepared for the encoder (a detection's, or their
	// Blanked copy), used as they are; for offline runs, not the API.
	Prepared *detector.Prepared
}

// resolve turns an Input into the encoder's region input, timing the detector steps.
func (b *Bundle) resolve(ctx context.Context, in Input, t *Timing) (*detector.Prepared, *detector.Detection, error) {
	switch {
	case in.Prepared != nil && in.Image == nil && in.Regions == nil:
		return in.Prepared, nil, nil
	case (in.Image == nil) == (in.Regions == nil) || in.Prepared != nil:
		return nil, nil, inputErr(CodeInvalidInput, "give exactly one of image and regions")
	case in.Regions != nil:
		p, err := b.prepare(*in.Regions)
		return p, nil, err
	}
	det, hit, err := b.Detect(ctx, in.Image)
	if err != nil {
		return nil, nil, err
	}
	if hit {
		t.CacheHit = true
	} else {
		t.Timing = det.Timing
	}
	return det.Prepared, det, nil
}

// MatchOutput is Match's answer: one result per text, in order.
type MatchOutput struct {
	Results []MatchResult
	Image   *detector.Detection // the detected regions when the input was an image
	Timing  Timing
}

// Match scores every text against the image in one batch.
func (b *Bundle) Match(ctx context.Context, in Input, texts []string) (*MatchOutput, error) {
	if err := b.needMatchHead(); err != nil {
		return nil, err
	}
	if len(texts) == 0 {
		return nil, inputErr(CodeNoTexts, "texts: at least one text is needed")
	}
	if max := b.opts.MaxTexts; max > 0 && len(texts) > max {
		return nil, inputErr(CodeTooManyTexts, "texts: %d texts, at most %d per request", len(texts), max)
	}
	pairs := make([]Pair, len(texts))
	for i, t := range texts {
		enc, err := b.tokenize(fmt.Sprintf("texts[%d]", i), t)
		if err != nil {
			return nil, err
		}
		pairs[i].Text = enc
	}
	out := &MatchOutput{}
	regions, det, err := b.resolve(ctx, in, &out.Timing)
	if err != nil {
		return nil, err
	}
	out.Image = det
	for i := range pairs {
		pairs[i].Regions = regions
	}
	start := time.Now()
	e, err := b.Encode(ctx, pairs, false)
	if err != nil {
		return nil, err
	}
	out.Timing.Encoder = time.Since(start)
	start = time.Now()
	out.Results = make([]MatchResult, len(texts))
	// One transport per pair, on every core when heads.Align computes them: with the encoder on
	// a GPU, these are the slow part unless the graph computes them too (Encoded.Transport).
	err = forEachParallel(len(pairs), func(i int) error {
		ot, err := e.Transport(i, false)
		if err != nil {
			return err
		}
		m := e.Match(i)
		out.Results[i] = MatchResult{Text: pairs[i].Text.Read(texts[i]), Score: m.Score, Logit: m.Logit, Head: b.MatchHead(), OTDistance: ot.Distance,
			Tokens: len(pairs[i].Text.Tokens), Truncated: pairs[i].Text.Truncated, UnknownWords: b.UnknownWords(pairs[i].Text)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Timing.OT = time.Since(start)
	return out, nil
}

// forEachParallel calls fn(0) … fn(n-1) on up to GOMAXPROCS goroutines and returns the error of
// the lowest index that failed (the one a serial loop would have returned).
func forEachParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// The word-region alignments a caller can read (search evidence, `uniter align --by`).
const (
	AlignByAttention = "attention" // heads.CrossAttention of the encoder_attention graph
	AlignByOT        = "ot"        // the optimal-transport plan (the paper's WRA)
)

// ResolveAlignBy checks a requested alignment source and fills in the default: attention when
// the model has the attention graph, otherwise the OT plan.
func ResolveAlignBy(by string, hasAttention bool) (string, error) {
	switch {
	case by == "" && hasAttention:
		return AlignByAttention, nil
	case by == "" || by == AlignByOT:
		return AlignByOT, nil
	case by != AlignByAttention:
		return "", fmt.Errorf("%q, want %q or %q", by, AlignByAttention, AlignByOT)
	case !hasAttention:
		return "", fmt.Errorf("%q needs a model with an attention graph (encoder_attention)", by)
	}
	return by, nil
}

// AlignOptions tune Align.
type AlignOptions struct {
	TopRegions int  // regions listed per word; 0 means 3
	Attention  bool // also return every head's attention map and pattern (PairAttention)
}

// Alignment is the word-region alignment of one (text, image) pair.
type Alignment struct {
	Text         string
	Tokens       []textproc.Token
	Words        []textproc.Word
	Truncated    bool
	UnknownWords []textproc.UnknownWord // words outside the vocabulary (Bundle.UnknownWords); nil when none
	Regions      *detector.Prepared
	Image        *detector.Detection // the detected regions when the input was an image
	Timing       Timing
	Plan         [][]float64 // tokens × regions transport plan, entries sum to 1
	WordRegions  []heads.WordAlignment
	OTDistance   float64
	Score        float32
	Logit        float32
	MatchHead    string         // the head of Score and Logit (MatchByRank, MatchByITM); "" and both 0 without one
	Attention    *PairAttention // with AlignOptions.Attention
	// With AlignOptions.Attention: the alignment read from attention instead of transport
	// (heads.CrossAttention, tokens × regions, sums to 1) and each word's regions by it.
	CrossAttention       [][]float64
	AttentionWordRegions []heads.WordAlignment
}

// Align scores one text against the image and returns the optimal-transport alignment. The
// text is checked before the image goes through the detector.
func (b *Bundle) Align(ctx context.Context, in Input, text string, opts AlignOptions) (*Alignment, error) {
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	var t Timing
	regions, det, err := b.resolve(ctx, in, &t)
	if err != nil {
		return nil, err
	}
	a, err := b.alignEncoding(ctx, regions, text, enc, opts)
	if err != nil {
		return nil, err
	}
	a.Image = det
	a.Timing.Timing, a.Timing.CacheHit = t.Timing, t.CacheHit
	return a, nil
}

// AlignPrepared is Align on regions the caller already holds in the encoder's form (a
// gallery's stored regions, whose boxes may be normalised when the image size is unknown):
// they are not validated again. It gives a search hit its word-region evidence.
func (b *Bundle) AlignPrepared(ctx context.Context, regions *detector.Prepared, text string, opts AlignOptions) (*Alignment, error) {
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	return b.alignEncoding(ctx, regions, text, enc, opts)
}

// alignEncoding runs the encoder on one tokenized text and the regions, then optimal transport.
func (b *Bundle) alignEncoding(ctx context.Context, regions *detector.Prepared, text string, enc *textproc.Encoding, opts AlignOptions) (*Alignment, error) {
	if opts.TopRegions <= 0 {
		opts.TopRegions = 3
	}
	a := &Alignment{Text: enc.Read(text), Tokens: enc.Tokens, Words: enc.Words, Truncated: enc.Truncated,
		UnknownWords: b.UnknownWords(enc), Regions: regions}
	start := time.Now()
	e, err := b.Encode(ctx, []Pair{{Text: enc, Regions: regions}}, opts.Attention)
	if err != nil {
		return nil, err
	}
	a.Timing.Encoder = time.Since(start)
	words := make([]int, len(enc.Tokens))
	for i, t := range enc.Tokens {
		words[i] = t.Word
	}
	if opts.Attention {
		if a.Attention, err = b.ClassifyAttention(e, 0, heads.DefaultPatternThresholds()); err != nil {
			return nil, err
		}
		if a.CrossAttention, err = heads.CrossAttention(a.Attention.Maps, a.Attention.Layers, a.Attention.Heads, a.Attention.Layout); err != nil {
			return nil, err
		}
		a.AttentionWordRegions = heads.WordRegions(a.CrossAttention, words, opts.TopRegions)
	}
	start = time.Now()
	ot, err := e.Transport(0, true)
	if err != nil {
		return nil, err
	}
	m := e.Match(0)
	a.Plan, a.OTDistance, a.Score, a.Logit, a.MatchHead = ot.Plan, ot.Distance, m.Score, m.Logit, b.MatchHead()
	a.WordRegions = heads.WordRegions(ot.Plan, words, opts.TopRegions)
	a.Timing.OT = time.Since(start)
	return a, nil
}
