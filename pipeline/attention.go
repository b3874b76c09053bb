package pipeline

import (
	"fmt"

	"github.com/uniter-serve/uniter/heads"
)

// Attention analysis: every head's self-attention map of one pair, labelled with the paper's
// six patterns (heads.PatternThresholds.Classify), for POST /v1/align with "attention": true.
// It runs the bundle's encoder_attention graph, the encoder with its attention probabilities
// as an extra output.

// PairAttention is one pair's attention, without padding: S = Layout.Size() positions, the
// pair's tokens first ([CLS] … [SEP]) then its regions, in the order of Alignment.Tokens and
// Alignment.Regions.
type PairAttention struct {
	Layout        heads.AttentionLayout
	Layers, Heads int
	// Maps holds Layers × Heads maps of S × S, row-major; row q is query q's attention over
	// the S keys (each row sums to 1).
	Maps       []float32
	Patterns   []heads.Pattern           // Layers × Heads, layer-major (nil from pairMaps)
	Measures   []heads.AttentionMeasures // Layers × Heads, what each pattern was decided from
	Thresholds heads.PatternThresholds
}

// Map is head h of layer l, S × S row-major (a view into Maps: do not modify).
func (a *PairAttention) Map(l, h int) []float32 {
	S := a.Layout.Size()
	off := (l*a.Heads + h) * S * S
	return a.Maps[off : off+S*S]
}

// ClassifyAttention is AttentionMaps with each head classified by th.
func (b *Bundle) ClassifyAttention(e *Encoded, i int, th heads.PatternThresholds) (*PairAttention, error) {
	a, err := b.AttentionMaps(e, i)
	if err != nil {
		return nil, err
	}
	a.Patterns, a.Measures, a.Thresholds = make([]heads.Pattern, a.Layers*a.Heads), make([]heads.AttentionMeasures, a.Layers*a.Heads), th
	for l := range a.Layers {
		for h := range a.Heads {
			p, am, err := heads.ClassifyAttention(a.Map(l, h), a.Layout, th)
			if err != nil {
				return nil, fmt.Errorf("layer %d head %d: %w", l, h, err)
			}
			a.Patterns[l*a.Heads+h], a.Measures[l*a.Heads+h] = p, am
		}
	}
	return a, nil
}

// AttentionMaps cuts pair i's unpadded maps out of a batch encoded with its attention (no
// patterns). The padded layout is [text T | regions N] per axis; the pair's own positions are
// its first t text positions and its first n region positions.
func (b *Bundle) AttentionMaps(e *Encoded, i int) (*PairAttention, error) {
	L, H := b.Manifest.Model.NumHiddenLayers, b.Manifest.Model.NumAttentionHeads
	B, P := len(e.Pairs), e.T+e.N
	if len(e.attention) != B*L*H*P*P {
		return nil, fmt.Errorf("attention output has %d values, want %d×%d×%d×%d×%d", len(e.attention), B, L, H, P, P)
	}
	t, n := len(e.Pairs[i].Text.Tokens), e.Pairs[i].Regions.Len()
	pos := make([]int, 0, t+n) // padded index of each unpadded position
	for s := range t {
		pos = append(pos, s)
	}
	for s := range n {
		pos = append(pos, e.T+s)
	}
	S := len(pos)
	a := &PairAttention{Layout: heads.AttentionLayout{Text: t, Regions: n}, Layers: L, Heads: H,
		Maps: make([]float32, L*H*S*S)}
	for l := range L {
		for h := range H {
			src := e.attention[((i*L+l)*H+h)*P*P:]
			dst := a.Map(l, h)
			for q, pq := range pos {
				row := src[pq*P : (pq+1)*P]
				for k, pk := range pos {
					dst[q*S+k] = row[pk]
				}
			}
		}
	}
	return a, nil
}

// HasAttention reports whether the bundle can return attention maps.
func (b *Bundle) HasAttention() bool { return b.attention != nil }
