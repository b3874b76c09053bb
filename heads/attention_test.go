package heads

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// mapOf builds a row-normalised attention map for layout l from w(q, k) >= 0.
func mapOf(l AttentionLayout, w func(q, k int) float64) []float32 {
	S := l.Size()
	m := make([]float32, S*S)
	for q := range S {
		var sum float64
		for k := range S {
			sum += w(q, k)
		}
		for k := range S {
			m[q*S+k] = float32(w(q, k) / sum)
		}
	}
	return m
}

// Helpers over the layout: which modality a position is in and whether it is [CLS]/[SEP].
func isText(l AttentionLayout, i int) bool    { return i < l.Text }
func isSpecial(l AttentionLayout, i int) bool { return i == 0 || i == l.Text-1 }
func sameModality(l AttentionLayout, q, k int) bool {
	return isText(l, q) == isText(l, k)
}

// The constructed maps, one per pattern, on a caption of 12 tokens and 20 regions.
var layout = AttentionLayout{Text: 12, Regions: 20}

func verticalMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 {
		if isSpecial(l, k) {
			return 10
		}
		return 0.1
	})
}

func diagonalMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 {
		if q == k {
			return 10
		}
		return 0.1
	})
}

func uniformMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 { return 1 })
}

func blockMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 {
		if sameModality(l, q, k) {
			return 1
		}
		return 0.01
	})
}

func reversedBlockMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 {
		if !sameModality(l, q, k) && !isSpecial(l, k) {
			return 1
		}
		return 0.01
	})
}

func verticalDiagonalMap(l AttentionLayout) []float32 {
	return mapOf(l, func(q, k int) float64 {
		switch {
		case isSpecial(l, k):
			return 4
		case q == k:
			return 6
		}
		return 0.05
	})
}

// mix is (1-a)·x + a·y, entry by entry (rows stay normalised).
func mix(x, y []float32, a float64) []float32 {
	out := make([]float32, len(x))
	for i := range x {
		out[i] = float32((1-a)*float64(x[i]) + a*float64(y[i]))
	}
	return out
}

func TestClassifyConstructedMaps(t *testing.T) {
	th := DefaultPatternThresholds()
	tests := []struct {
		name string
		m    []float32
		want Pattern
	}{
		{"vertical: [CLS]/[SEP] columns", verticalMap(layout), Vertical},
		{"diagonal: self", diagonalMap(layout), Diagonal},
		{"diagonal: neighbours only", mapOf(layout, func(q, k int) float64 {
			if sameModality(layout, q, k) && (k == q-1 || k == q+1) {
				return 5
			}
			return 0.05
		}), Diagonal},
		{"vertical+diagonal", verticalDiagonalMap(layout), VerticalDiagonal},
		{"block: intra-modality", blockMap(layout), Block},
		{"reversed block: inter-modality", reversedBlockMap(layout), ReversedBlock},
		{"heterogeneous: uniform", uniformMap(layout), Heterogeneous},
		{"heterogeneous: every row on one fixed region", mapOf(layout, func(q, k int) float64 {
			if k == layout.Text+3 {
				return 1
			}
			return 0.02
		}), Heterogeneous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, am, err := ClassifyAttention(tt.m, layout, th)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v (measures %+v)", got, tt.want, am)
			}
		})
	}
}

