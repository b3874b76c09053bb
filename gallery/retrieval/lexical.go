package retrieval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/uniter-serve/uniter/gallery"
)

// The first stage of two-stage search is lexical: the words of a text that name one of the
// detector's classes or attributes are matched against the labels the detector gave each
// stored region. It reads only the label summaries (no features, no encoder), so it costs a
// few microseconds per image, and it is symmetric: the same score ranks images for a text and
// texts for an image.
//
// A text is read as mentions: a class word with the attribute words just before it ("red
// square"), or an attribute on its own ("something orange above ..."), with an optional count
// ("two green crosses": at least two regions must match) and negation ("no purple hearts").
// A region's support for a mention is P(class) · Π P(attribute) from its top labels; an
// image's support is the largest over its regions (the n-th largest for a count n), and none
// below gallery.MinSupport (gallery.LabelSummary.Support). The
// text's score on the image is Σ log(support + ε) over its mentions (log(1 − support + ε) for
// a negated one): a soft AND of the mentions. Words that are not labels (relations, sizes,
// function words) are left to the cross-encoder.

// Labels are the detector's class and attribute names, as in the bundle's label files.
// Background (a class index) and NoAttribute (an attribute index) name no object; −1 for none.
type Labels struct {
	Classes, Attributes     []string
	Background, NoAttribute int
}

// Lexicon maps words and phrases to label indices.
type Lexicon struct {
	classes, attrs map[string]int
	longest        int    // words in the longest label phrase
	key            string // names the labels and the reading rules (Key)
}

// lexiconVersion changes whenever Parse or keyTerms reads a text differently, so that texts
// indexed under the old rules are read again (Key).
const lexiconVersion = "lexicon-1"

// NewLexicon indexes the labels. A label may list synonyms separated by commas ("man,men");
// class names also match their English plural. Names in double underscores
// ("__background__") and the background/no-attribute indices are skipped.
func NewLexicon(l Labels) *Lexicon {
	lex := &Lexicon{classes: map[string]int{}, attrs: map[string]int{}, longest: 1}
	add := func(m map[string]int, names []string, skip int, plural bool) {
		for i, name := range names {
			if i == skip {
				continue
			}
			for _, syn := range strings.Split(name, ",") {
				words := splitWords(syn)
				if len(words) == 0 || strings.HasPrefix(strings.TrimSpace(syn), "__") {
					continue
				}
				lex.longest = max(lex.longest, len(words))
				forms := []string{strings.Join(words, " ")}
				if plural {
					last := words[len(words)-1]
					for _, p := range plurals(last) {
						forms = append(forms, strings.Join(append(slices.Clone(words[:len(words)-1]), p), " "))
					}
				}
				for _, f := range forms {
					if _, taken := m[f]; !taken { // the first label wins a shared form
						m[f] = i
					}
				}
			}
		}
	}
	add(lex.classes, l.Classes, l.Background, true)
	add(lex.attrs, l.Attributes, l.NoAttribute, false)
	raw, _ := json.Marshal(l)
	sum := sha256.Sum256(append([]byte(lexiconVersion+"\n"), raw...))
	lex.key = hex.EncodeToString(sum[:12])
	return lex
}

// Key names the lexicon: two lexicons with one key read every text alike. A store's index of
// text terms is valid for one key.
func (lex *Lexicon) Key() string { return lex.key }

func plurals(w string) []string {
	switch {
	case strings.HasSuffix(w, "s"), strings.HasSuffix(w, "x"), strings.HasSuffix(w, "ch"), strings.HasSuffix(w, "sh"), strings.HasSuffix(w, "z"):
		return []string{w + "es"}
	case strings.HasSuffix(w, "y") && len(w) > 1 && !strings.ContainsRune("aeiou", rune(w[len(w)-2])):
		return []string{w[:len(w)-1] + "ies"}
	}
	return []string{w + "s"}
}

