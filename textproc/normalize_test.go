package textproc

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name  string
		lower bool
		in    string
		want  string
		spans [][2]int32
	}{
		{"cased keeps case and accents", false, "Éa", "Éa", [][2]int32{{0, 1}, {1, 2}}},
		{"precomposed accent", true, "Éa", "ea", [][2]int32{{0, 1}, {1, 2}}},
		{"combining accent extends its base", true, "e\u0301a", "ea", [][2]int32{{0, 2}, {2, 3}}},
		{"accent after a dropped control is not attached", true, "e\u00ad\u0301", "e", [][2]int32{{0, 1}}},
		{"dotted capital I", true, "İx", "ix", [][2]int32{{0, 1}, {1, 2}}},
		{"hangul syllable decomposes to three jamo", true, "한", "\u1112\u1161\u11ab", [][2]int32{{0, 1}, {0, 1}, {0, 1}}},
		{"punctuation then trailing jamo stay apart", true, "!ᆰ", "!ᆰ", [][2]int32{{0, 1}, {1, 2}}},
		{"CJK padded", false, "a中", "a 中 ", [][2]int32{{0, 1}, {1, 2}, {1, 2}, {1, 2}}},
		{"spaces and controls", false, "a\u00a0\x00b", "a b", [][2]int32{{0, 1}, {1, 2}, {3, 4}}},
		// U+1D16D (ccc 226) before U+1D165 (ccc 216) is reordered by NFD;
		// both are spacing marks (Mc), kept, with the union span.
		{"canonical reordering", true, "a\U0001D16D\U0001D165", "a\U0001D165\U0001D16D", [][2]int32{{0, 1}, {1, 3}, {1, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n normalized
			n.normalize(tt.in, 0, tt.lower, &normScratch{})
			if got := string(n.text); got != tt.want {
				t.Errorf("text: got %+q, want %+q", got, tt.want)
			}
			if !reflect.DeepEqual(n.spans, tt.spans) {
				t.Errorf("spans: got %v, want %v", n.spans, tt.spans)
			}
			checkNormalized(t, tt.in, &n)
		})
	}
}

// checkNormalized verifies the invariants documented on normalized.
func checkNormalized(t *testing.T, in string, n *normalized) {
	t.Helper()
	if len(n.runeOf) != len(n.text) {
		t.Fatalf("%+q: got %d runeOf entries, want %d", in, len(n.runeOf), len(n.text))
	}
	i, prev := 0, int32(0)
	for b, r := range string(n.text) {
		if r == utf8.RuneError || (r != ' ' && (unicode.IsSpace(r) || unicode.IsControl(r))) {
			t.Errorf("%+q: normalised rune %U is not allowed", in, r)
		}
		if int(n.runeOf[b]) != i {
			t.Errorf("%+q: runeOf[%d]: got %d, want %d", in, b, n.runeOf[b], i)
		}
		sp := n.spans[i]
		if sp[0] >= sp[1] || sp[0] < prev {
			t.Errorf("%+q: span %d %v: want start < end and start >= %d", in, i, sp, prev)
		}
		prev = sp[0]
		i++
	}
	if i != len(n.spans) || len(n.bytes) != len(n.spans) {
		t.Errorf("%+q: got %d spans and %d byte spans, want %d runes", in, len(n.spans), len(n.bytes), i)
		return
	}
	rb := runeBytes(in)
	for k, sp := range n.spans {
		if want := [2]int32{int32(rb[sp[0]]), int32(rb[sp[1]])}; n.bytes[k] != want {
			t.Errorf("%+q: rune %d with span %v: got byte span %v, want %v", in, k, sp, n.bytes[k], want)
		}
	}
}

// TestNormalizeMatchesReference compares the rune-by-rune normalisation
// with whole-string NFD on random text (spaces removed: the reference does
// not pad CJK).
func TestNormalizeMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	noSpace := func(s string) string { return strings.ReplaceAll(s, " ", "") }
	extra := []string{"\U0001D16D", "\U0001D165", "\u0323", "\u0302", "\u1e0b", "\u01d8", "\u0f73", "\u0958", "\uac00\u11a8", "ǅ"}
	for range 2000 {
		in := randomText(r, 1+r.IntN(30))
		for range r.IntN(4) {
			in += extra[r.IntN(len(extra))]
		}
		for _, lower := range []bool{false, true} {
			var n normalized
			n.normalize(in, 0, lower, &normScratch{})
			if got, want := noSpace(string(n.text)), noSpace(refNormalize(in, lower)); got != want {
				t.Fatalf("lower=%v %+q: got %+q, want %+q", lower, in, got, want)
			}
			checkNormalized(t, in, &n)
		}
	}
}

// TestNormalizeParts checks that normalising a text in parts cut at random
// rune boundaries, as Encode does window by window, gives what normalising
// it at once gives: text, spans and byte spans.
func TestNormalizeParts(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	extra := []string{"\U0001D16D", "\U0001D165", "\u0323", "\u0302", "\u0301\u0301\u0301", "\x01", "\u0344", "\u0e31"}
	for range 2000 {
		in := randomText(r, 1+r.IntN(30))
		for range r.IntN(8) {
			at := r.IntN(len(in) + 1)
			in = in[:at] + extra[r.IntN(len(extra))] + in[at:]
		}
		rb := runeBytes(in)
		for _, lower := range []bool{false, true} {
			var whole, parts normalized
			whole.normalize(in, 0, lower, &normScratch{})
			sc := &normScratch{}
			for k := 0; k < len(rb)-1; {
				next := min(len(rb)-1, k+1+r.IntN(4))
				got := parts.normalizePart(in[rb[k]:rb[next]], k, rb[k], lower, sc, next == len(rb)-1)
				if got != next-k {
					t.Fatalf("lower=%v %+q: part [%d,%d) gave %d runes", lower, in, k, next, got)
				}
				k = next
			}
			if !reflect.DeepEqual(parts.text, whole.text) || !reflect.DeepEqual(parts.spans, whole.spans) || !reflect.DeepEqual(parts.bytes, whole.bytes) {
				t.Fatalf("lower=%v %+q: in parts got %+q %v %v, want %+q %v %v", lower, in, parts.text, parts.spans, parts.bytes, whole.text, whole.spans, whole.bytes)
			}
			checkNormalized(t, in, &whole)
		}
	}
}
