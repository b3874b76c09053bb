// Package textproc turns user text into BERT WordPiece tokens for UNITER,
// with character offsets back into the text the user sent.
//
// # Pipeline
//
//  1. Special-token strings ([CLS], [SEP], [PAD], [UNK], [MASK] by default)
//     that appear verbatim in the text are matched first, case-sensitively,
//     and become single tokens, as HuggingFace's BERT tokenizers do.
//  2. The rest is normalised in Go, by this package, as BERT does: NUL,
//     U+FFFD (which stands for each invalid UTF-8 byte) and every rune of
//     Unicode category C (control, format such as soft hyphen and zero-width
//     space, private use, unassigned) are dropped, and every white space
//     (unicode.IsSpace: \t \n \v \f \r, NBSP, U+3000, ...) becomes ' '.
//     For uncased models the text is then put in NFD, non-spacing marks (Mn)
//     are dropped and runes are lower-cased, so "Café" becomes "cafe". CJK
//     ideographs get a space on each side so that each is a word of its own.
//  3. github.com/sugarme/tokenizer splits the normalised text into words
//     (white space is removed, each punctuation character is its own word:
//     pretokenizer.BertPreTokenizer) and each word into word pieces
//     (model/wordpiece; a word longer than 100 runes, or one that cannot be
//     covered by vocabulary pieces, becomes a single [UNK]).
//  4. [CLS] and [SEP] are added and the sequence is truncated to MaxLength.
//
// The normalisation is done here rather than by the library because the
// library's normalisers are unsafe on unusual text: they panic (for
// instance on "İstanbul" when lower-casing), one input ("\x00\u00ad")
// reaches log.Fatalf and ends the process, accent stripping does nothing,
// NBSP and U+3000 are not treated as white space, and its CJK test misses
// CJK Extension A (U+3400–U+4DBF). For the same reason this package never
// calls the library's Tokenizer.Encode or EncodeBatch (EncodeBatch calls
// log.Fatal on any error, and Encode reports wrong offsets for non-ASCII
// text because it mixes rune and byte offsets). Any panic raised inside the
// library is recovered and returned as an error wrapping ErrTokenize.
//
// # Offsets
//
// Every offset in this package counts Unicode code points (runes) of the
// ORIGINAL text passed to Encode, as Go's `for range` and []rune(text)
// count them (each invalid UTF-8 byte counts as one rune), in half-open
// intervals [Start, End). Offsets of a token cover the original characters
// it was made from, including characters the normalisation merged into it
// (a combining accent right after its base, in uncased mode) or dropped
// from its inside (control characters), so for uncased "Cafe\u0301" the
// token "cafe" covers all five runes. When a character decomposes into several runes that end
// up in different word pieces (Hangul syllables in uncased mode), each of
// those pieces covers the whole character. The added [CLS] has Start = End
// = 0 and the added [SEP] has Start = End = number of runes in the text, so
// Start never decreases along an Encoding.
//
// # Cost
//
// Encode reads the text window by window (about 1 KB each) and stops as
// soon as it has found one content token more than MaxLength leaves room
// for, so a long text that is truncated costs about as much as its first
// few KB, whatever its length. The library is fed chunks of at most a few
// hundred bytes, cut where it would split anyway, and allocates heavily:
// about 0.1 ms and 1,000 allocations for a 70-byte sentence, about 1 ms
// per KB read. Beyond that, only cheap linear scans touch the whole text:
// counting its runes (for the offsets of [SEP]), and passing over runs of
// white space and dropped characters, and over the middle of a word too
// long to split (which is one [UNK] wherever it ends), at hundreds of MB/s
// for ASCII and without normalising them; a text that has fewer tokens
// than fit is normalised and tokenised to its end. Callers should still
// bound the size of the text they accept.
//
// # Concurrency
//
// A Tokenizer is immutable after New and safe for concurrent use by any
// number of goroutines: every Encode call uses its own state, and the
// shared library objects (the WordPiece vocabulary and the stateless
// pre-tokenizer) are only read.
package textproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sugarme/tokenizer/model"
	"github.com/sugarme/tokenizer/model/wordpiece"
	"github.com/sugarme/tokenizer/pretokenizer"
)

