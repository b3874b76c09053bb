package textproc

import (
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalized is a normalised piece of text together with, for every rune of
// it, the span of original runes it comes from.
//
// Invariants: text is valid UTF-8 holding no control character and no white
// space other than ' '; runeOf has len(text) entries, and runeOf[b] is the
// index in spans of the rune containing byte b; spans[i] = [start, end) in
// original runes with start < end, and starts never decrease; bytes[i] is
// the same span in bytes of the original text.
type normalized struct {
	text   []byte
	runeOf []int32
	spans  [][2]int32
	bytes  [][2]int32
	// emitted: a rune was emitted since the last reset (the last one is then
	// spans[len(spans)-1], which dropDone always keeps).
	emitted bool
}

func (n *normalized) reset() {
	n.text = n.text[:0]
	n.runeOf = n.runeOf[:0]
	n.spans = n.spans[:0]
	n.bytes = n.bytes[:0]
	n.emitted = false
}

// emit appends rune r, made from original runes [start, end), which are
// the original bytes [bstart, bend).
func (n *normalized) emit(r rune, start, end, bstart, bend int) {
	idx := int32(len(n.spans))
	n.spans = append(n.spans, [2]int32{int32(start), int32(end)})
	n.bytes = append(n.bytes, [2]int32{int32(bstart), int32(bend)})
	before := len(n.text)
	n.text = utf8.AppendRune(n.text, r)
	for range len(n.text) - before {
		n.runeOf = append(n.runeOf, idx)
	}
	n.emitted = true
}

// dropDone removes the bytes before b, a rune boundary of text with b <
// len(text), and the runes they hold: positions in text then count from b.
func (n *normalized) dropDone(b int) {
	if b <= 0 {
		return
	}
	k := n.runeOf[b]
	n.text = n.text[:copy(n.text, n.text[b:])]
	n.runeOf = n.runeOf[:copy(n.runeOf, n.runeOf[b:])]
	for i := range n.runeOf {
		n.runeOf[i] -= k
	}
	n.spans = n.spans[:copy(n.spans, n.spans[k:])]
	n.bytes = n.bytes[:copy(n.bytes, n.bytes[k:])]
}

// emitWord appends r, padded with spaces when it is a CJK ideograph so that
// the pre-tokenizer makes it a word of its own.
func (n *normalized) emitWord(r rune, start, end, bstart, bend int) {
	if isCJK(r) {
		n.emit(' ', start, end, bstart, bend)
		n.emit(r, start, end, bstart, bend)
		n.emit(' ', start, end, bstart, bend)
		return
	}
	n.emit(r, start, end, bstart, bend)
}

// cleanRune is BERT's text cleaning for one rune: ok is false when r must be
// dropped; white space of any kind (unicode.IsSpace) becomes ' '. Dropped:
// NUL, U+FFFD (which also stands for each invalid UTF-8 byte) and, as in
// BERT and HuggingFace, every rune of category C: control (Cc), format (Cf:
// soft hyphen, zero-width space, BOM...), private use (Co), surrogate (Cs)
// and unassigned (Cn, as of Go's Unicode tables). Unlike HuggingFace, \v,
// \f and U+0085 count as white space rather than control characters, so
// "a\vb" gives two words.
func cleanRune(r rune) (rune, bool) {
	if r < utf8.RuneSelf { // ASCII fast path
		switch {
		case r == ' ' || (r >= '\t' && r <= '\r'):
			return ' ', true
		case r < 0x20 || r == 0x7f:
			return 0, false
		}
		return r, true
	}
	switch {
	case r == utf8.RuneError:
		return 0, false
	case unicode.IsSpace(r): // before the control test: U+0085 is both
		return ' ', true
	case unicode.In(r, unicode.C):
		return 0, false
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z):
		return 0, false // unassigned
	}
	return r, true
}

// isCJK reports whether r is in BERT's "Chinese character" blocks (CJK
// Unified Ideographs and extensions A–F, compatibility ideographs). The
// library's own test (normalizer.IsChinese) misses extension A.
func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}

// normalize appends the normalised form of s to n; s starts at original
// rune index base and may hold invalid UTF-8. It is normalizePart on a
// whole piece of text, with byte offsets counted from the start of s.
func (n *normalized) normalize(s string, base int, lowercase bool, sc *normScratch) {
	sc.carry = 0
	n.normalizePart(s, base, 0, lowercase, sc, true)
}

// maxCarry bounds the run of non-starters that normalizePart holds back
// from one call to the next; see normalizePart.
const maxCarry = 1 << 16

