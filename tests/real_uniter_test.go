package tests

// docs/serve-real-uniter.md, run as it is written: every ```sh block of the page, in order,
// unless the line before it is <!-- not run: REASON -->. The page's inputs are generated with
// random weights in the real shapes and under the real names (python3 -m
// uniter.fixtures.real_uniter: an official-layout UNITER-base checkpoint and config, a
// 28,996-line vocabulary, the LXMERT demo port's full-size bottom-up-attention detector with
// its config.yaml and vocabularies, an NLVR2 checkpoint, two photos), into the folder the page
// calls $DL. The blocks run from a folder laid out like the repository's root (models/ and
// bin/uniter linked in), so the page's commands and paths need no substitution:
//
//   - a block holding `bin/uniter serve` starts the service in the background, on a free port
//     (--addr added), and waits until it is ready;
//   - curl commands go to that service through the tests' HTTP client (each answer checked
//     against api/openapi.yaml), localhost:8080 being the page's address for it;
//   - any other block runs in bash -e -o pipefail.
//
// Then the answers must show what the page says: POST /v1/match 200 with 10 to 100 regions and
// finite scores, /v1/regions with the detector's labels and attributes, GET /v1/models with the
// detector (1,601 classes, 401 attributes, the description and domain) and the vocabulary
// named, POST /v1/nlvr2 from the fine-tuned model. The one departure from the real files is in
// the generated config.yaml: 30 post-NMS proposals instead of the port's 300, which keeps each
// detector pass to seconds.
//
// Like tests/butd_test.go it needs python3 with torch, torchvision, onnx, numpy and PIL
// ($UNITER_PYTHON names another interpreter): without them it skips, or fails under
// UNITER_BUTD_TEST=require. Two to five minutes on two cores and about 3.3 GB of temporary disk.

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

const (
	realDoc     = "docs/serve-real-uniter.md"
	realPostNMS = 30 // the generated config.yaml's RPN.POST_NMS_TOPK_TEST (the port's: 300)
	// realReadyTimeout bounds `uniter serve` from start to ready: it loads about 2 GB of graphs.
	realReadyTimeout = 5 * time.Minute
)

var notRunRe = regexp.MustCompile(`^<!--\s*not run:\s*(.*?)\s*-->$`)

// docStep is one ```sh block of the page.
type docStep struct {
	line   int    // of the opening fence
	text   string // the block
	notRun string // the reason, when the block is marked <!-- not run: REASON -->
}

// docSteps lists the page's sh blocks; a "not run" marker must give its reason.
func docSteps(t *testing.T, src string) []docStep {
	t.Helper()
	lines := strings.Split(src, "\n")
	var steps []docStep
	for _, b := range codeBlocks(src) {
		if b.lang != "sh" {
			continue
		}
		s := docStep{line: b.line, text: b.text}
		for j := b.line - 2; j >= 0; j-- { // the line before the fence, blank lines skipped
			prev := strings.TrimSpace(lines[j])
			if prev == "" {
				continue
			}
			if m := notRunRe.FindStringSubmatch(prev); m != nil {
				if m[1] == "" {
					t.Errorf("%s:%d: <!-- not run: … --> without a reason", realDoc, b.line)
				}
				s.notRun = m[1]
			}
			break
		}
		steps = append(steps, s)
	}
	return steps
}

// realServeRe is a block that starts the service.
var realServeRe = regexp.MustCompile(`(?m)^\s*bin/uniter serve\b`)

