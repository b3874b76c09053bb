package heads

import (
	"errors"
	"fmt"
	"math"
)

// Attention pattern analysis: the six patterns of UNITER's self-attention maps (Chen et al.,
// ECCV 2020, §4.4 and Figure 3), decided from three measured properties of one head's map for
// one input. Everything here is deterministic and uses only the map itself.
//
// A map is the attention of one head in one layer for one (text, image) pair, without padding:
// S = Text + Regions rows and columns, text tokens first ([CLS] at 0, [SEP] at Text-1), then
// regions. Row q is query position q's attention over the key positions (a softmax row; rows
// are renormalised to sum to 1 before measuring, so unnormalised test maps measure the same).
//
// The measures (AttentionMeasures), each a mean over the query rows of a share of row mass:
//
//   - Vertical: mass on the [CLS] and [SEP] columns (the paper's "attention to [CLS]/[SEP]").
//   - Diagonal: mass on the band |q-k| <= Band around the row's own position, inside its own
//     modality, with the [CLS]/[SEP] columns left out (they already count as Vertical).
//   - Intra: of the mass left after removing the [CLS]/[SEP] columns and the diagonal band, the
//     share that stays inside the query's modality, averaged over text rows and over region rows
//     separately and then the two averages averaged ("balanced"), so that a longer caption or
//     more regions does not tilt it: uniform attention gives about 0.5 whatever the sizes, pure
//     intra-modality attention 1, pure inter-modality attention 0.
//
// The decision, in this order, with the thresholds of PatternThresholds:
//
//  1. Vertical >= Partial and Diagonal >= Partial and Vertical+Diagonal >= Combined: Vertical+Diagonal
//  2. Vertical >= Strong: Vertical
//  3. Diagonal >= Strong: Diagonal
//  4. Intra >= Block: Block
//  5. Intra <= Reversed: Reversed Block
//  6. otherwise: Heterogeneous (input-dependent, none of the above)

// Pattern is one of the paper's six attention patterns.
type Pattern int

const (
	Vertical Pattern = iota
	Diagonal
	VerticalDiagonal
	Block
	Heterogeneous
	ReversedBlock
	// NumPatterns is the number of patterns; Pattern values are 0..NumPatterns-1.
	NumPatterns = 6
)

var patternNames = [NumPatterns]string{"vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous", "reversed_block"}

// String is the pattern's stable machine name (as in the API): "vertical", "diagonal",
// "vertical_diagonal", "block", "heterogeneous", "reversed_block".
func (p Pattern) String() string {
	if p < 0 || p >= NumPatterns {
		return fmt.Sprintf("pattern(%d)", int(p))
	}
	return patternNames[p]
}

// MarshalText writes the machine name, so patterns are strings in JSON.
func (p Pattern) MarshalText() ([]byte, error) {
	if p < 0 || p >= NumPatterns {
		return nil, fmt.Errorf("heads: invalid pattern %d", int(p))
	}
	return []byte(patternNames[p]), nil
}

// UnmarshalText reads a machine name.
func (p *Pattern) UnmarshalText(b []byte) error {
	for i, n := range patternNames {
		if n == string(b) {
			*p = Pattern(i)
			return nil
		}
	}
	return fmt.Errorf("heads: unknown attention pattern %q", b)
}

// Patterns lists the six patterns in their fixed order.
func Patterns() []Pattern {
	out := make([]Pattern, NumPatterns)
	for i := range out {
		out[i] = Pattern(i)
	}
	return out
}

// PatternThresholds are every threshold of the classifier, in one place (see the decision list
// in this file's comment). All are shares of row mass in [0, 1] except Band.
type PatternThresholds struct {
	Strong   float64 `json:"strong"`   // Vertical or Diagonal alone
	Partial  float64 `json:"partial"`  // each of Vertical and Diagonal, for Vertical+Diagonal
	Combined float64 `json:"combined"` // their sum, for Vertical+Diagonal
	Block    float64 `json:"block"`    // Intra at or above: Block
	Reversed float64 `json:"reversed"` // Intra at or below: Reversed Block
	Band     int     `json:"band"`     // half-width of the diagonal band (1: self and both neighbours)
}

