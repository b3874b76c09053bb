package textproc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// diffReference compares Encode with refEncode, the tokenisation of the
// whole text as Encode did it before it learnt to stop early, and returns
// "" when they agree: same error, Tokens, Words and Truncated, and
// FullLength counted up to MaxLength + 1.
func diffReference(tk *Tokenizer, text string) string {
	want, errWant := refEncode(tk, text)
	return diffEncoding(tk, text, want, errWant)
}

// diffEncoding is diffReference given refEncode's result.
func diffEncoding(tk *Tokenizer, text string, want Encoding, errWant error) string {
	got, err := tk.Encode(text)
	if !sameError(err, errWant) {
		return fmt.Sprintf("%s: got error %v, want %v", short(text), err, errWant)
	}
	if errWant == nil {
		want.FullLength = min(want.FullLength, tk.MaxLength()+1)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("%s (window %d, chunk %d):\n got %s\nwant %s", short(text), tk.windowBytes, tk.chunkBytes, short(fmt.Sprintf("%+v", got)), short(fmt.Sprintf("%+v", want)))
	}
	return ""
}

func sameError(a, b error) bool {
	switch {
	case a == nil || b == nil:
		return a == b
	case errors.Is(b, ErrEmptyText):
		return errors.Is(a, ErrEmptyText)
	}
	return errors.Is(a, ErrTokenize) && errors.Is(b, ErrTokenize)
}

// short quotes s, cut in the middle when long, for messages.
func short(s string) string {
	if len(s) > 600 {
		return fmt.Sprintf("%q ...(%d bytes)... %q", s[:300], len(s)-600, s[len(s)-300:])
	}
	return strconv.Quote(s)
}

