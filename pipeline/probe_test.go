package pipeline

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
	ort "github.com/uniter-serve/uniter/runtime"
)

// mlmAll runs the MLM head on every text position of one pair through RunGraph (the whole
// sequence, not FillMask's gather) and returns the probabilities at position p.
func mlmAll(t *testing.T, b *Bundle, regions *detector.Prepared, text string, p int) []float32 {
	t.Helper()
	enc, err := b.Tokenize(text)
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.Encode(context.Background(), []Pair{{Text: enc, Regions: regions}}, false)
	if err != nil {
		t.Fatal(err)
	}
	T := len(enc.Tokens)
	var hidden []float32
	for _, r := range e.TextHidden(0) {
		hidden = append(hidden, r...)
	}
	out, err := b.RunGraph(context.Background(), GraphMLMHead, map[string]ort.Tensor{
		"hidden": {Shape: []int64{1, int64(T), int64(e.H)}, F32: hidden}})
	if err != nil {
		t.Fatal(err)
	}
	V := b.Manifest.Model.VocabSize
	return softmax(out["mlm_logits"].F32[p*V : (p+1)*V])
}

func TestFillMask(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	ctx := context.Background()
	images, _ := goldenImages(t, b)
	const text = "a red [MASK] left of a [MASK] circle"
	r := regionsOf(images[0])
	out, err := b.FillMask(ctx, Input{Regions: &r}, text, FillMaskOptions{TopK: 4, WithoutImage: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Masks) != 2 {
		t.Fatalf("got %d masks, want 2 (tokens %+v)", len(out.Masks), out.Tokens)
	}
	special := b.SpecialIDs()
	blank := images[0].Blanked()
	for i, m := range out.Masks {
		if got := string([]rune(text)[m.Start:m.End]); got != "[MASK]" {
			t.Errorf("mask %d spans %q", i, got)
		}
		for _, c := range []struct {
			name    string
			top     []TokenProb
			regions *detector.Prepared
		}{{"with image", m.Top, images[0]}, {"without image", m.TopWithoutImage, blank}} {
			want := mlmAll(t, b, c.regions, text, m.Position)
			if len(c.top) != 4 {
				t.Fatalf("mask %d %s: %d predictions", i, c.name, len(c.top))
			}
			// The k best non-special tokens of the independent computation, in order.
			var ids []int64
			for id := range want {
				if !slices.Contains(special, int64(id)) {
					ids = append(ids, int64(id))
				}
			}
			slices.SortStableFunc(ids, func(x, y int64) int {
				if want[x] > want[y] {
					return -1
				} else if want[x] < want[y] {
					return 1
				}
				return 0
			})
			for k, p := range c.top {
				if p.ID != ids[k] || math.Abs(float64(p.Probability-want[p.ID])) > 1e-6 {
					t.Errorf("mask %d %s #%d: got %s (%d) p=%v, want id %d p=%v", i, c.name, k, p.Token, p.ID, p.Probability, ids[k], want[ids[k]])
				}
				if tok, _ := b.tokenizer.TokenText(p.ID); tok != p.Token {
					t.Errorf("token text %q for id %d, vocab says %q", p.Token, p.ID, tok)
				}
			}
		}
		if slices.Equal(m.Top, m.TopWithoutImage) {
			t.Errorf("mask %d: blanking the image changed nothing: %+v", i, m.Top)
		}
	}
}

func TestFillMaskErrors(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	images, _ := goldenImages(t, b)
	r := regionsOf(images[0])
	var ie *InputError
	_, err := b.FillMask(context.Background(), Input{Regions: &r}, "a red square", FillMaskOptions{})
	if !errors.As(err, &ie) || ie.Code != CodeInvalidText {
		t.Fatalf("no mask: got %v", err)
	}
	_, err = b.FillMask(context.Background(), Input{}, "a [MASK] square", FillMaskOptions{})
	if !errors.As(err, &ie) || ie.Code != CodeInvalidInput {
		t.Fatalf("no image: got %v", err)
	}
}

func TestRegionClasses(t *testing.T) {
	b := loadFixture(t, testenv.Env(t))
	images, texts := goldenImages(t, b)
	out, err := b.RegionClasses(context.Background(), images[0], texts[0])
	if err != nil {
		t.Fatal(err)
	}
	probs := out.Probs
	enc, _ := b.Tokenize(texts[0])
	e, err := b.Encode(context.Background(), []Pair{{Text: enc, Regions: images[0]}}, false)
	if err != nil {
		t.Fatal(err)
	}
	C, N := b.Manifest.Model.LabelDim, images[0].Len()
	if len(probs) != N*C {
		t.Fatalf("%d probabilities, want %d", len(probs), N*C)
	}
	// Independent: the head on the whole padded sequence's region rows, one region at a time.
	for r := range N {
		out, err := b.RunGraph(context.Background(), GraphMRCHead, map[string]ort.Tensor{
			"hidden": {Shape: []int64{1, 1, int64(e.H)}, F32: e.Row(0, e.T+r)}})
		if err != nil {
			t.Fatal(err)
		}
		want := softmax(out["mrc_logits"].F32)
		for c := range C {
			if d := math.Abs(float64(probs[r*C+c] - want[c])); d > 1e-6 {
				t.Fatalf("region %d class %d: %v, want %v", r, c, probs[r*C+c], want[c])
			}
		}
	}
}
