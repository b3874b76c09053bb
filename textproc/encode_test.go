package textproc

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// tok is a compact expected token: text, id, original rune span, word.
type tok struct {
	text       string
	id         int64
	start, end int
	word       int
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name  string
		lower bool
		text  string
		want  []tok // between [CLS] and [SEP]
		words []string
	}{
		{
			name: "cased sentence", text: "The red square is playing left of a blue circle.",
			want: []tok{{"The", 228, 0, 3, 0}, {"red", 202, 4, 7, 1}, {"square", 206, 8, 14, 2}, {"is", 198, 15, 17, 3},
				{"play", 213, 18, 22, 4}, {"##ing", 214, 22, 25, 4}, {"left", 194, 26, 30, 5}, {"of", 196, 31, 33, 6},
				{"a", 69, 34, 35, 7}, {"blue", 203, 36, 40, 8}, {"circle", 207, 41, 47, 9}, {".", 18, 47, 48, 10}},
			words: []string{"The", "red", "square", "is", "playing", "left", "of", "a", "blue", "circle", "."},
		},
		{
			name: "uncased sentence", lower: true, text: "The RED Square, playing!",
			want:  []tok{{"the", 193, 0, 3, 0}, {"red", 202, 4, 7, 1}, {"square", 206, 8, 14, 2}, {",", 16, 14, 15, 3}, {"play", 213, 16, 20, 4}, {"##ing", 214, 20, 23, 4}, {"!", 5, 23, 24, 5}},
			words: []string{"The", "RED", "Square", ",", "playing", "!"},
		},
		{
			name: "cased keeps accents", text: "Café au",
			want:  []tok{{"Café", 232, 0, 4, 0}, {"a", 69, 5, 6, 1}, {"##u", 183, 6, 7, 1}},
			words: []string{"Café", "au"},
		},
		{
			name: "uncased strips precomposed accent", lower: true, text: "Café au",
			want:  []tok{{"cafe", 221, 0, 4, 0}, {"a", 69, 5, 6, 1}, {"##u", 183, 6, 7, 1}},
			words: []string{"Café", "au"},
		},
		{
			name: "uncased combining accent joins its base", lower: true, text: "Cafe\u0301!",
			want:  []tok{{"cafe", 221, 0, 5, 0}, {"!", 5, 5, 6, 1}},
			words: []string{"Cafe\u0301", "!"},
		},
		{
			name: "cased decomposed accent is unknown", text: "Cafe\u0301!",
			want:  []tok{{"[UNK]", 1, 0, 5, 0}, {"!", 5, 5, 6, 1}},
			words: []string{"Cafe\u0301", "!"},
		},
		{
			name: "uncased accents on several words", lower: true, text: "naïve Über",
			want:  []tok{{"naive", 236, 0, 5, 0}, {"uber", 247, 6, 10, 1}},
			words: []string{"naïve", "Über"},
		},
		{
			name: "uncased dotted capital I", lower: true, text: "İstanbul",
			want:  []tok{{"istanbul", 225, 0, 8, 0}},
			words: []string{"İstanbul"},
		},
		{
			name: "cased dotted capital I", text: "İstanbul",
			want:  []tok{{"[UNK]", 1, 0, 8, 0}},
			words: []string{"İstanbul"},
		},
		{
			name: "CJK each ideograph a word, extension A included", text: "中国人㐀x",
			want:  []tok{{"中", 238, 0, 1, 0}, {"国", 239, 1, 2, 1}, {"人", 240, 2, 3, 2}, {"㐀", 242, 3, 4, 3}, {"x", 92, 4, 5, 4}},
			words: []string{"中", "国", "人", "㐀", "x"},
		},
		{
			name: "unicode spaces", lower: true, text: "a\u00a0b\u3000c\u2009d",
			want:  []tok{{"a", 69, 0, 1, 0}, {"b", 70, 2, 3, 1}, {"c", 71, 4, 5, 2}, {"d", 72, 6, 7, 3}},
			words: []string{"a", "b", "c", "d"},
		},
		{
			name: "control characters", text: "\tleft\r\nof\x7f\x00red\u00ad",
			want:  []tok{{"left", 194, 1, 5, 0}, {"of", 196, 7, 9, 1}, {"##r", 180, 11, 12, 1}, {"##ed", 215, 12, 14, 1}},
			words: []string{"left", "of\x7f\x00red"},
		},
		{
			name: "zero-width space inside a word", text: "x\u200by",
			want:  []tok{{"x", 92, 0, 1, 0}, {"##y", 187, 2, 3, 0}},
			words: []string{"x\u200by"},
		},
		{
			name: "emoji", lower: true, text: "🙂 red 👍🏽 👩\u200d🔬",
			want:  []tok{{"[UNK]", 1, 0, 1, 0}, {"red", 202, 2, 5, 1}, {"[UNK]", 1, 6, 8, 2}, {"[UNK]", 1, 9, 12, 3}},
			words: []string{"🙂", "red", "👍🏽", "👩\u200d🔬"},
		},
		{
			name: "invalid UTF-8 bytes count as one rune each", text: "\xff\xfeab\xc3 c",
			want:  []tok{{"a", 69, 2, 3, 0}, {"##b", 164, 3, 4, 0}, {"c", 71, 6, 7, 1}},
			words: []string{"ab", "c"},
		},
		{
			name: "uncased hangul decomposes inside one word", lower: true, text: "한국 !ᆰ",
			want:  []tok{{"[UNK]", 1, 0, 2, 0}, {"!", 5, 3, 4, 1}, {"[UNK]", 1, 4, 5, 2}},
			words: []string{"한국", "!", "ᆰ"},
		},
		{
			name: "special tokens in text are matched verbatim", lower: true, text: "a [MASK] b[SEP]",
			want:  []tok{{"a", 69, 0, 1, 0}, {"[MASK]", 4, 2, 8, 1}, {"b", 70, 9, 10, 2}, {"[SEP]", 3, 10, 15, 3}},
			words: []string{"a", "[MASK]", "b", "[SEP]"},
		},
		{
			name: "lower-case special string is ordinary text", lower: true, text: "[Cls]",
			want:  []tok{{"[", 63, 0, 1, 0}, {"c", 71, 1, 2, 1}, {"##l", 174, 2, 3, 1}, {"##s", 181, 3, 4, 1}, {"]", 65, 4, 5, 2}},
			words: []string{"[", "Cls", "]"},
		},
		{
			name: "unknown word split", text: "unaffable dogs",
			want:  []tok{{"un", 216, 0, 2, 0}, {"##aff", 217, 2, 5, 0}, {"##able", 218, 5, 9, 0}, {"dog", 211, 10, 13, 1}, {"##s", 181, 13, 14, 1}},
			words: []string{"unaffable", "dogs"},
		},
		{
			name: "word over 100 characters is one [UNK]", text: strings.Repeat("a", 101) + " a",
			want:  []tok{{"[UNK]", 1, 0, 101, 0}, {"a", 69, 102, 103, 1}},
			words: []string{strings.Repeat("a", 101), "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := newTest(t, tt.lower, 64)
			enc := encodeOK(t, tk, tt.text)
			var got []tok
			for _, x := range enc.Tokens[1 : len(enc.Tokens)-1] {
				got = append(got, tok{x.Text, x.ID, x.Start, x.End, x.Word})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("tokens:\n got %v\nwant %v", got, tt.want)
			}
			var words []string
			for _, w := range enc.Words {
				words = append(words, w.Text)
			}
			if !reflect.DeepEqual(words, tt.words) {
				t.Errorf("words: got %q, want %q", words, tt.words)
			}
			if enc.Truncated || enc.FullLength != len(enc.Tokens) {
				t.Errorf("got Truncated %v FullLength %d, want false %d", enc.Truncated, enc.FullLength, len(enc.Tokens))
			}
			checkTokenText(t, tk, tt.text, enc)
		})
	}
}

