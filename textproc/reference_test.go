package textproc

// The tokenisation as it was before Encode learnt to stop reading once the
// sequence is full: it normalises and splits the whole text. It is kept
// here, unchanged but for names, as the reference of TestEncodeMatchesReference
// and FuzzEncode.

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
	"golang.org/x/text/unicode/norm"
)

// refBuffers is the memory of one refEncode call.
type refBuffers struct {
	norm    refNormalized
	scratch refNormScratch
	runes   []int32
}

// refEncoder is the state of one refEncode call.
type refEncoder struct {
	t    *Tokenizer
	text string
	// runeByte[i] is the byte offset of rune i of text; runeByte[nRunes] = len(text).
	runeByte []int32

	keep    int // content tokens that fit: MaxLength - 2
	tokens  []Token
	words   []Word
	nTokens int // content tokens produced, kept or not
	nWords  int // words produced, kept or not

	buf *refBuffers
}

// refEncode is Encode as it was before it stopped reading at the end of
// the sequence: it tokenises text into [CLS] word pieces... [SEP], truncated to
// MaxLength. It never panics. Errors: ErrEmptyText when no token is left
// after normalisation, ErrTokenize when the library fails (a recovered
// panic included); the Encoding is then empty.
func refEncode(t *Tokenizer, text string) (enc Encoding, err error) {
	defer func() {
		if r := recover(); r != nil {
			enc = Encoding{}
			err = fmt.Errorf("%w: recovered panic: %v", ErrTokenize, r)
		}
	}()
	if len(text) >= math.MaxInt32 {
		return Encoding{}, fmt.Errorf("%w: text of %d bytes is too long", ErrTokenize, len(text))
	}

	buf := new(refBuffers)
	e := &refEncoder{t: t, text: text, keep: t.maxLength - 2, buf: buf}
	e.runeByte = buf.runes[:0]
	for b := range text {
		e.runeByte = append(e.runeByte, int32(b))
	}
	e.runeByte = append(e.runeByte, int32(len(text)))
	buf.runes = e.runeByte
	nRunes := len(e.runeByte) - 1

	if err := e.run(); err != nil {
		return Encoding{}, err
	}
	if e.nTokens == 0 {
		return Encoding{}, ErrEmptyText
	}

	enc.FullLength = e.nTokens + 2
	enc.Truncated = e.nTokens > e.keep
	enc.Tokens = make([]Token, 0, len(e.tokens)+2)
	enc.Tokens = append(enc.Tokens, Token{ID: t.cls.id, Text: t.cls.text, Start: 0, End: 0, Word: -1, Special: true})
	enc.Tokens = append(enc.Tokens, e.tokens...)
	enc.Tokens = append(enc.Tokens, Token{ID: t.sep.id, Text: t.sep.text, Start: nRunes, End: nRunes, Word: -1, Special: true})
	enc.Words = e.words
	return enc, nil
}

// run splits the text at special-token strings and encodes the rest.
func (e *refEncoder) run() error {
	specials := e.t.specials
	next := make([]int, len(specials)) // next occurrence of each at or after pos, -1 none
	for i := range next {
		next[i] = -2 // not searched yet
	}
	pos, runePos := 0, 0
	for pos < len(e.text) {
		best := -1
		for i, sp := range specials {
			if next[i] == -2 || (next[i] >= 0 && next[i] < pos) {
				next[i] = -1
				if j := strings.Index(e.text[pos:], sp.text); j >= 0 {
					next[i] = pos + j
				}
			}
			// specials are sorted longest first, so on a tie the first wins.
			if next[i] >= 0 && (best < 0 || next[i] < next[best]) {
				best = i
			}
		}
		end := len(e.text)
		if best >= 0 {
			end = next[best]
		}
		if end > pos {
			seg := e.text[pos:end]
			if err := e.segment(seg, runePos); err != nil {
				return err
			}
			runePos += utf8.RuneCountInString(seg)
		}
		if best < 0 {
			break
		}
		sp := specials[best]
		n := utf8.RuneCountInString(sp.text)
		word := e.addWord(runePos, runePos+n)
		e.addToken(Token{ID: sp.id, Text: sp.text, Start: runePos, End: runePos + n, Word: word})
		pos = end + len(sp.text)
		runePos += n
	}
	return nil
}

