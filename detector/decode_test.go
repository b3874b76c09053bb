package detector

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	colorpalette "image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/disintegration/imaging"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// patterned is a w×h opaque image whose pixels are all different functions of x and y.
func patterned(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(1, w-1)), uint8(y * 255 / max(1, h-1)), uint8((x*7 + y*13) % 256), 255})
		}
	}
	return m
}

// smooth is a w×h opaque image of slow gradients (JPEG reproduces it closely).
func smooth(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(40 + 4*x), uint8(200 - 5*y), uint8(60 + 2*x + 3*y), 255})
		}
	}
	return m
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, m image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, m, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeBMP(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bmp.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngChunk builds one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

// pngHeaderOnly is a PNG signature plus a valid IHDR declaring w×h, 8-bit RGB, and nothing else.
func pngHeaderOnly(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	return append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
}

// checkRGB compares a decoded image with want pixel by pixel within tol.
func checkRGB(t *testing.T, got *Image, want func(x, y int) (r, g, b uint8), tol int) {
	t.Helper()
	worst := 0
	for y := 0; y < got.Height; y++ {
		for x := 0; x < got.Width; x++ {
			r, g, b := got.RGB(x, y)
			wr, wg, wb := want(x, y)
			for _, d := range []int{int(r) - int(wr), int(g) - int(wg), int(b) - int(wb)} {
				worst = max(worst, d, -d)
			}
			if worst > tol {
				t.Fatalf("pixel (%d,%d): got %v,%v,%v want %v,%v,%v (tolerance %d)", x, y, r, g, b, wr, wg, wb, tol)
			}
		}
	}
}

func nrgbaAt(m image.Image) func(x, y int) (uint8, uint8, uint8) {
	return func(x, y int) (uint8, uint8, uint8) {
		c := color.NRGBAModel.Convert(m.At(m.Bounds().Min.X+x, m.Bounds().Min.Y+y)).(color.NRGBA)
		return c.R, c.G, c.B
	}
}

func TestDecodeLosslessFormats(t *testing.T) {
	src := patterned(13, 7)
	pal := image.NewPaletted(src.Bounds(), colorpalette.Plan9)
	for y := 0; y < 7; y++ {
		for x := 0; x < 13; x++ {
			pal.Set(x, y, src.At(x, y))
		}
	}
	gray := image.NewGray(image.Rect(0, 0, 5, 4))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 11)
	}
	for _, tc := range []struct {
		name, format string
		data         []byte
		want         image.Image
	}{
		{"png rgb", "png", encodePNG(t, src), src},
		{"png paletted", "png", encodePNG(t, pal), pal},
		{"png gray", "png", encodePNG(t, gray), gray},
		{"gif", "gif", encodeGIF(t, pal), pal},
		{"bmp", "bmp", encodeBMP(t, src), src},
		{"bmp paletted", "bmp", encodeBMP(t, pal), pal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Decode(tc.data, DecodeLimits{})
			if err != nil {
				t.Fatal(err)
			}
			b := tc.want.Bounds()
			if img.Format != tc.format || img.Width != b.Dx() || img.Height != b.Dy() || len(img.Pix) != 3*b.Dx()*b.Dy() || img.Orientation != 1 {
				t.Fatalf("got %s %d×%d (%d bytes, orientation %d), want %s %d×%d", img.Format, img.Width, img.Height, len(img.Pix), img.Orientation, tc.format, b.Dx(), b.Dy())
			}
			checkRGB(t, img, nrgbaAt(tc.want), 0)
		})
	}
}

