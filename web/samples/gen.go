//go:build ignore

// gen writes the page's bundled Shapes World samples: a few images of the test-100 split (its
// fixed seed, so they are the split's own images) as PNG, and samples.json with each image's
// size, two true captions and one false caption, and one item of each downstream task with its
// answer as the generator computes it (Shapes World's task generators, as uniter synth --task
// writes them). Run from the repository root:
//
//	go run web/samples/gen.go
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"log"
	"os"
	"path/filepath"

	"github.com/uniter-serve/uniter/shapes"
)

// sample is one entry of samples.json (the page reads it).
type sample struct {
	File     string   `json:"file"`
	Split    string   `json:"split"`
	Index    int      `json:"index"`
	Width    int      `json:"width"`
	Height   int      `json:"height"`
	Captions []string `json:"captions"` // true captions first, then one false caption
	Truth    []bool   `json:"truth"`    // whether each caption is true of the image
	Tasks    tasks    `json:"tasks"`
}

// tasks are one item of each task for the image (NLVR2's with the next sample as right image).
type tasks struct {
	Question   string     `json:"question"`
	Answer     string     `json:"answer"`
	Hypothesis string     `json:"hypothesis"`
	Label      string     `json:"label"` // entailment, contradiction or neutral
	Expression string     `json:"expression"`
	Box        [4]float64 `json:"box"` // the referred object's box
	Statement  string     `json:"statement"`
	Right      string     `json:"right"` // the sample file that is NLVR2's right image
	True       bool       `json:"true"`  // whether the statement is true of the pair
}

// pickType is the first item whose type (by typeOf) is want, else the first item.
func pickType[T any](items []T, want string, typeOf func(T) string) T {
	for _, it := range items {
		if typeOf(it) == want {
			return it
		}
	}
	return items[0]
}

func main() {
	const dir = "web/samples"
	sp, _ := shapes.KnownSplit("test-100")
	var out []sample
	indices := []int{0, 3, 7, 12}
	// The task items shown vary over the samples: a different question type, label and so on each.
	qaTypes := []string{shapes.QAColor, shapes.QACount, shapes.QARelationColor, shapes.QASize}
	veLabels := []string{shapes.LabelEntailment, shapes.LabelContradiction, shapes.LabelNeutral, shapes.LabelEntailment}
	nlvr2Types := []string{shapes.NLVR2Both, shapes.NLVR2More, shapes.NLVR2Same, shapes.NLVR2Left}
	for k, i := range indices {
		rec, img, err := shapes.Generate(sp.Seed, i)
		if err != nil {
			log.Fatal(err)
		}
		var buf bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
			log.Fatal(err)
		}
		name := fmt.Sprintf("%s-%05d.png", sp.Name, i)
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
		s := sample{File: name, Split: sp.Name, Index: i, Width: rec.Width, Height: rec.Height}
		for _, c := range rec.Captions[:2] {
			s.Captions = append(s.Captions, c.Text)
			s.Truth = append(s.Truth, true)
		}
		s.Captions = append(s.Captions, rec.FalseCaptions[0].Text)
		s.Truth = append(s.Truth, false)

		scene := shapes.GenerateScene(sp.Seed, i)
		qa := pickType(shapes.QAItems(sp.Seed, i, scene), qaTypes[k], func(q shapes.QAItem) string { return q.Type })
		ve := pickType(shapes.VEItems(sp.Seed, i, scene), veLabels[k], func(v shapes.VEItem) string { return v.Label })
		ref := pickType(shapes.RefItems(sp.Seed, i, scene), fmt.Sprint(k%2 == 1), func(r shapes.RefItem) string { return fmt.Sprint(r.WithRelation) })
		j := indices[(k+1)%len(indices)]
		pair := shapes.NLVR2Items(sp.Seed, i, j, scene, shapes.GenerateScene(sp.Seed, j))
		st := pickType(pair, nlvr2Types[k], func(n shapes.NLVR2Item) string { return n.Type })
		s.Tasks = tasks{Question: qa.Question, Answer: qa.Answer, Hypothesis: ve.Hypothesis, Label: ve.Label,
			Expression: ref.Expression, Box: ref.Box, Statement: st.Statement, Right: fmt.Sprintf("%s-%05d.png", sp.Name, j), True: st.Label}
		out = append(out, s)
		fmt.Printf("%s: %d×%d, %d bytes\n", name, rec.Width, rec.Height, buf.Len())
	}
	raw, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.json"), append(raw, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
}