// addWord registers a word spanning original runes [start, end) and
// returns its index. The word is stored only if its first token is kept.
func (e *refEncoder) addWord(start, end int) int {
	idx := e.nWords
	e.nWords++
	if e.nTokens < e.keep {
		e.words = append(e.words, Word{
			Text:  e.text[e.runeByte[start]:e.runeByte[end]],
			Start: start,
			End:   end,
		})
	}
	return idx
}

func (e *refEncoder) addToken(tok Token) {
	if e.nTokens < e.keep {
		e.tokens = append(e.tokens, tok)
	}
	e.nTokens++
}

// segment normalises a piece of text free of special-token strings, which
// starts at original rune base, and tokenises it chunk by chunk.
func (e *refEncoder) segment(seg string, base int) error {
	n := &e.buf.norm
	n.reset()
	n.normalize(seg, base, e.t.lowercase, &e.buf.scratch)
	text := n.text

	start := 0 // start of the current chunk
	var prev rune = ' '
	for p := 0; p < len(text); {
		r, size := utf8.DecodeRune(text[p:])
		if p-start >= e.t.chunkBytes && (r == ' ' || prev == ' ' ||
			normalizer.IsBertPunctuation(r) || normalizer.IsBertPunctuation(prev)) {
			if err := e.chunk(start, p); err != nil {
				return err
			}
			start = p
		}
		prev = r
		p += size
	}
	if start < len(text) {
		return e.chunk(start, len(text))
	}
	return nil
}

// chunk runs the library on normalised bytes [from, to) and records the
// words and tokens it yields, with offsets mapped back to the original.
func (e *refEncoder) chunk(from, to int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: library panic: %v", ErrTokenize, r)
		}
	}()
	n := &e.buf.norm
	chunk := string(n.text[from:to])
	if strings.TrimLeft(chunk, " ") == "" {
		return nil
	}

	pts := tokenizer.NewPreTokenizedString(chunk)
	pts, err = e.t.pretok.PreTokenize(pts)
	if err != nil {
		return fmt.Errorf("%w: pre-tokenizing: %w", ErrTokenize, err)
	}
	for _, split := range pts.GetSplits(normalizer.OriginalTarget, tokenizer.Byte) {
		if len(split.Offsets) != 2 {
			return fmt.Errorf("%w: library returned word %q with offsets %v", ErrTokenize, split.Value, split.Offsets)
		}
		b0, b1 := split.Offsets[0], split.Offsets[1]
		if b0 < 0 || b1 <= b0 || b1 > len(chunk) || chunk[b0:b1] != split.Value {
			return fmt.Errorf("%w: library returned word %q with offsets %v in %q", ErrTokenize, split.Value, split.Offsets, chunk)
		}
		// Normalised rune range of the word, then original rune range.
		w0 := int(n.runeOf[from+b0])
		w1 := int(n.runeOf[from+b1-1]) + 1
		word := e.addWord(int(n.spans[w0][0]), int(n.spans[w1-1][1]))

		pieces, err := e.t.wp.Tokenize(split.Value)
		if err != nil {
			return fmt.Errorf("%w: word piece split of %q: %w", ErrTokenize, split.Value, err)
		}
		if len(pieces) == 0 {
			return fmt.Errorf("%w: word piece split of %q gave no token", ErrTokenize, split.Value)
		}
		for _, p := range pieces {
			// WordPiece offsets are runes within the word.
			if len(p.Offsets) != 2 || p.Offsets[0] < 0 || p.Offsets[1] <= p.Offsets[0] || w0+p.Offsets[1] > w1 {
				return fmt.Errorf("%w: word piece %q of %q has offsets %v", ErrTokenize, p.Value, split.Value, p.Offsets)
			}
			if p.Id < 0 || p.Id >= len(e.t.tokens) {
				return fmt.Errorf("%w: word piece %q has id %d outside the vocabulary", ErrTokenize, p.Value, p.Id)
			}
			r0, r1 := w0+p.Offsets[0], w0+p.Offsets[1]
			e.addToken(Token{
				ID:    int64(p.Id),
				Text:  p.Value,
				Start: int(n.spans[r0][0]),
				End:   int(n.spans[r1-1][1]),
				Word:  word,
			})
		}
	}
	return nil
}