func TestServeRealUNITERDoc(t *testing.T) {
	py := butdPython(t)
	start := time.Now()
	repo := testenv.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(repo, realDoc))
	if err != nil {
		t.Fatal(err)
	}
	steps := docSteps(t, string(src))

	// The work folder: root/ is where the page's commands run (the repository's root as far as
	// they can tell), dl/ is $DL, bin/ holds the python3 the page's commands call.
	work := t.TempDir()
	root, dl, shim := filepath.Join(work, "root"), filepath.Join(work, "dl"), filepath.Join(work, "bin")
	for _, d := range []string{filepath.Join(root, "bin"), dl, shim} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(root, "models"):        filepath.Join(repo, "models"),
		filepath.Join(root, "bin", "uniter"): uniterBin,
		filepath.Join(shim, "python3"):       py,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	genStart := time.Now()
	runButdPython(t, py, "-m", "uniter.fixtures.real_uniter", "--out", dl, "--photos", root,
		"--post-nms-topk", fmt.Sprint(realPostNMS))
	t.Logf("generated the page's inputs in %.1fs", time.Since(genStart).Seconds())
	env := uniterEnv(t, "DL="+dl, "PATH="+shim+string(os.PathListSeparator)+os.Getenv("PATH"),
		"OMP_NUM_THREADS=2")

	var srv *server
	answers := map[string][][]byte{} // "METHOD /path" → each answer's body, in order
	ran := 0
	for _, s := range steps {
		where := fmt.Sprintf("%s:%d", realDoc, s.line)
		if s.notRun != "" {
			t.Logf("%s: not run (%s)", where, s.notRun)
			continue
		}
		ran++
		stepStart := time.Now()
		switch {
		case realServeRe.MatchString(s.text):
			if srv != nil {
				t.Fatalf("%s: a second `bin/uniter serve`", where)
			}
			srv = startDocServe(t, where, s.text, root, env)
			t.Logf("%s: uniter serve ready in %.1fs", where, time.Since(stepStart).Seconds())
		case strings.Contains(s.text, "curl "):
			if srv == nil {
				t.Fatalf("%s: curl before the page starts the service", where)
			}
			cmds, err := parseShell(s.text, root)
			if err != nil {
				t.Fatalf("%s: cannot run this block: %v", where, err)
			}
			for _, c := range cmds {
				path, raw := docCurl(t, srv, root, where, c)
				key := c.method + " " + path
				answers[key] = append(answers[key], raw)
				t.Logf("%s: curl %s: %d bytes in %.1fs", where, key, len(raw), time.Since(stepStart).Seconds())
			}
		default:
			out := runDocBash(t, where, s.text, root, env)
			t.Logf("%s: ran in %.1fs%s", where, time.Since(stepStart).Seconds(), out)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if ran == 0 {
		t.Fatalf("%s: no sh block ran", realDoc)
	}

	checkRealAnswers(t, answers)
	var size int64
	_ = filepath.WalkDir(work, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	t.Logf("%d blocks of %s ran in %.1fs; %.2f GB of temporary files", ran, realDoc,
		time.Since(start).Seconds(), float64(size)/1e9)
}

// runDocBash runs one block in bash from root; it returns the block's last output lines for
// the log (the progress lines the converters print).
func runDocBash(t *testing.T, where, text, root string, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", text)
	cmd.Dir = root
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s\n--- output:\n%s", where, err, text, out)
	}
	var kept []string // the commands' own lines, not the exporters' warnings
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "Warning") && !strings.HasPrefix(line, " ") {
			kept = append(kept, "\n  "+line)
		}
	}
	if len(kept) > 8 {
		kept = kept[len(kept)-8:]
	}
	return strings.Join(kept, "")
}