// splitWords lower-cases s and splits it into runs of letters and digits.
func splitWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// Mention is one constraint a text puts on an image.
type Mention struct {
	Class   int   // class index, −1 for an attribute-only mention
	Attrs   []int // attribute indices
	Count   int   // at least this many matching regions (1 unless a count word preceded)
	Negated bool
	Text    string // the words, for reports
}

var (
	negations = map[string]bool{"no": true, "not": true, "without": true, "none": true, "nothing": true}
	// breakers end a noun phrase: an attribute before one is not an attribute of the next noun.
	breakers = map[string]bool{"of": true, "left": true, "right": true, "above": true, "below": true, "under": true,
		"over": true, "near": true, "next": true, "beside": true, "behind": true, "in": true, "on": true, "and": true,
		"with": true, "to": true, "is": true, "are": true, "has": true, "have": true, "than": true, "between": true}
	numbers = map[string]int{"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
		"ten": 10, "several": 2, "many": 3, "both": 2, "pair": 2}
)

// Parse reads a text's mentions of labels.
func (lex *Lexicon) Parse(text string) []Mention {
	words := splitWords(text)
	var out []Mention
	var attrs []int
	var attrWords []string
	count, neg := 1, false
	flush := func() { // attributes without a noun become mentions of their own
		for i, a := range attrs {
			out = append(out, Mention{Class: -1, Attrs: []int{a}, Count: count, Negated: neg, Text: attrWords[i]})
		}
		attrs, attrWords, count, neg = nil, nil, 1, false
	}
	for i := 0; i < len(words); {
		if n, phrase, class := lex.match(lex.classes, words[i:]); n > 0 {
			m := Mention{Class: class, Attrs: attrs, Count: count, Negated: neg, Text: strings.Join(append(attrWords, phrase), " ")}
			out = append(out, m)
			attrs, attrWords, count, neg = nil, nil, 1, false
			i += n
			continue
		}
		if n, phrase, attr := lex.match(lex.attrs, words[i:]); n > 0 {
			attrs, attrWords = append(attrs, attr), append(attrWords, phrase)
			i += n
			continue
		}
		w := words[i]
		switch {
		case negations[w]:
			flush()
			neg = true
		case numbers[w] > 0:
			count = numbers[w]
		case isCount(w):
			count, _ = strconv.Atoi(w)
		case breakers[w]:
			flush()
		}
		i++
	}
	flush()
	return out
}

func isCount(w string) bool {
	n, err := strconv.Atoi(w)
	return err == nil && n >= 2 && n <= 100
}

// match finds the longest label phrase at the start of words.
func (lex *Lexicon) match(m map[string]int, words []string) (n int, phrase string, index int) {
	for k := min(lex.longest, len(words)); k >= 1; k-- {
		p := strings.Join(words[:k], " ")
		if i, ok := m[p]; ok {
			return k, p, i
		}
	}
	return 0, "", -1
}

// firstStageEpsilon keeps log(support) finite; it is the support of a label no region shows.
const firstStageEpsilon = 1e-3

// noMentionScore is what a text without label words scores: as if it had one mention of
// even odds (it can be neither confirmed nor ruled out by labels).
var noMentionScore = math.Log(0.5 + firstStageEpsilon)

// Score is the first-stage score of mentions on an image's label summary (higher = better):
// Σ log(support + ε) over its mentions, log(1 − support + ε) for a negated one, with the
// support of gallery.LabelSummary.Support. With no mentions it returns noMentionScore.
func Score(mentions []Mention, s *gallery.LabelSummary, regions int) float64 {
	if len(mentions) == 0 {
		return noMentionScore
	}
	total := 0.0
	for _, m := range mentions {
		v := s.Support(regions, m.Class, m.Attrs, m.Count)
		if m.Negated {
			total += math.Log(max(1-v, 0) + firstStageEpsilon)
		} else {
			total += math.Log(v + firstStageEpsilon)
		}
	}
	return total
}

// informative reports whether mentions can rank images at all.
func informative(mentions []Mention) bool { return len(mentions) > 0 }