// refNormalized is a normalised piece of text together with, for every rune of
// it, the span of original runes it comes from.
//
// Invariants: text is valid UTF-8 holding no control character and no white
// space other than ' '; runeOf has len(text) entries, and runeOf[b] is the
// index in spans of the rune containing byte b; spans[i] = [start, end) in
// original runes with start < end, and starts never decrease.
type refNormalized struct {
	text   []byte
	runeOf []int32
	spans  [][2]int32
}

func (n *refNormalized) reset() {
	n.text = n.text[:0]
	n.runeOf = n.runeOf[:0]
	n.spans = n.spans[:0]
}

// emit appends rune r, made from original runes [start, end).
func (n *refNormalized) emit(r rune, start, end int) {
	idx := int32(len(n.spans))
	n.spans = append(n.spans, [2]int32{int32(start), int32(end)})
	before := len(n.text)
	n.text = utf8.AppendRune(n.text, r)
	for range len(n.text) - before {
		n.runeOf = append(n.runeOf, idx)
	}
}

// emitWord appends r, padded with spaces when it is a CJK ideograph so that
// the pre-tokenizer makes it a word of its own.
func (n *refNormalized) emitWord(r rune, start, end int) {
	if isCJK(r) {
		n.emit(' ', start, end)
		n.emit(r, start, end)
		n.emit(' ', start, end)
		return
	}
	n.emit(r, start, end)
}

// normalize appends the normalised form of s to n; s starts at original
// rune index base and may hold invalid UTF-8.
//
// Cased: clean each rune, pad CJK. Uncased: clean, NFD, drop Mn, lower-case,
// pad CJK. NFD is done rune by rune (full canonical decomposition), then
// canonical reordering of each run of non-starters, which gives the same
// text as NFD of the whole string while keeping each rune's origin. Spans:
// a refDecomposed rune gets the span of the rune it came from; a run whose
// order changed gets the union span of the run; a dropped mark that
// directly follows the previous kept rune in the original text extends that
// rune's span (so uncased "e\u0301" covers both runes).
func (n *refNormalized) normalize(s string, base int, lowercase bool, sc *refNormScratch) {
	if !lowercase {
		i := base
		for _, r := range s {
			if c, ok := cleanRune(r); ok {
				n.emitWord(c, i, i+1)
			}
			i++
		}
		return
	}

	// 1. Clean and decompose, one original rune at a time.
	d := sc.runes[:0]
	i := base
	for _, r := range s {
		c, ok := cleanRune(r)
		if ok && c < utf8.RuneSelf {
			d = append(d, refDecomposed{r: c, start: int32(i), end: int32(i + 1)})
		} else if ok {
			var tmp [utf8.UTFMax]byte
			sc.dec = norm.NFD.Append(sc.dec[:0], tmp[:utf8.EncodeRune(tmp[:], c)]...)
			for b := sc.dec; len(b) > 0; {
				p := norm.NFD.Properties(b)
				dr, size := utf8.DecodeRune(b)
				b = b[size:]
				d = append(d, refDecomposed{r: dr, start: int32(i), end: int32(i + 1), ccc: p.CCC()})
			}
		}
		i++
	}
	sc.runes = d

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
		if !slices.IsSortedFunc(run, refCmpCCC) {
			slices.SortStableFunc(run, refCmpCCC)
			lo, hi := run[0].start, run[0].end
			for _, x := range run {
				lo, hi = min(lo, x.start), max(hi, x.end)
			}
			for q := range run {
				run[q].start, run[q].end, run[q].reordered = lo, hi, true
			}
		}
		j = k
	}

	// 3. Drop non-spacing marks, lower-case, pad CJK.
	emitted := false // n has a rune from this call
	for _, x := range d {
		if unicode.Is(unicode.Mn, x.r) {
			if last := len(n.spans) - 1; emitted && !x.reordered && n.spans[last][1] == x.start {
				n.spans[last][1] = x.end
			}
			continue
		}
		if c, ok := cleanRune(unicode.ToLower(x.r)); ok {
			n.emitWord(c, int(x.start), int(x.end))
			emitted = true
		}
	}
}

// refDecomposed is a rune of the NFD text with the original runes it comes
// from and its canonical combining class.
type refDecomposed struct {
	r          rune
	start, end int32
	ccc        uint8
	reordered  bool // moved by canonical ordering; its span is its run's
}

func refCmpCCC(a, b refDecomposed) int { return int(a.ccc) - int(b.ccc) }

// refNormScratch is reusable memory for the uncased pass.
type refNormScratch struct {
	runes []refDecomposed
	dec   []byte
}
