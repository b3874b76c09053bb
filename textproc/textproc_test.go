package textproc

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeVocab(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vocab.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewErrors(t *testing.T) {
	noMask := writeVocab(t, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
	empty := writeVocab(t, "")
	tests := []struct {
		name    string
		cfg     Config
		wantSub string // in the error message
		wantIs  error  // errors.Is target, if any
	}{
		{"missing file", Config{VocabPath: "testdata/nope.txt", MaxLength: 8}, "reading vocabulary", fs.ErrNotExist},
		{"no path", Config{MaxLength: 8}, "VocabPath is empty", nil},
		{"MaxLength 0", Config{VocabPath: testVocab}, "MaxLength is 0", nil},
		{"MaxLength 2", Config{VocabPath: testVocab, MaxLength: 2}, "MaxLength is 2", nil},
		{"empty vocab", Config{VocabPath: empty, MaxLength: 8}, "has no tokens", nil},
		{"missing mask", Config{VocabPath: noMask, MaxLength: 8}, `special token Mask "[MASK]" is not in vocabulary`, nil},
		{"custom CLS missing", Config{VocabPath: testVocab, MaxLength: 8, CLS: "<s>"}, `special token CLS "<s>"`, nil},
		{"invalid UTF-8 special", Config{VocabPath: testVocab, MaxLength: 8, SEP: "\xff"}, "not valid UTF-8", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("got tokenizer %v and nil error, want error containing %q", tk, tt.wantSub)
			}
			if !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("got error %q, want it to contain %q", err, tt.wantSub)
			}
			if !strings.HasPrefix(err.Error(), "textproc: ") {
				t.Errorf("got error %q, want prefix %q", err, "textproc: ")
			}
			if tt.wantIs != nil && !isErr(err, tt.wantIs) {
				t.Errorf("got error %v, want errors.Is(err, %v)", err, tt.wantIs)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	tk := newTest(t, true, 32)
	tests := []struct {
		name string
		got  int64
		want int64
	}{
		{"PadID", tk.PadID(), 0},
		{"UNKID", tk.UNKID(), 1},
		{"CLSID", tk.CLSID(), 2},
		{"SEPID", tk.SEPID(), 3},
		{"MaskID", tk.MaskID(), 4},
		{"VocabSize", int64(tk.VocabSize()), 249},
		{"MaxLength", int64(tk.MaxLength()), 32},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if !tk.Lowercase() {
		t.Errorf("Lowercase: got false, want true")
	}
	for _, tc := range []struct {
		text string
		id   int64
	}{{"[PAD]", 0}, {"!", 5}, {"a", 69}, {"##a", 163}, {"the", 193}, {"##ing", 214}, {"café", 222}, {"中", 238}, {"##ber", 248}} {
		if id, ok := tk.TokenID(tc.text); !ok || id != tc.id {
			t.Errorf("TokenID(%q): got %d %v, want %d true", tc.text, id, ok, tc.id)
		}
		if s, ok := tk.TokenText(tc.id); !ok || s != tc.text {
			t.Errorf("TokenText(%d): got %q %v, want %q true", tc.id, s, ok, tc.text)
		}
	}
	if id, ok := tk.TokenID("playing"); ok {
		t.Errorf("TokenID(%q): got %d true, want false", "playing", id)
	}
	for _, id := range []int64{-1, 249, 1 << 40} {
		if s, ok := tk.TokenText(id); ok {
			t.Errorf("TokenText(%d): got %q true, want false", id, s)
		}
	}
}

func TestVocabParsing(t *testing.T) {
	// BOM, CRLF line ends, a duplicate ("x" on lines 5 and 7: last wins
	// for TokenID, TokenText gives each line), custom special tokens.
	p := writeVocab(t, "\ufeff<pad>\r\n<unk>\r\n<s>\r\n</s>\r\n<mask>\r\nx\r\n##y\r\nx")
	tk, err := New(Config{VocabPath: p, MaxLength: 8, CLS: "<s>", SEP: "</s>", PAD: "<pad>", UNK: "<unk>", Mask: "<mask>"})
	if err != nil {
		t.Fatalf("New: got error %v, want nil", err)
	}
	if got, want := tk.VocabSize(), 8; got != want {
		t.Errorf("VocabSize: got %d, want %d", got, want)
	}
	for _, tc := range []struct {
		text string
		id   int64
	}{{"<pad>", 0}, {"<s>", 2}, {"<mask>", 4}, {"x", 7}, {"##y", 6}} {
		if id, ok := tk.TokenID(tc.text); !ok || id != tc.id {
			t.Errorf("TokenID(%q): got %d %v, want %d true", tc.text, id, ok, tc.id)
		}
	}
	if s, ok := tk.TokenText(5); !ok || s != "x" {
		t.Errorf("TokenText(5): got %q %v, want %q true", s, ok, "x")
	}
	enc := encodeOK(t, tk, "xy <mask>")
	var got []string
	for _, tok := range enc.Tokens {
		got = append(got, tok.Text)
	}
	if want := "<s> x ##y <mask> </s>"; strings.Join(got, " ") != want {
		t.Errorf("tokens: got %q, want %q", strings.Join(got, " "), want)
	}
	if got, want := enc.IDs(), []int64{2, 7, 6, 4, 3}; !equalIDs(got, want) {
		t.Errorf("IDs: got %v, want %v", got, want)
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCleanRune(t *testing.T) {
	tests := []struct {
		in   rune
		want rune // -1: dropped
	}{
		{'a', 'a'}, {' ', ' '}, {'\t', ' '}, {'\n', ' '}, {'\r', ' '}, {'\v', ' '}, {'\f', ' '},
		{0, -1}, {0x01, -1}, {0x7f, -1}, {0x85, ' '}, {0xa0, ' '}, {0x3000, ' '}, {0x2028, ' '},
		{0x2009, ' '}, {0xad, -1}, {0x200b, -1}, {0x200d, -1}, {0xfeff, -1}, {0xfffd, -1},
		{0xe000, -1}, {0x0378, -1}, {'é', 'é'}, {0x301, 0x301}, {'中', '中'}, {'🙂', '🙂'}, {'İ', 'İ'},
	}
	for _, tt := range tests {
		got, ok := cleanRune(tt.in)
		if !ok {
			got = -1
		}
		if got != tt.want {
			t.Errorf("cleanRune(%U): got %U, want %U", tt.in, got, tt.want)
		}
	}
}
