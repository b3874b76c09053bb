package detector

import (
	"encoding/binary"
	"errors"
	"image"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// FuzzDecode: Decode never panics, every error wraps exactly one of the three sentinels, and
// every success is a consistent packed-RGB image within the limits.
//
//	go test ./detector -run '^$' -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	src := patterned(9, 7)
	seeds := [][]byte{
		encodePNG(f, src),
		encodeJPEG(f, src, 80),
		encodeGIF(f, src),
		encodeBMP(f, src),
		readTestdata(f, "tiny_lossless.webp"),
		readTestdata(f, "tiny_lossy.webp"),
		readTestdata(f, "tiny_alpha.webp"),
		readTestdata(f, "blocky_422.jpg"),
		spliceAfterSOI(encodeJPEG(f, src, 80), exifAPP1(6, binary.LittleEndian)),
		pngHeaderOnly(100000, 100000),
		pngHeaderOnly(0, 0),
		[]byte("GIF89a\xff\xff\xff\xff"),
		[]byte("RIFF\x00\x00\x00\x00WEBPVP8X"),
		[]byte("BM\x00\x00\x00\x00\x00\x00\x00\x00"),
		[]byte("<svg/>"),
		{},
	}
	for _, s := range seeds[:5] { // truncations of each format
		seeds = append(seeds, s[:len(s)/2], s[:len(s)-1])
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 4; i++ {
		b := make([]byte, 16+rng.Intn(200))
		rng.Read(b)
		seeds = append(seeds, b)
	}
	for _, s := range seeds {
		f.Add(s)
	}
	limits := DecodeLimits{MaxBytes: 1 << 20, MaxPixels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, limits)
		if err != nil {
			n := 0
			for _, s := range []error{ErrNotImage, ErrUnsupportedFormat, ErrTooLarge} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || img != nil {
				t.Fatalf("error %q wraps %d sentinels (image %v)", err, n, img != nil)
			}
			return
		}
		if img.Width <= 0 || img.Height <= 0 || int64(img.Width)*int64(img.Height) > limits.MaxPixels ||
			len(img.Pix) != 3*img.Width*img.Height || img.Orientation < 1 || img.Orientation > 8 {
			t.Fatalf("inconsistent image: %s %d×%d, %d bytes, orientation %d", img.Format, img.Width, img.Height, len(img.Pix), img.Orientation)
		}
	})
}

// The recover at Decode's boundary turns a decoder panic into ErrNotImage.
func TestDecodeRecoversPanics(t *testing.T) {
	saved := formats[1]
	defer func() { formats[1] = saved }()
	if formats[1].name != "png" {
		t.Fatalf("formats[1] is %s", formats[1].name)
	}
	formats[1].decode = func(io.Reader) (image.Image, error) { panic("crafted input") }
	img, err := Decode(encodePNG(t, patterned(3, 3)), DecodeLimits{})
	if img != nil || !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), "crafted input") {
		t.Fatalf("got %v, %v", img, err)
	}
}
