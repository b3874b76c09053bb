package tests

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestCLIAttentionStats: attention-stats generates a known split that is not on disk, then
// prints each layer's pattern shares; an unknown split without a folder is a clear error.
func TestCLIAttentionStats(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "test-100")
	args := []string{"attention-stats", "--bundle", testenv.FixtureBundle(t), "--split", "test-100",
		"--split-dir", dir, "--images", "4", "--captions", "2", "--quiet"}

	code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(args, "--json")...)
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "annotations.jsonl")); err != nil {
		t.Errorf("the missing split was not generated: %v", err)
	}
	var got struct {
		Split    string      `json:"split"`
		Model    string      `json:"model"`
		Images   int         `json:"images"`
		Pairs    int         `json:"pairs"`
		Heads    int         `json:"heads_per_layer"`
		Patterns []string    `json:"patterns"`
		Shares   [][]float64 `json:"shares"`
		Counts   [][]int     `json:"counts"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	wantPatterns := []string{"vertical", "diagonal", "vertical_diagonal", "block", "heterogeneous", "reversed_block"}
	if got.Split != "test-100" || got.Model != "tiny-random" || got.Images != 4 || got.Pairs != 8 || got.Heads != 4 ||
		strings.Join(got.Patterns, ",") != strings.Join(wantPatterns, ",") {
		t.Errorf("got split %q, model %q, %d images, %d pairs, %d heads, patterns %v; want test-100, tiny-random, 4, 8, 4, %v",
			got.Split, got.Model, got.Images, got.Pairs, got.Heads, got.Patterns, wantPatterns)
	}
	if len(got.Shares) != 2 || len(got.Counts) != 2 {
		t.Fatalf("%d layers of shares and %d of counts, want 2 (the fixture's layers)", len(got.Shares), len(got.Counts))
	}
	for l := range got.Shares {
		sum, n := 0.0, 0
		for p := range got.Shares[l] {
			sum += got.Shares[l][p]
			n += got.Counts[l][p]
		}
		if math.Abs(sum-1) > 1e-9 || n != got.Pairs*got.Heads {
			t.Errorf("layer %d: shares sum to %v and counts to %d, want 1 and %d", l, sum, n, got.Pairs*got.Heads)
		}
	}

	// The table: a header, one row per layer and the total, on the split now on disk.
	code, stdout, stderr = runUniter(t, "", uniterEnv(t), args...)
	if code != 0 {
		t.Fatalf("table: exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "VERTICAL") || !strings.Contains(stdout, "REV. BLOCK") || !strings.Contains(stdout, "\n    all ") {
		t.Errorf("table lacks its header or total row:\n%s", stdout)
	}

	code, _, stderr = runUniter(t, "", uniterEnv(t), "attention-stats", "--bundle", testenv.FixtureBundle(t),
		"--split", "no-such-split", "--split-dir", filepath.Join(t.TempDir(), "nothing"))
	if code == 0 || !strings.Contains(stderr, "not a known split") {
		t.Errorf("unknown split: exit code %d, stderr %q; want an error saying it is not a known split", code, stderr)
	}
}
