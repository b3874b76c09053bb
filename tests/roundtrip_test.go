package tests

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// roundTripTol is the padded-batch tolerance of the other equality tests
// (pipeline/batcher_test.go): the same pairs scored in another batch agree within it.
const roundTripTol = 1e-5

// shapesImage is one image of a Shapes World split and its captions (annotations.jsonl).
type shapesImage struct {
	File          string                  `json:"file"`
	Captions      []struct{ Text string } `json:"captions"`
	FalseCaptions []struct{ Text string } `json:"false_captions"`
}

// synthSplit generates a Shapes World split with `uniter synth` (deterministic: the same bytes
// every time) and reads its annotations.
func synthSplit(t *testing.T, split string) (string, []shapesImage) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), split)
	if code, _, stderr := runUniterWithin(t, workTimeout, "", uniterEnv(t), "synth", "--split", split, "--out", dir); code != 0 {
		t.Fatalf("uniter synth --split %s: exit %d\n%s", split, code, stderr)
	}
	f, err := os.Open(filepath.Join(dir, "annotations.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var images []shapesImage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var im shapesImage
		if err := json.Unmarshal(sc.Bytes(), &im); err != nil {
			t.Fatal(err)
		}
		images = append(images, im)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return dir, images
}

// TestRegionsRoundTripTest100: the service accepts its own output. On every image of Shapes
// World test-100, served by the default bundle, the answer of POST /v1/regions (boxes and
// float32 features) posted back to POST /v1/match as regions is answered 200, with the scores
// /v1/match gives for the image itself, for the image's true and false captions, within the
// padded-batch tolerance. The default detector's zero-width and zero-height border slivers are
// among the boxes sent back (counted, so the test cannot pass without them).
func TestRegionsRoundTripTest100(t *testing.T) {
	t.Parallel()
	dir, images := synthSplit(t, "test-100")
	if len(images) != 100 {
		t.Fatalf("test-100 has %d images, want 100", len(images))
	}
	addr := freeAddr(t)
	s := startServeAt(t, addr, uniterEnv(t), "serve", "--addr", addr, "--bundle", testenv.Path(t, defaultBundle))
	boxes, slivers, pairs := 0, 0, 0
	worst := 0.0
	for i, im := range images {
		raw, err := os.ReadFile(filepath.Join(dir, im.File))
		if err != nil {
			t.Fatal(err)
		}
		image := &api.ImageJSON{Data: base64.StdEncoding.EncodeToString(raw)}
		status, body := s.postJSON(t, "/v1/regions", api.RegionsRequest{Image: image, Features: true, FeatureDType: api.FeaturesFloat32})
		if status != http.StatusOK {
			t.Fatalf("image %d: POST /v1/regions: %d %s", i, status, body)
		}
		var det api.RegionsResponse
		decodeStrict(t, body, &det)
		regions, err := det.RegionsInput()
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		for _, b := range regions.Boxes {
			boxes++
			if b[2] == b[0] || b[3] == b[1] {
				slivers++
			}
		}
		var texts []string
		for _, c := range append(im.Captions, im.FalseCaptions...) {
			texts = append(texts, c.Text)
		}
		status, body = s.postJSON(t, "/v1/match", api.MatchRequest{Regions: regions, Texts: texts})
		if status != http.StatusOK {
			t.Fatalf("image %d: /v1/regions' answer posted back to /v1/match: %d %s", i, status, body)
		}
		var byRegions, byImage api.MatchResponse
		decodeStrict(t, body, &byRegions)
		status, body = s.postJSON(t, "/v1/match", api.MatchRequest{Image: image, Texts: texts})
		if status != http.StatusOK {
			t.Fatalf("image %d: /v1/match with the image: %d %s", i, status, body)
		}
		decodeStrict(t, body, &byImage)
		if !byImage.Image.CacheHit {
			t.Errorf("image %d: the detection was not cached", i)
		}
		for k := range texts {
			g, w := byRegions.Results[k], byImage.Results[k]
			d := max(math.Abs(float64(g.Score-w.Score)), math.Abs(float64(g.Logit-w.Logit)), math.Abs(g.OTDistance-w.OTDistance))
			worst = max(worst, d)
			if d > roundTripTol || g.Text != w.Text || g.Tokens != w.Tokens {
				t.Errorf("image %d, %q: regions give %+v, the image %+v", i, texts[k], g, w)
			}
			pairs++
		}
	}
	t.Logf("%d images, %d pairs: regions input scores as the image within %.3g; %d of %d boxes have zero width or height", len(images), pairs, worst, slivers, boxes)
	if slivers == 0 {
		t.Errorf("no zero-width or zero-height box in %d: the round trip did not exercise them", boxes)
	}
}

// TestDefaultModelDomain: the default bundle says what it knows, and flags words outside its
// closed Shapes World vocabulary: GET /v1/models, /v1/match through the API, and the command
// line (uniter regions, uniter match, and regions written with --regions-out read back by
// match --regions).
func TestDefaultModelDomain(t *testing.T) {
	t.Parallel()
	bundle := testenv.Path(t, defaultBundle)
	imagePath := testenv.Path(t, "web", "samples", "test-100-00000.png")
	raw, err := os.ReadFile(imagePath)
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"a yellow circle above a white circle", "a rose above a white circle", "a yellow circle above a white circle with 10 petals"}
	want := [][]api.UnknownWord{nil, {{Word: "rose", Start: 2, End: 6}},
		{{Word: "with", Start: 37, End: 41}, {Word: "10", Start: 42, End: 44}, {Word: "petals", Start: 45, End: 51}}}

	t.Run("api", func(t *testing.T) {
		t.Parallel()
		addr := freeAddr(t)
		s := startServeAt(t, addr, uniterEnv(t), "serve", "--addr", addr, "--bundle", bundle)
		m := s.modelInfo(t)
		if v := m.Vocabulary; v.Size != 181 || v.Cased || !v.Closed || !strings.Contains(v.Domain, "Shapes World") {
			t.Errorf("vocabulary %+v: want 181 tokens, uncased, closed, a Shapes World domain", v)
		}
		if d := m.Detector; d == nil || !strings.Contains(d.Description, "Shapes World") || !strings.Contains(d.Domain, "Shapes World only") ||
			!strings.Contains(d.Domain, "photographs are outside") || d.Classes != 9 || d.Attributes != 9 {
			t.Errorf("detector %+v: want its Shapes World description and domain, 9 classes, 9 attributes", d)
		}
		status, body := s.postJSON(t, "/v1/match", api.MatchRequest{Image: &api.ImageJSON{Data: base64.StdEncoding.EncodeToString(raw)}, Texts: texts})
		if status != http.StatusOK {
			t.Fatalf("POST /v1/match: %d %s", status, body)
		}
		var resp api.MatchResponse
		decodeStrict(t, body, &resp)
		for i, r := range resp.Results {
			if !reflect.DeepEqual(r.UnknownWords, want[i]) {
				t.Errorf("%q: unknown_words %+v, want %+v", texts[i], r.UnknownWords, want[i])
			}
		}
		if strings.Count(string(body), `"unknown_words"`) != 2 {
			t.Errorf("unknown_words should appear for the two texts with unknown words only: %s", body)
		}
		status, body = s.postJSON(t, "/v1/align", api.AlignRequest{Image: &api.ImageJSON{Data: base64.StdEncoding.EncodeToString(raw)}, Text: texts[1]})
		var a api.AlignResponse
		if decodeStrict(t, body, &a); status != http.StatusOK || !reflect.DeepEqual(a.UnknownWords, want[1]) {
			t.Errorf("POST /v1/align: %d, unknown_words %+v, want %+v", status, a.UnknownWords, want[1])
		}
	})

	t.Run("cli", func(t *testing.T) {
		t.Parallel()
		env := uniterEnv(t)
		regionsFile := filepath.Join(t.TempDir(), "regions.json")
		code, stdout, stderr := runUniter(t, "", env, "regions", "--bundle", bundle, imagePath, "--regions-out", regionsFile)
		if code != 0 {
			t.Fatalf("uniter regions: exit %d\n%s", code, stderr)
		}
		if !strings.Contains(stdout, "detector: Faster R-CNN trained on Shapes World only") || !strings.Contains(stdout, "domain: Shapes World only") ||
			!strings.Contains(stdout, "vocabulary: 181 tokens, uncased, closed; domain: Shapes World captions only") {
			t.Errorf("uniter regions does not say what the detector and the vocabulary know:\n%s", stdout)
		}
		args := []string{"match", "--bundle", bundle}
		for _, text := range texts {
			args = append(args, "--text", text)
		}
		code, stdout, stderr = runUniter(t, "", env, append(args, "--image", imagePath)...)
		if code != 0 {
			t.Fatalf("uniter match: exit %d\n%s", code, stderr)
		}
		lines := strings.Split(stdout, "\n")
		if len(lines) < 4 || strings.Contains(lines[1], "unknown") || !strings.Contains(lines[2], `a rose above a white circle (unknown words: "rose" (2–6))`) ||
			!strings.Contains(lines[3], `(unknown words: "with" (37–41), "10" (42–44), "petals" (45–51))`) ||
			!strings.Contains(stdout, "unknown words are outside the closed vocabulary of model shapes-uniter") {
			t.Errorf("uniter match does not flag the unknown words per text:\n%s", stdout)
		}
		// The regions written by --regions-out score as the image.
		var byImage, byRegions api.MatchResponse
		for _, c := range []struct {
			in   []string
			resp *api.MatchResponse
		}{{[]string{"--image", imagePath}, &byImage}, {[]string{"--regions", regionsFile}, &byRegions}} {
			code, stdout, stderr = runUniter(t, "", env, append(append(args, c.in...), "--json")...)
			if code != 0 {
				t.Fatalf("uniter match %v: exit %d\n%s", c.in, code, stderr)
			}
			decodeStrict(t, []byte(stdout), c.resp)
		}
		for i := range texts {
			g, w := byRegions.Results[i], byImage.Results[i]
			if math.Abs(float64(g.Logit-w.Logit)) > roundTripTol || math.Abs(g.OTDistance-w.OTDistance) > roundTripTol || !reflect.DeepEqual(g.UnknownWords, want[i]) {
				t.Errorf("%q: --regions-out's regions give %+v, the image %+v", texts[i], g, w)
			}
		}
	})
}
