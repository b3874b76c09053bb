package textproc

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
)

// Token is one token of an Encoding. Offsets count runes of the original
// text, [Start, End); see the package documentation.
type Token struct {
	ID   int64  `json:"id"`
	Text string `json:"text"` // the vocabulary string, e.g. "play", "##ing", "[UNK]", "[CLS]"
	// Start and End: for [CLS] both are 0, for [SEP] both are the rune count
	// of the text; for every other token Start < End.
	Start int `json:"start"`
	End   int `json:"end"`
	// Word is the index in Encoding.Words of the word this token belongs to,
	// -1 for the added [CLS] and [SEP].
	Word int `json:"word"`
	// Special is true only for the [CLS] and [SEP] added by Encode. A
	// special-token string found in the text (say "[MASK]") gets its id but
	// is an ordinary token of its own word.
	Special bool `json:"special"`
}

// Word is a unit of the BERT pre-tokenisation: a maximal run of characters
// that are neither white space nor punctuation, a single punctuation
// character, a single CJK ideograph, or a special-token string found in
// the text. Its tokens are consecutive in Encoding.Tokens.
type Word struct {
	Text  string `json:"text"`  // the original text[Start:End] (in runes)
	Start int    `json:"start"` // rune offset in the original text
	End   int    `json:"end"`   // rune offset in the original text, > Start
}

// Encoding is the result of Encode.
//
// Invariants: 3 <= len(Tokens) <= MaxLength; Tokens[0] is [CLS] and the last
// is [SEP]; the tokens between are not Special, have Start < End within
// [0, rune count], non-decreasing Start, and Word indices that start at 0
// and grow by 0 or 1 from one token to the next; Words holds exactly the
// words that have at least one token in Tokens, in text order.
type Encoding struct {
	Tokens []Token `json:"tokens"`
	// Truncated is true when tokens were dropped to fit MaxLength; the
	// kept ones are a prefix of the full sequence, then [SEP].
	Truncated bool `json:"truncated"`
	// FullLength is the number of tokens, [CLS] and [SEP] included, before
	// truncation, counted only up to MaxLength + 1: it is len(Tokens) when
	// not Truncated, and MaxLength + 1, meaning "at least MaxLength + 1",
	// when Truncated (Encode stops reading the text once it knows that
	// tokens must be dropped).
	FullLength int    `json:"full_length"`
	Words      []Word `json:"words"`
}

// Read is the part of text the tokens cover: all of it unless Truncated, else up to the end of
// the last kept token. Answers echo this part, never more than the model read.
func (e Encoding) Read(text string) string {
	if !e.Truncated || len(e.Tokens) < 3 {
		return text
	}
	end := e.Tokens[len(e.Tokens)-2].End // code points; the last token is [SEP]
	n := 0
	for i := range text {
		if n == end {
			return text[:i]
		}
		n++
	}
	return text
}

// IDs returns the token ids, [CLS] and [SEP] included.
func (e Encoding) IDs() []int64 {
	ids := make([]int64, len(e.Tokens))
	for i, tok := range e.Tokens {
		ids[i] = tok.ID
	}
	return ids
}

// defaultChunkBytes is the size above which normalised text is handed to
// the library in pieces, cut only where its pre-tokenizer splits anyway
// (next to a space or a punctuation character), so the cut changes nothing.
// The library copies the whole string each time it slices it: one call on
// a long text would take time quadratic in its length.
const defaultChunkBytes = 256

// defaultWindowBytes is about how much of the original text Encode reads
// at a time: it stops reading once the sequence is known to be full, so
// the work done on a long text is that on its first few windows.
const defaultWindowBytes = 1024