// DefaultPatternThresholds are the thresholds the service and `uniter attention-stats` use.
// Strong 0.5 means "most of the row's mass"; Partial 0.25 with Combined 0.6 asks for both parts
// to be substantial and together the majority; Block 0.75 and Reversed 0.25 sit halfway between
// uniform attention (Intra ≈ 0.5) and the pure cases (1 and 0).
func DefaultPatternThresholds() PatternThresholds {
	return PatternThresholds{Strong: 0.5, Partial: 0.25, Combined: 0.6, Block: 0.75, Reversed: 0.25, Band: 1}
}

// Validate checks that the thresholds are usable and consistent.
func (th PatternThresholds) Validate() error {
	in01 := func(v float64) bool { return v >= 0 && v <= 1 }
	switch {
	case !in01(th.Strong) || !in01(th.Partial) || !in01(th.Combined) || !in01(th.Block) || !in01(th.Reversed):
		return fmt.Errorf("heads: attention thresholds must lie in [0, 1]: %+v", th)
	case th.Partial > th.Strong:
		return fmt.Errorf("heads: attention threshold partial %v above strong %v", th.Partial, th.Strong)
	case th.Reversed >= th.Block:
		return fmt.Errorf("heads: attention threshold reversed %v not below block %v", th.Reversed, th.Block)
	case th.Band < 0:
		return fmt.Errorf("heads: negative diagonal band %d", th.Band)
	}
	return nil
}

// AttentionLayout gives the sizes of a pair's map: Text tokens ([CLS] first, [SEP] last), then
// Regions. The map is (Text+Regions) × (Text+Regions).
type AttentionLayout struct {
	Text, Regions int
}

// Size is the number of rows (and columns) of the map.
func (l AttentionLayout) Size() int { return l.Text + l.Regions }

// ErrAttentionShape reports a map whose size does not match its layout, or a layout without
// [CLS] and [SEP] or without regions.
var ErrAttentionShape = errors.New("heads: attention map does not match its layout")

// AttentionMeasures are the properties the classifier decides on, and the four blocks' mass for
// display. All are means over the query rows of shares of row mass.
type AttentionMeasures struct {
	Vertical float64 `json:"vertical"`
	Diagonal float64 `json:"diagonal"`
	Intra    float64 `json:"intra"`
	// Blocks is the mean row mass of each block, all columns counted: text rows on text
	// columns, text rows on region columns, region rows on text columns, region rows on region
	// columns. Each pair (TextText+TextImage, ImageText+ImageImage) sums to 1.
	TextText   float64 `json:"text_text"`
	TextImage  float64 `json:"text_image"`
	ImageText  float64 `json:"image_text"`
	ImageImage float64 `json:"image_image"`
}