// startDocServe starts the block's `bin/uniter serve …` (one command) from root with --addr set
// to a free port, and waits until GET /readyz answers 200.
func startDocServe(t *testing.T, where, text, root string, env []string) *server {
	t.Helper()
	words, err := shellWords(strings.TrimSpace(strings.ReplaceAll(text, "\\\n", " ")))
	if err != nil || len(words) < 2 || words[0].text != "bin/uniter" || words[1].text != "serve" {
		t.Fatalf("%s: want one `bin/uniter serve …` command, got %q (%v)", where, text, err)
	}
	var args []string
	for _, w := range words[1:] {
		if w.op || strings.ContainsAny(w.text, "$*?[") && !w.quoted {
			t.Fatalf("%s: %q is not run here (one command, no variables or globs)", where, w.text)
		}
		args = append(args, w.text)
	}
	addr := freeAddr(t)
	s := &server{proc: startProc(t, root, env, append(args, "--addr", addr)...), addr: addr, url: "http://" + addr}
	deadline := time.Now().Add(realReadyTimeout)
	quick := &http.Client{Timeout: 2 * time.Second}
	for {
		if s.exited() {
			t.Fatalf("%s: uniter serve exited before it was ready (%v); stderr:\n%s", where, s.err, s.stderr.String())
		}
		if resp, err := quick.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /readyz not 200 within %v", where, realReadyTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// realClient is the tests' client (answers checked against api/openapi.yaml) with room for a
// detector pass of the full-size network on a busy machine.
var realClient = &http.Client{Timeout: 3 * time.Minute, Transport: client.Transport}

// docCurl sends one curl command of the page to s (files relative to dir) and returns the
// request's path and the answer, which must be 2xx.
func docCurl(t *testing.T, s *server, dir, where string, c curlCmd) (string, []byte) {
	t.Helper()
	req, err := curlRequest(c, s.url, dir)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	resp, err := realClient.Do(withSpecTest(req, t))
	if err != nil {
		t.Fatalf("%s: curl %s: %v", where, strings.Join(c.args, " "), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		t.Fatalf("%s: curl %s: %d %s, want 2xx", where, strings.Join(c.args, " "), resp.StatusCode, raw)
	}
	return req.URL.RequestURI(), raw
}

// checkRealAnswers checks that the page's requests were made and answered as it says.
func checkRealAnswers(t *testing.T, answers map[string][][]byte) {
	t.Helper()
	one := func(key string) []byte {
		t.Helper()
		if len(answers[key]) == 0 {
			t.Errorf("%s no longer sends %s: the test checks its answer", realDoc, key)
			return nil
		}
		return answers[key][0]
	}
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	regionsOK := func(what string, im *api.ImageInfo) {
		t.Helper()
		if im == nil || im.Regions < 10 || im.Regions > 100 || im.Proposals != realPostNMS {
			t.Errorf("%s: image %+v: want 10 to 100 regions from %d proposals", what, im, realPostNMS)
		}
	}

	if raw := one("POST /v1/match"); raw != nil {
		var m api.MatchResponse
		decodeStrict(t, raw, &m)
		regionsOK("POST /v1/match", m.Image)
		if m.Model != "uniter-base" || len(m.Results) == 0 {
			t.Errorf("POST /v1/match: model %q, %d results; want uniter-base and the page's texts", m.Model, len(m.Results))
		}
		for _, r := range m.Results {
			if !finite(float64(r.Score), float64(r.Logit), r.OTDistance) || r.Score < 0 || r.Score > 1 || r.Head != "itm" {
				t.Errorf("POST /v1/match: result %+v: want finite scores from the ITM head", r)
			}
		}
		t.Logf("POST /v1/match: %d regions of %d proposals; detector %.0f ms, encoder %.0f ms; scores %v",
			m.Image.Regions, m.Image.Proposals, m.Timings.Detector, m.Timings.Encoder, matchScores(m))
	}

	if raw := one("POST /v1/regions"); raw != nil {
		var r api.RegionsResponse
		decodeStrict(t, raw, &r)
		regionsOK("POST /v1/regions", &r.Image)
		for _, reg := range r.Regions {
			// The generated vocabularies' names: objectN, attributeN (the real ones: VG's).
			if len(reg.Labels) == 0 || !strings.HasPrefix(reg.Labels[0].Label, "object") ||
				len(reg.Attributes) == 0 || !strings.HasPrefix(reg.Attributes[0].Label, "attribute") {
				t.Errorf("POST /v1/regions: region %d: labels %v, attributes %v; want the detector's vocabularies",
					reg.Index, reg.Labels, reg.Attributes)
				break
			}
		}
	}

	if raw := one("GET /v1/models"); raw != nil {
		var resp api.ModelsResponse
		decodeStrict(t, raw, &resp)
		byName := map[string]api.ModelInfo{}
		for _, m := range resp.Models {
			byName[m.Name] = m
		}
		base, ok := byName["uniter-base"]
		switch d := base.Detector; {
		case !ok:
			t.Errorf("GET /v1/models: no uniter-base in %v", resp.Models)
		case d == nil:
			t.Errorf("GET /v1/models: uniter-base has no detector")
		case d.Classes != 1601 || d.Attributes != 401 || d.ShorterSide != 600 || d.LongerSideMax != 1000:
			t.Errorf("GET /v1/models: detector %+v: want 1601 classes, 401 attributes, 600/1000", *d)
		case !strings.Contains(d.Description, "bottom-up-attention") || !strings.Contains(d.Domain, "Visual Genome"):
			t.Errorf("GET /v1/models: detector description %q, domain %q: want the page's words", d.Description, d.Domain)
		}
		if v := base.Vocabulary; ok && (v.Size != 28996 || !v.Cased || v.Closed || !strings.Contains(v.Domain, "BERT")) {
			t.Errorf("GET /v1/models: uniter-base vocabulary %+v: want 28,996 cased tokens, open, the page's domain", v)
		}
		if ok && (base.Hidden != 768 || base.Layers != 12 || base.AttentionHeads != 12 || base.FeatureDim != 2048 ||
			base.LabelDim != 1601 || base.Task.Name != "pretrain" || !base.Heads["attention"]) {
			t.Errorf("GET /v1/models: uniter-base %d hidden, %d layers, %d heads, %d-d features, %d labels, task %q, heads %v",
				base.Hidden, base.Layers, base.AttentionHeads, base.FeatureDim, base.LabelDim, base.Task.Name, base.Heads)
		}
		if n, ok := byName["uniter-nlvr2"]; !ok || n.Task.Name != "nlvr2" || n.Task.Layout != "paired_attn" {
			t.Errorf("GET /v1/models: uniter-nlvr2 %+v (served: %v); want task nlvr2, layout paired_attn", n.Task, ok)
		}
	}

	if raw := one("POST /v1/nlvr2"); raw != nil {
		var n api.NLVR2Response
		decodeStrict(t, raw, &n)
		if n.Model != "uniter-nlvr2" || n.Layout != "paired_attn" || len(n.Images) != 2 ||
			!finite(float64(n.TrueProbability)) || n.TrueProbability < 0 || n.TrueProbability > 1 {
			t.Errorf("POST /v1/nlvr2: %s", raw)
		}
		for i, im := range n.Images {
			regionsOK(fmt.Sprintf("POST /v1/nlvr2 image %d", i), im)
		}
	}
}

func matchScores(m api.MatchResponse) []float32 {
	var out []float32
	for _, r := range m.Results {
		out = append(out, r.Score)
	}
	return out
}