// encoder is the state of one Encode call.
//
// The text is read window by window. Each window is searched for special-
// token strings, normalised (normalizePart, appending to buf.norm, which
// holds the current segment: the text between two special-token strings),
// and the normalised text is cut into chunks for the library as it comes.
// Reading stops as soon as more content tokens than fit have been found.
type encoder struct {
	t    *Tokenizer
	text string

	keep    int // content tokens that fit: MaxLength - 2
	tokens  []Token
	words   []Word
	nTokens int // content tokens produced, kept or not
	nWords  int // words produced, kept or not

	buf *encodeBuffers

	pos  int // next byte of text to read: it starts a rune
	rune int // rune index of pos

	// Special-token search: spAt is the byte offset of the first special-
	// token string at or after pos (t.specials[spIdx]), or -1 when none
	// starts in [pos, searched).
	spAt, spIdx, searched int

	// Chunking of buf.norm.text, the normalised current segment.
	start     int  // start of the chunk not yet handed to the library
	p         int  // next rune to look at
	last      int  // the rune before p, -1 when none
	prevBound bool // the rune before p is a space or punctuation, or there is none
	wordAt    int  // start of the word that ends at p, when wordLen > 0
	wordLen   int  // its length in runes
	// long: the word that ends at p has more than maxInputCharsPerWord
	// runes, so it is a single [UNK] wherever it ends; its first original
	// rune and byte are longStart and longByte.
	long                bool
	longStart, longByte int

	stats encodeStats
}

// encodeStats counts the work of one Encode call (for tests).
type encodeStats struct {
	read       int // bytes of text read: normalised or skipped
	normalized int // bytes of text normalised
	skipped    int // bytes of text passed over by skip
	searched   int // end of the text searched for special-token strings
}

// encodeBuffers is memory reused between Encode calls.
type encodeBuffers struct {
	norm    normalized
	scratch normScratch
}

var bufferPool = sync.Pool{New: func() any { return new(encodeBuffers) }}

// maxPooled bounds the buffers (in elements) kept in the pool after a long
// text, so that one huge request does not pin memory.
const maxPooled = 1 << 16

func putBuffers(b *encodeBuffers) {
	if cap(b.norm.text) > maxPooled || cap(b.norm.spans) > maxPooled || cap(b.norm.bytes) > maxPooled ||
		cap(b.scratch.runes) > maxPooled {
		return
	}
	bufferPool.Put(b)
}

// Encode tokenises text into [CLS] word pieces... [SEP], truncated to
// MaxLength. It never panics. Errors: ErrEmptyText when no token is left
// after normalisation, ErrTokenize when the library fails (a recovered
// panic included); the Encoding is then empty.
//
// Encode reads the text only until it has found one content token more
// than fit, so the cost of a long text that is truncated is about that of
// its first few KB (see the package documentation, Cost).
func (t *Tokenizer) Encode(text string) (Encoding, error) {
	enc, _, err := t.encode(text)
	return enc, err
}

// encode is Encode, with statistics on the work done.
func (t *Tokenizer) encode(text string) (enc Encoding, st encodeStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			enc = Encoding{}
			err = fmt.Errorf("%w: recovered panic: %v", ErrTokenize, r)
		}
	}()
	if len(text) >= math.MaxInt32 {
		return Encoding{}, st, fmt.Errorf("%w: text of %d bytes is too long", ErrTokenize, len(text))
	}

	buf := bufferPool.Get().(*encodeBuffers)
	defer putBuffers(buf)

	e := &encoder{t: t, text: text, keep: t.maxLength - 2, buf: buf, spAt: -1}
	err = e.run()
	e.stats.read = e.pos
	st = e.stats
	if err != nil {
		return Encoding{}, st, err
	}
	if e.nTokens == 0 {
		return Encoding{}, st, ErrEmptyText
	}

	nRunes := e.rune + utf8.RuneCountInString(text[e.pos:])
	enc.FullLength = min(e.nTokens, e.keep+1) + 2
	enc.Truncated = e.nTokens > e.keep
	enc.Tokens = make([]Token, 0, len(e.tokens)+2)
	enc.Tokens = append(enc.Tokens, Token{ID: t.cls.id, Text: t.cls.text, Start: 0, End: 0, Word: -1, Special: true})
	enc.Tokens = append(enc.Tokens, e.tokens...)
	enc.Tokens = append(enc.Tokens, Token{ID: t.sep.id, Text: t.sep.text, Start: nRunes, End: nRunes, Word: -1, Special: true})
	enc.Words = e.words
	return enc, st, nil
}

