package offline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sbinet/npyio/npy"
	"github.com/sbinet/npyio/npz"
	"github.com/x448/float16"

	"github.com/uniter-serve/uniter/shapes"
)

// writeTestSplit writes a small Shapes World split and returns its folder and records.
func writeTestSplit(t *testing.T, count int) (string, []shapes.Record) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "split")
	if _, err := shapes.WriteSplit(context.Background(), dir, shapes.Split{Name: "extract-test", Seed: 77, Count: count},
		shapes.Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	recs, err := shapes.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != count {
		t.Fatalf("%d records, want %d", len(recs), count)
	}
	return dir, recs
}

// npzArray is one array read back from an .npz: its header and raw little-endian data.
type npzArray struct {
	descr string
	shape []int
	raw   []byte
}

// readNPZ reads every array of an .npz with npyio's reader (an independent parser of the
// headers ExtractSplit writes); float16 data, which npyio does not decode, is kept raw.
func readNPZ(t *testing.T, path string) map[string]npzArray {
	t.Helper()
	r, err := npz.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer r.Close()
	out := map[string]npzArray{}
	for _, key := range r.Keys() {
		if !strings.HasSuffix(key, ".npy") {
			t.Fatalf("%s: entry %q is not NAME.npy (numpy.load would not strip it)", path, key)
		}
		rc, err := r.Open(key)
		if err != nil {
			t.Fatal(err)
		}
		nr, err := npy.NewReader(rc)
		if err != nil {
			t.Fatalf("%s %s: %v", path, key, err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		h := nr.Header
		if h.Descr.Fortran {
			t.Errorf("%s %s: fortran order", path, key)
		}
		out[strings.TrimSuffix(key, ".npy")] = npzArray{descr: h.Descr.Type, shape: h.Descr.Shape, raw: raw}
	}
	// npyio decodes the dtypes it knows; its values must equal the raw bytes'.
	for name, a := range out {
		switch a.descr {
		case "<i8":
			var v []int64
			if err := r.Read(name+".npy", &v); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, decodeI64(a.raw)) {
				t.Errorf("%s: npyio reads other values", name)
			}
		case "<f4":
			var v []float32
			if err := r.Read(name+".npy", &v); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, decodeF32(a.raw)) {
				t.Errorf("%s: npyio reads other values", name)
			}
		}
	}
	return out
}

