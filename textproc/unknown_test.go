package textproc

import (
	"reflect"
	"strings"
	"testing"
)

func newClosed(tb testing.TB, lowercase, closed bool, maxLength int) *Tokenizer {
	tb.Helper()
	tk, err := New(Config{VocabPath: testVocab, Lowercase: lowercase, MaxLength: maxLength, ClosedVocabulary: closed})
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

// TestUnknownWords: the words a vocabulary does not know, with their spans in the original
// text: [UNK] words always; with a closed vocabulary also words spelt in word pieces.
func TestUnknownWords(t *testing.T) {
	type uw = UnknownWord
	cases := []struct {
		name      string
		lowercase bool
		closed    bool
		maxLength int
		text      string
		want      []UnknownWord
	}{
		{"all known", true, true, 40, "the red square left of the blue circle", nil},
		{"known, punctuation", true, true, 40, "the red square, on the left!", nil},
		{"known after normalisation", true, true, 40, "The  RED\u00a0square\u200b", nil},
		{"accent stripped to a known word", true, true, 40, "Café", nil},
		// "rose": r ##o ##s ##e in pieces; unknown in a closed vocabulary only.
		{"pieces, closed", true, true, 40, "a rose", []uw{{"rose", 2, 6}}},
		{"pieces, open", true, false, 40, "a rose", nil},
		{"playing, closed", true, true, 40, "the man playing", []uw{{"playing", 8, 15}}},
		// "✿" is no vocabulary token and no punctuation: a word of its own, one [UNK].
		{"unk, open", true, false, 40, "a red ✿ circle", []uw{{"✿", 6, 7}}},
		{"unk, closed", true, true, 40, "a red ✿ circle", []uw{{"✿", 6, 7}}},
		{"unk in a word", true, false, 40, "red✿ circle", []uw{{"red✿", 0, 4}}},
		{"offsets count runes", true, true, 40, "日本 über rose", []uw{{"rose", 8, 12}}},
		{"several, in order", true, true, 40, "rose ✿ red dahlia", []uw{{"rose", 0, 4}, {"✿", 5, 6}, {"dahlia", 11, 17}}},
		{"special strings are no unknown words", true, true, 40, "a [MASK] [UNK] rose", []uw{{"rose", 15, 19}}},
		{"cased: case matters", false, true, 40, "The Red RED", []uw{{"RED", 8, 11}}},
		{"numbers are pieces", true, true, 40, "10 circles", []uw{{"10", 0, 2}, {"circles", 3, 10}}},
		// Truncated after r of "rose" (max 4: [CLS] a r [SEP]): still a word in pieces.
		{"truncated inside a word", true, true, 4, "a rose", []uw{{"rose", 2, 6}}},
		{"truncated inside a word, open", true, false, 4, "a rose", nil},
		// Words the model did not read are not listed.
		{"unread words", true, true, 4, "a red rose", nil},
	}
	for _, c := range cases {
		tk := newClosed(t, c.lowercase, c.closed, c.maxLength)
		enc, err := tk.Encode(c.text)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := tk.UnknownWords(enc); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: UnknownWords(%q) = %+v, want %+v (tokens %v)", c.name, c.text, got, c.want, enc.Tokens)
		}
	}
}

// TestUnknownWordsSpans: every unknown word is one of the encoding's words, its text the
// original text of its span.
func TestUnknownWordsSpans(t *testing.T) {
	tk := newClosed(t, true, true, 40)
	for _, text := range []string{"Ünknown wörds, ✿✿ and 12 roses!", "a\u0301b ROSE\u00ad rose", "中国 dahlia [MASK]rose"} {
		enc, err := tk.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		rb := runeBytes(text)
		got := tk.UnknownWords(enc)
		if len(got) == 0 {
			t.Errorf("%q: no unknown word", text)
		}
		for _, u := range got {
			if s := sub(text, rb, u.Start, u.End); s != u.Word {
				t.Errorf("%q: unknown word %+v, the text there is %q", text, u, s)
			}
			found := false
			for _, w := range enc.Words {
				found = found || (w.Start == u.Start && w.End == u.End && w.Text == u.Word)
			}
			if !found {
				t.Errorf("%q: unknown word %+v is none of the words %+v", text, u, enc.Words)
			}
		}
	}
}

// FuzzUnknownWords: UnknownWords never panics; every unknown word is a word of the encoding;
// an open vocabulary's unknown words are among a closed one's; and a truncated encoding's are
// exactly the full encoding's among the words it kept (a word cut inside is still in pieces).
func FuzzUnknownWords(f *testing.F) {
	for _, s := range []string{"a rose", "the red ✿ square", "Ünknown wörds, 12 roses!", "a [MASK] [UNK] rose", "中国 über unaffable",
		"playing playing playing playing", "x\u200by \u00a0 naïve", strings.Repeat("rose ", 30)} {
		f.Add(s)
	}
	type variant struct{ full, short *Tokenizer }
	var open, closed variant
	for _, v := range []struct {
		dst    *variant
		closed bool
	}{{&open, false}, {&closed, true}} {
		v.dst.full = newClosed(f, true, v.closed, 1<<20)
		v.dst.short = newClosed(f, true, v.closed, 6)
	}
	f.Fuzz(func(t *testing.T, text string) {
		lists := map[*Tokenizer][]UnknownWord{}
		for _, tk := range []*Tokenizer{open.full, open.short, closed.full, closed.short} {
			enc, err := tk.Encode(text)
			if err != nil {
				return // ErrEmptyText: FuzzEncode checks when
			}
			got := tk.UnknownWords(enc)
			for _, u := range got {
				found := false
				for _, w := range enc.Words {
					found = found || (w.Text == u.Word && w.Start == u.Start && w.End == u.End)
				}
				if !found {
					t.Fatalf("%q: unknown word %+v is none of the words %+v", text, u, enc.Words)
				}
			}
			lists[tk] = got
			if tk.MaxLength() > 6 {
				continue
			}
			// The truncated encoding's unknown words: the full one's among the kept words.
			var want []UnknownWord
			for _, u := range lists[map[*Tokenizer]*Tokenizer{open.short: open.full, closed.short: closed.full}[tk]] {
				for _, w := range enc.Words {
					if w.Start == u.Start && w.End == u.End {
						want = append(want, u)
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q, closed=%v: truncated encoding's unknown words %+v, want %+v", text, tk.ClosedVocabulary(), got, want)
			}
		}
		for _, u := range lists[open.full] {
			found := false
			for _, c := range lists[closed.full] {
				found = found || c == u
			}
			if !found {
				t.Fatalf("%q: %+v unknown with the open vocabulary, not with the closed one (%+v)", text, u, lists[closed.full])
			}
		}
	})
}
