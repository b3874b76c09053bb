// Package featimport reads the region features UNITER users already hold — bottom-up-attention
// .npz files (features, norm_bb, conf, soft_labels) as a folder or as the values of UNITER's
// img_db LMDB — and turns them into gallery images, with UNITER's own region selection.
package featimport

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/x448/float16"
)

// ErrFormat reports a file that is not the expected NumPy data.
var ErrFormat = errors.New("not a valid .npy/.npz array")

// Array is a numeric NumPy array widened to float32, row-major (C order).
type Array struct {
	Shape []int
	Data  []float32
}

// maxArrayValues bounds one array (1 GiB of float32): a header claiming more is refused
// before anything is allocated.
const maxArrayValues = 1 << 28

// ParseNPY reads a .npy file (format versions 1–3) holding little- or big-endian float16,
// float32, float64, integers or booleans, in C or Fortran order, of any rank.
func ParseNPY(raw []byte) (*Array, error) {
	bad := func(format string, a ...any) (*Array, error) {
		return nil, fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, a...))
	}
	if len(raw) < 10 || string(raw[:6]) != "\x93NUMPY" {
		return bad("no NUMPY magic")
	}
	major := raw[6]
	var hlen, off int
	switch major {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(raw[8:10])), 10
	case 2, 3:
		if len(raw) < 12 {
			return bad("truncated header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(raw[8:12])), 12
	default:
		return bad("format version %d", major)
	}
	if hlen < 0 || off+hlen > len(raw) {
		return bad("header of %d bytes runs past the end", hlen)
	}
	h, err := parseHeader(string(raw[off : off+hlen]))
	if err != nil {
		return nil, err
	}
	n := 1
	for _, d := range h.shape {
		if d < 0 || (d > 0 && n > maxArrayValues/d) {
			return bad("shape %v is too large", h.shape)
		}
		n *= d
	}
	data := raw[off+hlen:]
	if len(data) != n*h.size {
		return bad("%d data bytes for shape %v of %s (want %d)", len(data), h.shape, h.descr, n*h.size)
	}
	out := make([]float32, n)
	var order binary.ByteOrder = binary.LittleEndian
	if h.bigEndian {
		order = binary.BigEndian
	}
	for i := range out {
		b := data[i*h.size:]
		switch h.kind + strconv.Itoa(h.size) {
		case "f2":
			out[i] = float16.Frombits(order.Uint16(b)).Float32()
		case "f4":
			out[i] = math.Float32frombits(order.Uint32(b))
		case "f8":
			out[i] = float32(math.Float64frombits(order.Uint64(b)))
		case "i1":
			out[i] = float32(int8(b[0]))
		case "u1", "b1":
			out[i] = float32(b[0])
		case "i2":
			out[i] = float32(int16(order.Uint16(b)))
		case "u2":
			out[i] = float32(order.Uint16(b))
		case "i4":
			out[i] = float32(int32(order.Uint32(b)))
		case "u4":
			out[i] = float32(order.Uint32(b))
		case "i8":
			out[i] = float32(int64(order.Uint64(b)))
		case "u8":
			out[i] = float32(order.Uint64(b))
		}
	}
	if h.fortran && len(h.shape) > 1 {
		out = fromFortran(out, h.shape)
	}
	return &Array{Shape: h.shape, Data: out}, nil
}

