// Package shapes is Shapes World: a deterministic generator of synthetic scenes (coloured shapes
// on textured backgrounds) with captions from a small compositional grammar. Every caption carries
// a logical form (LF) that can be evaluated on any scene, so the truth of any caption on any image
// is known, and character spans that tie its words to the objects they refer to.
//
// The package is self-contained (standard library only) and knows nothing of the serving
// pipeline: it is the data source for training and evaluating a small UNITER end to end.
package shapes

import (
	"image/color"
	"slices"
	"strings"
)

// Version names the generator; it changes whenever the same seed would give other bytes.
const Version = "shapes-world/1"

// The attribute values. Their order is fixed: it is the class order a detector or a
// colour head trained on this data should use.
var (
	shapeNames = []string{"circle", "square", "triangle", "star", "diamond", "cross", "heart", "hexagon"}
	colorNames = []string{"red", "green", "blue", "yellow", "orange", "purple", "white", "black"}
	sizeNames  = []string{SizeSmall, SizeLarge}
	relNames   = []string{RelLeftOf, RelRightOf, RelAbove, RelBelow}
)

// Object sizes.
const (
	SizeSmall = "small"
	SizeLarge = "large"
)

// Spatial relations of a relation LF.
const (
	RelLeftOf  = "left_of"
	RelRightOf = "right_of"
	RelAbove   = "above"
	RelBelow   = "below"
)

// Counts a count caption can state ("two" … "four"); a count LF may hold any n ≥ 0.
const (
	MinCount = 2
	MaxCount = 4
)

var countWords = map[int]string{2: "two", 3: "three", 4: "four"}

// relPhrase is the surface form of each relation.
var relPhrase = map[string]string{RelLeftOf: "left of", RelRightOf: "right of", RelAbove: "above", RelBelow: "below"}

// relInverse maps a relation to its converse (a left of b ⇔ b right of a).
var relInverse = map[string]string{RelLeftOf: RelRightOf, RelRightOf: RelLeftOf, RelAbove: RelBelow, RelBelow: RelAbove}

// baseRGB are the object colours: saturated, far from each other and from the muted
// background palette (objects get a small per-object jitter around them).
var baseRGB = map[string][3]uint8{
	"red":    {228, 32, 32},
	"green":  {34, 178, 52},
	"blue":   {32, 72, 230},
	"yellow": {246, 222, 30},
	"orange": {250, 134, 16},
	"purple": {150, 40, 200},
	"white":  {250, 250, 250},
	"black":  {16, 16, 16},
}

// Shapes lists the shape names in class order.
func Shapes() []string { return slices.Clone(shapeNames) }

// Colors lists the colour names in class order.
func Colors() []string { return slices.Clone(colorNames) }

// Sizes lists the size names: small, large.
func Sizes() []string { return slices.Clone(sizeNames) }

// Relations lists the relation names of relation LFs.
func Relations() []string { return slices.Clone(relNames) }

// ColorRGB is the base RGB value of a colour name; ok is false for an unknown name.
func ColorRGB(name string) (c color.RGBA, ok bool) {
	v, ok := baseRGB[name]
	return color.RGBA{v[0], v[1], v[2], 255}, ok
}

// Plural is the plural of a shape name ("crosses", "stars").
func Plural(shape string) string {
	if strings.HasSuffix(shape, "s") || strings.HasSuffix(shape, "x") {
		return shape + "es"
	}
	return shape + "s"
}

// CountWord is the word for a count the grammar can say (2 … 4), "" otherwise.
func CountWord(n int) string { return countWords[n] }

// RelationPhrase is the words of a relation ("left of"), "" for an unknown one.
func RelationPhrase(rel string) string { return relPhrase[rel] }

// functionWords are the grammar's words that are not attribute values.
var functionWords = []string{"a", "an", "there", "is", "are", "no", "something"}

// Vocabulary is every word the grammar can produce, sorted and without repeats
// (lowercase ASCII, no punctuation: a WordPiece vocabulary can be built from it).
func Vocabulary() []string {
	words := slices.Clone(functionWords)
	words = append(words, colorNames...)
	words = append(words, sizeNames...)
	for _, s := range shapeNames {
		words = append(words, s, Plural(s))
	}
	for _, w := range countWords {
		words = append(words, w)
	}
	for _, p := range relPhrase {
		words = append(words, strings.Fields(p)...)
	}
	slices.Sort(words)
	return slices.Compact(words)
}

func isShape(s string) bool { return slices.Contains(shapeNames, s) }
func isColor(s string) bool { return slices.Contains(colorNames, s) }
func isSize(s string) bool  { return slices.Contains(sizeNames, s) }
