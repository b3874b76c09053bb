package tests

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

func TestCLIMatch(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	regions := g.writeRegions(t, 0)
	texts := g.matchTexts()
	args := []string{"match", "--bundle", testenv.FixtureBundle(t), "--regions", regions}
	for _, text := range texts {
		args = append(args, "--text", text)
	}

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runUniter(t, "", uniterEnv(t), args...)
		if code != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		if len(lines) != 1+len(texts) {
			t.Fatalf("%d lines, want a header and %d rows:\n%s", len(lines), len(texts), stdout)
		}
		if h := strings.Fields(lines[0]); len(h) < 2 || h[0] != "SCORE" || h[len(h)-1] != "TEXT" {
			t.Errorf("header %q, want SCORE ... TEXT", lines[0])
		}
		for i, line := range lines[1:] {
			if !strings.HasSuffix(line, texts[i]) {
				t.Errorf("row %d %q does not end with text %q (request order)", i, line, texts[i])
			}
			score, err := strconv.ParseFloat(strings.Fields(line)[0], 64)
			if err != nil || score < 0 || score > 1 {
				t.Errorf("row %d %q: score %v (%v), want a number in [0, 1]", i, line, score, err)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(args, "--json")...)
		if code != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
		}
		var resp api.MatchResponse
		decodeStrict(t, []byte(stdout), &resp)
		if len(resp.Results) != len(texts) || resp.Model != "tiny-random" {
			t.Fatalf("%d results, model %q; want %d, tiny-random", len(resp.Results), resp.Model, len(texts))
		}
		for i, r := range resp.Results {
			if r.Text != texts[i] || !(r.Score >= 0 && r.Score <= 1) || r.Tokens < 3 {
				t.Errorf("results[%d] = %+v: want text %q, score in [0, 1], tokens >= 3", i, r, texts[i])
			}
		}
		// Pair 0's own caption scores as the PyTorch reference does.
		for _, b := range g.Batches {
			if len(b.Pairs) == 1 && b.Pairs[0] == 0 {
				if got, want := float64(resp.Results[2].Logit), b.ITMLogits[0][1]; math.Abs(got-want) > 1e-4 {
					t.Errorf("caption logit %v, golden %v", got, want)
				}
			}
		}
	})

	t.Run("default bundle from the repository root", func(t *testing.T) {
		t.Parallel()
		// The default is the trained Shapes World bundle (bundles/shapes-uniter), which takes images.
		code, stdout, stderr := runUniter(t, testenv.RepoRoot(t), uniterEnv(t),
			"match", "--image", testenv.Path(t, "testdata", "images", "shapes-300x140.png"), "--text", "a red square", "--json")
		if code != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
		}
		var resp api.MatchResponse
		decodeStrict(t, []byte(stdout), &resp)
		if len(resp.Results) != 1 || resp.Model != "shapes-uniter" {
			t.Errorf("%d results from model %q, want 1 from shapes-uniter", len(resp.Results), resp.Model)
		}
	})
}

