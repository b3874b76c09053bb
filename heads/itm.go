package heads

import (
	"errors"
	"fmt"
	"math"
)

// Match is the image-text matching (ITM) verdict for one text-image pair.
type Match struct {
	// Score is P(match) = softmax(logits)[1], in [0, 1].
	Score float32
	// Logit is the raw match logit logits[1]. Zero-shot retrieval ranks by
	// it; it is not comparable across models.
	Logit float32
}

// MatchFromLogits converts the two ITM logits of one pair (index 0: no
// match, index 1: match) into a [Match].
//
// The probability is computed in float64 as the logistic function of
// logits[1]-logits[0], which is exactly the two-way softmax and never
// overflows: any finite logits give a finite score in [0, 1] (very lopsided
// logits round to exactly 0 or 1). Infinite logits give 0 or 1 where the
// limit exists; a NaN logit, or two equal infinities, gives a NaN score.
func MatchFromLogits(logits [2]float32) Match {
	return Match{
		Score: float32(sigmoid(float64(logits[1]) - float64(logits[0]))),
		Logit: logits[1],
	}
}

// MatchFromRank converts the score of a fine-tuned retrieval head (rank_output, one logit
// per pair) into a [Match]: Logit is the score retrieval ranks by, Score its logistic
// function, a ranking score in [0, 1] (the head was trained to rank, not calibrated).
func MatchFromRank(logit float32) Match {
	return Match{Score: float32(sigmoid(float64(logit))), Logit: logit}
}

// ErrLogitsShape reports an ITM output whose length is not a multiple of 2.
var ErrLogitsShape = errors.New("heads: ITM logits must have shape [B, 2]")

// MatchesFromLogits converts a row-major [B, 2] ITM output (as an inference
// runtime returns it) into B matches.
func MatchesFromLogits(flat []float32) ([]Match, error) {
	if len(flat)%2 != 0 {
		return nil, fmt.Errorf("%w: got %d values", ErrLogitsShape, len(flat))
	}
	out := make([]Match, len(flat)/2)
	for b := range out {
		out[b] = MatchFromLogits([2]float32{flat[2*b], flat[2*b+1]})
	}
	return out, nil
}

// sigmoid is 1/(1+e^-x), evaluated so that e^ never overflows.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x) // x < 0 (or NaN): e in [0, 1)
	return e / (1 + e)
}
