package shapes

// The kinds of edit of ProbeEdits.
const (
	ProbeRelationSwap = "relation_swap" // the converse relation: left of ↔ right of, above ↔ below
	ProbeColorSwap    = "color_swap"    // the colours of a relation's two noun phrases exchanged
	ProbeCount        = EditCount       // the number one more (or, at the grammar's top, one less)
	ProbeSize         = EditSize        // one noun phrase's size word flipped, or a size added
)

// ProbeKinds lists the kinds of edit of ProbeEdits, in the order it makes them.
func ProbeKinds() []string {
	return []string{ProbeRelationSwap, ProbeColorSwap, ProbeCount, ProbeSize}
}

// Probe is a minimal edit of a caption made by ProbeEdits: false on the scene, in the caption's
// template, grounded on the scene.
type Probe struct {
	Caption
	Edit string `json:"edit"` // the Probe… kind
}

// ProbeEdits makes, for a caption true on s, every applicable minimal edit of four kinds, each
// checked with Eval to be false on s (an edit that stays true is left out). Unlike FalseCaption it
// draws nothing: the same scene and caption always give the same probes, in this order.
//
//   - relation_swap: a relation caption with the converse relation ("left of" ↔ "right of",
//     "above" ↔ "below").
//   - color_swap: a relation caption whose two noun phrases name two different colours, both
//     present in s, with the colours exchanged ("a red circle left of a blue square" → "a blue
//     circle left of a red square").
//   - count: a count caption with its number one more, or, where the grammar cannot say it (or
//     it is true), one less.
//   - size: for each noun phrase naming a shape, its size word flipped (small ↔ large), or, when
//     it names none, the first size (small, then large) that makes the caption false. Adding a
//     size can change the article ("an orange star" → "a large orange star").
//
// Each edit keeps the caption's template (NewCaption); exists and none captions get only size
// edits, and a none caption rarely any (naming fewer objects keeps it true).
func ProbeEdits(s Scene, c Caption) []Probe {
	var out []Probe
	add := func(kind string, lf LF) bool {
		if Eval(lf, s) {
			return false
		}
		e, err := NewCaption(lf, c.Template, s)
		if err != nil || e.Text == c.Text {
			return false
		}
		out = append(out, Probe{Caption: e, Edit: kind})
		return true
	}
	if c.LF.Op == OpRelation {
		if inv, ok := relInverse[c.LF.Rel]; ok {
			lf := c.LF
			lf.Rel = inv
			add(ProbeRelationSwap, lf)
		}
		if a, b := c.LF.A.Color, c.LF.B.Color; a != "" && b != "" && a != b && hasColor(s, a) && hasColor(s, b) {
			lf := c.LF
			lf.A.Color, lf.B.Color = b, a
			add(ProbeColorSwap, lf)
		}
	}
	if c.LF.Op == OpCount {
		for _, n := range []int{c.LF.N + 1, c.LF.N - 1} {
			if n < MinCount || n > MaxCount {
				continue
			}
			lf := c.LF
			lf.N = n
			if add(ProbeCount, lf) {
				break
			}
		}
	}
	for i := range c.LF.Refs() {
		if c.LF.specs()[i].Shape == "" { // "something red" takes no size
			continue
		}
		sizes := sizeNames
		if named := c.LF.specs()[i].Size; named == SizeSmall {
			sizes = []string{SizeLarge}
		} else if named == SizeLarge {
			sizes = []string{SizeSmall}
		}
		for _, size := range sizes {
			lf := c.LF
			lf.specs()[i].Size = size
			if add(ProbeSize, lf) {
				break
			}
		}
	}
	return out
}

// hasColor reports whether some object of s has the colour.
func hasColor(s Scene, color string) bool {
	for _, o := range s.Objects {
		if o.Color == color {
			return true
		}
	}
	return false
}
