package detector

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math/bits"
	"strings"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Decoding errors. Every error Decode returns wraps exactly one of these (test with errors.Is);
// the message after the sentinel's text names the limit or the problem.
//
// The rule the API maps to status codes:
//   - ErrTooLarge (413): the input has more bytes than DecodeLimits.MaxBytes, or its header
//     declares more pixels than DecodeLimits.MaxPixels. Checked before any pixel is decoded.
//   - ErrUnsupportedFormat (415): an image format recognised by its magic bytes that is not
//     one of the supported ones (TIFF, HEIC/HEIF, AVIF, JPEG XL, JPEG 2000, SVG, PSD, ICO,
//     ...), named in the message. Also: a supported format whose decoder reports a valid but
//     unimplemented variant (jpeg/png UnsupportedError such as arithmetic-coded or 12-bit
//     JPEG, bmp.ErrUnsupported such as RLE-compressed BMP).
//   - ErrNotImage (400): empty input, bytes that are no image format at all (text, PDF,
//     HTML, random data), or the bytes start like a supported format but the
//     header or data are corrupt or truncated, or the image has no pixels, or the decoder
//     panicked on crafted input.
//
// And from Preprocess, after decoding:
//   - ErrImageTooSmall (400): a side of the resized image is below the detector's
//     PreprocessSpec.MinInputSide (an image far longer than wide, or the reverse).
var (
	ErrImageTooSmall     = errors.New("image too small for the detector")
	ErrNotImage          = errors.New("not a valid image")
	ErrUnsupportedFormat = errors.New("unsupported image format")
	ErrTooLarge          = errors.New("image too large")
)

// Defaults used for zero fields of DecodeLimits.
const (
	DefaultMaxBytes  int64 = 32 << 20   // 32 MiB of encoded input
	DefaultMaxPixels int64 = 40_000_000 // 40 megapixels (e.g. 8000×5000)
)

// SupportedFormats lists the format names Decode accepts, as Image.Format reports them.
var SupportedFormats = []string{"jpeg", "png", "gif", "webp", "bmp"}

// DecodeLimits bounds what Decode accepts. A zero or negative field takes its default
// (DefaultMaxBytes, DefaultMaxPixels): there is deliberately no way to switch a limit off.
type DecodeLimits struct {
	MaxBytes  int64 // encoded size
	MaxPixels int64 // width × height as the header declares it
}

func (l DecodeLimits) withDefaults() DecodeLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	return l
}

// Image is a decoded picture as packed 8-bit RGB: row-major, 3 bytes per pixel (R, G, B), no
// padding, len(Pix) == 3·Width·Height. For JPEG the EXIF orientation is already applied, so
// Width×Height is the displayed (oriented) size.
type Image struct {
	Width, Height int
	Pix           []uint8
	Format        string // one of SupportedFormats; "" for images built with FromImage
	Orientation   int    // EXIF orientation that was applied (1..8; 1 = none, always 1 but for JPEG)
}

// RGB returns the pixel at column x, row y.
func (m *Image) RGB(x, y int) (r, g, b uint8) {
	i := 3 * (y*m.Width + x)
	return m.Pix[i], m.Pix[i+1], m.Pix[i+2]
}

type format struct {
	name, magic string // magic as image.RegisterFormat spells it ('?' matches any byte)
	config      func(io.Reader) (image.Config, error)
	decode      func(io.Reader) (image.Image, error)
}

// The allow-list. Decoders are called directly (not through image.Decode), so what other
// packages register with the image package (imaging registers TIFF, for one) never widens it.
var formats = []format{
	{"jpeg", "\xff\xd8", jpeg.DecodeConfig, jpeg.Decode},
	{"png", "\x89PNG\r\n\x1a\n", png.DecodeConfig, png.Decode},
	{"gif", "GIF8?a", gif.DecodeConfig, gif.Decode},
	{"webp", "RIFF????WEBPVP8", webp.DecodeConfig, webp.Decode},
	{"bmp", "BM????\x00\x00\x00\x00", bmp.DecodeConfig, bmp.Decode},
}

