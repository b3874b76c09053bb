package tests

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestCLIRegions: `uniter regions IMAGE` prints a table, --json the API's answer, and --draw
// writes the image with its boxes.
func TestCLIRegions(t *testing.T) {
	t.Parallel()
	img := testenv.Path(t, "testdata", "images", "shapes-300x140.png")
	base := []string{"regions", "--bundle", testenv.FixtureBundle(t), img}

	code, stdout, stderr := runUniter(t, "", uniterEnv(t), base...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "png 300×140") || len(lines) < 3+10 || !strings.HasPrefix(lines[2], "#") {
		t.Fatalf("table:\n%s", stdout)
	}

	out := filepath.Join(t.TempDir(), "drawn.png")
	code, stdout, stderr = runUniter(t, "", uniterEnv(t), append(base, "--json", "--features", "--draw", out)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var resp api.RegionsResponse
	decodeStrict(t, []byte(stdout), &resp)
	if resp.Image.Width != 300 || resp.Image.Height != 140 || len(resp.Regions) < 10 || resp.Features == nil ||
		resp.Features.Shape[0] != len(resp.Regions) || resp.Features.Shape[1] != 64 {
		t.Fatalf("json: %+v, %d regions", resp.Image, len(resp.Regions))
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	drawn, err := png.Decode(f)
	if err != nil {
		t.Fatalf("--draw output: %v", err)
	}
	if b := drawn.Bounds(); b.Dx() != 300 || b.Dy() != 140 {
		t.Fatalf("drawn image is %v, want 300×140", b)
	}

	// match and align take the image too.
	code, stdout, stderr = runUniter(t, "", uniterEnv(t), "match", "--bundle", testenv.FixtureBundle(t), "--image", img,
		"--text", "a red square", "--text", "two stars", "--json")
	var mr api.MatchResponse
	if code != 0 {
		t.Fatalf("match --image: exit %d: %s", code, stderr)
	}
	decodeStrict(t, []byte(stdout), &mr)
	if len(mr.Results) != 2 || mr.Image == nil || mr.Image.Regions != len(resp.Regions) {
		t.Fatalf("match --image: %+v", mr)
	}
	code, _, stderr = runUniter(t, "", uniterEnv(t), "match", "--bundle", testenv.FixtureBundle(t), "--image", "/etc/hostname", "--text", "a")
	if code == 0 || !strings.Contains(stderr, "not a valid image") {
		t.Fatalf("match on a text file: exit %d, stderr %q", code, stderr)
	}
}

// TestCLIAlignDraw: `uniter align --image --draw` writes the image with each word's best region;
// --draw without an image is refused.
func TestCLIAlignDraw(t *testing.T) {
	t.Parallel()
	img := testenv.Path(t, "testdata", "images", "shapes-300x140.png")
	out := filepath.Join(t.TempDir(), "aligned.png")
	code, _, stderr := runUniter(t, "", uniterEnv(t), "align", "--bundle", testenv.FixtureBundle(t), "--image", img,
		"--text", "a red square left of a blue circle", "--draw", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pic, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := pic.Bounds(); b.Dx() != 300 || b.Dy() != 140 {
		t.Fatalf("drawn image is %v, want 300×140", b)
	}
	code, _, stderr = runUniter(t, "", uniterEnv(t), "align", "--bundle", testenv.FixtureBundle(t),
		"--regions", testenv.Path(t, "testdata", "images", "shapes-300x140.png"), "--text", "a", "--draw", out)
	if code == 0 || !strings.Contains(stderr, "--draw needs --image") {
		t.Fatalf("--draw with --regions: exit %d, stderr %s", code, stderr)
	}
}