// full reports whether more content tokens than fit have been found: the
// encoding is then known, and reading stops.
func (e *encoder) full() bool { return e.nTokens > e.keep }

// run splits the text at special-token strings and encodes the segments
// between them, until the end of the text or until the sequence is full.
func (e *encoder) run() error {
	for e.pos < len(e.text) && !e.full() {
		e.beginSegment()
		for {
			final := e.feed()
			if err := e.scan(final); err != nil {
				return err
			}
			if e.full() {
				return nil
			}
			if final {
				break
			}
		}
		if e.spAt >= 0 && e.spAt == e.pos {
			sp := e.t.specials[e.spIdx]
			n := utf8.RuneCountInString(sp.text)
			word := e.addWord(e.rune, e.rune+n, e.pos, e.pos+len(sp.text))
			e.addToken(Token{ID: sp.id, Text: sp.text, Start: e.rune, End: e.rune + n, Word: word})
			e.pos += len(sp.text)
			e.rune += n
			e.spAt, e.searched = -1, e.pos
		}
	}
	return nil
}

// search makes sure that the next special-token string at or after pos is
// known (spAt >= 0) or that none starts before upto. Among strings found
// at the same offset the first of t.specials (the longest) wins.
func (e *encoder) search(upto int) {
	if e.spAt >= 0 || e.searched >= upto {
		return
	}
	upto = min(upto, len(e.text))
	from := e.searched
	for i, sp := range e.t.specials {
		hi := min(len(e.text), upto+len(sp.text)-1)
		e.stats.searched = max(e.stats.searched, hi)
		if hi-from < len(sp.text) {
			continue
		}
		if j := strings.Index(e.text[from:hi], sp.text); j >= 0 && (e.spAt < 0 || from+j < e.spAt) {
			e.spAt, e.spIdx = from+j, i
		}
	}
	e.searched = upto
}

// beginSegment resets the normalised text and the chunking state for a
// segment that starts at pos.
func (e *encoder) beginSegment() {
	e.buf.norm.reset()
	e.buf.scratch.carry = 0
	e.start, e.p, e.last = 0, 0, -1
	e.prevBound = true
	e.wordLen = 0
	e.long = false
}

// feed reads the next part of the current segment into buf.norm, and
// reports whether it was the last.
func (e *encoder) feed() (final bool) {
	if e.skip() {
		return false
	}
	end := len(e.text)
	if e.pos+e.t.windowBytes < end {
		end = runeStartAt(e.text, e.pos, e.pos+e.t.windowBytes)
	}
	e.search(end)
	if e.spAt >= 0 && e.spAt <= end {
		end = e.spAt
	}
	final = end == len(e.text) || end == e.spAt
	e.rune += e.buf.norm.normalizePart(e.text[e.pos:end], e.rune, e.pos, e.t.lowercase, &e.buf.scratch, final)
	e.stats.normalized += end - e.pos
	e.pos = end
	return final
}

// runeStartAt returns the first offset at or after b where a rune starts
// when s is read with `for range` from lo, which is such an offset.
func runeStartAt(s string, lo, b int) int {
	if b >= len(s) {
		return len(s)
	}
	if utf8.RuneStart(s[b]) {
		// Every byte that is not a continuation byte starts a rune.
		return b
	}
	for q := b - 1; q >= lo && q > b-utf8.UTFMax; q-- {
		if utf8.RuneStart(s[q]) {
			if _, size := utf8.DecodeRuneInString(s[q:]); q+size > b {
				return q + size
			}
			return b
		}
	}
	return b
}

// Classes of runes for skip.
const (
	classOther   = iota // starts or continues a word that is not long
	classDropped        // removed by the normalisation
	classSpace          // white space
	classWord           // continues a long word
)