// fromFortran reorders column-major data into row-major.
func fromFortran(in []float32, shape []int) []float32 {
	out := make([]float32, len(in))
	idx := make([]int, len(shape))
	for i := range in { // i walks the C order; find its Fortran offset
		f, stride := 0, 1
		for d := range shape {
			f += idx[d] * stride
			stride *= shape[d]
		}
		out[i] = in[f]
		for d := len(shape) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

type npyHeader struct {
	descr     string
	kind      string // f, i, u, b
	size      int
	bigEndian bool
	fortran   bool
	shape     []int
}

// parseHeader reads the Python dict literal of a .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (36, 2048), }.
func parseHeader(s string) (npyHeader, error) {
	bad := func(format string, a ...any) (npyHeader, error) {
		return npyHeader{}, fmt.Errorf("%w: header %q: %s", ErrFormat, truncate(s, 120), fmt.Sprintf(format, a...))
	}
	var h npyHeader
	fields := map[string]string{}
	body := strings.TrimSpace(s)
	if !strings.HasPrefix(body, "{") || !strings.HasSuffix(body, "}") {
		return bad("not a dict")
	}
	body = body[1 : len(body)-1]
	for len(strings.TrimSpace(body)) > 0 {
		body = strings.TrimLeft(body, " ,")
		if body == "" {
			break
		}
		if body[0] != '\'' && body[0] != '"' {
			return bad("key not quoted")
		}
		end := strings.IndexByte(body[1:], body[0])
		if end < 0 {
			return bad("unterminated key")
		}
		key := body[1 : 1+end]
		body = strings.TrimLeft(body[2+end:], " ")
		if !strings.HasPrefix(body, ":") {
			return bad("no ':' after %q", key)
		}
		body = strings.TrimLeft(body[1:], " ")
		var val string
		switch {
		case strings.HasPrefix(body, "("):
			end := strings.IndexByte(body, ')')
			if end < 0 {
				return bad("unterminated shape")
			}
			val, body = body[:end+1], body[end+1:]
		case strings.HasPrefix(body, "'"), strings.HasPrefix(body, "\""):
			end := strings.IndexByte(body[1:], body[0])
			if end < 0 {
				return bad("unterminated string")
			}
			val, body = body[1:1+end], body[2+end:]
		default:
			end := strings.IndexAny(body, ",}")
			if end < 0 {
				end = len(body)
			}
			val, body = strings.TrimSpace(body[:end]), body[end:]
		}
		fields[key] = val
	}
	h.descr = fields["descr"]
	if len(h.descr) < 3 {
		return bad("descr %q", h.descr)
	}
	switch h.descr[0] {
	case '<', '|', '=':
	case '>':
		h.bigEndian = true
	default:
		return bad("descr %q: unknown byte order", h.descr)
	}
	h.kind = h.descr[1:2]
	size, err := strconv.Atoi(h.descr[2:])
	if err != nil {
		return bad("descr %q", h.descr)
	}
	h.size = size
	switch h.kind + h.descr[2:] {
	case "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1":
	default:
		return bad("dtype %q is not numeric (object arrays need pickle, which is never read)", h.descr)
	}
	switch fields["fortran_order"] {
	case "False":
	case "True":
		h.fortran = true
	default:
		return bad("fortran_order %q", fields["fortran_order"])
	}
	shape, ok := fields["shape"]
	if !ok || !strings.HasPrefix(shape, "(") {
		return bad("no shape")
	}
	for _, p := range strings.Split(strings.Trim(shape, "()"), ",") {
		p = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p), "L"))
		if p == "" {
			continue
		}
		d, err := strconv.Atoi(p)
		if err != nil || d < 0 {
			return bad("shape %s", shape)
		}
		h.shape = append(h.shape, d)
	}
	if len(h.shape) > 8 {
		return bad("rank %d", len(h.shape))
	}
	return h, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// maxMemberBytes bounds one decompressed .npz member.
const maxMemberBytes = 1 << 30

// ReadNPZ reads the named arrays of an .npz archive (stored or deflated, as np.savez and
// np.savez_compressed write it). Missing names are absent from the result; other members
// (such as the "allow_pickle" array UNITER's converter writes by accident) are not read.
func ReadNPZ(raw []byte, names ...string) (map[string]*Array, error) {
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		if len(raw) > 0 && (raw[0]&0xf0 == 0x80 || raw[0] == 0xde || raw[0] == 0xdf) {
			return nil, fmt.Errorf("%w: a msgpack map, as UNITER's convert_imgdir.py writes without --compress; only .npz values are read (convert with --compress)", ErrFormat)
		}
		return nil, fmt.Errorf("%w: not a zip archive: %v", ErrFormat, err)
	}
	out := map[string]*Array{}
	for _, f := range zr.File {
		name := strings.TrimSuffix(f.Name, ".npy")
		want := false
		for _, n := range names {
			want = want || n == name
		}
		if !want {
			continue
		}
		if f.UncompressedSize64 > maxMemberBytes {
			return nil, fmt.Errorf("%w: member %s is %d bytes", ErrFormat, f.Name, f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: member %s: %v", ErrFormat, f.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxMemberBytes+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: member %s: %v", ErrFormat, f.Name, err)
		}
		a, err := ParseNPY(data)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", f.Name, err)
		}
		out[name] = a
	}
	return out, nil
}
