package textproc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzEncode checks, for cased and uncased tokenizers, that Encode never
// panics, fails only with ErrEmptyText and exactly when the normalised text
// is blank, returns encodings meeting every documented invariant, truncates
// to a prefix of the full encoding, is unaffected by chunking, and gives
// what refEncode (the tokenisation of the whole text) gives.
func FuzzEncode(f *testing.F) {
	for _, s := range knownBad {
		f.Add(s)
	}
	for _, s := range []string{
		"", " ", "The red square is playing left of a blue circle.", "Café au lait", "Cafe\u0301!",
		"中国人㐀x", "a\u00a0b\u3000c", "a [MASK] b[SEP]", "🙂 naïve über", "\xff\xfeab\xc3", "unaffable",
		"x\u200by", "\tleft\r\nof\x7f\x00red\u00ad", "👩\u200d🔬 👍🏽", strings.Repeat("ab,", 120),
	} {
		f.Add(s)
	}

	type pair struct{ short, full, tiny *Tokenizer }
	var pairs []pair
	for _, lower := range []bool{false, true} {
		p := pair{newTest(f, lower, 8), newTest(f, lower, 1<<20), newTest(f, lower, 1<<20)}
		p.tiny.chunkBytes = 1
		pairs = append(pairs, p)
	}

	f.Fuzz(func(t *testing.T, text string) {
		for _, p := range pairs {
			lower := p.full.Lowercase()
			full, err := p.full.Encode(text)
			blank := strings.Trim(refNormalize(text, lower), " ") == ""
			switch {
			case errors.Is(err, ErrEmptyText):
				if !blank {
					t.Fatalf("lower=%v Encode(%q): got ErrEmptyText, but text normalises to %q", lower, text, refNormalize(text, lower))
				}
				continue
			case err != nil:
				t.Fatalf("lower=%v Encode(%q): got error %v, want an encoding or ErrEmptyText", lower, text, err)
			case blank:
				t.Fatalf("lower=%v Encode(%q): got %+v, want ErrEmptyText (text normalises to blank)", lower, text, full)
			}
			checkEncoding(t, p.full, text, full)
			if full.Truncated {
				t.Fatalf("lower=%v Encode(%q): got Truncated with MaxLength %d", lower, text, p.full.MaxLength())
			}

			short, err := p.short.Encode(text)
			if err != nil {
				t.Fatalf("lower=%v MaxLength %d Encode(%q): got error %v, want nil", lower, p.short.MaxLength(), text, err)
			}
			checkEncoding(t, p.short, text, short)
			n := len(short.Tokens) - 1
			if len(short.Words) > len(full.Words) || short.FullLength != min(full.FullLength, p.short.MaxLength()+1) || !reflect.DeepEqual(short.Tokens[:n], full.Tokens[:n]) ||
				!reflect.DeepEqual(short.Words, full.Words[:len(short.Words)]) {
				t.Fatalf("lower=%v %q: truncated encoding %+v is not a prefix of %+v", lower, text, short, full)
			}

			tiny, err := p.tiny.Encode(text)
			if err != nil || !reflect.DeepEqual(tiny, full) {
				t.Fatalf("lower=%v %q: chunked at every cut got %+v %v, want %+v", lower, text, tiny, err, full)
			}
			for _, tk := range []*Tokenizer{p.short, p.full} {
				if msg := diffReference(tk, text); msg != "" {
					t.Fatalf("lower=%v MaxLength %d: %s", lower, tk.MaxLength(), msg)
				}
			}
		}
	})
}