func TestMeasureAttentionValues(t *testing.T) {
	l := AttentionLayout{Text: 4, Regions: 3} // [CLS] a b [SEP] | r0 r1 r2
	tests := []struct {
		name string
		m    []float32
		want AttentionMeasures
	}{
		// Every row all on [CLS]: vertical 1; text rows on text, region rows on text.
		{"all on [CLS]", mapOf(l, func(q, k int) float64 { return b2f(k == 0) }),
			AttentionMeasures{Vertical: 1, Intra: 0.5, TextText: 1, ImageText: 1}},
		// Every row on itself: [CLS] and [SEP] rows count as vertical (2 of 7 rows).
		{"identity", mapOf(l, func(q, k int) float64 { return b2f(q == k) }),
			AttentionMeasures{Vertical: 2.0 / 7, Diagonal: 5.0 / 7, Intra: 0.5, TextText: 1, ImageImage: 1}},
		// Text rows on region r2 (outside every text band), region rows on word "a" (column 1):
		// all of the residual leaves the modality.
		{"pure inter-modality", mapOf(l, func(q, k int) float64 {
			return b2f((q < 4 && k == 6) || (q >= 4 && k == 1))
		}), AttentionMeasures{Intra: 0, TextImage: 1, ImageText: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MeasureAttention(tt.m, l, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !measuresClose(got, tt.want, 1e-6) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func measuresClose(a, b AttentionMeasures, tol float64) bool {
	x := []float64{a.Vertical, a.Diagonal, a.Intra, a.TextText, a.TextImage, a.ImageText, a.ImageImage}
	y := []float64{b.Vertical, b.Diagonal, b.Intra, b.TextText, b.TextImage, b.ImageText, b.ImageImage}
	for i := range x {
		if math.Abs(x[i]-y[i]) > tol {
			return false
		}
	}
	return true
}

func TestMeasureAttentionInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	random := mapOf(layout, func(q, k int) float64 { return math.Exp(3 * rng.NormFloat64()) })

	t.Run("row scale does not matter", func(t *testing.T) {
		scaled := make([]float32, len(random))
		S := layout.Size()
		for i, v := range random {
			scaled[i] = v * float32(1+i/S) // row q times q+1
		}
		a, _ := MeasureAttention(random, layout, 1)
		b, _ := MeasureAttention(scaled, layout, 1)
		if !measuresClose(a, b, 1e-6) {
			t.Errorf("scaled rows: got %+v, want %+v", b, a)
		}
	})
	t.Run("rows without mass are skipped", func(t *testing.T) {
		m := verticalMap(layout)
		S := layout.Size()
		for k := range S {
			m[5*S+k] = 0 // a row that carries nothing, e.g. a padded query
		}
		got, err := MeasureAttention(m, layout, 1)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := MeasureAttention(verticalMap(layout), layout, 1)
		// Every row of the vertical map measures the same except [CLS]/[SEP] rows' band, so
		// dropping a word row moves the means only slightly; the pattern must not change.
		if DefaultPatternThresholds().Classify(got) != Vertical || math.Abs(got.Vertical-want.Vertical) > 0.01 {
			t.Errorf("got %+v, want close to %+v", got, want)
		}
	})
	t.Run("blocks sum to one per query modality", func(t *testing.T) {
		am, _ := MeasureAttention(random, layout, 1)
		if math.Abs(am.TextText+am.TextImage-1) > 1e-6 || math.Abs(am.ImageText+am.ImageImage-1) > 1e-6 {
			t.Errorf("got text %v+%v, image %v+%v, want each pair to sum to 1", am.TextText, am.TextImage, am.ImageText, am.ImageImage)
		}
		for name, v := range map[string]float64{"vertical": am.Vertical, "diagonal": am.Diagonal, "intra": am.Intra} {
			if v < 0 || v > 1 {
				t.Errorf("%s = %v, want in [0, 1]", name, v)
			}
		}
	})
	t.Run("uniform is balanced whatever the sizes", func(t *testing.T) {
		for _, l := range []AttentionLayout{{Text: 5, Regions: 60}, {Text: 40, Regions: 10}, {Text: 20, Regions: 36}} {
			am, _ := MeasureAttention(uniformMap(l), l, 1)
			if math.Abs(am.Intra-0.5) > 0.1 {
				t.Errorf("layout %+v: intra %v, want about 0.5", l, am.Intra)
			}
			if got := DefaultPatternThresholds().Classify(am); got != Heterogeneous {
				t.Errorf("layout %+v: got %v, want heterogeneous", l, got)
			}
		}
	})
}

func TestMeasureAttentionErrors(t *testing.T) {
	tests := []struct {
		name string
		m    []float32
		l    AttentionLayout
	}{
		{"size mismatch", make([]float32, 10), AttentionLayout{Text: 2, Regions: 2}},
		{"no [SEP]", make([]float32, 4), AttentionLayout{Text: 1, Regions: 1}},
		{"no regions", make([]float32, 9), AttentionLayout{Text: 3}},
		{"all zero", make([]float32, 16), AttentionLayout{Text: 2, Regions: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MeasureAttention(tt.m, tt.l, 1); !errors.Is(err, ErrAttentionShape) {
				t.Errorf("got %v, want ErrAttentionShape", err)
			}
		})
	}
}

// TestClassifyBorderline checks each threshold from both sides: exactly at a threshold the
// pattern applies (>=, <=), just past it the next rule decides.
func TestClassifyBorderline(t *testing.T) {
	th := DefaultPatternThresholds()
	const eps = 1e-9
	m := func(v, d, intra float64) AttentionMeasures {
		return AttentionMeasures{Vertical: v, Diagonal: d, Intra: intra}
	}
	tests := []struct {
		name string
		am   AttentionMeasures
		want Pattern
	}{
		{"vertical at strong", m(0.5, 0.1, 0.5), Vertical},
		{"vertical just below strong", m(0.5-eps, 0.1, 0.5), Heterogeneous},
		{"vertical, diagonal just below partial", m(0.7, 0.25-eps, 0.5), Vertical},
		{"vertical, diagonal at partial", m(0.7, 0.25, 0.5), VerticalDiagonal},
		{"diagonal at strong", m(0.1, 0.5, 0.5), Diagonal},
		{"diagonal just below strong falls to block", m(0.1, 0.5-eps, 0.9), Block},
		{"both at partial, sum at combined", m(0.25, 0.35, 0.5), VerticalDiagonal},
		{"both at partial, sum just below combined", m(0.25, 0.35-eps, 0.5), Heterogeneous},
		{"vertical just below partial, diagonal strong", m(0.25-eps, 0.6, 0.5), Diagonal},
		{"block at threshold", m(0.1, 0.1, 0.75), Block},
		{"block just below threshold", m(0.1, 0.1, 0.75-eps), Heterogeneous},
		{"reversed at threshold", m(0.1, 0.1, 0.25), ReversedBlock},
		{"reversed just above threshold", m(0.1, 0.1, 0.25+eps), Heterogeneous},
		{"vertical wins over block", m(0.6, 0, 1), Vertical},
		{"diagonal wins over reversed", m(0, 0.6, 0), Diagonal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := th.Classify(tt.am); got != tt.want {
				t.Errorf("got %v, want %v (%+v)", got, tt.want, tt.am)
			}
		})
	}
}

// TestClassifyBorderlineMaps blends a pattern's map with uniform attention and checks that the
// label flips once, where the measured property crosses its threshold.
func TestClassifyBorderlineMaps(t *testing.T) {
	th := DefaultPatternThresholds()
	uniform := uniformMap(layout)
	tests := []struct {
		name    string
		pattern []float32
		want    Pattern
		measure func(AttentionMeasures) float64
		limit   float64
	}{
		{"vertical", verticalMap(layout), Vertical, func(am AttentionMeasures) float64 { return am.Vertical }, th.Strong},
		{"diagonal", diagonalMap(layout), Diagonal, func(am AttentionMeasures) float64 { return am.Diagonal }, th.Strong},
		{"block", blockMap(layout), Block, func(am AttentionMeasures) float64 { return am.Intra }, th.Block},
		{"reversed block", reversedBlockMap(layout), ReversedBlock, func(am AttentionMeasures) float64 { return 1 - am.Intra }, 1 - th.Reversed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flips := 0
			prev := tt.want
			for i := 0; i <= 100; i++ {
				a := float64(i) / 100 // share of uniform attention
				p, am, err := ClassifyAttention(mix(tt.pattern, uniform, a), layout, th)
				if err != nil {
					t.Fatal(err)
				}
				v := tt.measure(am)
				if (v >= tt.limit) != (p == tt.want) {
					t.Fatalf("mix %.2f: measure %.4f vs threshold %.2f but pattern %v", a, v, tt.limit, p)
				}
				if p != prev {
					flips++
					prev = p
				}
			}
			if flips != 1 || prev != Heterogeneous {
				t.Errorf("got %d label changes ending in %v, want one change to heterogeneous", flips, prev)
			}
		})
	}
}

func TestPatternNames(t *testing.T) {
	want := []string{"vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous", "reversed_block"}
	for i, p := range Patterns() {
		raw, err := json.Marshal(p)
		if err != nil || string(raw) != `"`+want[i]+`"` {
			t.Errorf("json.Marshal(%d) = %s, %v; want %q", i, raw, err, want[i])
		}
		var back Pattern
		if err := json.Unmarshal(raw, &back); err != nil || back != p {
			t.Errorf("round trip of %s: got %v, %v", raw, back, err)
		}
	}
	var p Pattern
	if err := json.Unmarshal([]byte(`"spiral"`), &p); err == nil {
		t.Error("unknown pattern name: got no error")
	}
	if _, err := json.Marshal(Pattern(9)); err == nil {
		t.Error("invalid pattern: got no error")
	}
}

func TestPatternThresholdsValidate(t *testing.T) {
	if err := DefaultPatternThresholds().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := map[string]func(*PatternThresholds){
		"strong above 1":           func(th *PatternThresholds) { th.Strong = 1.5 },
		"partial above strong":     func(th *PatternThresholds) { th.Partial = 0.6 },
		"reversed not below block": func(th *PatternThresholds) { th.Reversed = 0.8 },
		"negative band":            func(th *PatternThresholds) { th.Band = -1 },
		"NaN":                      func(th *PatternThresholds) { th.Block = math.NaN() },
	}
	for name, f := range bad {
		th := DefaultPatternThresholds()
		f(&th)
		if err := th.Validate(); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestPatternCounts(t *testing.T) {
	c := NewPatternCounts(2)
	c.Add(0, Vertical)
	c.Add(0, Vertical)
	c.Add(0, Block)
	c.Add(1, Heterogeneous)
	o := NewPatternCounts(2)
	o.Add(0, Diagonal)
	c.Merge(o)
	got := c.Shares(0)
	want := [NumPatterns]float64{Vertical: 0.5, Diagonal: 0.25, Block: 0.25}
	if got != want {
		t.Errorf("layer 0 shares: got %v, want %v", got, want)
	}
	if c.Total(Vertical) != 2 || c.Total(Heterogeneous) != 1 {
		t.Errorf("totals: got vertical %d, heterogeneous %d; want 2, 1", c.Total(Vertical), c.Total(Heterogeneous))
	}
	if s := NewPatternCounts(1).Shares(0); s != ([NumPatterns]float64{}) {
		t.Errorf("empty layer: got %v, want zeros", s)
	}
}