func TestDecodeAlphaAndDeepPNG(t *testing.T) {
	// Alpha is dropped, keeping the un-premultiplied colour (PIL convert("RGB"), cv2.imread).
	m := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	m.SetNRGBA(0, 0, color.NRGBA{200, 100, 50, 0})
	m.SetNRGBA(1, 0, color.NRGBA{10, 20, 30, 128})
	img, err := Decode(encodePNG(t, m), DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.Pix, []byte{200, 100, 50, 10, 20, 30}) {
		t.Fatalf("alpha PNG: got %v", img.Pix)
	}
	// 16-bit samples keep their high byte.
	d := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	d.SetNRGBA64(0, 0, color.NRGBA64{0x1234, 0xabcd, 0xff00, 0xffff})
	d.SetNRGBA64(1, 0, color.NRGBA64{0x00ff, 0x8080, 0x7fff, 0x4000})
	img, err = Decode(encodePNG(t, d), DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.Pix, []byte{0x12, 0xab, 0xff, 0x00, 0x80, 0x7f}) {
		t.Fatalf("16-bit PNG: got % x", img.Pix)
	}
}

func TestDecodeJPEGMatchesLibjpeg(t *testing.T) {
	// PIL (libjpeg-turbo) decodings made by testdata/make_jpeg_fixtures.py. Blocky pictures have
	// DC-only blocks, so the IDCT cannot differ: chroma upsampling and colour conversion must
	// match exactly. The photo differs only through Go's IDCT.
	for name, tol := range map[string]int{"blocky_420": 0, "blocky_422": 0, "blocky_444": 0,
		"narrow_420": 0, "narrow_422": 0, "photo_420": 3} {
		t.Run(name, func(t *testing.T) {
			img, err := Decode(readTestdata(t, name+".jpg"), DecodeLimits{})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := png.Decode(bytes.NewReader(readTestdata(t, name+".pil.png")))
			if err != nil {
				t.Fatal(err)
			}
			if b := ref.Bounds(); img.Width != b.Dx() || img.Height != b.Dy() || img.Format != "jpeg" {
				t.Fatalf("got %s %d×%d, PIL %d×%d", img.Format, img.Width, img.Height, b.Dx(), b.Dy())
			}
			want := FromImage(ref)
			worst, sum := 0, 0
			for i := range img.Pix {
				d := int(img.Pix[i]) - int(want.Pix[i])
				worst = max(worst, d, -d)
				sum += max(d, -d)
			}
			t.Logf("largest difference from PIL %d, mean %.4f", worst, float64(sum)/float64(len(img.Pix)))
			if worst > tol {
				checkRGB(t, img, func(x, y int) (uint8, uint8, uint8) { return want.RGB(x, y) }, tol)
			}
		})
	}
}

func TestDecodeJPEGGoEncoded(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 9, 5))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i * 5)
	}
	for _, tc := range []struct {
		name string
		m    image.Image
	}{{"smooth 4:2:0", smooth(40, 24)}, {"gray", gray}} {
		t.Run(tc.name, func(t *testing.T) {
			data := encodeJPEG(t, tc.m, 90)
			img, err := Decode(data, DecodeLimits{})
			if err != nil {
				t.Fatal(err)
			}
			checkRGB(t, img, nrgbaAt(tc.m), 12) // close to the source (JPEG is lossy)
			if tc.name == "gray" {              // grey has no colour conversion: exactly imaging's
				im, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
				if err != nil {
					t.Fatal(err)
				}
				checkRGB(t, img, nrgbaAt(imaging.Clone(im)), 0)
			}
		})
	}
}