func TestEncodeIDs(t *testing.T) {
	tk := newTest(t, true, 16)
	enc := encodeOK(t, tk, "Playing, left of the café.")
	// [CLS] play ##ing , left of the cafe . [SEP]
	want := []int64{2, 213, 214, 16, 194, 196, 193, 221, 18, 3}
	if got := enc.IDs(); !reflect.DeepEqual(got, want) {
		t.Errorf("IDs: got %v, want %v", got, want)
	}
}

func TestTruncation(t *testing.T) {
	tests := []struct {
		name      string
		maxLength int
		text      string
		want      []string // all tokens
		words     []string
		truncated bool
		full      int // tokens before truncation; FullLength counts only up to maxLength + 1
	}{
		{"fits exactly", 5, "the red dog", []string{"[CLS]", "the", "red", "dog", "[SEP]"}, []string{"the", "red", "dog"}, false, 5},
		{"one over", 4, "the red dog", []string{"[CLS]", "the", "red", "[SEP]"}, []string{"the", "red"}, true, 5},
		{"minimum length", 3, "the red dog", []string{"[CLS]", "the", "[SEP]"}, []string{"the"}, true, 5},
		{"cut inside a word", 3, "playing the dog", []string{"[CLS]", "play", "[SEP]"}, []string{"playing"}, true, 6},
		{"cut after a special string", 4, "a [MASK] b c", []string{"[CLS]", "a", "[MASK]", "[SEP]"}, []string{"a", "[MASK]"}, true, 6},
		{"long text", 8, strings.Repeat("red, ", 1000), []string{"[CLS]", "red", ",", "red", ",", "red", ",", "[SEP]"}, []string{"red", ",", "red", ",", "red", ","}, true, 2002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := newTest(t, true, tt.maxLength)
			enc := encodeOK(t, tk, tt.text)
			var got, words []string
			for _, x := range enc.Tokens {
				got = append(got, x.Text)
			}
			for _, w := range enc.Words {
				words = append(words, w.Text)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("tokens: got %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(words, tt.words) {
				t.Errorf("words: got %q, want %q", words, tt.words)
			}
			if enc.Truncated != tt.truncated {
				t.Errorf("Truncated: got %v, want %v", enc.Truncated, tt.truncated)
			}
			if want := min(tt.full, tt.maxLength+1); enc.FullLength != want {
				t.Errorf("FullLength: got %d, want %d", enc.FullLength, want)
			}
			// The truncated encoding is a prefix of the full one.
			full := encodeOK(t, newTest(t, true, 1<<20), tt.text)
			if len(full.Tokens) != tt.full {
				t.Errorf("untruncated length: got %d, want %d", len(full.Tokens), tt.full)
			}
			n := len(enc.Tokens) - 1
			if !reflect.DeepEqual(enc.Tokens[:n], full.Tokens[:n]) {
				t.Errorf("truncated tokens: got %v, want prefix %v", enc.Tokens[:n], full.Tokens[:n])
			}
		})
	}
}