func matchMagic(magic string, b []byte) bool {
	if len(b) < len(magic) {
		return false
	}
	for i := 0; i < len(magic); i++ {
		if magic[i] != '?' && magic[i] != b[i] {
			return false
		}
	}
	return true
}

// DecodeConfig reads only the header of an encoded image and returns its size (before EXIF
// orientation), with every check Decode makes before decoding pixels.
func DecodeConfig(data []byte, limits DecodeLimits) (width, height int, err error) {
	_, cfg, err := decodeHeader(data, limits)
	return cfg.Width, cfg.Height, err
}

// decodeHeader checks the byte count, identifies the format and reads the header, refusing
// images with no pixels or more than the limit.
func decodeHeader(data []byte, limits DecodeLimits) (f *format, cfg image.Config, err error) {
	limits = limits.withDefaults()
	if int64(len(data)) > limits.MaxBytes {
		return nil, cfg, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), limits.MaxBytes)
	}
	if len(data) == 0 {
		return nil, cfg, fmt.Errorf("%w: empty input", ErrNotImage)
	}
	for i := range formats {
		if matchMagic(formats[i].magic, data) {
			f = &formats[i]
			break
		}
	}
	if f == nil {
		what, isImage := sniffUnsupported(data)
		if !isImage {
			return nil, cfg, fmt.Errorf("%w: %s (supported: JPEG, PNG, GIF, WebP, BMP)", ErrNotImage, what)
		}
		return nil, cfg, fmt.Errorf("%w: %s (supported: JPEG, PNG, GIF, WebP, BMP)", ErrUnsupportedFormat, what)
	}
	name := strings.ToUpper(f.name)
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("%w: the %s decoder failed on this input (%v)", ErrNotImage, name, r)
		}
	}()
	cfg, err = f.config(bytes.NewReader(data))
	if err != nil {
		return nil, cfg, decodeError(name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, cfg, fmt.Errorf("%w: %s header declares a %d×%d image (no pixels)", ErrNotImage, name, cfg.Width, cfg.Height)
	}
	if hi, n := bits.Mul64(uint64(cfg.Width), uint64(cfg.Height)); hi != 0 || n > uint64(limits.MaxPixels) {
		return nil, cfg, fmt.Errorf("%w: %d×%d = %d pixels, limit %d", ErrTooLarge, cfg.Width, cfg.Height,
			uint64(cfg.Width)*uint64(cfg.Height), limits.MaxPixels)
	}
	return f, cfg, nil
}

// Decode decodes a JPEG, PNG, GIF (first frame), WebP or BMP image into packed RGB, applying
// the EXIF orientation of JPEGs. Size limits are checked before decoding: the byte count first,
// then the pixel count the header declares (image.DecodeConfig semantics, per format).
//
// Pixels are meant to equal what PIL's Image.open(...).convert("RGB") (libjpeg-turbo, libwebp)
// gives, which is what the Python side of the contract decodes with:
//   - JPEG: libjpeg's "fancy" chroma upsampling and YCbCr→RGB tables (see jpegToRGB); only Go's
//     IDCT differs (measured: ±3 at most, mean 0.04 levels; identical on DC-only blocks).
//   - WebP: lossy pictures converted as libwebp does (limited-range BT.601, fancy upsampling;
//     identical to PIL on the fixtures); lossless ones are exact.
//   - PNG, GIF, BMP: exact. Alpha is dropped: a pixel keeps its un-premultiplied colour (as
//     convert("RGB") and OpenCV's imread do). 16-bit samples keep their high byte.
//   - GIF: the first frame with its own bounds (a first frame smaller than the logical screen
//     is not composited onto it).
//
// Decode never panics: a decoder panic becomes ErrNotImage.
func Decode(data []byte, limits DecodeLimits) (img *Image, err error) {
	f, _, err := decodeHeader(data, limits)
	if err != nil {
		return nil, err
	}
	name := strings.ToUpper(f.name)
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("%w: the %s decoder failed on this input (%v)", ErrNotImage, name, r)
		}
	}()
	limits = limits.withDefaults()
	m, err := f.decode(bytes.NewReader(data))
	if err != nil {
		return nil, decodeError(name, err)
	}
	b := m.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, fmt.Errorf("%w: %s decoded to an empty %d×%d image", ErrNotImage, name, b.Dx(), b.Dy())
	}
	if int64(b.Dx())*int64(b.Dy()) > limits.MaxPixels { // decoders check against the header; be sure
		return nil, fmt.Errorf("%w: %d×%d = %d pixels, limit %d", ErrTooLarge, b.Dx(), b.Dy(), int64(b.Dx())*int64(b.Dy()), limits.MaxPixels)
	}
	switch y, isYCbCr := m.(*image.YCbCr); {
	case f.name == "webp":
		img = fromWebP(m)
	case f.name == "jpeg" && isYCbCr:
		img = &Image{Width: b.Dx(), Height: b.Dy(), Pix: make([]uint8, 3*b.Dx()*b.Dy())}
		jpegToRGB(img.Pix, y)
	default:
		img = FromImage(m)
	}
	img.Format = f.name
	img.Orientation = 1
	if f.name == "jpeg" {
		if o := jpegOrientation(data); o != 1 {
			img = applyOrientation(img, o)
		}
	}
	return img, nil
}