// Sentinel errors returned (wrapped) by Encode; test with errors.Is.
var (
	// ErrEmptyText: the text has no token once normalised (empty, or only
	// white space, control characters or, uncased, combining marks).
	ErrEmptyText = errors.New("textproc: text is empty after normalisation")
	// ErrTokenize: the tokenisation library failed or panicked on the input.
	ErrTokenize = errors.New("textproc: tokenization failed")
)

// Default special token strings of BERT vocabularies.
const (
	DefaultCLS  = "[CLS]"
	DefaultSEP  = "[SEP]"
	DefaultPAD  = "[PAD]"
	DefaultUNK  = "[UNK]"
	DefaultMask = "[MASK]"
)

// maxInputCharsPerWord is the longest word (in normalised runes) that
// WordPiece tries to split; longer words become [UNK] (BERT's value).
const maxInputCharsPerWord = 100

// Config describes a BERT WordPiece vocabulary and how to use it.
type Config struct {
	// VocabPath is a BERT vocab.txt: one token per line, id = line number
	// counted from 0. A trailing "\r" and a leading UTF-8 BOM are ignored.
	// When a token appears on several lines, TokenID and the tokenizer use
	// the last id, as HuggingFace does.
	VocabPath string
	// Lowercase is true for uncased models: NFD, drop combining marks
	// (category Mn), lower-case.
	Lowercase bool
	// MaxLength is the maximum sequence length INCLUDING [CLS] and [SEP];
	// it must be at least 3.
	MaxLength int
	// Special token strings; an empty string means the BERT default
	// ([CLS], [SEP], [PAD], [UNK], [MASK]). Each must be in the vocabulary.
	CLS, SEP, PAD, UNK, Mask string
	// ClosedVocabulary says the vocabulary is a closed domain vocabulary:
	// every word the model was trained on is one token of it, and its
	// word pieces only spell what lies outside. A word split into pieces
	// is then an unknown word too (UnknownWords); with an open vocabulary
	// (BERT's) only words that become [UNK] are.
	ClosedVocabulary bool
}

// Tokenizer encodes text into BERT WordPiece tokens. Create it with New;
// it is safe for concurrent use.
type Tokenizer struct {
	lowercase bool
	maxLength int
	closed    bool // Config.ClosedVocabulary

	tokens []string         // id -> token (line of vocab.txt)
	ids    map[string]int64 // token -> id (last line wins)

	cls, sep, pad, unk, mask specialToken
	specials                 []specialToken // the five, longest first, for matching in text

	wp     wordpiece.WordPiece
	pretok *pretokenizer.BertPreTokenizer

	chunkBytes  int // see defaultChunkBytes; tests lower it
	windowBytes int // see defaultWindowBytes; tests lower it
}

type specialToken struct {
	text string
	id   int64
}