// The libjpeg upsamplers by hand, on one row each.
func TestFancyUpsamplersByHand(t *testing.T) {
	// h2v2: near row [0 64 128], far row [128 128 128]: column sums 3·near + far.
	dst := make([]uint8, 6)
	fancyH2V2(dst, []uint8{0, 64, 128}, []uint8{128, 128, 128})
	// sums 128, 320, 512: (4·128+8)>>4=32, (3·128+320+7)>>4=44, (3·320+128+8)>>4=68,
	// (3·320+512+7)>>4=92, (3·512+320+8)>>4=116, (4·512+7)>>4=128
	if want := []uint8{32, 44, 68, 92, 116, 128}; !bytes.Equal(dst, want) {
		t.Fatalf("h2v2: got %v want %v", dst, want)
	}
	dst = make([]uint8, 5) // odd output width: the last column is dropped
	fancyH2V2(dst, []uint8{0, 64, 128}, []uint8{128, 128, 128})
	if want := []uint8{32, 44, 68, 92, 116}; !bytes.Equal(dst, want) {
		t.Fatalf("h2v2 odd: got %v want %v", dst, want)
	}
	dst = make([]uint8, 6)
	fancyH2V1(dst, []uint8{0, 100, 200})
	// 0, (0+100+2)>>2=25, (300+0+1)>>2=75, (300+200+2)>>2=125, (600+100+1)>>2=175, 200
	if want := []uint8{0, 25, 75, 125, 175, 200}; !bytes.Equal(dst, want) {
		t.Fatalf("h2v1: got %v want %v", dst, want)
	}
	dst = make([]uint8, 2)
	fancyH1V2(dst, []uint8{100, 1}, []uint8{0, 2}, 1)
	if want := []uint8{75, 1}; !bytes.Equal(dst, want) { // (300+0+1)>>2, (3+2+1)>>2
		t.Fatalf("h1v2: got %v want %v", dst, want)
	}
	dst = make([]uint8, 6)
	webpFancy(dst, []uint8{0, 64, 128}, []uint8{128, 128, 128})
	// x=0: (0+128+2)>>2=32; pair 1: avg=0+64+128+128+8=328, d12=(328+2·192)>>3=89,
	// d03=(328+2·128)>>3=73 → (89+0)>>1=44, (73+64)>>1=68; pair 2: avg=64+128+128+128+8=456,
	// d12=(456+512)>>3=121, d03=(456+384)>>3=105 → (121+64)>>1=92, (105+128)>>1=116;
	// even width: (3·128+128+2)>>2=128
	if want := []uint8{32, 44, 68, 92, 116, 128}; !bytes.Equal(dst, want) {
		t.Fatalf("webp: got %v want %v", dst, want)
	}
	// Colour conversions at the extremes and mid-grey.
	for _, c := range []struct{ y, cb, cr, r, g, b uint8 }{
		{128, 128, 128, 128, 128, 128}, {255, 128, 128, 255, 255, 255}, {0, 0, 255, 178, 0, 0}, // (91881·127+2¹⁵)>>16 = 178
		{76, 85, 255, 254, 0, 0}, // JFIF red: G = 76 + ⌊(969822−5943854+2¹⁵)/2¹⁶⌋ = 0
	} {
		if r, g, b := libjpegYCCToRGB(c.y, c.cb, c.cr); [3]uint8{r, g, b} != [3]uint8{c.r, c.g, c.b} {
			t.Errorf("libjpeg YCC(%d,%d,%d): got %d,%d,%d want %d,%d,%d", c.y, c.cb, c.cr, r, g, b, c.r, c.g, c.b)
		}
	}
	// VP8 (limited range): Y=16 is black, Y=235 white, neutral chroma 128.
	for _, c := range []struct{ y, u, v, r, g, b int }{{16, 128, 128, 0, 0, 0}, {235, 128, 128, 255, 255, 255}} {
		if r, g, b := vp8YUVToRGB(c.y, c.u, c.v); [3]int{int(r), int(g), int(b)} != [3]int{c.r, c.g, c.b} {
			t.Errorf("VP8 YUV(%d,%d,%d): got %d,%d,%d want %d,%d,%d", c.y, c.u, c.v, r, g, b, c.r, c.g, c.b)
		}
	}
}

