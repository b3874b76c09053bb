package main

import (
	"bytes"
	"compress/flate"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash/adler32"
	"hash/crc32"
	"image"
	"io"
	"mime/multipart"
	"net/textproto"
	"sync/atomic"

	"github.com/uniter-serve/uniter/shapes"
)

// imageGen makes distinct PNGs cheaply: every variant is one of a few Shapes World scenes with
// the low bits of its last row's first 8 pixels set to a 64-bit serial number (a change of at
// most 7 levels per channel, so the detector sees the same scene, but the bytes and hence the
// server's cache key differ). Each base scene is compressed once, with every row but the last
// in a zlib stream cut at a sync flush; a variant only appends its last row as a stored deflate
// block, the zlib checksum (from the saved Adler-32 state) and IEND: a few microseconds and
// one small allocation per image instead of a PNG encoding.
type imageGen struct {
	bases  []*baseImage
	serial atomic.Uint64
}

type baseImage struct {
	w, h    int
	head    []byte // PNG signature, IHDR and an IDAT chunk holding the compressed prefix
	lastRow []byte // RGB bytes of the last row
	adler   []byte // marshalled Adler-32 state after the prefix's uncompressed bytes
}

// markedPixels is how many pixels of the last row carry the serial number (8 bits each).
const markedPixels = 8

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// iendChunk is the PNG trailer (a chunk with no data and its fixed CRC).
var iendChunk = []byte{0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82}

// newImageGen renders n Shapes World scenes (seed, indices 0..n-1), 160 to 320 pixels a side.
func newImageGen(seed uint64, n int) (*imageGen, error) {
	g := &imageGen{}
	for i := range n {
		b, err := newBaseImage(shapes.Render(shapes.GenerateScene(seed, i)))
		if err != nil {
			return nil, err
		}
		g.bases = append(g.bases, b)
	}
	return g, nil
}

// newBaseImage compresses all but the last row of img (filter None) into a PNG prefix.
func newBaseImage(img *image.RGBA) (*baseImage, error) {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	if w < markedPixels || h < 2 {
		return nil, fmt.Errorf("image %dx%d: too small", w, h)
	}
	rgb := func(y int) []byte {
		row := make([]byte, 0, 3*w)
		for x := range w {
			p := img.PixOffset(r.Min.X+x, r.Min.Y+y)
			row = append(row, img.Pix[p], img.Pix[p+1], img.Pix[p+2])
		}
		return row
	}
	var z bytes.Buffer
	z.Write([]byte{0x78, 0x01}) // zlib header: deflate, 32 KiB window
	fw, err := flate.NewWriter(&z, flate.BestSpeed)
	if err != nil {
		return nil, err
	}
	sum := adler32.New()
	for y := range h - 1 {
		raw := append([]byte{0}, rgb(y)...) // filter None
		if _, err := fw.Write(raw); err != nil {
			return nil, err
		}
		sum.Write(raw)
	}
	// The last row's filter byte belongs to the prefix, its pixels to each variant.
	if _, err := fw.Write([]byte{0}); err != nil {
		return nil, err
	}
	sum.Write([]byte{0})
	if err := fw.Flush(); err != nil { // sync flush: byte-aligned, stream not final
		return nil, err
	}
	state, err := sum.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	var head bytes.Buffer
	head.Write(pngSignature)
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB; compression, filter and interlace methods 0
	writeChunk(&head, "IHDR", ihdr)
	writeChunk(&head, "IDAT", z.Bytes())
	return &baseImage{w: w, h: h, head: head.Bytes(), lastRow: rgb(h - 1), adler: state}, nil
}

func writeChunk(w *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	w.Write(n[:])
	c := crc32.NewIEEE()
	c.Write([]byte(typ))
	c.Write(data)
	w.WriteString(typ)
	w.Write(data)
	binary.BigEndian.PutUint32(n[:], c.Sum32())
	w.Write(n[:])
}

// tail is the rest of base image b's PNG after b.head for serial number n: an IDAT chunk with
// the marked last row as the final stored deflate block and the zlib checksum, then IEND.
func (b *baseImage) tail(n uint64) []byte {
	row := append([]byte(nil), b.lastRow...)
	for i := range markedPixels {
		v := byte(n >> (8 * i))
		p := row[3*i:]
		p[0] = p[0]&^7 | v&7
		p[1] = p[1]&^7 | v>>3&7
		p[2] = p[2]&^3 | v>>6
	}
	sum := adler32.New()
	if err := sum.(encoding.BinaryUnmarshaler).UnmarshalBinary(b.adler); err != nil {
		panic(err) // the state came from MarshalBinary
	}
	sum.Write(row)
	data := make([]byte, 0, 5+len(row)+4)
	data = append(data, 1) // BFINAL, stored
	data = binary.LittleEndian.AppendUint16(data, uint16(len(row)))
	data = binary.LittleEndian.AppendUint16(data, ^uint16(len(row)))
	data = append(data, row...)
	data = binary.BigEndian.AppendUint32(data, sum.Sum32())
	var out bytes.Buffer
	out.Grow(12 + len(data) + len(iendChunk))
	writeChunk(&out, "IDAT", data)
	out.Write(iendChunk)
	return out.Bytes()
}

// next is a never-made image: its serial number, base and bytes after base.head.
func (g *imageGen) next() (base *baseImage, tail []byte) {
	n := g.serial.Add(1)
	b := g.bases[n%uint64(len(g.bases))]
	return b, b.tail(n)
}

// png is a whole never-made image (for the fixed set of the cached mode and for tests).
func (g *imageGen) png() []byte {
	b, t := g.next()
	return append(append([]byte(nil), b.head...), t...)
}

// form is a multipart/form-data body cut around its image bytes: pre, image, post.
type form struct {
	contentType string
	pre, post   []byte
}

// formBoundary is fixed so that every body's framing is precomputed once.
const formBoundary = "uniter-load-7f3c9a2e51d04b68"

func newForm(texts []string) (*form, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary(formBoundary); err != nil {
		return nil, err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="image.png"`)
	h.Set("Content-Type", "image/png")
	if _, err := mw.CreatePart(h); err != nil {
		return nil, err
	}
	pre := bytes.Clone(buf.Bytes())
	buf.Reset()
	for _, t := range texts {
		if err := mw.WriteField("text", t); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return &form{contentType: mw.FormDataContentType(), pre: pre, post: bytes.Clone(buf.Bytes())}, nil
}

// body is a request body: pre, the image's pieces, post, read without copying (the pieces
// are shared and never written).
type body [][]byte

func (f *form) body(image ...[]byte) body {
	return append(append(body{f.pre}, image...), f.post)
}

func (b body) size() int64 {
	var n int64
	for _, p := range b {
		n += int64(len(p))
	}
	return n
}

func (b body) reader() io.Reader {
	rs := make([]io.Reader, len(b))
	for i, p := range b {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}
