package detector

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"testing"

	"github.com/disintegration/imaging"
)

// exifAPP1 builds an APP1 "Exif" segment whose IFD0 holds one tag: orientation o (SHORT).
// A dummy tag comes first so the parser has to skip an entry.
func exifAPP1(o uint16, bo binary.ByteOrder) []byte {
	var t bytes.Buffer
	if bo == binary.LittleEndian {
		t.WriteString("II")
	} else {
		t.WriteString("MM")
	}
	binary.Write(&t, bo, uint16(42))
	binary.Write(&t, bo, uint32(8)) // IFD0 right after the header
	binary.Write(&t, bo, uint16(2)) // two entries
	// 0x010f Make, ASCII, count 4, "Go\0\0" inline
	binary.Write(&t, bo, uint16(0x010f))
	binary.Write(&t, bo, uint16(2))
	binary.Write(&t, bo, uint32(4))
	t.WriteString("Go\x00\x00")
	// 0x0112 Orientation, SHORT, count 1, value in the first two bytes of the field
	binary.Write(&t, bo, uint16(0x0112))
	binary.Write(&t, bo, uint16(3))
	binary.Write(&t, bo, uint32(1))
	binary.Write(&t, bo, o)
	binary.Write(&t, bo, uint16(0))
	binary.Write(&t, bo, uint32(0)) // no next IFD
	payload := append([]byte("Exif\x00\x00"), t.Bytes()...)
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

// spliceAfterSOI inserts segments right after a JPEG's SOI marker.
func spliceAfterSOI(jpg []byte, segs ...[]byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// quadrants is a 32×16 image (wider than tall) with flat 16×8 quadrants:
// red top-left, green top-right, blue bottom-left, white bottom-right.
func quadrants() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 32, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 32; x++ {
			c := color.NRGBA{255, 0, 0, 255}
			switch {
			case x >= 16 && y < 8:
				c = color.NRGBA{0, 255, 0, 255}
			case x < 16 && y >= 8:
				c = color.NRGBA{0, 0, 255, 255}
			case x >= 16 && y >= 8:
				c = color.NRGBA{255, 255, 255, 255}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func near(t *testing.T, img *Image, x, y int, want [3]uint8, what string) {
	t.Helper()
	r, g, b := img.RGB(x, y)
	for i, v := range [3]uint8{r, g, b} {
		if d := int(v) - int(want[i]); d > 24 || d < -24 {
			t.Fatalf("%s: pixel (%d,%d) = %v,%v,%v, want about %v", what, x, y, r, g, b, want)
		}
	}
}

func TestEXIFOrientation6(t *testing.T) {
	red, green, blue, white := [3]uint8{255, 0, 0}, [3]uint8{0, 255, 0}, [3]uint8{0, 0, 255}, [3]uint8{255, 255, 255}
	plain := encodeJPEG(t, quadrants(), 95)
	img, err := Decode(plain, DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != 32 || img.Height != 16 || img.Orientation != 1 {
		t.Fatalf("no EXIF: %d×%d orientation %d", img.Width, img.Height, img.Orientation)
	}
	near(t, img, 2, 2, red, "no EXIF")

	for _, bo := range []binary.ByteOrder{binary.BigEndian, binary.LittleEndian} {
		data := spliceAfterSOI(plain, exifAPP1(6, bo))
		img, err := Decode(data, DecodeLimits{MaxPixels: 512}) // same pixel count after rotation
		if err != nil {
			t.Fatal(err)
		}
		// Orientation 6: the stored picture must be rotated 90° clockwise to display, so the
		// 32×16 picture becomes 16×32 and its top-left corner (red) lands at the top-right.
		if img.Width != 16 || img.Height != 32 || img.Orientation != 6 {
			t.Fatalf("%v: got %d×%d orientation %d, want 16×32 orientation 6", bo, img.Width, img.Height, img.Orientation)
		}
		near(t, img, 13, 2, red, "top-right")       // was top-left
		near(t, img, 13, 29, green, "bottom-right") // was top-right
		near(t, img, 2, 2, blue, "top-left")        // was bottom-left
		near(t, img, 2, 29, white, "bottom-left")   // was bottom-right
	}
}

// All eight orientations, both byte orders, against imaging.AutoOrientation(true) — on a grey
// JPEG, whose pixels both decoders produce identically, so the comparison is exact.
func TestEXIFOrientationsMatchImaging(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 24, 10))
	for y := 0; y < 10; y++ {
		for x := 0; x < 24; x++ {
			g.SetGray(x, y, color.Gray{uint8(x*10 + y*3)})
		}
	}
	plain := encodeJPEG(t, g, 95)
	for o := uint16(1); o <= 8; o++ {
		for _, bo := range []binary.ByteOrder{binary.BigEndian, binary.LittleEndian} {
			data := spliceAfterSOI(plain, exifAPP1(o, bo))
			img, err := Decode(data, DecodeLimits{})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
			if err != nil {
				t.Fatal(err)
			}
			if int(o) != img.Orientation {
				t.Fatalf("orientation %d: reported %d", o, img.Orientation)
			}
			b := ref.Bounds()
			if img.Width != b.Dx() || img.Height != b.Dy() {
				t.Fatalf("orientation %d: got %d×%d, imaging %d×%d", o, img.Width, img.Height, b.Dx(), b.Dy())
			}
			checkRGB(t, img, nrgbaAt(imaging.Clone(ref)), 0)
		}
	}
}

func TestEXIFParsingEdgeCases(t *testing.T) {
	plain := encodeJPEG(t, quadrants(), 90)
	xmp := []byte("\xff\xe1\x00\x1fhttp://ns.adobe.com/xap/1.0/\x00") // length 2 + 29
	app0 := []byte("\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
	bad := exifAPP1(6, binary.BigEndian)
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"after APP0", spliceAfterSOI(plain, app0, exifAPP1(3, binary.BigEndian)), 3},
		{"after an XMP APP1", spliceAfterSOI(plain, xmp, exifAPP1(8, binary.LittleEndian)), 8},
		{"value 0", spliceAfterSOI(plain, exifAPP1(0, binary.BigEndian)), 1},
		{"value 9", spliceAfterSOI(plain, exifAPP1(9, binary.BigEndian)), 1},
		{"no EXIF", plain, 1},
		{"segment length past the end", append([]byte{0xff, 0xd8}, bad[:20]...), 1},
		{"not a JPEG", []byte("\x89PNG"), 1},
		{"only SOI", []byte{0xff, 0xd8}, 1},
	} {
		if got := jpegOrientation(tc.data); got != tc.want {
			t.Errorf("%s: orientation %d, want %d", tc.name, got, tc.want)
		}
	}
	// A corrupt IFD: offset past the end, entry count larger than the data, bad byte order.
	for _, tiff := range [][]byte{
		[]byte("MM\x00\x2a\x00\x00\xff\xff"),
		[]byte("II\x2a\x00\x08\x00\x00\x00\xff\xff\x12\x01"),
		[]byte("XX\x00\x2a\x00\x00\x00\x08\x00\x00"),
		[]byte("MM\x00\x2a\x00\x00\x00\x04"),
		nil,
	} {
		if got := exifOrientation(tiff); got != 1 {
			t.Errorf("corrupt IFD % x: orientation %d", tiff, got)
		}
	}
	// EXIF in a PNG is ignored (imaging reads it from JPEG only, as does the contract).
	img, err := Decode(encodePNG(t, quadrants()), DecodeLimits{})
	if err != nil || img.Orientation != 1 || img.Width != 32 {
		t.Fatalf("PNG: %+v, %v", img, err)
	}
}

// applyOrientation on a 3×2 image by hand, for every orientation.
func TestApplyOrientationByHand(t *testing.T) {
	// Pixels are numbered a..f row-major; each pixel's R holds its letter.
	src := &Image{Width: 3, Height: 2, Pix: make([]uint8, 18)}
	for i := 0; i < 6; i++ {
		src.Pix[3*i] = 'a' + uint8(i)
	}
	// a b c
	// d e f
	for o, want := range map[int]struct {
		w, h int
		s    string
	}{
		1: {3, 2, "abcdef"},
		2: {3, 2, "cbafed"}, // mirror
		3: {3, 2, "fedcba"}, // 180°
		4: {3, 2, "defabc"}, // flip vertically
		5: {2, 3, "adbecf"}, // transpose
		6: {2, 3, "daebfc"}, // 90° clockwise
		7: {2, 3, "fcebda"}, // transverse
		8: {2, 3, "cfbead"}, // 90° counter-clockwise
	} {
		got := applyOrientation(src, o)
		var s []byte
		for i := 0; i < got.Width*got.Height; i++ {
			s = append(s, got.Pix[3*i])
		}
		if got.Width != want.w || got.Height != want.h || string(s) != want.s {
			t.Errorf("orientation %d: got %d×%d %q, want %d×%d %q", o, got.Width, got.Height, s, want.w, want.h, want.s)
		}
	}
}