func TestDecodeWebP(t *testing.T) {
	img, err := Decode(readTestdata(t, "tiny_lossless.webp"), DecodeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255,
		10, 20, 30, 40, 50, 60, 70, 80, 90, 0, 0, 0,
		200, 100, 50, 1, 2, 3, 128, 128, 128, 250, 5, 125}
	if img.Format != "webp" || img.Width != 4 || img.Height != 3 || !bytes.Equal(img.Pix, want) {
		t.Fatalf("lossless WebP: got %s %d×%d %v", img.Format, img.Width, img.Height, img.Pix)
	}
	// Lossy WebP against PIL (libwebp). libwebp upsamples chroma with its "fancy" filter and Go
	// by replication, so only a flat picture is exact; the gradient is close.
	var ref map[string]struct {
		Width, Height int
		RGB           []uint8
	}
	if err := json.Unmarshal(readTestdata(t, "webp_pil.json"), &ref); err != nil {
		t.Fatal(err)
	}
	for name, tol := range map[string]int{"tiny_alpha.webp": 0, "tiny_lossy.webp": 3} {
		img, err := Decode(readTestdata(t, name), DecodeLimits{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := ref[name]
		if img.Width != r.Width || img.Height != r.Height {
			t.Fatalf("%s: %d×%d, PIL %d×%d", name, img.Width, img.Height, r.Width, r.Height)
		}
		worst := 0
		for i := range img.Pix {
			d := int(img.Pix[i]) - int(r.RGB[i])
			worst = max(worst, d, -d)
		}
		t.Logf("%s: largest difference from PIL %d", name, worst)
		if worst > tol {
			t.Fatalf("%s: differs from PIL by up to %d, tolerance %d", name, worst, tol)
		}
	}
}

// FromImage against the generic At() path for every concrete type it special-cases,
// including sub-images with odd offsets (chroma indexing) and negative origins.
func TestFromImageMatchesAt(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	fill := func(b []byte) {
		for i := range b {
			b[i] = uint8(rng.Intn(256))
		}
	}
	r := image.Rect(-3, -2, 14, 9)
	var cases []image.Image
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422,
		image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410} {
		for _, rect := range []image.Rectangle{image.Rect(0, 0, 11, 7), r} {
			m := image.NewYCbCr(rect, ratio)
			fill(m.Y)
			fill(m.Cb)
			fill(m.Cr)
			cases = append(cases, m, m.SubImage(image.Rect(1, 1, 8, 6)))
		}
	}
	a := image.NewNYCbCrA(image.Rect(0, 0, 6, 5), image.YCbCrSubsampleRatio420)
	fill(a.Y)
	fill(a.Cb)
	fill(a.Cr)
	fill(a.A)
	cases = append(cases, a)
	rgba := image.NewRGBA(r)
	for i := 0; i < len(rgba.Pix); i += 4 { // valid premultiplied values
		al := uint8(rng.Intn(256))
		if i%12 == 0 {
			al = 255
		}
		rgba.Pix[i+3] = al
		for k := 0; k < 3; k++ {
			rgba.Pix[i+k] = uint8(rng.Intn(int(al) + 1))
		}
	}
	nrgba := image.NewNRGBA(r)
	fill(nrgba.Pix)
	gray := image.NewGray(r)
	fill(gray.Pix)
	cmyk := image.NewCMYK(r)
	fill(cmyk.Pix)
	pal := image.NewPaletted(r, colorpalette.WebSafe[:100])
	fill(pal.Pix) // indices past the palette read as black
	cases = append(cases, rgba, nrgba, gray, cmyk, pal, rgba.SubImage(image.Rect(2, 1, 9, 4)), pal.SubImage(image.Rect(0, 0, 5, 5)))

	for _, m := range cases {
		got := FromImage(m)
		b := m.Bounds()
		if got.Width != b.Dx() || got.Height != b.Dy() {
			t.Fatalf("%T %v: got %d×%d", m, b, got.Width, got.Height)
		}
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				var w [3]uint8
				if p, ok := m.(*image.Paletted); ok && int(p.Pix[p.PixOffset(b.Min.X+x, b.Min.Y+y)]) >= len(p.Palette) {
					if g0, g1, g2 := got.RGB(x, y); g0|g1|g2 != 0 {
						t.Fatalf("palette index past the palette: got %v,%v,%v, want black", g0, g1, g2)
					}
					continue // At() would panic
				}
				switch c := m.At(b.Min.X+x, b.Min.Y+y).(type) {
				case color.YCbCr:
					w[0], w[1], w[2] = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				case color.NYCbCrA:
					w[0], w[1], w[2] = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				case nil:
				default:
					n := color.NRGBAModel.Convert(c).(color.NRGBA)
					w = [3]uint8{n.R, n.G, n.B}
				}
				if g0, g1, g2 := got.RGB(x, y); [3]uint8{g0, g1, g2} != w {
					t.Fatalf("%T %v (%d,%d): got %v,%v,%v want %v", m, b, x, y, g0, g1, g2, w)
				}
			}
		}
	}
	// 16-bit types, hand-computed: high byte of the un-premultiplied colour.
	g16 := image.NewGray16(image.Rect(0, 0, 1, 1))
	g16.SetGray16(0, 0, color.Gray16{0xbeef})
	r64 := image.NewRGBA64(image.Rect(0, 0, 1, 1))
	r64.SetRGBA64(0, 0, color.RGBA64{0x4000, 0x2000, 0x0000, 0x8000}) // premultiplied by ½
	for _, tc := range []struct {
		m    image.Image
		want []byte
	}{{g16, []byte{0xbe, 0xbe, 0xbe}}, {r64, []byte{0x7f, 0x3f, 0x00}}} {
		if got := FromImage(tc.m); !bytes.Equal(got.Pix, tc.want) {
			t.Fatalf("%T: got % x want % x", tc.m, got.Pix, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	pngData := encodePNG(t, patterned(20, 10))
	jpegData := encodeJPEG(t, patterned(20, 10), 90)
	gifData := encodeGIF(t, patterned(20, 10))
	bmpData := encodeBMP(t, patterned(20, 10))
	webpData := readTestdata(t, "tiny_lossless.webp")
	var tiffData bytes.Buffer
	if err := tiff.Encode(&tiffData, patterned(4, 4), nil); err != nil {
		t.Fatal(err)
	}
	corruptCRC := bytes.Clone(pngData)
	corruptCRC[29] ^= 0xff // the IHDR CRC
	// A JPEG whose SOF0 claims 65000×65000.
	bigJPEG := bytes.Clone(jpegData)
	sof := bytes.Index(bigJPEG, []byte{0xff, 0xc0})
	binary.BigEndian.PutUint16(bigJPEG[sof+5:], 65000)
	binary.BigEndian.PutUint16(bigJPEG[sof+7:], 65000)
	// Arithmetic-coded JPEG (SOF9): a real JPEG variant Go does not implement.
	arith := bytes.Clone(jpegData)
	arith[sof+1] = 0xc9
	// RLE-compressed BMP.
	rle := bytes.Clone(bmpData)
	binary.LittleEndian.PutUint32(rle[30:], 1)

	small := DecodeLimits{MaxBytes: 1 << 20, MaxPixels: 150}
	for _, tc := range []struct {
		name   string
		data   []byte
		limits DecodeLimits
		want   error
		msg    string
	}{
		{"empty", nil, DecodeLimits{}, ErrNotImage, "empty"},
		{"random bytes", []byte("\x13\x37 this is not an image at all"), DecodeLimits{}, ErrNotImage, "not an image"},
		{"html", []byte("<!doctype html><html><body>hi</body></html>"), DecodeLimits{}, ErrNotImage, "markup"},
		{"svg", []byte("\xef\xbb\xbf  <?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), DecodeLimits{}, ErrUnsupportedFormat, "SVG"},
		{"tiff", tiffData.Bytes(), DecodeLimits{}, ErrUnsupportedFormat, "TIFF"},
		{"heic", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), DecodeLimits{}, ErrUnsupportedFormat, "HEIC"},
		{"avif", []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1"), DecodeLimits{}, ErrUnsupportedFormat, "AVIF"},
		{"pdf", []byte("%PDF-1.7\n"), DecodeLimits{}, ErrNotImage, "PDF"},
		{"arithmetic jpeg", arith, DecodeLimits{}, ErrUnsupportedFormat, "JPEG variant"},
		{"rle bmp", rle, DecodeLimits{}, ErrUnsupportedFormat, "BMP variant"},
		{"jpeg magic only", []byte{0xff, 0xd8}, DecodeLimits{}, ErrNotImage, "JPEG"},
		{"truncated png", pngData[:len(pngData)/2], DecodeLimits{}, ErrNotImage, "PNG"},
		{"png header only", pngHeaderOnly(20, 10), DecodeLimits{}, ErrNotImage, "PNG"},
		{"truncated jpeg", jpegData[:len(jpegData)/2], DecodeLimits{}, ErrNotImage, "JPEG"},
		{"truncated gif", gifData[:len(gifData)/2], DecodeLimits{}, ErrNotImage, "GIF"},
		{"truncated bmp", bmpData[:len(bmpData)/2], DecodeLimits{}, ErrNotImage, "BMP"},
		{"truncated webp", webpData[:len(webpData)/2], DecodeLimits{}, ErrNotImage, "WEBP"},
		{"png bad crc", corruptCRC, DecodeLimits{}, ErrNotImage, "PNG"},
		{"png 0×0", pngHeaderOnly(0, 0), DecodeLimits{}, ErrNotImage, "PNG"},
		{"bytes over limit", pngData, DecodeLimits{MaxBytes: 100}, ErrTooLarge, "bytes, limit 100"},
		{"png bomb header", pngHeaderOnly(100000, 100000), DecodeLimits{}, ErrTooLarge, "100000×100000 = 10000000000 pixels, limit 40000000"},
		{"jpeg bomb header", bigJPEG, DecodeLimits{}, ErrTooLarge, "65000×65000 = 4225000000 pixels"},
		{"pixels over limit", pngData, DecodeLimits{MaxPixels: 199}, ErrTooLarge, "20×10 = 200 pixels, limit 199"},
		{"gif over limit", gifData, small, ErrTooLarge, "20×10 = 200 pixels, limit 150"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Decode(tc.data, tc.limits)
			if img != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, %v; want %v", img, err, tc.want)
			}
			n := 0
			for _, s := range []error{ErrNotImage, ErrUnsupportedFormat, ErrTooLarge} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%v wraps %d sentinels", err, n)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not mention %q", err, tc.msg)
			}
		})
	}
	// Exactly at the limits is fine.
	if _, err := Decode(pngData, DecodeLimits{MaxBytes: int64(len(pngData)), MaxPixels: 200}); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
}