func TestEmptyText(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		lower bool
	}{
		{"empty", "", false},
		{"spaces", "   ", false},
		{"tabs and newlines", "\t\r\n \v\f", true},
		{"unicode spaces", "\u00a0\u3000\u2009\u2028\u0085", false},
		{"controls", "\x00\x01\x7f\u00ad\u200b\ufeff", true},
		{"NUL soft hyphen", "\x00\u00ad", false},
		{"invalid UTF-8", "\xff\xfe\xc3", false},
		{"replacement characters", "\ufffd \ufffd", true},
		{"private use", "\ue000", false},
		{"uncased combining marks only", "\u0301\u0308 \u0327", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := newTest(t, tt.lower, 16)
			enc, err := tk.Encode(tt.text)
			if !isErr(err, ErrEmptyText) {
				t.Errorf("Encode(%q): got error %v, want ErrEmptyText", tt.text, err)
			}
			if len(enc.Tokens) != 0 || len(enc.Words) != 0 || enc.FullLength != 0 {
				t.Errorf("Encode(%q): got %+v, want a zero Encoding", tt.text, enc)
			}
		})
	}
	// Combining marks alone are a word (of [UNK]) for a cased model.
	enc := encodeOK(t, newTest(t, false, 16), "\u0301")
	if got := enc.IDs(); !reflect.DeepEqual(got, []int64{2, 1, 3}) {
		t.Errorf("cased %q: got ids %v, want [2 1 3]", "\u0301", got)
	}
}