// normalizePart appends the normalised form of s to n and returns the
// number of runes of s; s starts at original rune index base and byte
// offset bbase, and may hold invalid UTF-8.
//
// Cased: clean each rune, pad CJK. Uncased: clean, NFD, drop Mn, lower-case,
// pad CJK. NFD is done rune by rune (full canonical decomposition), then
// canonical reordering of each run of non-starters, which gives the same
// text as NFD of the whole string while keeping each rune's origin. Spans:
// a decomposed rune gets the span of the rune it came from; a run whose
// order changed gets the union span of the run; a dropped mark that
// directly follows the previous kept rune in the original text extends that
// rune's span (so uncased "e\u0301" covers both runes).
//
// A piece of text may be given in consecutive parts, cut anywhere between
// two runes (as a `for range` loop over the whole piece counts them), with
// final false on all but the last and the same n and sc throughout: the
// result is then that of one call on the whole piece. For this, a trailing
// run of non-starters, which the next part may continue, is held back in sc
// until the next call; a run held back longer than maxCarry runes is
// processed at once (the only case where the parts can differ from the
// whole: canonical ordering across that cut is not done).
func (n *normalized) normalizePart(s string, base, bbase int, lowercase bool, sc *normScratch, final bool) int {
	i := base
	if !lowercase {
		for b, r := range s {
			if c, ok := cleanRune(r); ok {
				n.emitWord(c, i, i+1, bbase+b, bbase+b+runeLen(s, b, r))
			}
			i++
		}
		return i - base
	}

	// 1. Clean and decompose, one original rune at a time, after the run
	// held back by the previous call.
	d := sc.runes[:sc.carry]
	for b, r := range s {
		c, ok := cleanRune(r)
		b0, b1 := int32(bbase+b), int32(bbase+b+runeLen(s, b, r))
		if ok && c < utf8.RuneSelf {
			d = append(d, decomposed{r: c, start: int32(i), end: int32(i + 1), bstart: b0, bend: b1})
		} else if ok {
			var tmp [utf8.UTFMax]byte
			sc.dec = norm.NFD.Append(sc.dec[:0], tmp[:utf8.EncodeRune(tmp[:], c)]...)
			for b := sc.dec; len(b) > 0; {
				p := norm.NFD.Properties(b)
				dr, size := utf8.DecodeRune(b)
				b = b[size:]
				d = append(d, decomposed{r: dr, start: int32(i), end: int32(i + 1), bstart: b0, bend: b1, ccc: p.CCC()})
			}
		}
		i++
	}
	sc.runes = d
	k := len(d) // d[:k] is processed now, d[k:] held back
	if !final {
		for k > 0 && d[k-1].ccc != 0 {
			k--
		}
		if len(d)-k > maxCarry {
			k = len(d)
		}
	}
	all := d
	d = d[:k]

	// 2. Canonical ordering: stable sort of each run of non-starters by
	// combining class; a run that changes gets the union span.
	for j := 0; j < len(d); {
		if d[j].ccc == 0 {
			j++
			continue
		}
		k := j
		for k < len(d) && d[k].ccc != 0 {
			k++
		}
		run := d[j:k]
		if !slices.IsSortedFunc(run, cmpCCC) {
			slices.SortStableFunc(run, cmpCCC)
			lo, hi := run[0].start, run[0].end
			blo, bhi := run[0].bstart, run[0].bend
			for _, x := range run {
				lo, hi = min(lo, x.start), max(hi, x.end)
				blo, bhi = min(blo, x.bstart), max(bhi, x.bend)
			}
			for q := range run {
				run[q].start, run[q].end, run[q].reordered = lo, hi, true
				run[q].bstart, run[q].bend = blo, bhi
			}
		}
		j = k
	}

	// 3. Drop non-spacing marks, lower-case, pad CJK.
	for _, x := range d {
		if unicode.Is(unicode.Mn, x.r) {
			// n.emitted: n has a rune from this piece of text.
			if last := len(n.spans) - 1; n.emitted && !x.reordered && n.spans[last][1] == x.start {
				n.spans[last][1] = x.end
				n.bytes[last][1] = x.bend
			}
			continue
		}
		if c, ok := cleanRune(unicode.ToLower(x.r)); ok {
			n.emitWord(c, int(x.start), int(x.end), int(x.bstart), int(x.bend))
		}
	}
	sc.carry = copy(all, all[k:])
	return i - base
}

// runeLen is the length in bytes of rune r found at s[b:] by a `for range`
// loop: 1 for an invalid byte.
func runeLen(s string, b int, r rune) int {
	if r == utf8.RuneError {
		_, size := utf8.DecodeRuneInString(s[b:])
		return size
	}
	return utf8.RuneLen(r)
}

// decomposed is a rune of the NFD text with the original runes it comes
// from and its canonical combining class.
type decomposed struct {
	r            rune
	start, end   int32
	bstart, bend int32 // the same in bytes
	ccc          uint8
	reordered    bool // moved by canonical ordering; its span is its run's
}

func cmpCCC(a, b decomposed) int { return int(a.ccc) - int(b.ccc) }

// normScratch is reusable memory for the uncased pass; runes[:carry] is
// the run held back by normalizePart.
type normScratch struct {
	runes []decomposed
	carry int
	dec   []byte
}