func TestDecodeReader(t *testing.T) {
	data := encodePNG(t, patterned(8, 8))
	img, err := DecodeReader(bytes.NewReader(data), DecodeLimits{})
	if err != nil || img.Width != 8 {
		t.Fatalf("got %v, %v", img, err)
	}
	_, err = DecodeReader(bytes.NewReader(data), DecodeLimits{MaxBytes: int64(len(data) - 1)})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("over the byte limit: %v", err)
	}
	if _, err := DecodeReader(bytes.NewReader(data), DecodeLimits{MaxBytes: int64(len(data))}); err != nil {
		t.Fatalf("at the byte limit: %v", err)
	}
}

// The decoder registry must not widen the allow-list: imaging registers TIFF with the image
// package (this test binary imports it), yet TIFF stays unsupported (checked above); and
// image.DecodeConfig does know it here, so the allow-list is what refuses it.
func TestAllowListIgnoresRegistry(t *testing.T) {
	var b bytes.Buffer
	if err := tiff.Encode(&b, patterned(3, 3), nil); err != nil {
		t.Fatal(err)
	}
	if _, name, err := image.DecodeConfig(bytes.NewReader(b.Bytes())); err != nil || name != "tiff" {
		t.Fatalf("image.DecodeConfig: %q, %v", name, err)
	}
	if _, err := Decode(b.Bytes(), DecodeLimits{}); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("TIFF: %v", err)
	}
}
