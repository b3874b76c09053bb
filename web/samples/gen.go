//go:build ignore

// gen writes the page's bundled Shapes World samples: a few images of the test-100 split (its
// fixed seed, so they are the split's own images) as PNG, and samples.json with each image's
// size, two true captions and one false caption. Run from the repository root:
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
}

func main() {
	const dir = "web/samples"
	sp, _ := shapes.KnownSplit("test-100")
	var out []sample
	for _, i := range []int{0, 3, 7, 12} {
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
