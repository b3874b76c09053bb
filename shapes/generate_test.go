package shapes

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDeterminism: the same seed and index give the same bytes, whatever the worker count.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	for _, idx := range []int{0, 123} {
		r1, img1, err1 := Generate(3, idx)
		r2, img2, err2 := Generate(3, idx)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		j1, _ := json.Marshal(r1)
		j2, _ := json.Marshal(r2)
		p1, _ := EncodePNG(img1)
		p2, _ := EncodePNG(img2)
		if string(j1) != string(j2) || sha256.Sum256(p1) != sha256.Sum256(p2) {
			t.Errorf("image %d: two runs differ", idx)
		}
	}
	if a, b := GenerateScene(3, 5), GenerateScene(4, 5); a.Width == b.Width && a.Height == b.Height &&
		len(a.Objects) == len(b.Objects) && a.Objects[0].Box == b.Objects[0].Box {
		t.Errorf("seeds 3 and 4 gave the same scene")
	}

	sp := Split{Name: "det", Seed: 99, Count: 8}
	hashes := make([]map[string][32]byte, 0, 2)
	for _, workers := range []int{1, 3} {
		dir := t.TempDir()
		sum, err := WriteSplit(context.Background(), dir, sp, Options{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Images != sp.Count || sum.Captions != CaptionsPerImage*sp.Count || sum.FalseCaptions != sum.Captions {
			t.Errorf("summary %+v", sum)
		}
		h := map[string][32]byte{}
		err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, err := os.ReadFile(path)
			rel, _ := filepath.Rel(dir, path)
			h[rel] = sha256.Sum256(raw)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != sp.Count+2 {
			t.Errorf("%d workers wrote %d files, want %d", workers, len(h), sp.Count+2)
		}
		hashes = append(hashes, h)
	}
	for i := 1; i < len(hashes); i++ {
		for name, sum := range hashes[0] {
			if hashes[i][name] != sum {
				t.Errorf("%s differs between worker counts", name)
			}
		}
	}
}

// TestWriteSplitFormat reads a written split back: line per image in id order, files that
// exist and decode to the recorded size, captions true on the scene as read from JSON.
func TestWriteSplitFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp := Split{Name: "fmt", Seed: 5, Count: 6}
	if _, err := WriteSplit(context.Background(), dir, sp, Options{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "annotations.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != sp.Count {
		t.Fatalf("%d lines, want %d", len(lines), sp.Count)
	}
	for i, line := range lines {
		var generic map[string]any
		if err := json.Unmarshal([]byte(line), &generic); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "file", "width", "height", "background", "objects", "captions", "false_captions"} {
			if _, ok := generic[k]; !ok {
				t.Errorf("line %d lacks %q", i, k)
			}
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.ID != i || r.File != ImageFile(i) {
			t.Errorf("line %d: id %d file %s", i, r.ID, r.File)
		}
		f, err := os.Open(filepath.Join(dir, r.File))
		if err != nil {
			t.Fatal(err)
		}
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		if err != nil || format != "png" || cfg.Width != r.Width || cfg.Height != r.Height {
			t.Errorf("%s: %s %dx%d %v, want png %dx%d", r.File, format, cfg.Width, cfg.Height, err, r.Width, r.Height)
		}
		s := r.Scene() // no drawing geometry: the LFs only need what JSON holds
		for _, c := range r.Captions {
			if !Eval(c.LF, s) {
				t.Errorf("%s: %q is false on the scene read back", r.File, c.Text)
			}
		}
		for _, c := range r.FalseCaptions {
			if Eval(c.LF, s) {
				t.Errorf("%s: false caption %q is true on the scene read back", r.File, c.Text)
			}
		}
	}
	recs, err := ReadRecords(dir)
	if err != nil || len(recs) != sp.Count || recs[sp.Count-1].ID != sp.Count-1 {
		t.Errorf("ReadRecords: %d records, %v; want %d in order", len(recs), err, sp.Count)
	}
	if _, err := ReadRecords(t.TempDir()); err == nil {
		t.Error("ReadRecords of a folder without annotations: got no error")
	}
	var info SplitInfo
	raw, err = os.ReadFile(filepath.Join(dir, "split.json"))
	if err != nil || json.Unmarshal(raw, &info) != nil {
		t.Fatalf("split.json: %v %s", err, raw)
	}
	if info.Split != sp || info.Version != Version {
		t.Errorf("split.json = %+v", info)
	}
	if _, err := os.Stat(filepath.Join(dir, "annotations.jsonl.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind")
	}
}

func TestWriteSplitCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := WriteSplit(ctx, dir, Split{Name: "c", Seed: 1, Count: 50}, Options{Workers: 2}); err == nil {
		t.Errorf("a cancelled context gave no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "annotations.jsonl")); !os.IsNotExist(err) {
		t.Errorf("annotations.jsonl written by a cancelled run")
	}
}

// TestCaptions: on 300 scenes every true caption is true, every false caption false, captions
// are distinct, spans say what they cover and point at the referents, and each object is
// mentioned.
func TestCaptions(t *testing.T) {
	t.Parallel()
	vocab := Vocabulary()
	var relSpans, uniqueRelSpans, covered, scenes int
	edits := map[string]int{}
	templates := map[string]int{}
	for idx := range 300 {
		s := GenerateScene(11, idx)
		rng := imageRNG(11, idx, streamCaption)
		caps := TrueCaptions(s, CaptionsPerImage, rng)
		if len(caps) != CaptionsPerImage {
			t.Fatalf("scene %d: %d captions", idx, len(caps))
		}
		negs, err := FalseCaptions(s, caps, rng)
		if err != nil || len(negs) != len(caps) {
			t.Fatalf("scene %d: %d false captions, %v", idx, len(negs), err)
		}
		texts := map[string]bool{}
		mentioned := map[int]bool{}
		for _, c := range caps {
			templates[c.Template]++
			if !Eval(c.LF, s) {
				t.Errorf("scene %d: true caption %q (%+v) is false", idx, c.Text, c.LF)
			}
			if texts[c.Text] {
				t.Errorf("scene %d: caption %q twice", idx, c.Text)
			}
			texts[c.Text] = true
			checkCaption(t, c, s, vocab)
			for _, x := range c.Spans {
				if x.Kind != KindRef {
					continue
				}
				for _, o := range x.Objects {
					mentioned[o] = true
				}
				if c.LF.Op == OpRelation {
					relSpans++
					if len(x.Objects) == 1 {
						uniqueRelSpans++
					}
				}
				if c.LF.Op != OpNone && len(x.Objects) == 0 {
					t.Errorf("scene %d: %q: %q refers to nothing", idx, c.Text, x.Text)
				}
			}
		}
		for _, n := range negs {
			edits[n.Edit]++
			if Eval(n.LF, s) {
				t.Errorf("scene %d: false caption %q (%+v) is true", idx, n.Text, n.LF)
			}
			if texts[n.Text] {
				t.Errorf("scene %d: caption %q is both true and false, or twice", idx, n.Text)
			}
			texts[n.Text] = true
			if n.Edit != EditRandom && (n.Source < 0 || n.Source >= len(caps) || n.Template != caps[n.Source].Template) {
				t.Errorf("scene %d: false caption %q from source %d", idx, n.Text, n.Source)
			}
			checkCaption(t, n.Caption, s, vocab)
		}
		scenes++
		if len(mentioned) == len(s.Objects) {
			covered++
		}
	}
	if float64(uniqueRelSpans) < 0.95*float64(relSpans) {
		t.Errorf("only %d of %d relation noun phrases single out one object", uniqueRelSpans, relSpans)
	}
	if float64(covered) < 0.97*float64(scenes) {
		t.Errorf("every object mentioned in only %d of %d scenes", covered, scenes)
	}
	for _, tmpl := range Templates() {
		if templates[tmpl] == 0 {
			t.Errorf("template %s never drawn", tmpl)
		}
	}
	for _, e := range []string{EditColor, EditShape, EditSize, EditCount, EditRelation} {
		if edits[e] == 0 {
			t.Errorf("edit %s never used: %v", e, edits)
		}
	}
}

// checkCaption checks a caption against its scene: text from the vocabulary, spans (see
// checkSpans), span objects equal to the referents, a colour span for each colour of the LF.
func checkCaption(t *testing.T, c Caption, s Scene, vocab []string) {
	t.Helper()
	for _, w := range strings.Fields(c.Text) {
		if !slices.Contains(vocab, w) {
			t.Errorf("%q: word %q not in the vocabulary", c.Text, w)
		}
	}
	if text, _, err := Realize(c.LF, c.Template); err != nil || text != c.Text {
		t.Errorf("%q: realises as %q, %v", c.Text, text, err)
	}
	checkSpans(t, c)
	refs := Referents(c.LF, s)
	colors := 0
	for _, x := range c.Spans {
		if x.Kind == KindColor {
			colors++
		}
		if x.Ref >= 0 && !slices.Equal(x.Objects, refs[x.Ref]) {
			t.Errorf("%q: span %q objects %v, referents %v", c.Text, x.Text, x.Objects, refs[x.Ref])
		}
	}
	want := 0
	for _, o := range []ObjSpec{c.LF.Obj, c.LF.A, c.LF.B} {
		if o.Color != "" {
			want++
		}
	}
	if colors != want {
		t.Errorf("%q: %d colour spans, want %d", c.Text, colors, want)
	}
}

// TestFalseCaptionEdits: each kind of edit on a hand-built scene.
func TestFalseCaptionEdits(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	trues := []struct {
		tmpl string
		lf   LF
	}{
		{TmplA, LF{Op: OpExists, Obj: sp("star", "yellow", "")}},
		{TmplCount, LF{Op: OpCount, N: 2, Obj: sp("triangle", "green", "")}},
		{TmplNone, LF{Op: OpNone, Obj: sp("star", "red", "")}},
		{TmplRelation, rel(RelLeftOf, sp("square", "blue", ""), sp("star", "", ""))},
		{TmplSomething, rel(RelAbove, sp("", "orange", ""), sp("star", "", ""))},
	}
	for _, tc := range trues {
		c, err := NewCaption(tc.lf, tc.tmpl, handScene)
		if err != nil || !Eval(c.LF, handScene) {
			t.Fatalf("%+v: %v", tc.lf, err)
		}
		for range 20 {
			f, edit, err := FalseCaption(handScene, c, rng)
			if err != nil {
				t.Fatalf("%q: %v", c.Text, err)
			}
			if Eval(f.LF, handScene) || f.Template != c.Template {
				t.Errorf("%q → %q (%s) is true or changed template", c.Text, f.Text, edit)
			}
			if edit == EditRelation && f.LF.Rel != relInverse[c.LF.Rel] {
				t.Errorf("%q → %q: relation edit", c.Text, f.Text)
			}
			if edit == EditCount && f.LF.N == c.LF.N {
				t.Errorf("%q → %q: count edit", c.Text, f.Text)
			}
		}
	}
	f, err := RandomFalseCaption(handScene, rng)
	if err != nil || Eval(f.LF, handScene) {
		t.Errorf("RandomFalseCaption = %q, %v", f.Text, err)
	}
}

// TestGeometry: objects inside the image and apart, boxes tight on the drawn pixels.
func TestGeometry(t *testing.T) {
	t.Parallel()
	for idx := range 25 {
		s := GenerateScene(21, idx)
		img := Render(s)
		bg := RenderBackground(s.Background, s.Width, s.Height)
		if img.Bounds().Dx() != s.Width || img.Bounds().Dy() != s.Height {
			t.Fatalf("scene %d: image %v, scene %dx%d", idx, img.Bounds(), s.Width, s.Height)
		}
		for i, o := range s.Objects {
			b := o.Box
			if b[0] < 0 || b[1] < 0 || b[2] > float64(s.Width) || b[3] > float64(s.Height) || b[0] >= b[2] || b[1] >= b[3] {
				t.Errorf("scene %d object %d: box %v outside %dx%d", idx, i, b, s.Width, s.Height)
			}
			if o.Center != [2]float64{(b[0] + b[2]) / 2, (b[1] + b[3]) / 2} {
				t.Errorf("scene %d object %d: centre %v of box %v", idx, i, o.Center, b)
			}
			for j := range i {
				if iou := boxIoU(b, s.Objects[j].Box); iou >= 0.1 {
					t.Errorf("scene %d: objects %d and %d overlap, IoU %.2f", idx, j, i, iou)
				}
			}
			// At least half covered: nearer the object's colour than the background's.
			covered := func(x, y int) bool {
				p := img.RGBAAt(x, y)
				q := bg.RGBAAt(x, y)
				px := [3]uint8{p.R, p.G, p.B}
				return rgbDist(px, o.RGB) <= rgbDist(px, [3]uint8{q.R, q.G, q.B})+2
			}
			x1, y1, x2, y2 := int(b[0]), int(b[1]), int(b[2]), int(b[3])
			rowHas := func(y int) bool {
				return slices.ContainsFunc(seq(x1, x2), func(x int) bool { return covered(x, y) })
			}
			colHas := func(x int) bool {
				return slices.ContainsFunc(seq(y1, y2), func(y int) bool { return covered(x, y) })
			}
			if !rowHas(y1) || !rowHas(y2-1) || !colHas(x1) || !colHas(x2-1) {
				t.Errorf("scene %d object %d (%s): an edge of box %v holds no object pixel", idx, i, o.Shape, b)
			}
			if (y1 > 0 && rowHas(y1-1)) || (y2 < s.Height && rowHas(y2)) || (x1 > 0 && colHas(x1-1)) ||
				(x2 < s.Width && colHas(x2)) {
				t.Errorf("scene %d object %d (%s): box %v is not tight", idx, i, o.Shape, b)
			}
			// The middle of a convex-ish shape is fully object-coloured.
			if c := img.RGBAAt(int(o.Center[0]), int(o.Center[1])); o.Shape != "heart" &&
				rgbDist([3]uint8{c.R, c.G, c.B}, o.RGB) > 1 {
				t.Errorf("scene %d object %d (%s): centre pixel %v, colour %v", idx, i, o.Shape, c, o.RGB)
			}
		}
	}
}

func seq(lo, hi int) []int {
	out := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

func boxIoU(a, b [4]float64) float64 {
	iw := math.Min(a[2], b[2]) - math.Max(a[0], b[0])
	ih := math.Min(a[3], b[3]) - math.Max(a[1], b[1])
	if iw <= 0 || ih <= 0 {
		return 0
	}
	inter := iw * ih
	return inter / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter)
}

// TestVariety: over a test-1k-sized sample, sizes and aspect ratios vary, every shape, colour,
// size, background kind and object count occurs, and large objects are 1.6–2× small ones.
func TestVariety(t *testing.T) {
	t.Parallel()
	shapes, colors, sizes, kinds, counts := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[int]int{}
	minA, maxA, square := math.Inf(1), math.Inf(-1), 0
	ext := map[string][]float64{} // object extent / shorter image side, by size
	const n = 1000
	for idx := range n {
		s := GenerateScene(3, idx)
		if s.Width < MinSide || s.Width > MaxSide || s.Height < MinSide || s.Height > MaxSide {
			t.Errorf("scene %d: %dx%d", idx, s.Width, s.Height)
		}
		a := float64(s.Width) / float64(s.Height)
		minA, maxA = math.Min(minA, a), math.Max(maxA, a)
		if math.Abs(a-1) < 0.05 {
			square++
		}
		counts[len(s.Objects)]++
		kinds[s.Background.Kind]++
		for _, o := range s.Objects {
			shapes[o.Shape]++
			colors[o.Color]++
			sizes[o.Size]++
			ext[o.Size] = append(ext[o.Size], math.Max(o.Box[2]-o.Box[0], o.Box[3]-o.Box[1])/float64(min(s.Width, s.Height)))
		}
	}
	if minA > 0.65 || maxA < 1.7 || square > n/4 {
		t.Errorf("aspect ratios %.2f..%.2f, %d of %d near square", minA, maxA, square, n)
	}
	for name, m := range map[string]map[string]int{"shape": shapes, "colour": colors, "size": sizes, "background": kinds} {
		var want []string
		switch name {
		case "shape":
			want = Shapes()
		case "colour":
			want = Colors()
		case "size":
			want = Sizes()
		default:
			want = backgroundKinds
		}
		for _, v := range want {
			if m[v] < n/50 {
				t.Errorf("%s %s occurs %d times in %d scenes", name, v, m[v], n)
			}
		}
	}
	for k := MinObjs; k <= MaxObjs; k++ {
		if counts[k] < n/20 {
			t.Errorf("%d scenes with %d objects", counts[k], k)
		}
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	if r := mean(ext[SizeLarge]) / mean(ext[SizeSmall]); r < 1.6 || r > 2 {
		t.Errorf("large/small extent ratio %.2f", r)
	}
	if slices.Max(ext[SizeSmall]) >= slices.Min(ext[SizeLarge]) {
		t.Errorf("small (up to %.3f) and large (from %.3f) extents overlap", slices.Max(ext[SizeSmall]), slices.Min(ext[SizeLarge]))
	}
}

// TestBackgroundColours: no background pixel is close to an object colour.
func TestBackgroundColours(t *testing.T) {
	t.Parallel()
	worst := math.Inf(1)
	for idx := range 30 {
		s := GenerateScene(8, idx)
		bg := RenderBackground(s.Background, s.Width, s.Height)
		for y := 0; y < s.Height; y += 4 {
			for x := 0; x < s.Width; x += 4 {
				p := bg.RGBAAt(x, y)
				worst = math.Min(worst, minObjectColorDist([3]uint8{p.R, p.G, p.B}))
			}
		}
	}
	if worst < 60 {
		t.Errorf("a background pixel is %.1f from an object colour", worst)
	}
}
