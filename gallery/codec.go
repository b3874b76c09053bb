package gallery

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/detector"
)

// The stored form of Regions (bucket "regions", schema 1), little-endian:
//
//	u8 version (1) · uvarint n, dim, classDim, attrDim
//	f32 boxes n×4 · f32 locations n×7 · f32 confidence n
//	f16 features n×dim · f16 class probabilities n×classDim · f16 attribute probabilities n×attrDim
//
// Boxes, locations and confidences stay float32 (they are small and the 7-d location enters
// the encoder as it is); features and the distributions are float16, as UNITER's own feature
// files keep them.
const regionsVersion = 1

// f16Table widens every float16 bit pattern, built once on first use: decoding is a lookup.
var f16Table = sync.OnceValue(func() []float32 {
	t := make([]float32, 1<<16)
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return t
})

// RoundFloat16 is v rounded to the nearest float16 (ties to even), widened back: what the
// store keeps of a feature value.
func RoundFloat16(v float32) float32 { return f16Table()[float16.Fromfloat32(v).Bits()] }

func appendF16(b []byte, vs []float32) []byte {
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(v).Bits())
	}
	return b
}

func appendF32(b []byte, vs ...float32) []byte {
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func encodeRegions(r *Regions) []byte {
	n := r.Len()
	b := make([]byte, 0, 16+n*(4*(4+7+1)+2*(r.Dim+r.ClassDim+r.AttrDim)))
	b = append(b, regionsVersion)
	for _, v := range []int{n, r.Dim, r.ClassDim, r.AttrDim} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	for _, box := range r.Boxes {
		b = appendF32(b, box[:]...)
	}
	for _, l := range r.Locations {
		b = appendF32(b, l[:]...)
	}
	b = appendF32(b, r.Confidence...)
	b = appendF16(b, r.Features)
	b = appendF16(b, r.ClassProbs)
	return appendF16(b, r.AttrProbs)
}

// reader walks a stored record; the first error sticks and later reads return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("corrupt record: "+format, a...)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("needs %d bytes, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uvarint(limit uint64) int {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > limit {
		r.fail("bad length")
		return 0
	}
	r.b = r.b[k:]
	return int(v)
}

