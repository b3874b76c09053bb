package tests

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// defaultBundle is the trained Shapes World model that `make run` serves
// (scripts/train-shapes.sh produced it).
const defaultBundle = "bundles/shapes-uniter"

// TestDefaultModelQuality is the regression guard of the trained default model: `uniter eval`
// on Shapes World test-100 (generated from its seed), through the whole serving pipeline, must
// reproduce the evaluation report committed with the bundle (eval-wra-test-100.json, the source
// of docs/model-card.md's figures). The evaluation is deterministic for one machine; another
// CPU may sum in another order and flip a borderline pair, so rates may differ by a little.
func TestDefaultModelQuality(t *testing.T) {
	t.Parallel()
	bundle := filepath.Join(repoRoot(), defaultBundle)
	want := readReport(t, filepath.Join(bundle, "eval-wra-test-100.json"))
	dir := filepath.Join(t.TempDir(), "test-100")
	code, stdout, stderr := runUniterWithin(t, workTimeout, "", uniterEnv(t), "eval", "--bundle", bundle, "--split", "test-100",
		"--split-dir", dir, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	t.Logf("test-100: %s", stdout)
	got := parseReport(t, []byte(stdout))
	// tolerance: a few of test-100's 500 captions (0.2% each) may flip on another CPU.
	const tolerance = 0.02
	for _, k := range []string{"itm_accuracy", "ir_r1", "ir_r5", "ir_r10", "tr_r1", "tr_r10",
		"grounding_noun", "grounding_color", "grounding_noun_attention", "grounding_color_attention",
		"mlm_color_with_image", "mlm_color_without_image", "minimal_edit_rejection",
		"minimal_edit_by_kind.size", "minimal_edit_by_kind.color", "minimal_edit_by_kind.shape",
		"minimal_edit_by_kind.relation", "edit_probe.relation_swap.rejected", "edit_probe.color_swap.rejected"} {
		w, ok := want[k]
		if !ok {
			t.Fatalf("the committed report has no %s", k)
		}
		tol := tolerance
		if k == "edit_probe.color_swap.rejected" || k == "minimal_edit_by_kind.relation" { // 98 and 83 captions: a flip is 1%
			tol = 0.03
		}
		if g, ok := got[k]; !ok || math.Abs(g-w) > tol {
			t.Errorf("%s = %v, the committed report says %v (tolerance %v)", k, got[k], w, tol)
		}
	}
	for _, k := range []string{"images", "captions", "scored_pairs", "minimal_edit_captions", "grounding_noun_spans", "mlm_color_masks"} {
		if got[k] != want[k] {
			t.Errorf("%s = %v, want %v as in the committed report", k, got[k], want[k])
		}
	}
}

// readReport reads an evaluation report as parseReport does.
func readReport(t *testing.T, path string) map[string]float64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the default bundle's evaluation report is part of the repository: %v", err)
	}
	return parseReport(t, raw)
}

// parseReport flattens a JSON report's numbers: nested objects as "outer.inner".
func parseReport(t *testing.T, raw []byte) map[string]float64 {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	out := map[string]float64{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, x := range m {
			switch x := x.(type) {
			case float64:
				out[prefix+k] = x
			case map[string]any:
				walk(prefix+k+".", x)
			}
		}
	}
	walk("", v)
	return out
}
