package textproc

// UnknownWord is a word of a text that the vocabulary does not know, with its span in the
// text (runes, [Start, End), as Word's).
type UnknownWord struct {
	Word  string `json:"word"` // the original text of the word
	Start int    `json:"start"`
	End   int    `json:"end"`
}

// UnknownWords lists, in text order, the words of e that the vocabulary does not know: a word
// that became [UNK] and, with a closed vocabulary (Config.ClosedVocabulary), a word that could
// only be spelt in word pieces (several tokens, or one that covers only the start of its word
// because the rest was truncated). A special-token string written in the text ("[MASK]",
// "[UNK]") is no unknown word. Only the words the model read, e.Words, are considered; the
// result is nil when every word is known. This is the one place that decides which words are
// unknown: the API, the command line and the page report what it returns.
func (t *Tokenizer) UnknownWords(e Encoding) []UnknownWord {
	var out []UnknownWord
	i := 0
	for wi, w := range e.Words {
		for i < len(e.Tokens) && e.Tokens[i].Word < wi {
			i++
		}
		n, unk, end := 0, false, w.Start
		for ; i < len(e.Tokens) && e.Tokens[i].Word == wi; i++ {
			tok := e.Tokens[i]
			n++
			unk = unk || tok.ID == t.unk.id
			end = max(end, tok.End)
		}
		if n == 0 || t.isSpecialText(w.Text) {
			continue
		}
		if unk || t.closed && (n > 1 || end < w.End) {
			out = append(out, UnknownWord{Word: w.Text, Start: w.Start, End: w.End})
		}
	}
	return out
}

// isSpecialText reports whether s is one of the special-token strings.
func (t *Tokenizer) isSpecialText(s string) bool {
	for _, sp := range t.specials {
		if sp.text == s {
			return true
		}
	}
	return false
}