func (r *reader) f32(dst []float32) {
	raw := r.take(4 * len(dst))
	if raw == nil {
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
}

func (r *reader) f16(dst []float32) {
	raw := r.take(2 * len(dst))
	if raw == nil {
		return
	}
	t := f16Table()
	for i := range dst {
		dst[i] = t[binary.LittleEndian.Uint16(raw[2*i:])]
	}
}

func decodeRegions(b []byte) (*Regions, error) {
	rd := &reader{b: b}
	if v := rd.take(1); rd.err == nil && v[0] != regionsVersion {
		return nil, fmt.Errorf("corrupt record: regions version %d, want %d", v[0], regionsVersion)
	}
	n := rd.uvarint(MaxRegions)
	dim := rd.uvarint(1 << 20)
	cd := rd.uvarint(1 << 16)
	ad := rd.uvarint(1 << 16)
	if rd.err != nil {
		return nil, rd.err
	}
	if want := n * (4*12 + 2*(dim+cd+ad)); len(rd.b) != want {
		return nil, fmt.Errorf("corrupt record: %d bytes of region data, want %d", len(rd.b), want)
	}
	r := &Regions{Boxes: make([]detector.Box, n), Locations: make([][detector.LocationDim]float32, n),
		Confidence: make([]float32, n), Dim: dim, Features: make([]float32, n*dim),
		ClassDim: cd, ClassProbs: make([]float32, n*cd), AttrDim: ad, AttrProbs: make([]float32, n*ad)}
	for i := range r.Boxes {
		rd.f32(r.Boxes[i][:])
	}
	for i := range r.Locations {
		rd.f32(r.Locations[i][:])
	}
	rd.f32(r.Confidence)
	rd.f16(r.Features)
	rd.f16(r.ClassProbs)
	rd.f16(r.AttrProbs)
	return r, rd.err
}

// LabelSummary keeps, for each region, its most probable classes and attributes: the first
// stage of two-stage search scores label words against it without reading features.
type LabelSummary struct {
	PerRegionClasses, PerRegionAttrs int // entries per region (≤ SummaryTop)
	Classes, Attrs                   []LabelProb
}

// LabelProb is one class or attribute index with its probability.
type LabelProb struct {
	Index uint16
	Prob  float32
}

// RegionClasses and RegionAttrs are region i's entries, most probable first.
func (s *LabelSummary) RegionClasses(i int) []LabelProb {
	return s.Classes[i*s.PerRegionClasses : (i+1)*s.PerRegionClasses]
}

func (s *LabelSummary) RegionAttrs(i int) []LabelProb {
	return s.Attrs[i*s.PerRegionAttrs : (i+1)*s.PerRegionAttrs]
}

// SummaryTop is the number of classes and of attributes a summary keeps per region.
const SummaryTop = 5

// Summarize keeps each region's SummaryTop most probable classes and attributes (ties by
// lower index), probabilities rounded to float16 as stored.
func Summarize(r *Regions) LabelSummary {
	top := func(probs []float32, dim int) (int, []LabelProb) {
		k := min(SummaryTop, dim)
		if k == 0 {
			return 0, nil
		}
		out := make([]LabelProb, 0, r.Len()*k)
		idx := make([]int, dim)
		for i := range r.Len() {
			row := probs[i*dim : (i+1)*dim]
			for j := range idx {
				idx[j] = j
			}
			slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(row[b], row[a]) })
			for _, j := range idx[:k] {
				out = append(out, LabelProb{Index: uint16(j), Prob: RoundFloat16(row[j])})
			}
		}
		return k, out
	}
	var s LabelSummary
	s.PerRegionClasses, s.Classes = top(r.ClassProbs, r.ClassDim)
	s.PerRegionAttrs, s.Attrs = top(r.AttrProbs, r.AttrDim)
	return s
}

// The stored form of an index entry (bucket "index"): u8 version (1) · uvarint n, kc, ka ·
// (u16 index, f16 probability) × n·kc classes, then × n·ka attributes.
const indexVersion = 1

func encodeIndex(n int, s LabelSummary) []byte {
	b := []byte{indexVersion}
	for _, v := range []int{n, s.PerRegionClasses, s.PerRegionAttrs} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	for _, lp := range append(slices.Clip(s.Classes), s.Attrs...) {
		b = binary.LittleEndian.AppendUint16(b, lp.Index)
		b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(lp.Prob).Bits())
	}
	return b
}

func decodeIndex(id string, b []byte) (IndexEntry, error) {
	rd := &reader{b: b}
	if v := rd.take(1); rd.err == nil && v[0] != indexVersion {
		return IndexEntry{}, fmt.Errorf("corrupt index entry %q: version %d", id, v[0])
	}
	n := rd.uvarint(MaxRegions)
	kc := rd.uvarint(SummaryTop)
	ka := rd.uvarint(SummaryTop)
	if rd.err != nil {
		return IndexEntry{}, fmt.Errorf("index entry %q: %w", id, rd.err)
	}
	if len(rd.b) != 4*n*(kc+ka) {
		return IndexEntry{}, fmt.Errorf("corrupt index entry %q: %d bytes, want %d", id, len(rd.b), 4*n*(kc+ka))
	}
	e := IndexEntry{ID: id, Regions: n, Labels: LabelSummary{PerRegionClasses: kc, PerRegionAttrs: ka,
		Classes: make([]LabelProb, n*kc), Attrs: make([]LabelProb, n*ka)}}
	t, raw := f16Table(), rd.b
	read := func(dst []LabelProb) {
		for j := range dst {
			dst[j] = LabelProb{Index: binary.LittleEndian.Uint16(raw[4*j:]), Prob: t[binary.LittleEndian.Uint16(raw[4*j+2:])]}
		}
		raw = raw[4*len(dst):]
	}
	read(e.Labels.Classes)
	read(e.Labels.Attrs)
	return e, nil
}