// MeasureAttention measures one head's map m (row-major, Size()×Size(), see the file comment)
// with a diagonal band of half-width band. Rows with no mass (or a non-finite sum) are left
// out of every mean.
func MeasureAttention(m []float32, l AttentionLayout, band int) (AttentionMeasures, error) {
	var am AttentionMeasures
	S := l.Size()
	if l.Text < 2 || l.Regions < 1 || len(m) != S*S || band < 0 {
		return am, fmt.Errorf("%w: %d values for %d text tokens and %d regions (want at least [CLS], [SEP] and one region)",
			ErrAttentionShape, len(m), l.Text, l.Regions)
	}
	cls, sep := 0, l.Text-1
	var rows [2]int         // rows counted, per query modality (0 text, 1 regions)
	var vert, diag float64  // summed over all rows
	var block [2][2]float64 // [query modality][key modality], summed over rows
	var intra [2]float64    // summed residual intra share, per query modality
	var intraRows [2]int    // rows with a residual, per query modality
	for q := range S {
		row := m[q*S : (q+1)*S]
		var sum float64
		for _, v := range row {
			sum += float64(v)
		}
		if !(sum > 0) || math.IsInf(sum, 0) {
			continue
		}
		qm, lo, hi := 0, 0, l.Text // the query's modality and its column range [lo, hi)
		if q >= l.Text {
			qm, lo, hi = 1, l.Text, S
		}
		rows[qm]++
		var v, d, resIn, resOut float64
		var bm [2]float64
		for k, x := range row {
			w := float64(x) / sum
			km := 0
			if k >= l.Text {
				km = 1
			}
			bm[km] += w
			switch {
			case k == cls || k == sep:
				v += w
			case k >= lo && k < hi && k >= q-band && k <= q+band:
				d += w
			case km == qm:
				resIn += w
			default:
				resOut += w
			}
		}
		vert += v
		diag += d
		block[qm][0] += bm[0]
		block[qm][1] += bm[1]
		if res := resIn + resOut; res > 1e-12 {
			intra[qm] += resIn / res
			intraRows[qm]++
		}
	}
	n := rows[0] + rows[1]
	if n == 0 {
		return am, fmt.Errorf("%w: no row carries attention mass", ErrAttentionShape)
	}
	am.Vertical, am.Diagonal = vert/float64(n), diag/float64(n)
	// Balanced over the modalities that have a residual; neutral (0.5) when neither has one.
	var shares []float64
	for qm := range 2 {
		if intraRows[qm] > 0 {
			shares = append(shares, intra[qm]/float64(intraRows[qm]))
		}
	}
	am.Intra = 0.5
	if len(shares) > 0 {
		am.Intra = 0
		for _, s := range shares {
			am.Intra += s / float64(len(shares))
		}
	}
	mean := func(qm, km int) float64 {
		if rows[qm] == 0 {
			return 0
		}
		return block[qm][km] / float64(rows[qm])
	}
	am.TextText, am.TextImage = mean(0, 0), mean(0, 1)
	am.ImageText, am.ImageImage = mean(1, 0), mean(1, 1)
	return am, nil
}

// Classify decides the pattern from measures (the decision list in this file's comment).
func (th PatternThresholds) Classify(am AttentionMeasures) Pattern {
	v, d := am.Vertical, am.Diagonal
	switch {
	case v >= th.Partial && d >= th.Partial && v+d >= th.Combined:
		return VerticalDiagonal
	case v >= th.Strong:
		return Vertical
	case d >= th.Strong:
		return Diagonal
	case am.Intra >= th.Block:
		return Block
	case am.Intra <= th.Reversed:
		return ReversedBlock
	}
	return Heterogeneous
}

// ClassifyAttention measures one head's map and classifies it.
func ClassifyAttention(m []float32, l AttentionLayout, th PatternThresholds) (Pattern, AttentionMeasures, error) {
	am, err := MeasureAttention(m, l, th.Band)
	if err != nil {
		return Heterogeneous, am, err
	}
	return th.Classify(am), am, nil
}

// PatternCounts counts heads per layer and pattern: Layers[l][p] heads of layer l had pattern p.
type PatternCounts struct {
	Layers [][NumPatterns]int
}

// NewPatternCounts makes empty counts for layers layers.
func NewPatternCounts(layers int) *PatternCounts {
	return &PatternCounts{Layers: make([][NumPatterns]int, layers)}
}

// Add counts one head of layer with pattern p.
func (c *PatternCounts) Add(layer int, p Pattern) { c.Layers[layer][p]++ }

// Merge adds o's counts (same number of layers) to c.
func (c *PatternCounts) Merge(o *PatternCounts) {
	for l := range c.Layers {
		for p := range NumPatterns {
			c.Layers[l][p] += o.Layers[l][p]
		}
	}
}

// Shares is layer's count of each pattern divided by the layer's total (zeros when empty).
func (c *PatternCounts) Shares(layer int) [NumPatterns]float64 {
	var out [NumPatterns]float64
	total := 0
	for _, n := range c.Layers[layer] {
		total += n
	}
	if total == 0 {
		return out
	}
	for p, n := range c.Layers[layer] {
		out[p] = float64(n) / float64(total)
	}
	return out
}

// Total is the number of heads counted in every layer together for pattern p.
func (c *PatternCounts) Total(p Pattern) int {
	n := 0
	for _, l := range c.Layers {
		n += l[p]
	}
	return n
}
