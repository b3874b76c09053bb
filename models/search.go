package models

import (
	"context"
	"time"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
)

// AlignPrepared is Align on regions the caller already holds in the encoder's form (a
// gallery's stored regions, whose boxes may be normalised when the image size is unknown):
// they are not validated again. It gives a search hit its word-region evidence.
func (b *Bundle) AlignPrepared(ctx context.Context, regions *detector.Prepared, text string, opts AlignOptions) (*Alignment, error) {
	if opts.TopRegions <= 0 {
		opts.TopRegions = 3
	}
	enc, err := b.tokenize("text", text)
	if err != nil {
		return nil, err
	}
	a := &Alignment{Text: text, Tokens: enc.Tokens, Words: enc.Words, Truncated: enc.Truncated, Regions: regions}
	start := time.Now()
	e, err := b.encode(ctx, []pair{{text: enc, regions: regions}}, false)
	if err != nil {
		return nil, err
	}
	a.Timing.Encoder = time.Since(start)
	start = time.Now()
	plan, err := heads.Align(e.textHidden(0), e.regionHidden(0), heads.DefaultOTOptions())
	if err != nil {
		return nil, err
	}
	words := make([]int, len(enc.Tokens))
	for i, t := range enc.Tokens {
		words[i] = t.Word
	}
	m := e.match(0)
	a.Plan, a.OTDistance, a.Score, a.Logit = plan.Weights, plan.Distance, m.Score, m.Logit
	a.WordRegions = heads.WordRegions(plan.Weights, words, opts.TopRegions)
	a.Timing.OT = time.Since(start)
	return a, nil
}