func decodeI64(raw []byte) []int64 {
	v := make([]int64, len(raw)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return v
}

func decodeF32(raw []byte) []float32 {
	v := make([]float32, len(raw)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return v
}

func decodeF16Bits(raw []byte) []uint16 {
	v := make([]uint16, len(raw)/2)
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	return v
}

func f16Bits(vs []float32) []uint16 {
	out := make([]uint16, len(vs))
	for i, v := range vs {
		out[i] = float16.Fromfloat32(v).Bits()
	}
	return out
}

func checkArray(t *testing.T, arrays map[string]npzArray, name, descr string, shape ...int) npzArray {
	t.Helper()
	a, ok := arrays[name]
	if !ok {
		t.Fatalf("no array %q", name)
	}
	if a.descr != descr || !slices.Equal(a.shape, shape) {
		t.Fatalf("%s: %s %v, want %s %v", name, a.descr, a.shape, descr, shape)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	size := map[string]int{"<f2": 2, "<f4": 4, "<i8": 8, "|b1": 1}[descr]
	if len(a.raw) != n*size {
		t.Fatalf("%s: %d bytes of data, want %d", name, len(a.raw), n*size)
	}
	return a
}

func TestExtractSplit(t *testing.T) {
	ctx := context.Background()
	splitDir, recs := writeTestSplit(t, 6)
	b := loadFixture(t) // no detector cache: Detect below runs the pipeline again
	D, C := b.Manifest.Model.FeatureDim, b.Manifest.Model.LabelDim

	out := filepath.Join(t.TempDir(), "out")
	var progress []int
	st, err := ExtractSplit(ctx, b, splitDir, out, ExtractOptions{Workers: 3,
		Progress: func(done, total int) {
			if total != len(recs) {
				t.Errorf("progress total %d, want %d", total, len(recs))
			}
			progress = append(progress, done)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(progress, want) {
		t.Errorf("progress %v, want %v", progress, want)
	}
	if st.Images != 6 || st.Captions != 6*shapes.CaptionsPerImage || !st.TruthWritten || st.TruthSkipped != "" {
		t.Errorf("stats %+v", st)
	}

	// regions.npz: shapes, offsets, and the very values the serving pipeline gives each image.
	arrays := readNPZ(t, filepath.Join(out, ExtractRegionsFile))
	if len(arrays) != 5 {
		t.Errorf("regions.npz holds %d arrays, want 5", len(arrays))
	}
	offsets := decodeI64(checkArray(t, arrays, "offsets", "<i8", len(recs)+1).raw)
	R := int(offsets[len(recs)])
	if offsets[0] != 0 || R != st.Regions {
		t.Fatalf("offsets %v, stats say %d regions", offsets, st.Regions)
	}
	features := decodeF16Bits(checkArray(t, arrays, "features", "<f2", R, D).raw)
	labels := decodeF16Bits(checkArray(t, arrays, "soft_labels", "<f2", R, C).raw)
	locations := decodeF32(checkArray(t, arrays, "locations", "<f4", R, 7).raw)
	boxes := decodeF32(checkArray(t, arrays, "boxes", "<f4", R, 4).raw)
	for i, r := range recs {
		lo, hi := int(offsets[i]), int(offsets[i+1])
		if hi <= lo {
			t.Fatalf("image %d: offsets %d..%d: every image needs a region", i, lo, hi)
		}
		raw, err := os.ReadFile(filepath.Join(splitDir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		det, hit, err := b.Detect(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		if hit {
			t.Fatal("the fixture bundle has no cache: Detect must run the pipeline again")
		}
		n := det.Prepared.Len()
		if n != hi-lo {
			t.Fatalf("image %d: %d regions stored, Detect gives %d", i, hi-lo, n)
		}
		if !slices.Equal(features[lo*D:hi*D], f16Bits(det.Prepared.Features)) {
			t.Errorf("image %d: stored features differ from Detect's (as float16)", i)
		}
		if !slices.Equal(labels[lo*C:hi*C], f16Bits(det.ClassProbs)) {
			t.Errorf("image %d: stored soft labels differ from Detect's class probabilities", i)
		}
		for k := range n {
			j := lo + k
			if !slices.Equal(locations[7*j:7*j+7], det.Prepared.Locations[k][:]) {
				t.Errorf("image %d region %d: location %v, Detect %v", i, k, locations[7*j:7*j+7], det.Prepared.Locations[k])
			}
			if !slices.Equal(boxes[4*j:4*j+4], det.Prepared.Boxes[k][:]) {
				t.Errorf("image %d region %d: box %v, Detect %v", i, k, boxes[4*j:4*j+4], det.Prepared.Boxes[k])
			}
			var sum float64
			for _, h := range labels[j*C : (j+1)*C] {
				sum += float64(float16.Frombits(h).Float32())
			}
			if math.Abs(sum-1) > 0.01 {
				t.Errorf("image %d region %d: soft labels sum to %g", i, k, sum)
			}
		}
	}

	// captions.jsonl: every true caption in order, tokenised as the service does.
	type line struct {
		Image     int       `json:"image"`
		Text      string    `json:"text"`
		InputIDs  []int64   `json:"input_ids"`
		CaptionID string    `json:"caption_id"`
		LF        shapes.LF `json:"lf"`
	}
	var lines []line
	f, err := os.Open(filepath.Join(out, ExtractCaptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var l line
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("captions.jsonl line %d: %v", len(lines)+1, err)
		}
		lines = append(lines, l)
	}
	f.Close()
	if len(lines) != st.Captions {
		t.Fatalf("%d caption lines, want %d", len(lines), st.Captions)
	}
	tok := b.Tokenizer()
	c := 0
	for i, r := range recs {
		for k, cp := range r.Captions {
			l := lines[c]
			enc, err := tok.Encode(cp.Text)
			if err != nil {
				t.Fatal(err)
			}
			ids := enc.IDs()
			switch {
			case l.Image != i || l.Text != cp.Text || l.LF != cp.LF:
				t.Errorf("line %d: %+v, want image %d %q %+v", c, l, i, cp.Text, cp.LF)
			case l.CaptionID != strconv.Itoa(r.ID)+"-"+strconv.Itoa(k):
				t.Errorf("line %d: caption_id %q", c, l.CaptionID)
			case !slices.Equal(l.InputIDs, ids):
				t.Errorf("line %d: input_ids %v, tokenizer %v", c, l.InputIDs, ids)
			case ids[0] != tok.CLSID() || ids[len(ids)-1] != tok.SEPID():
				t.Errorf("line %d: input_ids %v lack [CLS]/[SEP]", c, ids)
			}
			c++
		}
	}

	// false_captions.jsonl: each image's false captions in order, tokenised as the service
	// does, false on their image (checked here with Eval), with the source caption's line.
	var falseLines []falseCaptionLine
	raw, err := os.ReadFile(filepath.Join(out, ExtractFalseFile))
	if err != nil {
		t.Fatal(err)
	}
	for n, rawLine := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		dec := json.NewDecoder(bytes.NewReader(rawLine))
		dec.DisallowUnknownFields()
		var l falseCaptionLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("false_captions.jsonl line %d: %v", n+1, err)
		}
		falseLines = append(falseLines, l)
	}
	if len(falseLines) != st.FalseCaptions || st.FalseCaptions == 0 {
		t.Fatalf("%d false caption lines, stats say %d", len(falseLines), st.FalseCaptions)
	}
	fc, firstLine := 0, 0
	for i, r := range recs {
		for k, neg := range r.FalseCaptions {
			l := falseLines[fc]
			enc, err := tok.Encode(neg.Text)
			if err != nil {
				t.Fatal(err)
			}
			wantSource := -1
			if neg.Source >= 0 {
				wantSource = firstLine + neg.Source
			}
			switch {
			case l.Image != i || l.Text != neg.Text || l.LF != neg.LF || l.Edit != neg.Edit:
				t.Errorf("false line %d: %+v, want image %d %q %s", fc, l, i, neg.Text, neg.Edit)
			case shapes.Eval(l.LF, r.Scene()):
				t.Errorf("false line %d %q is true on image %d", fc, l.Text, i)
			case l.CaptionID != strconv.Itoa(r.ID)+"-f"+strconv.Itoa(k):
				t.Errorf("false line %d: caption_id %q", fc, l.CaptionID)
			case !slices.Equal(l.InputIDs, enc.IDs()):
				t.Errorf("false line %d: input_ids %v, tokenizer %v", fc, l.InputIDs, enc.IDs())
			case l.Source != wantSource:
				t.Errorf("false line %d: source %d, want %d", fc, l.Source, wantSource)
			case l.Source >= 0 && lines[l.Source].Image != i:
				t.Errorf("false line %d: source caption %d is of image %d", fc, l.Source, lines[l.Source].Image)
			}
			fc++
		}
		firstLine += len(r.Captions)
	}

	// truth.npz: Eval of every caption on every image, each caption true on its own image; and
	// NearMiss of every caption on every image.
	truthNPZ := readNPZ(t, filepath.Join(out, ExtractTruthFile))
	truth := checkArray(t, truthNPZ, "truth", "|b1", len(lines), len(recs)).raw
	near := checkArray(t, truthNPZ, "near", "|b1", len(lines), len(recs)).raw
	falses, nears := 0, 0
	for c, l := range lines {
		for i, r := range recs {
			v, n := truth[c*len(recs)+i], near[c*len(recs)+i]
			if v > 1 || n > 1 {
				t.Fatalf("truth[%d,%d] = %d, near = %d: not bools", c, i, v, n)
			}
			if (v == 1) != shapes.Eval(l.LF, r.Scene()) {
				t.Errorf("truth[%d,%d] = %d, Eval says otherwise", c, i, v)
			}
			if (n == 1) != shapes.NearMiss(l.LF, r.Scene()) {
				t.Errorf("near[%d,%d] = %d, NearMiss says otherwise", c, i, n)
			}
			nears += int(n)
			if i == l.Image && v != 1 {
				t.Errorf("caption %d is false on its own image %d", c, i)
			}
			if v == 0 {
				falses++
			}
		}
	}
	if falses == 0 {
		t.Error("no caption is false on any image: no ITM negatives")
	}
	if nears == 0 {
		t.Error("no image is a near miss of any caption")
	}

	vocab, err := os.ReadFile(filepath.Join(out, ExtractVocabFile))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(filepath.Join(b.Dir, "vocab.txt")); !bytes.Equal(vocab, want) {
		t.Error("vocab.txt is not the bundle's")
	}
	var info struct {
		Bundle struct {
			Name string `json:"name"`
		} `json:"bundle"`
		Source struct {
			Split shapes.SplitInfo `json:"split"`
		} `json:"source"`
		Counts struct {
			Images, Regions, Captions int
		} `json:"counts"`
		Selection map[string]float64 `json:"selection"`
	}
	raw, err = os.ReadFile(filepath.Join(out, ExtractInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	if info.Bundle.Name != "tiny-random" || info.Source.Split.Seed != 77 || info.Source.Split.Count != 6 ||
		info.Counts.Images != 6 || info.Counts.Regions != R || info.Counts.Captions != len(lines) ||
		info.Selection["max_regions"] != 100 {
		t.Errorf("extract.json: %s", raw)
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	// Determinism: another run, with another number of workers, writes the same bytes.
	out2 := filepath.Join(t.TempDir(), "out2")
	if _, err := ExtractSplit(ctx, b, splitDir, out2, ExtractOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ExtractRegionsFile, ExtractCaptionsFile, ExtractTruthFile, ExtractVocabFile} {
		a, _ := os.ReadFile(filepath.Join(out, name))
		b, err := os.ReadFile(filepath.Join(out2, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs", name)
		}
	}

	// Above the truth limit no truth.npz is written, and a stale one is removed.
	st, err = ExtractSplit(ctx, b, splitDir, out2, ExtractOptions{Workers: 2, TruthMax: int64(len(lines)*len(recs) - 1)})
	if err != nil {
		t.Fatal(err)
	}
	if st.TruthWritten || st.TruthSkipped == "" {
		t.Errorf("truth above the limit: written %v, skipped %q", st.TruthWritten, st.TruthSkipped)
	}
	if _, err := os.Stat(filepath.Join(out2, ExtractTruthFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("truth.npz still there above the limit: %v", err)
	}
	if a, b := readFile(t, filepath.Join(out, ExtractRegionsFile)), readFile(t, filepath.Join(out2, ExtractRegionsFile)); !bytes.Equal(a, b) {
		t.Error("regions.npz depends on the truth limit")
	}
}

func TestExtractSplitErrors(t *testing.T) {
	splitDir, _ := writeTestSplit(t, 2)
	b := loadFixture(t)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ExtractSplit(ctx, b, splitDir, filepath.Join(t.TempDir(), "o"), ExtractOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if err := os.Remove(filepath.Join(splitDir, shapes.ImageFile(1))); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "o")
	_, err := ExtractSplit(context.Background(), b, splitDir, out, ExtractOptions{Workers: 2})
	if err == nil || !strings.Contains(err.Error(), "image 1 ("+shapes.ImageFile(1)+")") {
		t.Errorf("missing image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, ExtractRegionsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("regions.npz written after a failure: %v", err)
	}
	if _, err := ExtractSplit(context.Background(), b, t.TempDir(), out, ExtractOptions{}); err == nil {
		t.Error("a folder without annotations.jsonl was accepted")
	}
}

func TestNPYHeader(t *testing.T) {
	for _, shape := range [][]int{{5}, {3, 64}, {12345, 2048}, {0, 7}} {
		h := npyHeader("<f2", shape)
		if len(h)%64 != 0 || h[len(h)-1] != '\n' {
			t.Errorf("%v: header of %d bytes", shape, len(h))
		}
		r, err := npy.NewReader(bytes.NewReader(h))
		if err != nil {
			t.Fatal(err)
		}
		if r.Header.Descr.Type != "<f2" || !slices.Equal(r.Header.Descr.Shape, shape) {
			t.Errorf("%v: read back %+v", shape, r.Header.Descr)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
