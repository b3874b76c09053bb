package detector

import "encoding/binary"

// jpegOrientation reads the EXIF orientation (1..8) of a JPEG; 1 when absent or unreadable.
//
// It follows imaging's readOrientation (what imaging.AutoOrientation(true) applies: the
// orientation tag of IFD0, values outside 1..8 ignored) but works on the byte slice — no
// goroutine and pipe, so a decoder panic leaks nothing — and takes the first APP1 segment that
// carries an "Exif\0\0" header rather than only the first APP1 (an XMP APP1 may come first;
// PIL and browsers also use the first Exif one). Tests check it against imaging for all eight
// orientations.
func jpegOrientation(b []byte) int {
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xd8 {
		return 1
	}
	p := 2
	for p+4 <= len(b) {
		if b[p] != 0xff {
			return 1
		}
		marker := b[p+1]
		switch {
		case marker == 0xff: // fill byte
			p++
			continue
		case marker == 0x01 || marker == 0xd8 || (marker >= 0xd0 && marker <= 0xd7): // no length
			p += 2
			continue
		case marker == 0xda || marker == 0xd9: // start of scan / end of image: no EXIF before it
			return 1
		}
		size := int(b[p+2])<<8 | int(b[p+3])
		if size < 2 || p+2+size > len(b) {
			return 1
		}
		seg := b[p+4 : p+2+size]
		if marker == 0xe1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return exifOrientation(seg[6:])
		}
		p += 2 + size
	}
	return 1
}

// exifOrientation reads tag 0x0112 of IFD0 from a TIFF-structured EXIF block.
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	off := uint64(bo.Uint32(t[4:8]))
	if off < 8 || off+2 > uint64(len(t)) {
		return 1
	}
	n := int(bo.Uint16(t[off:]))
	p := int(off) + 2
	for i := 0; i < n && p+12 <= len(t); i, p = i+1, p+12 {
		if bo.Uint16(t[p:]) != 0x0112 {
			continue
		}
		if v := int(bo.Uint16(t[p+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}

// applyOrientation transforms m so that it displays upright for EXIF orientation o:
// 2 flip horizontally, 3 rotate 180°, 4 flip vertically, 5 transpose, 6 rotate 90° clockwise,
// 7 transverse, 8 rotate 90° counter-clockwise. Orientations 5–8 swap width and height.
func applyOrientation(m *Image, o int) *Image {
	if o < 2 || o > 8 {
		return m
	}
	W, H := m.Width, m.Height
	w, h := W, H
	if o >= 5 {
		w, h = H, W
	}
	out := &Image{Width: w, Height: h, Pix: make([]uint8, len(m.Pix)), Format: m.Format, Orientation: o}
	// For each output pixel (x, y), the source pixel (sx, sy).
	src := func(x, y int) (int, int) {
		switch o {
		case 2:
			return W - 1 - x, y
		case 3:
			return W - 1 - x, H - 1 - y
		case 4:
			return x, H - 1 - y
		case 5:
			return y, x
		case 6:
			return y, H - 1 - x
		case 7:
			return W - 1 - y, H - 1 - x
		default: // 8
			return W - 1 - y, x
		}
	}
	d := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			sx, sy := src(x, y)
			s := 3 * (sy*W + sx)
			out.Pix[d], out.Pix[d+1], out.Pix[d+2] = m.Pix[s], m.Pix[s+1], m.Pix[s+2]
			d += 3
		}
	}
	return out
}