// asciiClass is the class of each ASCII byte; classWord for letters and
// digits, classOther for punctuation.
var asciiClass = func() (c [utf8.RuneSelf]uint8) {
	for b := range rune(utf8.RuneSelf) {
		switch n, ok := cleanRune(b); {
		case !ok:
			c[b] = classDropped
		case n == ' ':
			c[b] = classSpace
		case normalizer.IsBertPunctuation(n):
			c[b] = classOther
		default:
			c[b] = classWord
		}
	}
	return c
}()

// skipClass is the class of r for skip; classWord only when its
// normalised form is known without NFD (ASCII, or a cased model) and is a
// single rune that continues a word.
func (e *encoder) skipClass(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	c, ok := cleanRune(r)
	switch {
	case !ok:
		return classDropped
	case c == ' ':
		return classSpace
	case !e.t.lowercase && !isCJK(c) && !normalizer.IsBertPunctuation(c):
		return classWord
	}
	return classOther
}

// skip passes over runs of runes that leave no trace in the result but
// through their last rune: white space and dropped runes (which only end
// the current word), or, inside a long word, runes that continue it (which
// only move its end). It appends to buf.norm only the last space or word
// rune, with its own span, which gives the same words and tokens as
// normalising the whole run (the chunks differ, which changes nothing).
// This makes huge runs of white space and huge words cheap. skip requires
// that no run of non-starters is held back by normalizePart (its runs
// could continue past dropped runes), and reports whether it read anything.
func (e *encoder) skip() bool {
	if e.buf.scratch.carry != 0 || e.pos >= len(e.text) {
		return false
	}
	run := e.skipRun(len(e.text))
	if run.end == e.pos {
		return false
	}
	e.search(run.end)
	if e.spAt >= 0 && e.spAt < run.end {
		if run = e.skipRun(e.spAt); run.end == e.pos {
			return false
		}
	}
	if run.lastAt >= 0 {
		e.buf.norm.emit(run.lastC, run.lastRune, run.lastRune+1, run.lastAt, run.lastAt+run.lastSize)
	}
	e.stats.skipped += run.end - e.pos
	e.pos, e.rune = run.end, run.endRune
	return true
}

// skipped is a run found by skipRun.
type skipped struct {
	end, endRune int // where it ends, in bytes and runes
	// The last space or word rune, when lastAt >= 0: its byte offset,
	// rune index, length in bytes and normalised form.
	lastAt, lastRune, lastSize int
	lastC                      rune
}

// skipRun finds the run that skip can pass over at pos, ending at or
// before limit.
func (e *encoder) skipRun(limit int) skipped {
	text := e.text
	mode := uint8(classDropped) // classSpace or classWord once seen
	run := skipped{lastAt: -1}
	j, i := e.pos, e.rune
	for j < limit {
		r, size := rune(text[j]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[j:])
		}
		class := e.skipClass(r)
		if class == classWord && !e.long {
			class = classOther
		}
		if class == classOther || (class != classDropped && mode != classDropped && class != mode) {
			break
		}
		if class == classDropped {
			j += size
			i++
			continue
		}
		mode = class
		run.lastAt, run.lastRune, run.lastSize, run.lastC = j, i, size, r
		j += size
		i++
		if size == 1 {
			// Fast path: the ASCII bytes that follow, one rune each.
			k := j
			for k < limit && text[k] < utf8.RuneSelf {
				if c := asciiClass[text[k]]; c == mode {
					run.lastAt, run.lastC = k, rune(text[k])
				} else if c != classDropped {
					break
				}
				k++
			}
			run.lastRune += run.lastAt - (j - 1)
			i += k - j
			j = k
		}
	}
	run.end, run.endRune = j, i
	if run.lastAt >= 0 {
		if mode == classSpace {
			run.lastC = ' '
		} else if e.t.lowercase {
			run.lastC = unicode.ToLower(run.lastC) // ASCII: see skipClass
		}
	}
	return run
}

