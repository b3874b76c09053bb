package textproc

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

const testVocab = "testdata/vocab.txt"

// newTest returns a tokenizer on the test vocabulary.
func newTest(tb testing.TB, lowercase bool, maxLength int) *Tokenizer {
	tb.Helper()
	tk, err := New(Config{VocabPath: testVocab, Lowercase: lowercase, MaxLength: maxLength})
	if err != nil {
		tb.Fatalf("New: got error %v, want nil", err)
	}
	return tk
}

// runeBytes returns the byte offset of every rune of s (Go's range
// semantics) followed by len(s).
func runeBytes(s string) []int {
	var out []int
	for b := range s {
		out = append(out, b)
	}
	return append(out, len(s))
}

// sub returns the original text s of rune range [start, end), given rb =
// runeBytes(s).
func sub(s string, rb []int, start, end int) string {
	return s[rb[start]:rb[end]]
}

// refNormalize is a whole-string reference normalisation: clean, then for
// uncased models NFD over the whole string, drop Mn, lower-case. It has no
// offset bookkeeping and no CJK padding.
func refNormalize(s string, lowercase bool) string {
	s = strings.Map(func(r rune) rune {
		if c, ok := cleanRune(r); ok {
			return c
		}
		return -1
	}, s)
	if !lowercase {
		return s
	}
	s = norm.NFD.String(s)
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) {
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

// checkEncoding verifies every documented invariant of an Encoding of text.
func checkEncoding(tb testing.TB, tk *Tokenizer, text string, enc Encoding) {
	tb.Helper()
	rb := runeBytes(text)
	n := len(rb) - 1
	toks := enc.Tokens
	if len(toks) < 3 || len(toks) > tk.MaxLength() {
		tb.Fatalf("%q: got %d tokens, want between 3 and MaxLength %d", text, len(toks), tk.MaxLength())
	}
	first, last := toks[0], toks[len(toks)-1]
	clsText, _ := tk.TokenText(tk.CLSID())
	sepText, _ := tk.TokenText(tk.SEPID())
	wantCLS := Token{ID: tk.CLSID(), Text: clsText, Start: 0, End: 0, Word: -1, Special: true}
	if first != wantCLS {
		tb.Errorf("%q: first token: got %+v, want %+v", text, first, wantCLS)
	}
	wantSEP := Token{ID: tk.SEPID(), Text: sepText, Start: n, End: n, Word: -1, Special: true}
	if last != wantSEP {
		tb.Errorf("%q: last token: got %+v, want %+v", text, last, wantSEP)
	}
	if enc.FullLength < len(toks) {
		tb.Errorf("%q: got FullLength %d, want >= %d tokens", text, enc.FullLength, len(toks))
	}
	if got, want := enc.Truncated, enc.FullLength > len(toks); got != want {
		tb.Errorf("%q: got Truncated %v, want %v (FullLength %d, %d tokens)", text, got, want, enc.FullLength, len(toks))
	}
	if enc.Truncated && len(toks) != tk.MaxLength() {
		tb.Errorf("%q: truncated to %d tokens, want MaxLength %d", text, len(toks), tk.MaxLength())
	}

	prevStart, prevWord := 0, -1
	for i, tok := range toks[1 : len(toks)-1] {
		if tok.Special {
			tb.Errorf("%q: token %d %+v: got Special, want only [CLS] and [SEP]", text, i+1, tok)
		}
		if tok.Start < 0 || tok.End <= tok.Start || tok.End > n {
			tb.Errorf("%q: token %d %+v: got offsets [%d,%d), want 0 <= Start < End <= %d", text, i+1, tok, tok.Start, tok.End, n)
			continue
		}
		if tok.Start < prevStart {
			tb.Errorf("%q: token %d %+v: got Start %d, want >= previous Start %d", text, i+1, tok, tok.Start, prevStart)
		}
		prevStart = tok.Start
		if vt, ok := tk.TokenText(tok.ID); !ok || vt != tok.Text {
			tb.Errorf("%q: token %d %+v: vocabulary text of id %d: got %q %v, want %q", text, i+1, tok, tok.ID, vt, ok, tok.Text)
		}
		if tok.Word != prevWord && tok.Word != prevWord+1 {
			tb.Errorf("%q: token %d %+v: got Word %d, want %d or %d", text, i+1, tok, tok.Word, prevWord, prevWord+1)
		}
		prevWord = tok.Word
		if tok.Word < 0 || tok.Word >= len(enc.Words) {
			tb.Errorf("%q: token %d %+v: got Word %d, want an index of the %d words", text, i+1, tok, tok.Word, len(enc.Words))
			continue
		}
		w := enc.Words[tok.Word]
		if tok.Start < w.Start || tok.End > w.End {
			tb.Errorf("%q: token %d %+v: got span [%d,%d), want inside word %+v", text, i+1, tok, tok.Start, tok.End, w)
		}
	}
	if prevWord+1 != len(enc.Words) {
		tb.Errorf("%q: got %d words, want %d (last token word + 1)", text, len(enc.Words), prevWord+1)
	}
	prevEnd := 0
	for i, w := range enc.Words {
		if w.Start < prevEnd || w.End <= w.Start || w.End > n {
			tb.Errorf("%q: word %d %+v: want %d <= Start < End <= %d", text, i, w, prevEnd, n)
			continue
		}
		prevEnd = w.End
		if got := sub(text, rb, w.Start, w.End); w.Text != got {
			tb.Errorf("%q: word %d: got Text %q, want original text %q", text, i, w.Text, got)
		}
	}
}

// checkTokenText verifies that each ordinary token's original span
// normalises to the token's text without "##" (not for [UNK] and special
// tokens); valid when no character is shared between word pieces.
func checkTokenText(tb testing.TB, tk *Tokenizer, text string, enc Encoding) {
	tb.Helper()
	rb := runeBytes(text)
	for _, tok := range enc.Tokens {
		if tok.Special || tok.ID == tk.UNKID() || tok.ID == tk.MaskID() || tok.ID == tk.CLSID() || tok.ID == tk.SEPID() || tok.ID == tk.PadID() {
			continue
		}
		orig := sub(text, rb, tok.Start, tok.End)
		got := refNormalize(orig, tk.Lowercase())
		want := strings.TrimPrefix(tok.Text, "##")
		if got != want {
			tb.Errorf("%q: token %+v: original span %q normalises to %q, want %q", text, tok, orig, got, want)
		}
	}
}

// encodeOK encodes and fails the test on error.
func encodeOK(tb testing.TB, tk *Tokenizer, text string) Encoding {
	tb.Helper()
	enc, err := tk.Encode(text)
	if err != nil {
		tb.Fatalf("Encode(%q): got error %v, want nil", text, err)
	}
	checkEncoding(tb, tk, text, enc)
	return enc
}

// isErr reports whether err is target, for table messages.
func isErr(err, target error) bool { return errors.Is(err, target) }