// knownBad are inputs that panic or kill the process in sugarme/tokenizer's
// own normalisers (see docs/environment.md). Reaching the end of this test
// proves neither happens: log.Fatal would end the test binary.
var knownBad = []string{
	"\x00\u00ad", "a\x00\u00adb", "İstanbul", "İSTANBUL İ", "\u00a0", "a\u00a0b", "\u3000", "x\u3000y",
	"\xff", "\xc3\x28", "\xe2\x82", "\xf0\x28\x8c\xbc", "ab\xed\xa0\x80cd", "\xef\xbf\xbd",
	"ﬁ ß ẞ Ǆ ǅ ΐ", "e\u0301\u0323\u0302", "a" + strings.Repeat("\u0301", 40) + "b",
	"\u0000\u0000\u00ad\u00ad", "\u200d\u200c\u2060\ufeff", "\U000E0001\U000E0041", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
	"Ⅻ ①", "\u0345\u0399", "ᾈ", "한국어", "日本語テキスト", "[CLS][SEP][PAD][UNK][MASK]", "[[MASK]]",
	"[MASK", "]]]]", strings.Repeat("!", 300), strings.Repeat("a ", 300), strings.Repeat("é", 150),
}

func TestKnownBadInputs(t *testing.T) {
	for _, lower := range []bool{false, true} {
		for _, maxLen := range []int{3, 512} {
			tk := newTest(t, lower, maxLen)
			for _, text := range knownBad {
				enc, err := tk.Encode(text)
				if isErr(err, ErrEmptyText) {
					continue
				}
				if err != nil {
					t.Errorf("lower=%v Encode(%q): got error %v, want an encoding", lower, text, err)
					continue
				}
				checkEncoding(t, tk, text, enc)
			}
		}
	}
}

// randomText draws from runes that stress normalisation and splitting.
func randomText(r *rand.Rand, n int) string {
	pool := []string{
		"a", "b", "e", "i", "I", "the", "red", "play", "ing", " ", "  ", "\t", "\n", ".", ",", "!", "[", "]",
		"[MASK]", "[SEP]", "é", "e\u0301", "\u0301", "İ", "ß", "中", "㐀", "\u3000", "\u00a0", "\u00ad",
		"\x00", "\x7f", "\u200b", "\u200d", "🙂", "👍🏽", "한", "\xff", "\xc3", "Ω", "ﬁ", "\u0345", "-", "'",
		"\ue000", "\U000E0041", "\u2028", "\u0085", "\ufffd",
	}
	var sb strings.Builder
	for range n {
		sb.WriteString(pool[r.IntN(len(pool))])
	}
	return sb.String()
}

// TestChunkingInvisible checks that handing long texts to the library in
// chunks (even at every possible cut) gives the same result as one call.
func TestChunkingInvisible(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, lower := range []bool{false, true} {
		one := newTest(t, lower, 1<<20)
		one.chunkBytes = 1 << 30
		tiny := newTest(t, lower, 1<<20)
		tiny.chunkBytes = 1
		def := newTest(t, lower, 1<<20)
		for i := range 200 {
			text := randomText(r, 1+r.IntN(400))
			want, errWant := one.Encode(text)
			for _, tk := range []*Tokenizer{tiny, def} {
				got, err := tk.Encode(text)
				if fmt.Sprint(err) != fmt.Sprint(errWant) || !reflect.DeepEqual(got, want) {
					t.Fatalf("lower=%v text %d %q chunkBytes %d:\n got %+v %v\nwant %+v %v", lower, i, text, tk.chunkBytes, got, err, want, errWant)
				}
			}
			if errWant == nil {
				checkEncoding(t, one, text, want)
			}
		}
	}
}

