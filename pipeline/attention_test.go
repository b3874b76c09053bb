package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/heads"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestAlignAttention: Align with Attention returns each pair's unpadded maps, equal to
// PyTorch's single-pair attention and to the same pair's maps cut out of a padded batch, with
// every head classified from its own map.
func TestAlignAttention(t *testing.T) {
	g := loadGolden(t)
	env := testenv.Env(t)
	b := loadFixture(t, env)
	ctx := context.Background()
	L, H := b.Manifest.Model.NumHiddenLayers, b.Manifest.Model.NumAttentionHeads
	th := heads.DefaultPatternThresholds()

	regions := func(i int) *detector.Regions {
		p := g.Pairs[i]
		boxes := make([]detector.Box, len(p.Boxes))
		for j, bx := range p.Boxes {
			boxes[j] = detector.Box(bx)
		}
		return &detector.Regions{Width: p.Width, Height: p.Height, Boxes: boxes, Features: p.Features}
	}
	alone := make([]*PairAttention, len(g.Pairs))
	for i, p := range g.Pairs {
		a, err := b.Align(ctx, Input{Regions: regions(i)}, p.Text, AlignOptions{Attention: true})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := b.Align(ctx, Input{Regions: regions(i)}, p.Text, AlignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if plain.Attention != nil {
			t.Errorf("pair %d: attention without asking for it", i)
		}
		if math.Abs(float64(a.Logit-plain.Logit)) > 1e-5 || math.Abs(a.OTDistance-plain.OTDistance) > 1e-5 {
			t.Errorf("pair %d: logit %v / OT %v with attention, %v / %v without", i, a.Logit, a.OTDistance, plain.Logit, plain.OTDistance)
		}
		at := a.Attention
		want := heads.AttentionLayout{Text: len(a.Tokens), Regions: len(p.Boxes)}
		if at == nil || at.Layout != want || at.Layers != L || at.Heads != H {
			t.Fatalf("pair %d: got %+v, want layout %+v, %d layers, %d heads", i, at, want, L, H)
		}
		S := want.Size()
		for l := range L {
			for h := range H {
				m := at.Map(l, h)
				for q := range S {
					var sum float64
					for _, v := range m[q*S : (q+1)*S] {
						sum += float64(v)
					}
					if math.Abs(sum-1) > 1e-4 {
						t.Fatalf("pair %d layer %d head %d row %d sums to %v, want 1", i, l, h, q, sum)
					}
				}
				p, am, err := heads.ClassifyAttention(m, at.Layout, th)
				if err != nil || p != at.Patterns[l*H+h] || am != at.Measures[l*H+h] {
					t.Errorf("pair %d layer %d head %d: pattern %v, want %v from its map (%v)", i, l, h, at.Patterns[l*H+h], p, err)
				}
			}
		}
		alone[i] = at
	}

	// PyTorch's attention for the single-pair batches has no padding: it is the map itself.
	for _, gb := range g.Batches {
		if len(gb.Pairs) != 1 {
			continue
		}
		i := gb.Pairs[0]
		if d := maxAbsDiff(t, "attention", alone[i].Maps, flatten(gb.Attention)); d > 1e-4 {
			t.Errorf("pair %d: attention max abs diff %.3g from PyTorch, want ≤ 1e-4", i, d)
		}
	}

	// Inside a padded batch (texts and regions of different lengths) a pair's maps are the same.
	var pairs []Pair
	for i, p := range g.Pairs {
		enc, err := b.tokenize("text", p.Text)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := b.prepare(*regions(i))
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, Pair{Text: enc, Regions: reg})
	}
	e, err := b.Encode(ctx, pairs, true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		in, err := b.ClassifyAttention(e, i, th)
		if err != nil {
			t.Fatal(err)
		}
		if in.Layout != alone[i].Layout {
			t.Fatalf("pair %d: layout %+v in a batch, %+v alone", i, in.Layout, alone[i].Layout)
		}
		worst := 0.0
		for k := range in.Maps {
			worst = math.Max(worst, math.Abs(float64(in.Maps[k]-alone[i].Maps[k])))
		}
		if worst > 1e-5 {
			t.Errorf("pair %d: maps in a padded batch differ from alone by %.3g, want ≤ 1e-5", i, worst)
		}
	}
}
