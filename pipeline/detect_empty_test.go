package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestDetectNoProposals: a detector graph that proposes nothing (P = 0, as bottom-up-attention's
// graph gives when every proposal is empty after clipping: testdata/make_empty_detector.py) runs
// through ONNX Runtime with its zero-row outputs, and the image is refused with no_regions, not
// a panic or an internal error.
func TestDetectNoProposals(t *testing.T) {
	src := testenv.FixtureBundle(t)
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	empty, err := os.ReadFile(filepath.Join("testdata", "empty_detector.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "detector.onnx"), empty, 0o644); err != nil {
		t.Fatal(err)
	}
	// The manifest, with the new graph's checksum (edited as JSON, the rest kept as it is).
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(empty)
	m["graphs"].(map[string]any)["detector"].(map[string]any)["sha256"] = hex.EncodeToString(sum[:])
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}

	b, err := Load(testenv.Env(t), dir, Options{MaxRegions: 10, VerifyChecksums: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 40, 30))); err != nil {
		t.Fatal(err)
	}
	det, _, err := b.Detect(context.Background(), buf.Bytes())
	var in *InputError
	if !errors.As(err, &in) || in.Code != CodeNoRegions || !errors.Is(err, detector.ErrNoProposals) ||
		!strings.Contains(in.Message, "no region proposals") {
		t.Fatalf("got %v (detection %v), want a %s input error", err, det, CodeNoRegions)
	}
	t.Logf("P = 0: %s: %s", in.Code, in.Message)
}
