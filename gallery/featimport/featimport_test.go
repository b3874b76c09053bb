package featimport

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readFile(t testing.TB, name string) []byte {
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestParseNPY reads every array numpy wrote in testdata/dtypes.npz and compares it with the
// values numpy listed in dtypes.json.
func TestParseNPY(t *testing.T) {
	var want map[string]struct {
		Shape  []int     `json:"shape"`
		Values []float64 `json:"values"`
	}
	if err := json.Unmarshal(readFile(t, "dtypes.json"), &want); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range want {
		names = append(names, k)
	}
	got, err := ReadNPZ(readFile(t, "dtypes.npz"), names...)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		a := got[name]
		if a == nil {
			t.Errorf("%s: not read", name)
			continue
		}
		if !slices.Equal(a.Shape, w.Shape) && !(len(w.Shape) == 0 && len(a.Shape) == 0) {
			t.Errorf("%s: shape %v, want %v", name, a.Shape, w.Shape)
		}
		if len(a.Data) != len(w.Values) {
			t.Errorf("%s: %d values, want %d", name, len(a.Data), len(w.Values))
			continue
		}
		for i, v := range w.Values {
			if float32(v) != a.Data[i] {
				t.Errorf("%s[%d]: %v, want %v", name, i, a.Data[i], v)
				break
			}
		}
	}
}

func TestParseNPYErrors(t *testing.T) {
	hdr := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }          \n"
	good := append([]byte("\x93NUMPY\x01\x00"), byte(len(hdr)), 0)
	good = append(append(good, hdr...), make([]byte, 8)...)
	if a, err := ParseNPY(good); err != nil || len(a.Data) != 2 {
		t.Fatalf("hand-made array: %v %v", a, err)
	}
	for name, raw := range map[string][]byte{
		"empty":       nil,
		"no magic":    []byte("hello world, not numpy"),
		"short data":  good[:len(good)-1],
		"long data":   append(bytes.Clone(good), 0),
		"object":      bytes.Replace(good, []byte("<f4"), []byte("|O8"), 1),
		"huge shape":  bytes.Replace(good, []byte("(2,)"), []byte("(99999999999,)"), 1),
		"bad header":  bytes.Replace(good, []byte("'shape'"), []byte("'shapx'"), 1),
		"version 9":   append([]byte("\x93NUMPY\x09"), good[7:]...),
		"header past": append([]byte("\x93NUMPY\x01\x00\xff\xff"), good[10:]...),
	} {
		if _, err := ParseNPY(raw); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
	if _, err := ReadNPZ([]byte("not a zip")); !errors.Is(err, ErrFormat) {
		t.Errorf("not a zip: got %v", err)
	}
	// msgpack {"conf": ...}: UNITER's uncompressed img_db values.
	if _, err := ReadNPZ([]byte("\x81\xa4conf\x01")); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "msgpack") {
		t.Errorf("msgpack value: got %v", err)
	}
}

// TestImageUNITER converts the record UNITER's converter wrote and compares the kept regions
// with what UNITER's own loader keeps of it (uniter.json, from numpy).
func TestImageUNITER(t *testing.T) {
	var want struct {
		NBB        int         `json:"nbb"`
		Selection  [3]float64  `json:"selection"`
		Features   [][]float64 `json:"features"`
		Locations  [][]float64 `json:"locations"`
		Conf       []float64   `json:"conf"`
		SoftLabels [][]float64 `json:"soft_labels"`
	}
	if err := json.Unmarshal(readFile(t, "uniter.json"), &want); err != nil {
		t.Fatal(err)
	}
	sel := Selection{ConfThreshold: float32(want.Selection[0]), MinBoxes: int(want.Selection[1]), MaxBoxes: int(want.Selection[2])}
	raw := readFile(t, "uniter.npz")
	img, err := Image("dir/coco_val2014_000000000042.npz", raw, Options{Selection: sel, FeatureDim: 8, Source: "import:npz"})
	if err != nil {
		t.Fatal(err)
	}
	r := img.Regions
	if img.ID != "coco_val2014_000000000042" || img.Width != 0 || img.Source != "import:npz" || len(img.SHA256) != 64 {
		t.Errorf("image: %+v", img)
	}
	if r.Len() != want.NBB || r.Dim != 8 || r.ClassDim != 5 {
		t.Fatalf("regions: %d of dim %d, %d classes; want %d of dim 8, 5 classes", r.Len(), r.Dim, r.ClassDim, want.NBB)
	}
	for i := range want.NBB {
		for j, v := range want.Features[i] {
			if r.Features[i*8+j] != float32(v) {
				t.Fatalf("feature [%d][%d]: %v, want %v", i, j, r.Features[i*8+j], v)
			}
		}
		for j, v := range want.Locations[i] {
			if math.Abs(float64(r.Locations[i][j])-v) > 1e-6 {
				t.Errorf("location [%d][%d]: %v, want %v", i, j, r.Locations[i][j], v)
			}
		}
		for j, v := range want.SoftLabels[i] {
			if r.ClassProbs[i*5+j] != float32(v) {
				t.Errorf("soft label [%d][%d]: %v, want %v", i, j, r.ClassProbs[i*5+j], v)
			}
		}
		if r.Confidence[i] != float32(want.Conf[i]) {
			t.Errorf("conf %d: %v, want %v", i, r.Confidence[i], want.Conf[i])
		}
		if r.Boxes[i][2] != r.Locations[i][2] {
			t.Errorf("box %d: %v, want the normalised corners of location %v", i, r.Boxes[i], r.Locations[i])
		}
	}
	// The wrong feature dimension names both dimensions.
	if _, err := Image("x.npz", raw, Options{Selection: sel, FeatureDim: 2048}); err == nil || !strings.Contains(err.Error(), "dimension 8") || !strings.Contains(err.Error(), "2048") {
		t.Errorf("wrong dimension: got %v", err)
	}
	// A record without conf is refused by name.
	if _, err := Image("x.npz", npzWithout(t, raw, "conf"), Options{Selection: sel}); err == nil || !strings.Contains(err.Error(), `"conf"`) {
		t.Errorf("no conf: got %v", err)
	}
}

// npzWithout rewrites an .npz archive without one member.
func npzWithout(t *testing.T, raw []byte, member string) []byte {
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		if f.Name == member+".npy" {
			continue
		}
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	return buf.Bytes()
}

func TestNumBoxes(t *testing.T) {
	conf := []float32{0.9, 0.8, 0.5, 0.2, 0.21, 0.1}
	for _, c := range []struct {
		sel  Selection
		want int
	}{
		{Selection{0.2, 1, 100}, 4},  // strictly above 0.2: 0.9, 0.8, 0.5, 0.21
		{Selection{0.2, 5, 100}, 5},  // at least min
		{Selection{0.2, 10, 100}, 6}, // never more than there are
		{Selection{0.2, 1, 2}, 2},    // at most max
		{Selection{0.95, 0, 100}, 0},
	} {
		if got := c.sel.NumBoxes(conf); got != c.want {
			t.Errorf("%+v: got %d, want %d", c.sel, got, c.want)
		}
	}
}

func FuzzParseNPY(f *testing.F) {
	raw := readFile(f, "dtypes.npz")
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range zr.File[:4] {
		rc, _ := file.Open()
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		rc.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseNPY(b)
		if err == nil {
			n := 1
			for _, d := range a.Shape {
				n *= d
			}
			if n != len(a.Data) {
				t.Fatalf("shape %v but %d values", a.Shape, len(a.Data))
			}
		}
	})
}