// referenceTokenizers returns families of tokenizers that differ in
// everything that changes how Encode reads: case, MaxLength, chunk and
// window sizes (down to one byte, so that windows end inside runes, runs of
// accents and special-token strings), and special tokens that overlap one
// another, are letters ("aaa", found inside long words) or a combining
// accent. The tokenizers of a family differ only in chunk and window sizes,
// which change nothing in the result: the first has the default sizes.
func referenceTokenizers(t *testing.T) [][]*Tokenizer {
	t.Helper()
	vocab, err := os.ReadFile(testVocab)
	if err != nil {
		t.Fatal(err)
	}
	custom := filepath.Join(t.TempDir(), "vocab.txt")
	if err := os.WriteFile(custom, append(vocab, "<s>\n</s>\n\u0301\naaa\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	var out [][]*Tokenizer
	for _, lower := range []bool{false, true} {
		for _, maxLen := range []int{3, 8, 512} {
			var family []*Tokenizer
			for _, sizes := range [][2]int{{defaultChunkBytes, defaultWindowBytes}, {1, 1}, {7, 3}, {300, 64}} {
				tk := newTest(t, lower, maxLen)
				tk.chunkBytes, tk.windowBytes = sizes[0], sizes[1]
				family = append(family, tk)
			}
			out = append(out, family)
		}
		var family []*Tokenizer
		for _, window := range []int{defaultWindowBytes, 1, 5} {
			tk, err := New(Config{VocabPath: custom, Lowercase: lower, MaxLength: 16, CLS: "<s>", SEP: "</s>", PAD: "\u0301", Mask: "aaa"})
			if err != nil {
				t.Fatal(err)
			}
			tk.windowBytes = window
			family = append(family, tk)
		}
		out = append(out, family)
	}
	return out
}

// fuzzCorpus returns the strings of the committed FuzzEncode corpus.
func fuzzCorpus(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/fuzz/FuzzEncode/*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if q, ok := strings.CutPrefix(line, "string("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// referenceTexts are the fixed texts of TestEncodeMatchesReference.
func referenceTexts(t *testing.T) []string {
	texts := append([]string{}, knownBad...)
	texts = append(texts, fuzzCorpus(t)...)
	texts = append(texts,
		"", " ", "The red square is playing left of a blue circle.", "The RED Square, playing!", "Café au",
		"Cafe\u0301!", "naïve Über", "İstanbul", "中国人㐀x", "a\u00a0b\u3000c\u2009d", "\tleft\r\nof\x7f\x00red\u00ad",
		"x\u200by", "🙂 red 👍🏽 👩\u200d🔬", "\xff\xfeab\xc3 c", "한국 !ᆰ", "a [MASK] b[SEP]", "[Cls]", "unaffable dogs",
		strings.Repeat("a", 101)+" a", "a"+strings.Repeat("\u0301", 5000)+" b", "a\U0001D16D\U0001D165 b",
		strings.Repeat("e\u0301\x01\u0300", 300), "<s>a</s>aaaa<s/s>", "aaa"+strings.Repeat("a", 200)+"aaa b",
		strings.Repeat("a", 99)+"\u0301"+strings.Repeat("b", 3)+" c", strings.Repeat("é", 300)+" b c d e f g h",
		strings.Repeat(" ", 5000)+"the red dog", strings.Repeat("\x01\u00a0\u200b", 2000)+"red, dog",
		strings.Repeat("x", 5000)+"[MASK]"+strings.Repeat("y", 3000)+" z", strings.Repeat("a\x01", 3000)+"!a",
		strings.Repeat("Ab1", 2000)+"\u0301x y", strings.Repeat("中", 700), strings.Repeat("[MASK]", 700),
		strings.Repeat("the red, square; ", 400), strings.Repeat("ﬁ ß ", 500)+"end",
	)
	// Texts whose token count is around the MaxLength of the tokenizers.
	for n := range 20 {
		texts = append(texts, strings.Repeat("red ", n), strings.Repeat("playing, ", n)+"[MASK]", strings.Repeat("red", n))
	}
	return texts
}

// TestEncodeMatchesReference checks that Encode, which stops reading once
// the sequence is full, gives what the tokenisation of the whole text gives.
func TestEncodeMatchesReference(t *testing.T) {
	texts := referenceTexts(t)
	r := rand.New(rand.NewPCG(7, 8))
	for range 120 {
		texts = append(texts, randomText(r, 1+r.IntN(300)))
	}
	for range 25 {
		texts = append(texts, randomRuns(r, 1+r.IntN(40)))
	}
	for _, family := range referenceTokenizers(t) {
		for _, text := range texts {
			want, errWant := refEncode(family[0], text)
			for _, tk := range family {
				if msg := diffEncoding(tk, text, want, errWant); msg != "" {
					t.Fatalf("lower=%v MaxLength %d: %s", tk.Lowercase(), tk.MaxLength(), msg)
				}
			}
		}
	}
}

// randomRuns builds texts of long runs (words of hundreds of letters, runs
// of white space, control characters or accents) mixed with short words,
// for the paths of Encode that pass over runs.
func randomRuns(r *rand.Rand, n int) string {
	units := []string{
		"a", "B", "7", " ", "\t", "\u00a0", "\u3000", "\x01", "\x7f", "\u200b", "\xff", "\u0301", "\u0300",
		"\u0327", "é", "e\u0301", "ж", "中", "!", ".", "[MASK]", "aaa", "<s>", "ab", "\U0001D16D", "\u0e31",
	}
	var sb strings.Builder
	for range n {
		u := units[r.IntN(len(units))]
		reps := 1
		if r.IntN(3) == 0 {
			reps = 1 + r.IntN(400)
		}
		for range reps {
			sb.WriteString(u)
		}
		if r.IntN(4) == 0 {
			sb.WriteString(randomText(r, 1+r.IntN(10)))
		}
	}
	return sb.String()
}

// TestEncodeIgnoresTextAfterTruncation: once a text T is truncated, what
// follows it changes nothing but the [SEP] offsets (the rune count).
func TestEncodeIgnoresTextAfterTruncation(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	suffixes := []string{"", " more words", "[MASK]", strings.Repeat("a", 5000), strings.Repeat(" ", 3000) + "x", "\u0301\u0301 b"}
	for _, lower := range []bool{false, true} {
		tk := newTest(t, lower, 8)
		checked := 0
		for range 400 {
			text := randomText(r, 1+r.IntN(200))
			base, err := tk.Encode(text)
			if err != nil || !base.Truncated {
				continue
			}
			checked++
			for _, suffix := range suffixes {
				suffix += randomText(r, r.IntN(50))
				got := encodeOK(t, tk, text+suffix)
				n := len(got.Tokens) - 1
				if !got.Truncated || got.FullLength != base.FullLength || !reflect.DeepEqual(got.Tokens[:n], base.Tokens[:n]) || !reflect.DeepEqual(got.Words, base.Words) {
					t.Fatalf("lower=%v %q + %q:\n got %+v\nwant %+v", lower, text, suffix, got, base)
				}
			}
		}
		if checked < 50 {
			t.Fatalf("lower=%v: only %d truncated texts", lower, checked)
		}
	}
}

// hugeText repeats unit to about 16 MB, for TestEncodeWorkBounded and
// BenchmarkEncodeHuge.
func hugeText(unit string) string {
	const size = 16 << 20
	return strings.Repeat(unit, size/len(unit))
}

// TestEncodeWorkBounded checks, without timing anything, that Encode on a
// 16 MB text reads, normalises and searches only its beginning, and
// allocates little, when the text fills the sequence early; and that huge
// runs of white space and huge words are passed over by the cheap skip
// (linear, but without normalisation or allocation).
func TestEncodeWorkBounded(t *testing.T) {
	const bound = 64 << 10
	tests := []struct {
		name   string
		lower  bool
		text   string
		skip   bool // the text is one run, passed over to its end
		tokens []string
	}{
		{"uncased sentences", true, hugeText("The woman, left of the green triangle. "), false, nil},
		{"cased sentences", false, hugeText("Café naïve Über İstanbul 中国人 🙂 a\u00a0b\u3000c. "), false, nil},
		{"CJK", true, hugeText("中国人"), false, nil},
		{"special strings", true, hugeText("[MASK] a [SEP]"), false, nil},
		{"words of 110 letters", true, hugeText(strings.Repeat("x", 110) + " "), false, nil},
		{"uncased one word", true, hugeText("a"), true, []string{"[CLS]", "[UNK]", "[SEP]"}},
		{"cased one word", false, hugeText("\x01Жa"), true, []string{"[CLS]", "[UNK]", "[SEP]"}},
		{"spaces", true, hugeText(" \t\u00a0\x00"), true, nil},
		{"spaces then a word", false, hugeText(" ") + "red", true, []string{"[CLS]", "red", "[SEP]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := newTest(t, tt.lower, 512)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			enc, st, err := tk.encode(tt.text)
			runtime.ReadMemStats(&after)
			if tt.tokens == nil && tt.skip {
				if !errors.Is(err, ErrEmptyText) {
					t.Fatalf("got error %v, want ErrEmptyText", err)
				}
			} else if err != nil {
				t.Fatalf("got error %v", err)
			}
			if tt.tokens != nil {
				var got []string
				for _, tok := range enc.Tokens {
					got = append(got, tok.Text)
				}
				if !reflect.DeepEqual(got, tt.tokens) || enc.Truncated {
					t.Errorf("got tokens %q truncated %v, want %q and not truncated", got, enc.Truncated, tt.tokens)
				}
				if n := len(enc.Words); n > 0 && tt.name != "spaces then a word" && enc.Words[n-1].End != len([]rune(tt.text)) {
					t.Errorf("word %d ends at %d, want the end of the text", n-1, enc.Words[n-1].End)
				}
			} else if !tt.skip && (!enc.Truncated || len(enc.Tokens) != 512) {
				t.Errorf("got %d tokens, truncated %v; want 512, truncated", len(enc.Tokens), enc.Truncated)
			}
			if st.normalized > bound || st.searched > bound && !tt.skip {
				t.Errorf("work: %+v; want at most %d bytes normalised and searched", st, bound)
			}
			if tt.skip {
				if st.read != len(tt.text) || st.skipped < len(tt.text)-bound {
					t.Errorf("work: %+v; want the %d bytes read, all but %d skipped", st, len(tt.text), bound)
				}
			} else if st.read > bound {
				t.Errorf("work: %+v; want at most %d bytes read", st, bound)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
				t.Errorf("allocated %d bytes, want at most 8 MB", alloc)
			}
		})
	}
}