// DecodeReader reads at most limits.MaxBytes (+1 to detect excess) from r and decodes it.
// An error reading r is returned as it is (it wraps none of the sentinels).
func DecodeReader(r io.Reader, limits DecodeLimits) (*Image, error) {
	limits = limits.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, limits.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	if int64(len(data)) > limits.MaxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limits.MaxBytes)
	}
	return Decode(data, limits)
}

func decodeError(name string, err error) error {
	var ju jpeg.UnsupportedError
	var pu png.UnsupportedError
	switch {
	case errors.As(err, &ju), errors.As(err, &pu), errors.Is(err, bmp.ErrUnsupported):
		return fmt.Errorf("%w: this %s variant is not supported (%v)", ErrUnsupportedFormat, name, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s data is truncated (%v)", ErrNotImage, name, err)
	default:
		return fmt.Errorf("%w: %s data is corrupt (%v)", ErrNotImage, name, err)
	}
}

// sniffUnsupported names what the bytes are when they are none of the supported formats;
// isImage reports an image format Decode recognises but does not accept (415), as opposed to
// something that is not an image at all (400).
func sniffUnsupported(b []byte) (what string, isImage bool) {
	has := func(magic string) bool { return matchMagic(magic, b) }
	switch {
	case has("II*\x00"), has("MM\x00*"), has("II+\x00"), has("MM\x00+"):
		return "TIFF", true
	case has("????ftyp"):
		brand := string(b[8:min(12, len(b))])
		switch brand {
		case "heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1":
			return "HEIC/HEIF", true
		case "avif", "avis":
			return "AVIF", true
		}
		return fmt.Sprintf("ISO media (brand %q), not an image", brand), false
	case has("\xff\x0a"), has("\x00\x00\x00\x0cJXL \r\n\x87\n"):
		return "JPEG XL", true
	case has("\x00\x00\x00\x0cjP  \r\n\x87\n"), has("\xff\x4f\xff\x51"):
		return "JPEG 2000", true
	case has("%PDF-"):
		return "PDF, not an image", false
	case has("8BPS"):
		return "PSD", true
	case has("\x00\x00\x01\x00"), has("\x00\x00\x02\x00"):
		return "ICO/CUR", true
	case has("qoif"):
		return "QOI", true
	case has("v/1\x01"):
		return "OpenEXR", true
	case has("DDS "):
		return "DDS", true
	case has("RIFF????WEBP"):
		return "WebP with an unknown chunk layout", true
	}
	head := b[:min(len(b), 1024)]
	text := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(text) > 0 && text[0] == '<' {
		if bytes.Contains(bytes.ToLower(head), []byte("<svg")) {
			return "SVG", true
		}
		return "markup (XML/HTML), not an image", false
	}
	n := min(len(b), 8)
	return fmt.Sprintf("not an image (first bytes % x)", b[:n]), false
}

// FromImage converts any image.Image to packed RGB, walking the pixel buffers of the common
// concrete types directly (At() is used only for exotic types). YCbCr images convert as
// image.YCbCr.At does (replicated chroma, color.YCbCrToRGB); Decode instead converts decoded
// JPEG and WebP pictures the libjpeg / libwebp way. Alpha is dropped as in Decode.
func FromImage(m image.Image) *Image {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	if w <= 0 || h <= 0 {
		return &Image{Orientation: 1}
	}
	out := &Image{Width: w, Height: h, Pix: make([]uint8, 3*w*h), Orientation: 1}
	dst := out.Pix
	switch m := m.(type) {
	case *image.YCbCr:
		ycbcrToRGB(dst, m)
	case *image.NYCbCrA:
		ycbcrToRGB(dst, &m.YCbCr)
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			row := dst[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				row[3*x], row[3*x+1], row[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			row := dst[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				s := src[4*x : 4*x+4 : 4*x+4]
				if s[3] == 0xff {
					row[3*x], row[3*x+1], row[3*x+2] = s[0], s[1], s[2]
				} else {
					c := color.NRGBAModel.Convert(color.RGBA{s[0], s[1], s[2], s[3]}).(color.NRGBA)
					row[3*x], row[3*x+1], row[3*x+2] = c.R, c.G, c.B
				}
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			row := dst[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				v := src[x]
				row[3*x], row[3*x+1], row[3*x+2] = v, v, v
			}
		}
	case *image.Paletted:
		var pal [256][3]uint8 // indices past the palette read as black
		for i, c := range m.Palette {
			if i == 256 {
				break
			}
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			pal[i] = [3]uint8{n.R, n.G, n.B}
		}
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			row := dst[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				p := &pal[src[x]]
				row[3*x], row[3*x+1], row[3*x+2] = p[0], p[1], p[2]
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			row := dst[3*w*y : 3*w*(y+1)]
			for x := 0; x < w; x++ {
				row[3*x], row[3*x+1], row[3*x+2] = color.CMYKToRGB(src[4*x], src[4*x+1], src[4*x+2], src[4*x+3])
			}
		}
	default: // Gray16, RGBA64, NRGBA64, ...: un-premultiplied colour, high byte of each sample
		i := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				c := color.NRGBA64Model.Convert(m.At(x, y)).(color.NRGBA64)
				dst[i], dst[i+1], dst[i+2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
				i += 3
			}
		}
	}
	return out
}

// ycbcrToRGB converts with exactly color.YCbCrToRGB's arithmetic (JFIF full range), chroma
// upsampled by replication as image.YCbCr.At does.
func ycbcrToRGB(dst []uint8, m *image.YCbCr) {
	r := m.Rect
	var hs, vs uint // log2 of the chroma subsampling factors
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hs = 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio440:
		vs = 1
	case image.YCbCrSubsampleRatio411:
		hs = 2
	case image.YCbCrSubsampleRatio410:
		hs, vs = 2, 1
	}
	i := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		yrow := m.Y[(y-r.Min.Y)*m.YStride:]
		crow := (y>>vs - r.Min.Y>>vs) * m.CStride
		cx0 := r.Min.X >> hs
		for x := r.Min.X; x < r.Max.X; x++ {
			var ci int
			if r.Min.X >= 0 && r.Min.Y >= 0 {
				ci = crow + x>>hs - cx0
			} else { // shifts equal COffset's truncating divisions only for x, y ≥ 0
				ci = m.COffset(x, y)
			}
			yy := int32(yrow[x-r.Min.X]) * 0x10101
			cb := int32(m.Cb[ci]) - 128
			cr := int32(m.Cr[ci]) - 128
			dst[i] = clip16(yy + 91881*cr)
			dst[i+1] = clip16(yy - 22554*cb - 46802*cr)
			dst[i+2] = clip16(yy + 116130*cb)
			i += 3
		}
	}
}

func clip16(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	return uint8(^(v >> 31))
}
