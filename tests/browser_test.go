package tests

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/internal/testenv"
)

// browserTimeout bounds the whole page run (Chromium start, every step, screenshots).
const browserTimeout = 4 * time.Minute

// TestBrowserPage drives the alignment page in real headless Chromium (tests/browser/page.mjs
// through playwright-core): upload, captions, region boxes, word tints, the attention view,
// the probe, search or its absence, a readable API error, a narrow screen; then, the server
// serving the task fixtures too (--model testdata/bundles), the model selector and each task's
// view (VQA answer bars, entailment probabilities, NLVR2's two images and verdict, the referred
// region) next to the alignment views; any browser console error fails it; once without keys,
// once with a key the page must ask for. Screenshots go to .cache/browser/NAME/ (or
// $UNITER_BROWSER_OUT/NAME/).
//
// It needs Node.js, Chromium ($CHROMIUM or /usr/bin/chromium) and tests/browser/node_modules
// (`make browser-deps` installs all three). Without them it skips, unless
// UNITER_BROWSER_TEST=require (as `make test` sets), where a missing piece fails it.
func TestBrowserPage(t *testing.T) {
	t.Parallel()
	node, chromium, script := browserDeps(t)
	t.Run("without keys", func(t *testing.T) {
		t.Parallel()
		// min_boxes 30 keeps regions below the confidence threshold, so the page's
		// low-confidence toggle has something to hide.
		runPage(t, node, chromium, script, "page", uniterEnv(t, "UNITER_DETECTOR_MIN_BOXES=30"))
	})
	t.Run("with a key", func(t *testing.T) {
		t.Parallel()
		// The page must ask for the key on the first 401, then work as without keys.
		runPage(t, node, chromium, script, "page-keyed", keyedEnv(t, "UNITER_DETECTOR_MIN_BOXES=30"), "--key", e2eWriteKey)
	})
}

// runPage serves the default fixture and the task fixtures with env and runs the page script
// against it; screenshots go to .cache/browser/<name>/ (or $UNITER_BROWSER_OUT/<name>/).
func runPage(t *testing.T, node, chromium, script, name string, env []string, extra ...string) {
	s := startServe(t, env, "--model", testenv.Path(t, "testdata", "bundles"))
	out := os.Getenv("UNITER_BROWSER_OUT")
	if out == "" {
		out = testenv.Path(t, ".cache", "browser")
	}
	out = filepath.Join(out, name)
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	args := append([]string{script, "test", "--url", s.url, "--out", out,
		"--image", testenv.Path(t, "testdata", "images", "shapes-160x128.png"),
		"--image2", testenv.Path(t, "testdata", "images", "shapes-300x140.png"), "--want-low", "yes"}, extra...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	cmd.WaitDelay = killTimeout
	output, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the page run did not finish within %v:\n%s", browserTimeout, output)
	}
	if err != nil {
		t.Fatalf("page run failed (%v):\n%s", err, output)
	}
	t.Logf("%s", output)
	for _, name := range []string{"page-word.png", "page-attention.png", "page-narrow.png",
		"page-vqa.png", "page-ve.png", "page-nlvr2.png", "page-refer.png"} {
		raw, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			continue
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(raw))
		if err != nil || cfg.Width < 300 || cfg.Height < 300 {
			t.Errorf("screenshot %s: %dx%d (%v), want a PNG of the page", name, cfg.Width, cfg.Height, err)
		}
	}
}

// browserDeps finds node, Chromium and the test script with its playwright-core.
func browserDeps(t *testing.T) (node, chromium, script string) {
	t.Helper()
	missing := func(what string, err error) {
		msg := what + " (" + err.Error() + "): run `make browser-deps`"
		if os.Getenv("UNITER_BROWSER_TEST") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("Node.js is not installed", err)
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("Chromium is not installed", err)
	}
	script = testenv.Path(t, "tests", "browser", "page.mjs")
	if _, err := os.Stat(testenv.Path(t, "tests", "browser", "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed in tests/browser", err)
	}
	return node, chromium, script
}
