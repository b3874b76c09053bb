package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestAlignPreparedEqualsAlign checks AlignPrepared against Align on the same regions given
// the caller's way (validated and prepared again): same tokens, plan, word regions and score.
func TestAlignPreparedEqualsAlign(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	ctx := context.Background()
	images, texts := goldenImages(t, b)
	for i, img := range images {
		r := regionsOf(img)
		want, err := b.Align(ctx, Input{Regions: &r}, texts[i], AlignOptions{TopRegions: 2})
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.AlignPrepared(ctx, img, texts[i], AlignOptions{TopRegions: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Tokens) != len(want.Tokens) || len(got.Plan) != len(want.Plan) || len(got.WordRegions) != len(want.WordRegions) {
			t.Fatalf("pair %d: shapes differ: %d/%d tokens, %d/%d plan rows, %d/%d words", i, len(got.Tokens), len(want.Tokens),
				len(got.Plan), len(want.Plan), len(got.WordRegions), len(want.WordRegions))
		}
		if d := math.Abs(float64(got.Logit - want.Logit)); d > 1e-5 {
			t.Errorf("pair %d: logit %v, Align says %v", i, got.Logit, want.Logit)
		}
		for r := range got.Plan {
			for c := range got.Plan[r] {
				if d := math.Abs(got.Plan[r][c] - want.Plan[r][c]); d > 1e-6 {
					t.Fatalf("pair %d: plan[%d][%d] %v, Align says %v", i, r, c, got.Plan[r][c], want.Plan[r][c])
				}
			}
		}
		for w := range got.WordRegions {
			g, x := got.WordRegions[w], want.WordRegions[w]
			if g.Word != x.Word || len(g.Regions) != len(x.Regions) || (len(g.Regions) > 0 && g.Regions[0].Region != x.Regions[0].Region) {
				t.Errorf("pair %d word %d: regions %v, Align says %v", i, w, g, x)
			}
		}
	}
	if _, err := b.AlignPrepared(ctx, images[0], "", AlignOptions{}); err == nil {
		t.Error("empty text: no error")
	}
}
