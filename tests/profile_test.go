package tests

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileSummary: with ort.profile_dir every graph the command opens writes ONNX Runtime's
// profile when the process ends, and `uniter profile-summary` sums one per operator, as a table
// and as JSON.
func TestProfileSummary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	image := filepath.Join(repoRoot(), "web", "samples", "test-100-00000.png")
	code, _, stderr := runUniterWithin(t, workTimeout, "", uniterEnv(t, "UNITER_ORT_PROFILE_DIR="+dir), "match",
		"--bundle", filepath.Join(repoRoot(), defaultBundle), "--image", image, "--text", "a red circle", "--text", "two stars")
	if code != 0 {
		t.Fatalf("match: exit %d: %s", code, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "encoder-*.json"))
	if len(files) != 1 {
		t.Fatalf("encoder profiles %v, want one", files)
	}
	code, stdout, stderr := runUniterWithin(t, workTimeout, "", uniterEnv(t), "profile-summary", files[0])
	if code != 0 || !strings.Contains(stdout, "1 runs") || !strings.Contains(stdout, "MatMul") {
		t.Fatalf("profile-summary: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runUniterWithin(t, workTimeout, "", uniterEnv(t), "profile-summary", "--json", files[0])
	var got struct {
		Profile struct {
			Runs int `json:"runs"`
			Ops  []struct {
				Op    string `json:"op"`
				Calls int    `json:"calls"`
			} `json:"ops"`
		} `json:"profile"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || got.Profile.Runs != 1 || len(got.Profile.Ops) == 0 {
		t.Fatalf("profile-summary --json: exit %d: %s", code, stdout)
	}
	code, _, stderr = runUniterWithin(t, workTimeout, "", uniterEnv(t), "profile-summary", filepath.Join(dir, "missing.json"))
	if code == 0 || !strings.Contains(stderr, "missing.json") {
		t.Errorf("a missing file: exit %d, %s", code, stderr)
	}
}
