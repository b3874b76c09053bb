package ingest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
	"github.com/uniter-serve/uniter/internal/testenv"
	"github.com/uniter-serve/uniter/pipeline"
)

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fixtureImage(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(testenv.Path(t, "testdata", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestListFolder(t *testing.T) {
	dir := t.TempDir()
	png := fixtureImage(t, "shapes-96x120.png")
	write(t, filepath.Join(dir, "a.png"), png)
	write(t, filepath.Join(dir, "sub", "b c.JPG"), png) // extension in capitals, a space in the name
	write(t, filepath.Join(dir, "notes.txt"), []byte("not an image"))
	items, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		var meta map[string]string
		if err := json.Unmarshal(it.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		got = append(got, it.ID+"="+meta["path"])
	}
	want := []string{"a=a.png", "sub:b_c=sub/b c.JPG"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v (IDs from relative paths, '/' as ':')", got, want)
	}
	if _, err := List(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no image files") {
		t.Errorf("empty folder: got %v, want 'no image files'", err)
	}
	one, err := List(filepath.Join(dir, "a.png"))
	if err != nil || len(one) != 1 || one[0].ID != "a" {
		t.Errorf("one image: got %+v, %v", one, err)
	}
}

func TestListJSONL(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.jsonl")
	write(t, list, []byte(`{"path": "x.png", "id": "first", "metadata": {"k": 1}}`+"\n\n"+`{"path": "sub/y.png"}`+"\n"))
	items, err := List(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Path != filepath.Join(dir, "x.png") || items[0].ID != "first" ||
		string(items[0].Metadata) != `{"k": 1}` || items[1].Path != filepath.Join(dir, "sub", "y.png") || items[1].ID != "sub:y" {
		t.Errorf("got %+v", items)
	}
	for name, body := range map[string]string{
		"unknown field":  `{"path": "x.png", "size": 3}`,
		"no path":        `{"id": "x"}`,
		"duplicate id":   `{"path": "x.png", "id": "d"}` + "\n" + `{"path": "y.png", "id": "d"}`,
		"bad id":         `{"path": "x.png", "id": "a/b"}`,
		"metadata array": `{"path": "x.png", "metadata": [1]}`,
		"empty":          "\n",
	} {
		write(t, list, []byte(body))
		if _, err := List(list); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestReadTexts(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "captions.txt")
	write(t, plain, []byte("a red square\r\n\nTwo stars\n"))
	texts, err := ReadTexts(plain)
	if err != nil || len(texts) != 2 || texts[0].Text != "a red square" || texts[1].Text != "Two stars" {
		t.Errorf("plain text: got %+v, %v", texts, err)
	}
	jsonl := filepath.Join(dir, "captions.jsonl")
	write(t, jsonl, []byte(`{"id": "t1", "text": "a star", "metadata": {"split": "val"}}`+"\n"))
	texts, err = ReadTexts(jsonl)
	if err != nil || len(texts) != 1 || texts[0].ID != "t1" || texts[0].Text != "a star" {
		t.Errorf("JSONL: got %+v, %v", texts, err)
	}
	write(t, jsonl, []byte(`{"id": "t1"}`))
	if _, err := ReadTexts(jsonl); err == nil {
		t.Error("a JSONL line without text: got no error")
	}
}

// Images detects through the service, skips what is stored, reports a broken file and goes on,
// and a second run adds nothing.
func TestImages(t *testing.T) {
	b, err := pipeline.Load(testenv.Env(t), testenv.FixtureBundle(t), pipeline.Options{MaxRegions: 100, MaxTexts: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	st, err := gallery.Open(t.TempDir(), gallery.Options{FeatureDim: b.Manifest.Model.FeatureDim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := retrieval.New(st, b, retrieval.Config{Source: "detector:test", ThumbnailSize: 64, MaxTextBatch: 2,
		MaxLimit: 10, MaxOffset: 10, Candidates: 10, MaxCandidates: 10, BatchPairs: 8, Workers: 1,
		Labels: retrieval.Labels{Classes: b.RegionLabels(), Attributes: b.AttributeLabels(), Background: b.Manifest.Detector.BackgroundIndex}})

	dir := t.TempDir()
	for _, name := range []string{"shapes-96x120.png", "shapes-160x128.png", "shapes-96x200.png"} {
		write(t, filepath.Join(dir, name), fixtureImage(t, name))
	}
	write(t, filepath.Join(dir, "broken.png"), []byte("\x89PNG\r\n\x1a\n truncated"))
	items, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	stats, err := Images(context.Background(), svc, items, ImageOptions{Workers: 2, Batch: 2,
		Progress: func(done, total int, _ string) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Total != 4 || stats.Added != 3 || stats.Failed != 1 || stats.Done != 4 || calls != 4 ||
		len(stats.Failures) != 1 || !strings.HasPrefix(stats.Failures[0], filepath.Join(dir, "broken.png")) {
		t.Errorf("first run: %+v, %d progress calls; want 3 added, the broken file failed, 4 calls", stats, calls)
	}
	if s, err := st.Stats(context.Background()); err != nil || s.Images != 3 {
		t.Errorf("store holds %+v, %v; want 3 images", s, err)
	}
	good := slices.DeleteFunc(slices.Clone(items), func(it Item) bool { return it.ID == "broken" })
	stats, err = Images(context.Background(), svc, good, ImageOptions{})
	if err != nil || stats.Added != 0 || stats.Skipped != 3 {
		t.Errorf("second run: %+v, %v; want everything skipped", stats, err)
	}

	texts := []*gallery.Text{{Text: "a red square"}, {Text: "two stars"}, {Text: "a red square"}}
	added, dup, err := Texts(context.Background(), svc, texts, nil)
	if err != nil || added != 2 || dup != 1 {
		t.Errorf("texts: %d added, %d duplicates, %v; want 2, 1 (in batches of 2)", added, dup, err)
	}
}
