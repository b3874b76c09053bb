package textproc

import (
	"fmt"
	"math"
	"strings"
	"sync"
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
	// truncation (equal to len(Tokens) when not Truncated).
	FullLength int    `json:"full_length"`
	Words      []Word `json:"words"`
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

// encoder is the state of one Encode call.
type encoder struct {
	t    *Tokenizer
	text string
	// runeByte[i] is the byte offset of rune i of text; runeByte[nRunes] = len(text).
	runeByte []int32

	keep    int // content tokens that fit: MaxLength - 2
	tokens  []Token
	words   []Word
	nTokens int // content tokens produced, kept or not
	nWords  int // words produced, kept or not

	buf *encodeBuffers
}

// encodeBuffers is memory reused between Encode calls.
type encodeBuffers struct {
	norm    normalized
	scratch normScratch
	runes   []int32
}

var bufferPool = sync.Pool{New: func() any { return new(encodeBuffers) }}

// maxPooled bounds the buffers (in elements) kept in the pool after a long
// text, so that one huge request does not pin memory.
const maxPooled = 1 << 16

func putBuffers(b *encodeBuffers) {
	if cap(b.runes) > maxPooled || cap(b.norm.text) > maxPooled || cap(b.norm.spans) > maxPooled ||
		cap(b.scratch.runes) > maxPooled {
		return
	}
	bufferPool.Put(b)
}

// Encode tokenises text into [CLS] word pieces... [SEP], truncated to
// MaxLength. It never panics. Errors: ErrEmptyText when no token is left
// after normalisation, ErrTokenize when the library fails (a recovered
// panic included); the Encoding is then empty.
func (t *Tokenizer) Encode(text string) (enc Encoding, err error) {
	defer func() {
		if r := recover(); r != nil {
			enc = Encoding{}
			err = fmt.Errorf("%w: recovered panic: %v", ErrTokenize, r)
		}
	}()
	if len(text) >= math.MaxInt32 {
		return Encoding{}, fmt.Errorf("%w: text of %d bytes is too long", ErrTokenize, len(text))
	}

	buf := bufferPool.Get().(*encodeBuffers)
	defer putBuffers(buf)

	e := &encoder{t: t, text: text, keep: t.maxLength - 2, buf: buf}
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
func (e *encoder) run() error {
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
func (e *encoder) addWord(start, end int) int {
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

func (e *encoder) addToken(tok Token) {
	if e.nTokens < e.keep {
		e.tokens = append(e.tokens, tok)
	}
	e.nTokens++
}

// segment normalises a piece of text free of special-token strings, which
// starts at original rune base, and tokenises it chunk by chunk.
func (e *encoder) segment(seg string, base int) error {
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