func TestCLIAlign(t *testing.T) {
	t.Parallel()
	g := loadGolden(t)
	regions := g.writeRegions(t, 0)
	text := g.Pairs[0].Text
	args := []string{"align", "--bundle", testenv.FixtureBundle(t), "--regions", regions, "--text", text}

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(args, "--json")...)
		if code != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
		}
		var resp api.AlignResponse
		decodeStrict(t, []byte(stdout), &resp)
		checkAlignment(t, resp, text, len(g.Pairs[0].Boxes), 3)
	})

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(args, "--top", "2")...)
		if code != 0 {
			t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		words := strings.Fields(text)
		// "score ... model tiny-random", a blank line, the header, one row per word.
		if len(lines) != 3+len(words) || !strings.HasPrefix(lines[0], "score ") || !strings.HasPrefix(lines[2], "WORD") {
			t.Fatalf("want a score line, a blank line, a WORD header and %d rows; got:\n%s", len(words), stdout)
		}
		for i, line := range lines[3:] {
			if f := strings.Fields(line); len(f) == 0 || f[0] != words[i] {
				t.Errorf("row %d %q, want word %q first", i, line, words[i])
			}
			if n := strings.Count(line, "#"); n < 1 || n > 2 {
				t.Errorf("row %d %q: %d regions listed, want 1..2 (--top 2)", i, line, n)
			}
		}
	})

	// --by: the table lists the attention alignment by default (the fixture has the graph) and
	// the transport plan's with --by ot; each row's best region is the JSON's.
	t.Run("by", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(args, "--json")...)
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
		}
		var resp api.AlignResponse
		decodeStrict(t, []byte(stdout), &resp)
		if resp.Attention == nil {
			t.Fatal("--json without the attention alignment")
		}
		for _, c := range []struct {
			flags []string
			by    string
			want  []api.WordRegions
		}{{nil, "attention", resp.Attention.WordRegions}, {[]string{"--by", "ot"}, "ot", resp.WordRegions}} {
			code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(append(args, "--top", "1"), c.flags...)...)
			if code != 0 {
				t.Fatalf("%v: exit code %d; stderr:\n%s", c.flags, code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
			if !strings.HasSuffix(lines[0], "aligned by "+c.by) || len(lines) != 3+len(c.want) {
				t.Fatalf("%v: want the score line to end \"aligned by %s\" and %d rows; got:\n%s", c.flags, c.by, len(c.want), stdout)
			}
			for i, w := range c.want {
				if want := fmt.Sprintf("#%d ", w.Regions[0].Region); !strings.Contains(lines[3+i], want) {
					t.Errorf("%v row %q: want region %s (the JSON's best for %q)", c.flags, lines[3+i], want, w.Text)
				}
			}
		}
		code, _, stderr = runUniter(t, "", uniterEnv(t), append(args, "--by", "gradcam")...)
		if code == 0 || !strings.Contains(stderr, "--by") || !strings.Contains(stderr, "gradcam") {
			t.Errorf("--by gradcam: exit %d, stderr %s; want an error naming the flag and value", code, stderr)
		}
	})
}

func TestCLIBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bundle := testenv.FixtureBundle(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"malformed regions file", []string{"match", "--regions", write("truncated.json", `{"width": 10,`), "--text", "a"},
			[]string{"regions"}},
		{"missing regions file", []string{"match", "--regions", filepath.Join(dir, "absent.json"), "--text", "a"},
			[]string{"absent.json"}},
		{"unknown field in regions", []string{"match", "--regions",
			write("unknown.json", `{"width": 10, "height": 10, "boxes": [], "features": [], "scores": []}`), "--text", "a"},
			[]string{"regions", "scores"}},
		{"wrong feature dimension", []string{"align", "--regions",
			write("dim.json", `{"width": 10, "height": 10, "boxes": [[0, 0, 5, 5]], "features": [[1, 2, 3]]}`), "--text", "a"},
			[]string{"regions", "64"}},
		{"box of three numbers", []string{"align", "--regions",
			write("box.json", `{"width": 10, "height": 10, "boxes": [[0, 0, 5]], "features": [[1]]}`), "--text", "a"},
			[]string{"regions.boxes[0]"}},
		{"no text", []string{"match", "--regions", write("ok.json", `{"width": 10, "height": 10, "boxes": [], "features": []}`)},
			[]string{"text"}},
		{"unknown command", []string{"matchh"}, []string{"matchh"}},
		{"eval --reference with --task", []string{"eval", "--split", "test-100", "--task", "qa", "--reference", bundle},
			[]string{"--reference", "--task"}},
		{"eval --reference without retrieval", []string{"eval", "--split", "test-100", "--no-retrieval", "--reference", bundle},
			[]string{"--reference", "--no-retrieval"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runUniter(t, "", uniterEnv(t), append(c.args, "--bundle", bundle)...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stdout:\n%s", stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if !strings.HasPrefix(stderr, "uniter: ") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("want one `uniter: ...` error, no panic; stderr:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty on error:\n%s", stdout)
			}
		})
	}
}