func TestLongTextIsLinear(t *testing.T) {
	// 400 KB of short words and punctuation, all of it tokenised (MaxLength
	// is larger): quadratic behaviour in the library (it copies the string
	// on every slice) would take minutes.
	tk := newTest(t, true, 1<<20)
	text := strings.Repeat("the red, square; ", 25000)
	enc := encodeOK(t, tk, text)
	if got, want := enc.FullLength, 25000*5+2; got != want {
		t.Errorf("FullLength: got %d, want %d", got, want)
	}
}

func TestConcurrentEncode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	texts := append([]string{}, knownBad...)
	for range 100 {
		texts = append(texts, randomText(r, 1+r.IntN(60)))
	}
	for _, lower := range []bool{false, true} {
		tk := newTest(t, lower, 24)
		type result struct {
			enc Encoding
			err error
		}
		want := make([]result, len(texts))
		for i, text := range texts {
			want[i].enc, want[i].err = tk.Encode(text)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 32)
		for g := range 16 {
			wg.Go(func() {
				for k := range 3 * len(texts) {
					i := (k*7 + g) % len(texts)
					enc, err := tk.Encode(texts[i])
					if err != want[i].err || !reflect.DeepEqual(enc, want[i].enc) {
						select {
						case errs <- fmt.Sprintf("goroutine %d, %q: got %+v %v, want %+v %v", g, texts[i], enc, err, want[i].enc, want[i].err):
						default:
						}
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range []struct {
		name  string
		lower bool
		text  string
	}{
		{"cased/sentence", false, "The man on the left of the red square is playing with a blue circle."},
		{"uncased/sentence", true, "The man on the left of the red square is playing with a blue circle."},
		{"uncased/accents-cjk", true, "Café naïve Über İstanbul 中国人 🙂 a\u00a0b\u3000c."},
		{"uncased/4KB", true, strings.Repeat("The woman, left of the green triangle. ", 100)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tk := newTest(b, bc.lower, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.text)))
			for b.Loop() {
				if _, err := tk.Encode(bc.text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeHuge encodes 16 MB texts with MaxLength 512: text that
// fills the sequence in its first KB, a single word, white space only.
func BenchmarkEncodeHuge(b *testing.B) {
	for _, bc := range []struct {
		name  string
		lower bool
		unit  string
	}{
		{"uncased/sentences", true, "The woman, left of the green triangle. "},
		{"cased/accents-cjk", false, "Café naïve Über İstanbul 中国人 🙂 a\u00a0b\u3000c. "},
		{"uncased/one-word", true, "a"},
		{"uncased/spaces", true, " "},
	} {
		text := hugeText(bc.unit)
		b.Run(bc.name, func(b *testing.B) {
			tk := newTest(b, bc.lower, 512)
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				_, _ = tk.Encode(text)
			}
		})
	}
}

// TestRead: the read part of a truncated text ends with its last kept token; an untruncated
// text is read whole.
func TestRead(t *testing.T) {
	tk := newTest(t, true, 6)
	for text, want := range map[string]string{
		"a red circle":                    "a red circle",
		"a red circle left of a square":   "a red circle left",
		"  héllo wörld, ünïcode text ok ": "  héllo wörld, ün", // a word cut between its pieces
	} {
		enc, err := tk.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if got := enc.Read(text); got != want {
			t.Errorf("Read(%q) = %q, want %q (tokens %v)", text, got, want, enc.Tokens)
		}
	}
}
