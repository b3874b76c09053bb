package api

import (
	"encoding/base64"
	"math"

	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/pipeline"
)

// AttentionEncoding names the compact form of the maps in AttentionJSON: each map is S×S bytes,
// row-major, in standard base64; entry ≈ byte / 255 × scale, where scale is the map's largest
// value. The patterns and measures are computed on the full-precision maps.
const AttentionEncoding = "uint8-scaled"

// AttentionJSON is every head's self-attention map of the aligned pair (POST /v1/align with
// "attention": true). Rows and columns are the pair's positions without padding: the text
// tokens (as in tokens), then the regions (as in regions). Row q is query q's attention.
type AttentionJSON struct {
	Layers     int                     `json:"layers"`
	Heads      int                     `json:"heads"`
	Text       int                     `json:"text"`    // positions 0 … text-1
	Regions    int                     `json:"regions"` // positions text … text+regions-1
	Encoding   string                  `json:"encoding"`
	Thresholds heads.PatternThresholds `json:"thresholds"`
	Maps       []HeadAttention         `json:"maps"` // maps[layer·heads + head]
	// PatternCounts[l] counts layer l's heads per pattern (every pattern present, zeros too).
	PatternCounts []map[heads.Pattern]int `json:"pattern_counts"`
	// CrossAttention is the word-region alignment read from these maps (tokens × regions,
	// sums to 1; heads.CrossAttention) and WordRegions each word's best regions by it, in the
	// form of the response's OT word_regions.
	CrossAttention [][]float64   `json:"cross_attention"`
	WordRegions    []WordRegions `json:"word_regions"`
}

// HeadAttention is one head's map with its pattern and the measures it was decided from.
type HeadAttention struct {
	Layer    int                     `json:"layer"`
	Head     int                     `json:"head"`
	Pattern  heads.Pattern           `json:"pattern"`
	Measures heads.AttentionMeasures `json:"measures"`
	Scale    float32                 `json:"scale"`
	Data     string                  `json:"data"`
}

func newAttentionJSON(a *pipeline.PairAttention) *AttentionJSON {
	out := &AttentionJSON{Layers: a.Layers, Heads: a.Heads, Text: a.Layout.Text, Regions: a.Layout.Regions,
		Encoding: AttentionEncoding, Thresholds: a.Thresholds}
	S := a.Layout.Size()
	buf := make([]byte, S*S)
	for l := range a.Layers {
		counts := make(map[heads.Pattern]int, heads.NumPatterns)
		for _, p := range heads.Patterns() {
			counts[p] = 0
		}
		for h := range a.Heads {
			m := a.Map(l, h)
			var scale float32
			for _, v := range m {
				scale = max(scale, v)
			}
			for i, v := range m {
				if scale > 0 {
					buf[i] = byte(math.Round(float64(v / scale * 255)))
				} else {
					buf[i] = 0
				}
			}
			p := a.Patterns[l*a.Heads+h]
			counts[p]++
			out.Maps = append(out.Maps, HeadAttention{Layer: l, Head: h, Pattern: p, Measures: a.Measures[l*a.Heads+h],
				Scale: scale, Data: base64.StdEncoding.EncodeToString(buf)})
		}
		out.PatternCounts = append(out.PatternCounts, counts)
	}
	return out
}
