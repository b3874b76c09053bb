package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/textproc"
)

// TestManifestDomain: the default bundle says what its detector and vocabulary know and that
// its vocabulary is closed; the fixture says nothing; the descriptive texts are checked.
func TestManifestDomain(t *testing.T) {
	m, err := ReadManifest(testenv.Path(t, "bundles", "shapes-uniter"))
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Detector; !strings.Contains(d.Description, "Shapes World") || !strings.Contains(d.Domain, "Shapes World only") ||
		!strings.Contains(d.Domain, "photographs are outside") {
		t.Errorf("default detector description %q, domain %q: want Shapes World only, photographs outside", d.Description, d.Domain)
	}
	if !m.Text.ClosedVocabulary || !strings.Contains(m.Text.Domain, "Shapes World") {
		t.Errorf("default text: closed_vocabulary %v, domain %q; want a closed Shapes World vocabulary", m.Text.ClosedVocabulary, m.Text.Domain)
	}
	f, err := ReadManifest(testenv.FixtureBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	if f.Text.ClosedVocabulary || f.Text.Domain != "" || f.Detector.Description != "" || f.Detector.Domain != "" {
		t.Errorf("the fixture declares a domain: text %+v, detector %q %q", f.Text, f.Detector.Description, f.Detector.Domain)
	}
	for _, c := range []struct {
		value, want string
	}{
		{" \t", "blank"},
		{"two\nlines", "control character"},
		{"a\x00b", "control character"},
		{strings.Repeat("x", 1001), "at most 1000"},
		{"bad \xff utf-8", "UTF-8"},
	} {
		for _, key := range []string{"text.domain", "detector.description", "detector.domain"} {
			bad := *m
			d := *m.Detector
			bad.Detector = &d
			switch key {
			case "text.domain":
				bad.Text.Domain = c.value
			case "detector.description":
				d.Description = c.value
			default:
				d.Domain = c.value
			}
			if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s = %q: error %v, want one naming %s, saying %q", key, c.value, err, key, c.want)
			}
		}
	}
}

// TestBundleUnknownWords: a bundle's unknown words follow its manifest: with the default
// bundle's closed vocabulary a word in pieces is unknown, with the fixture's open one only an
// [UNK] word is.
func TestBundleUnknownWords(t *testing.T) {
	env := testenv.Env(t)
	for _, c := range []struct {
		dir  string
		want []textproc.UnknownWord
	}{
		{testenv.Path(t, "bundles", "shapes-uniter"), []textproc.UnknownWord{{Word: "rose", Start: 2, End: 6}, {Word: "✿", Start: 19, End: 20}}},
		{testenv.FixtureBundle(t), []textproc.UnknownWord{{Word: "✿", Start: 19, End: 20}}},
	} {
		b, err := Load(env, c.dir, Options{MaxRegions: 10})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := b.Tokenizer().Encode("a rose above a red ✿ circle")
		if err != nil {
			t.Fatal(err)
		}
		got := b.UnknownWords(&enc)
		if len(got) != len(c.want) {
			t.Errorf("%s: unknown words %+v, want %+v", b.Manifest.Name, got, c.want)
		} else {
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("%s: unknown words %+v, want %+v", b.Manifest.Name, got, c.want)
				}
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManifestResizeRule: detector.preprocess.resize_rule is absent in the default and fixture
// bundles (the shorter_side rule), "shorter_side" and "detectron2" are read, and any other value
// is refused with an error naming the key and the value.
func TestManifestResizeRule(t *testing.T) {
	for _, dir := range []string{testenv.Path(t, "bundles", "shapes-uniter"), testenv.FixtureBundle(t)} {
		m, err := ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if r := m.Detector.Preprocess.ResizeRule; r != "" {
			t.Errorf("%s: resize_rule %q, want absent (the shorter_side rule it was trained with)", m.Name, r)
		}
	}
	for _, c := range []struct{ rule, err string }{
		{"shorter_side", ""},
		{"detectron2", ""},
		{"Detectron2", `detector.preprocess.resize_rule "Detectron2": want "shorter_side" (the default when absent) or "detectron2"`},
		{"caffe", `detector.preprocess.resize_rule "caffe"`},
	} {
		m, err := readFixtureManifestWith(t, func(pre map[string]any) { pre["resize_rule"] = c.rule })
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.rule, err)
		case c.err == "" && m.Detector.Preprocess.ResizeRule != c.rule:
			t.Errorf("%q read as %q", c.rule, m.Detector.Preprocess.ResizeRule)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %s", c.rule, err, c.err)
		}
	}
}

// TestManifestMinInputSide: detector.preprocess.min_input_side is read into the preprocessing
// spec, and one below 0 or above shorter_side is refused naming it.
func TestManifestMinInputSide(t *testing.T) {
	fixture, err := ReadManifest(testenv.FixtureBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	shorter := fixture.Detector.Preprocess.ShorterSide
	for _, c := range []struct {
		side int
		ok   bool
	}{{0, true}, {16, true}, {shorter, true}, {-1, false}, {shorter + 1, false}} {
		m, err := readFixtureManifestWith(t, func(pre map[string]any) { pre["min_input_side"] = c.side })
		switch {
		case c.ok && err != nil:
			t.Errorf("min_input_side %d: %v", c.side, err)
		case c.ok && m.Detector.Preprocess.MinInputSide != c.side:
			t.Errorf("min_input_side %d read as %d", c.side, m.Detector.Preprocess.MinInputSide)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "min_input_side")):
			t.Errorf("min_input_side %d: error %v, want one naming min_input_side", c.side, err)
		}
	}
}

// readFixtureManifestWith reads the fixture's manifest with its detector.preprocess edited.
func readFixtureManifestWith(t *testing.T, edit func(pre map[string]any)) (*Manifest, error) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.FixtureBundle(t), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc["detector"].(map[string]any)["preprocess"].(map[string]any))
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return ReadManifest(dir)
}