// New loads the vocabulary and checks the configuration. Errors name the
// problem: unreadable or empty vocabulary, MaxLength < 3, or a special
// token that is not in the vocabulary.
func New(cfg Config) (*Tokenizer, error) {
	if cfg.MaxLength < 3 {
		return nil, fmt.Errorf("textproc: MaxLength is %d, need at least 3 (room for [CLS], one token and [SEP])", cfg.MaxLength)
	}
	if cfg.VocabPath == "" {
		return nil, errors.New("textproc: VocabPath is empty")
	}
	data, err := os.ReadFile(cfg.VocabPath)
	if err != nil {
		return nil, fmt.Errorf("textproc: reading vocabulary: %w", err)
	}
	tokens := parseVocab(data)
	if len(tokens) == 0 {
		return nil, fmt.Errorf("textproc: vocabulary %s has no tokens", cfg.VocabPath)
	}

	t := &Tokenizer{
		lowercase: cfg.Lowercase,
		maxLength: cfg.MaxLength,
		closed:    cfg.ClosedVocabulary,
		tokens:    tokens,
		ids:       make(map[string]int64, len(tokens)),
		pretok:    pretokenizer.NewBertPreTokenizer(),

		chunkBytes:  defaultChunkBytes,
		windowBytes: defaultWindowBytes,
	}
	libVocab := make(model.Vocab, len(tokens))
	for i, tok := range tokens {
		t.ids[tok] = int64(i)
		libVocab[tok] = i
	}

	for _, s := range []struct {
		dst       *specialToken
		name, val string
		def       string
	}{
		{&t.cls, "CLS", cfg.CLS, DefaultCLS},
		{&t.sep, "SEP", cfg.SEP, DefaultSEP},
		{&t.pad, "PAD", cfg.PAD, DefaultPAD},
		{&t.unk, "UNK", cfg.UNK, DefaultUNK},
		{&t.mask, "Mask", cfg.Mask, DefaultMask},
	} {
		text := s.val
		if text == "" {
			text = s.def
		}
		if !utf8.ValidString(text) {
			return nil, fmt.Errorf("textproc: special token %s %q is not valid UTF-8", s.name, text)
		}
		id, ok := t.ids[text]
		if !ok {
			return nil, fmt.Errorf("textproc: special token %s %q is not in vocabulary %s", s.name, text, cfg.VocabPath)
		}
		*s.dst = specialToken{text: text, id: id}
	}
	t.specials = []specialToken{t.cls, t.sep, t.pad, t.unk, t.mask}
	// Longest first, so that at equal positions the longest string wins.
	slices.SortStableFunc(t.specials, func(a, b specialToken) int { return len(b.text) - len(a.text) })

	// Build the library model from the parsed vocabulary: the library's own
	// file reader calls log.Fatal on errors.
	t.wp = wordpiece.NewWordPieceBuilder().
		Vocab(&libVocab).
		UnkToken(t.unk.text).
		ContinuingSubwordPrefix("##").
		MaxInputCharsPerWord(maxInputCharsPerWord).
		Build()
	return t, nil
}

// parseVocab splits vocab.txt into lines: "\n" separated, an optional "\r"
// before it and a leading UTF-8 BOM removed, no token for the empty string
// after a final newline.
func parseVocab(data []byte) []string {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// TokenID returns the id of a vocabulary token, e.g. "##ing" or "[MASK]".
func (t *Tokenizer) TokenID(s string) (int64, bool) {
	id, ok := t.ids[s]
	return id, ok
}

// TokenText returns the vocabulary token with the given id.
func (t *Tokenizer) TokenText(id int64) (string, bool) {
	if id < 0 || id >= int64(len(t.tokens)) {
		return "", false
	}
	return t.tokens[id], true
}

// VocabSize is the number of lines of vocab.txt, i.e. one more than the
// largest valid id (the size of the model's embedding table).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// CLSID is the id of the classification token that starts every encoding.
func (t *Tokenizer) CLSID() int64 { return t.cls.id }

// SEPID is the id of the separator token that ends every encoding.
func (t *Tokenizer) SEPID() int64 { return t.sep.id }

// PadID is the id of the padding token (Encode never pads).
func (t *Tokenizer) PadID() int64 { return t.pad.id }

// UNKID is the id of the unknown-word token.
func (t *Tokenizer) UNKID() int64 { return t.unk.id }

// MaskID is the id of the mask token.
func (t *Tokenizer) MaskID() int64 { return t.mask.id }

// Lowercase reports whether the tokenizer is uncased.
func (t *Tokenizer) Lowercase() bool { return t.lowercase }

// ClosedVocabulary reports whether the vocabulary is a closed domain
// vocabulary (Config.ClosedVocabulary).
func (t *Tokenizer) ClosedVocabulary() bool { return t.closed }

// MaxLength is the maximum number of tokens of an Encoding, [CLS] and
// [SEP] included.
func (t *Tokenizer) MaxLength() int { return t.maxLength }
