package detector

import (
	"image"
	"image/color"
	"image/draw"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// palette cycles through distinguishable colours for boxes.
var palette = []color.NRGBA{
	{230, 25, 75, 255}, {60, 180, 75, 255}, {0, 130, 200, 255}, {245, 130, 48, 255},
	{145, 30, 180, 255}, {70, 240, 240, 255}, {240, 50, 230, 255}, {210, 245, 60, 255},
}

// Draw renders boxes (original-image pixels) with their captions on a copy of img.
func Draw(img *Image, boxes []Box, captions []string) *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, img.Width, img.Height))
	for i, j := 0, 0; i < len(img.Pix); i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = img.Pix[i], img.Pix[i+1], img.Pix[i+2], 255
	}
	face := basicfont.Face7x13
	for i, b := range boxes {
		c := palette[i%len(palette)]
		x1, y1, x2, y2 := int(b[0]), int(b[1]), int(b[2]), int(b[3])
		for t := 0; t < 2; t++ { // 2-pixel outline
			rect(out, x1+t, y1+t, x2-t, y2-t, c)
		}
		if i < len(captions) && captions[i] != "" {
			w := font.MeasureString(face, captions[i]).Ceil() + 4
			top := max(y1-14, 0)
			draw.Draw(out, image.Rect(x1, top, x1+w, top+14), &image.Uniform{c}, image.Point{}, draw.Over)
			d := font.Drawer{Dst: out, Src: image.White, Face: face, Dot: fixed.P(x1+2, top+11)}
			d.DrawString(captions[i])
		}
	}
	return out
}

func rect(img *image.NRGBA, x1, y1, x2, y2 int, c color.NRGBA) {
	for x := x1; x <= x2; x++ {
		img.SetNRGBA(x, y1, c)
		img.SetNRGBA(x, y2, c)
	}
	for y := y1; y <= y2; y++ {
		img.SetNRGBA(x1, y, c)
		img.SetNRGBA(x2, y, c)
	}
}
