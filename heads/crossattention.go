package heads

import (
	"fmt"
	"math"
)

// CrossAttention reads a word-region alignment from the encoder's self-attention instead of
// optimal transport. For token t and region r the weight is the attention between them in both
// directions, t attending to r plus r attending to t, summed over every layer and head; the
// matrix (tokens × regions, the shape of Plan.Weights) is then scaled to sum to 1, so that it
// reads like a transport plan (WordRegions takes either).
//
// Why a second alignment: the OT plan is computed from the cosine of final-layer hidden states,
// which WRA pulls together for every token of a matching pair, and its uniform marginals make
// the words of one phrase compete for their object's boxes, while the attention lets each word
// attend to its object on its own (docs/model-card.md compares the two on the default model).
// Nothing is learned or tuned here: every layer and head counts the same.
//
// maps holds layers × nheads maps of layout.Size()² values (row q is query q's attention over
// the keys), in the layout of the attention analysis: text tokens first, then regions.
func CrossAttention(maps []float32, layers, nheads int, layout AttentionLayout) ([][]float64, error) {
	S, T, N := layout.Size(), layout.Text, layout.Regions
	if layers < 1 || nheads < 1 || T < 2 || N < 1 || len(maps) != layers*nheads*S*S {
		return nil, fmt.Errorf("%w: %d values for %d layers × %d heads of %d text tokens and %d regions",
			ErrAttentionShape, len(maps), layers, nheads, T, N)
	}
	w := make([][]float64, T)
	for t := range w {
		w[t] = make([]float64, N)
	}
	total := 0.0
	for off := 0; off < len(maps); off += S * S {
		m := maps[off : off+S*S]
		for t := range T {
			for r := range N {
				v := float64(m[t*S+T+r]) + float64(m[(T+r)*S+t])
				w[t][r] += v
				total += v
			}
		}
	}
	if !(total > 0) || math.IsInf(total, 0) { // no cross-modal mass, or NaN/Inf in the maps
		return nil, fmt.Errorf("%w: no finite attention between text and regions", ErrAttentionShape)
	}
	for t := range w {
		for r := range w[t] {
			w[t][r] /= total
		}
	}
	return w, nil
}