// addWord registers a word spanning original runes [start, end), which
// are the bytes [bstart, bend), and returns its index. The word is stored
// only if its first token is kept.
func (e *encoder) addWord(start, end, bstart, bend int) int {
	idx := e.nWords
	e.nWords++
	if e.nTokens < e.keep {
		e.words = append(e.words, Word{Text: e.text[bstart:bend], Start: start, End: end})
	}
	return idx
}

func (e *encoder) addToken(tok Token) {
	if e.nTokens < e.keep {
		e.tokens = append(e.tokens, tok)
	}
	e.nTokens++
}

// scan cuts the normalised text read so far into chunks and tokenises
// them, up to the last cut it can decide (a cut needs the rune after it),
// or to the end when final (the segment is all read). A chunk is cut at
// the first place after chunkBytes where a space or punctuation character
// is on either side. A word longer than maxInputCharsPerWord is not handed
// to the library, which would make it one [UNK]: that [UNK] is made here
// once the word's end is found, so the word's middle need not be kept
// (and skip can pass over it). What was tokenised is then dropped from
// buf.norm.
func (e *encoder) scan(final bool) error {
	n := &e.buf.norm
	for e.p < len(n.text) {
		r, size := utf8.DecodeRune(n.text[e.p:])
		bound := r == ' ' || normalizer.IsBertPunctuation(r)
		if e.long {
			if bound {
				e.endLong()
				if e.full() {
					return nil
				}
			}
		} else if e.p-e.start >= e.t.chunkBytes && (bound || e.prevBound) {
			if err := e.chunk(e.start, e.p); err != nil {
				return err
			}
			e.start = e.p
			if e.full() {
				return nil
			}
		}
		if bound {
			e.wordLen = 0
		} else {
			if e.wordLen == 0 {
				e.wordAt = e.p
			}
			e.wordLen++
			if e.wordLen == maxInputCharsPerWord+1 && !e.long {
				// Tokenise what precedes the word (a cut where the
				// library splits anyway), then wait for its end.
				if e.wordAt > e.start {
					if err := e.chunk(e.start, e.wordAt); err != nil {
						return err
					}
					if e.full() {
						return nil
					}
				}
				k := n.runeOf[e.wordAt]
				e.long, e.longStart, e.longByte = true, int(n.spans[k][0]), int(n.bytes[k][0])
				e.start = e.wordAt
			}
		}
		e.prevBound = bound
		e.last = e.p
		e.p += size
	}
	if final {
		if e.long {
			e.endLong()
			return nil
		}
		if e.start < len(n.text) {
			return e.chunk(e.start, len(n.text))
		}
		return nil
	}
	// Keep the pending chunk or, in a long word, its last rune (whose span
	// is its end).
	drop := e.start
	if e.long {
		drop = e.last
	}
	if drop > 0 {
		n.dropDone(drop)
		e.start = max(e.start-drop, 0)
		e.p -= drop
		e.last -= drop
		e.wordAt -= drop
	}
	return nil
}

// endLong records the long word that ends with the rune at last as one
// [UNK], as the library would.
func (e *encoder) endLong() {
	n := &e.buf.norm
	k := n.runeOf[e.last]
	end, bend := int(n.spans[k][1]), int(n.bytes[k][1])
	word := e.addWord(e.longStart, end, e.longByte, bend)
	e.addToken(Token{ID: e.t.unk.id, Text: e.t.unk.text, Start: e.longStart, End: end, Word: word})
	e.long = false
	e.start = e.p
}

// chunk runs the library on normalised bytes [from, to) and records the
// words and tokens it yields, with offsets mapped back to the original.
func (e *encoder) chunk(from, to int) (err error) {
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
		word := e.addWord(int(n.spans[w0][0]), int(n.spans[w1-1][1]), int(n.bytes[w0][0]), int(n.bytes[w1-1][1]))

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
		if e.full() {
			return nil // the rest is not needed
		}
	}
	return nil
}
