package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// galleryImage is a distinct small PNG per seed: a noisy background with a few rectangles.
func galleryImage(t testing.TB, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 5))
	w, h := 48+rng.IntN(40), 48+rng.IntN(40)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		v := uint8(90 + rng.IntN(60))
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v, v, 255
	}
	for range 1 + rng.IntN(3) {
		c := color.NRGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
		x0, y0 := rng.IntN(w-12), rng.IntN(h-12)
		for y := y0; y < y0+10; y++ {
			for x := x0; x < x0+10; x++ {
				img.SetNRGBA(x, y, c)
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// openGallery opens a data directory no process holds and checks its consistency.
func openGalleryDir(t *testing.T, dir string) *gallery.Bolt {
	t.Helper()
	st, err := gallery.Open(dir, gallery.Options{})
	if err != nil {
		t.Fatalf("opening the gallery: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Errorf("gallery consistency check: %v", err)
	}
	return st
}

func (s *server) searchImages(t *testing.T, body map[string]any) api.SearchResponse {
	t.Helper()
	status, raw := s.postJSON(t, "/v1/search/images", body)
	if status != http.StatusOK {
		t.Fatalf("POST /v1/search/images: %d %s", status, raw)
	}
	var resp api.SearchResponse
	decodeStrict(t, raw, &resp)
	return resp
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t, exitTimeout); code != 0 {
		t.Fatalf("uniter serve exited with %d after SIGTERM", code)
	}
}

// TestGalleryIndexRestartSearch indexes a folder with the CLI (resumably: a second run skips
// everything), serves it, searches, deletes, restarts and finds the same gallery.
func TestGalleryIndexRestartSearch(t *testing.T) {
	t.Parallel()
	env := uniterEnv(t)
	work := t.TempDir()
	data := filepath.Join(work, "data")
	imgs := filepath.Join(work, "photos")
	if err := os.MkdirAll(filepath.Join(imgs, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		name := fmt.Sprintf("img-%d.png", i)
		if i >= 6 {
			name = filepath.Join("sub", name)
		}
		if err := os.WriteFile(filepath.Join(imgs, name), galleryImage(t, uint64(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(imgs, "notes.txt"), []byte("not an image, not listed"), 0o644)
	os.WriteFile(filepath.Join(imgs, "broken.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	bundle := testenv.FixtureBundle(t)

	code, stdout, stderr := runUniter(t, work, env, "index", "-q", "--bundle", bundle, "--data-dir", data, imgs)
	if code != 1 || !strings.Contains(stdout, "9 images: 8 added, 0 already stored, 1 failed") || !strings.Contains(stderr, "broken.png") {
		t.Fatalf("first index (one broken file): exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	os.Remove(filepath.Join(imgs, "broken.png"))
	code, stdout, stderr = runUniter(t, work, env, "index", "-q", "--bundle", bundle, "--data-dir", data, imgs)
	if code != 0 || !strings.Contains(stdout, "8 images: 0 added, 8 already stored, 0 failed") {
		t.Fatalf("second index: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	texts := `{"id": "t-red", "text": "a red circle", "metadata": {"lang": "en"}}
{"id": "t-green", "text": "two green squares"}
{"text": "there is a blue star"}
`
	os.WriteFile(filepath.Join(work, "texts.jsonl"), []byte(texts), 0o644)
	code, stdout, stderr = runUniter(t, work, env, "index-texts", "-q", "--bundle", bundle, "--data-dir", data, filepath.Join(work, "texts.jsonl"))
	if code != 0 || !strings.Contains(stdout, "3 texts: 3 added") {
		t.Fatalf("index-texts: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	s := startServe(t, env, "--data-dir", data)
	status, raw := s.do(t, http.MethodGet, "/v1/images?limit=100", "", nil)
	var list api.ImageListResponse
	decodeStrict(t, raw, &list)
	var ids []string
	for _, img := range list.Images {
		ids = append(ids, img.ID)
	}
	if status != 200 || strings.Join(ids, " ") != "img-0 img-1 img-2 img-3 img-4 img-5 sub:img-6 sub:img-7" {
		t.Fatalf("listing: %d %v", status, ids)
	}
	before := s.searchImages(t, map[string]any{"text": "a red circle left of a green square", "limit": 8})
	if len(before.Results) != 8 || before.GallerySize != 8 {
		t.Fatalf("search: %+v", before)
	}
	// The same bytes again through the API: a duplicate of the indexed image.
	status, raw = s.postJSON(t, "/v1/images", map[string]any{"image": map[string]string{"data": base64.StdEncoding.EncodeToString(galleryImage(t, 3))}})
	var up api.ImageUploadResponse
	decodeStrict(t, raw, &up)
	if status != 200 || !up.Duplicate || up.ID != "img-3" {
		t.Errorf("re-upload: %d %+v", status, up)
	}
	// The gallery is held: the CLI cannot open it meanwhile.
	code, _, stderr = runUniter(t, work, env, "index", "-q", "--bundle", bundle, "--data-dir", data, imgs)
	if code == 0 || !strings.Contains(stderr, "in use by another process") {
		t.Errorf("index while serving: exit %d, stderr %s", code, stderr)
	}
	if status, raw := s.do(t, http.MethodDelete, "/v1/images/img-3", "", nil); status != 200 {
		t.Fatalf("delete: %d %s", status, raw)
	}
	status, raw = s.do(t, http.MethodGet, "/v1/images/img-3", "", nil)
	wantError(t, "deleted image", status, raw, 404, "not_found")
	status, raw = s.postJSON(t, "/v1/search/texts", map[string]any{"image_id": "img-1", "limit": 3})
	var tr api.SearchResponse
	decodeStrict(t, raw, &tr)
	if status != 200 || len(tr.Results) != 3 || tr.GallerySize != 3 {
		t.Errorf("text search: %d %s", status, raw)
	}
	s.stop(t)

	// After a restart: the deletion holds and the ranking is the same, logits included.
	s = startServe(t, env, "--data-dir", data)
	after := s.searchImages(t, map[string]any{"text": "a red circle left of a green square", "limit": 8})
	var want []api.SearchHit
	for _, h := range before.Results {
		if h.ID != "img-3" {
			want = append(want, h)
		}
	}
	if len(after.Results) != 7 || after.GallerySize != 7 {
		t.Fatalf("after restart: %d results of %d", len(after.Results), after.GallerySize)
	}
	for i, h := range after.Results {
		if h.ID != want[i].ID || math.Abs(float64(h.Logit-want[i].Logit)) > 1e-5 {
			t.Errorf("after restart, hit %d: %s %v, before %s %v", i, h.ID, h.Logit, want[i].ID, want[i].Logit)
		}
	}
	status, raw = s.do(t, http.MethodGet, "/v1/texts/t-red", "", nil)
	if status != 200 || !strings.Contains(string(raw), `"lang":"en"`) {
		t.Errorf("text after restart: %d %s", status, raw)
	}
	s.stop(t)

	// The CLI searches the same gallery once the server has let it go: the same ranking.
	code, stdout, stderr = runUniter(t, work, env, "search", "--bundle", bundle, "--data-dir", data,
		"--text", "a red circle left of a green square", "--limit", "8", "--json")
	var cli api.SearchResponse
	if code != 0 {
		t.Fatalf("uniter search --json: exit %d\nstderr: %s", code, stderr)
	}
	decodeStrict(t, []byte(stdout), &cli)
	if len(cli.Results) != len(after.Results) || cli.GallerySize != 7 {
		t.Fatalf("uniter search: %d results of %d", len(cli.Results), cli.GallerySize)
	}
	for i, h := range cli.Results {
		if h.ID != after.Results[i].ID || math.Abs(float64(h.Logit-after.Results[i].Logit)) > 1e-5 {
			t.Errorf("uniter search, hit %d: %s %v, the server's %s %v", i, h.ID, h.Logit, after.Results[i].ID, after.Results[i].Logit)
		}
	}
	code, stdout, stderr = runUniter(t, work, env, "search", "--bundle", bundle, "--data-dir", data, "--image-id", "img-1", "--limit", "2")
	if code != 0 || !strings.Contains(stdout, "2 of 3 texts (exact, 3 scored)") || !strings.Contains(stdout, "TEXT") {
		t.Errorf("uniter search --image-id: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, _, stderr = runUniter(t, work, env, "search", "--bundle", bundle, "--data-dir", data, "--text", "a", "--image-id", "img-1")
	if code == 0 || !strings.Contains(stderr, "exactly one of --text, --image and --image-id") {
		t.Errorf("uniter search with two queries: exit %d, stderr %s", code, stderr)
	}
	openGalleryDir(t, data).Close()
}

// TestImportFeatures imports features written in UNITER's formats by Python (an .npz folder
// and an img_db LMDB) and compares what is stored with what UNITER's loader keeps.
func TestImportFeatures(t *testing.T) {
	t.Parallel()
	env := uniterEnv(t)
	work := t.TempDir()
	src := filepath.Join(work, "features")
	script := testenv.Path(t, "tests", "testdata", "make_img_db.py")
	py := exec.Command("/usr/bin/python3", script, src, "--dim", "64")
	if out, err := py.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s\n(it needs Debian's python3-numpy and python3-lmdb: `make pydeps`)", script, err, out)
	}
	var expected map[string]struct {
		NBB        int         `json:"nbb"`
		Regions    int         `json:"regions"`
		Features   [][]float64 `json:"features"`
		Locations  [][]float64 `json:"locations"`
		Conf       []float64   `json:"conf"`
		SoftLabels [][]float64 `json:"soft_labels"`
	}
	raw, err := os.ReadFile(filepath.Join(src, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(work, "data")
	bundle := testenv.FixtureBundle(t)
	run := func(path string) (int, string, string) {
		return runUniter(t, work, env, "import-features", "-q", "--bundle", bundle, "--data-dir", data, path)
	}

	// One record of the wrong dimension: refused by name, and nothing is written.
	code, stdout, stderr := run(filepath.Join(src, "npz_bad"))
	if code == 0 || !strings.Contains(stderr, "bad_dim.npz") || !strings.Contains(stderr, "dimension 32") {
		t.Fatalf("wrong dimension: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	st := openGalleryDir(t, data)
	if s, _ := st.Stats(galleryCtx); s.Images != 0 {
		t.Errorf("a refused import left %d images", s.Images)
	}
	st.Close()

	code, stdout, stderr = run(filepath.Join(src, "img_db", "all_compressed"))
	if code != 0 || !strings.Contains(stdout, "5 records from lmdb: 5 imported") {
		t.Fatalf("LMDB import: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	st = openGalleryDir(t, data)
	for name, want := range expected {
		id := strings.TrimSuffix(name, ".npz")
		img, err := st.Image(galleryCtx, id, gallery.PartRegions)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		r := img.Regions
		if r.Len() != want.NBB || r.Dim != 64 || r.ClassDim != 11 || img.Source != "import:lmdb" || img.HasThumbnail {
			t.Errorf("%s: %d regions of dim %d, %d classes, source %s; want %d of 64, 11", id, r.Len(), r.Dim, r.ClassDim, img.Source, want.NBB)
			continue
		}
		for i := range want.NBB {
			for j, v := range want.Features[i] {
				if r.Features[i*64+j] != float32(v) {
					t.Fatalf("%s feature [%d][%d]: %v, UNITER's loader %v", id, i, j, r.Features[i*64+j], v)
				}
			}
			for j, v := range want.Locations[i] {
				if math.Abs(float64(r.Locations[i][j])-v) > 1e-6 {
					t.Errorf("%s location [%d][%d]: %v, UNITER's loader %v", id, i, j, r.Locations[i][j], v)
				}
			}
			for j, v := range want.SoftLabels[i] {
				if r.ClassProbs[i*11+j] != float32(v) {
					t.Errorf("%s soft label [%d][%d]: %v, UNITER's loader %v", id, i, j, r.ClassProbs[i*11+j], v)
				}
			}
			if r.Confidence[i] != float32(want.Conf[i]) {
				t.Errorf("%s conf %d: %v, UNITER's loader %v", id, i, r.Confidence[i], want.Conf[i])
			}
		}
	}
	st.Close()

	// The same records as an .npz folder: all already stored.
	code, stdout, stderr = run(filepath.Join(src, "npz"))
	if code != 0 || !strings.Contains(stdout, "5 records from npz: 0 imported, 5 already stored") {
		t.Fatalf("npz import: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// Imported regions are searchable, with evidence on their normalised boxes.
	s := startServe(t, env, "--data-dir", data)
	res := s.searchImages(t, map[string]any{"text": "a red circle", "limit": 5, "evidence": true})
	if len(res.Results) != 5 {
		t.Fatalf("search over imports: %+v", res)
	}
	for _, h := range res.Results {
		if h.Evidence == nil || len(h.Evidence.Words) == 0 {
			t.Errorf("hit %s: no evidence", h.ID)
		}
	}
	status, raw := s.do(t, http.MethodGet, "/v1/images/flickr_0001/thumbnail", "", nil)
	wantError(t, "thumbnail of an import", status, raw, 404, "no_thumbnail")
	s.stop(t)
}

// TestGalleryConfig: UNITER_DATA_DIR places the gallery, and invalid gallery keys stop the
// process naming the key.
func TestGalleryConfig(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	data := filepath.Join(work, "elsewhere")
	os.WriteFile(filepath.Join(work, "one.png"), galleryImage(t, 7), 0o644)
	code, stdout, stderr := runUniter(t, work, uniterEnv(t, "UNITER_DATA_DIR="+data, "UNITER_BUNDLE="+testenv.FixtureBundle(t)),
		"index", "-q", filepath.Join(work, "one.png"))
	if code != 0 || !strings.Contains(stdout, "1 images: 1 added") {
		t.Fatalf("index of one file: exit %d\n%s\n%s", code, stdout, stderr)
	}
	os.WriteFile(filepath.Join(work, "two.png"), galleryImage(t, 8), 0o644)
	os.WriteFile(filepath.Join(work, "list.jsonl"), []byte(`{"path": "two.png", "id": "first", "metadata": {"k": 1}}`+"\n"), 0o644)
	code, stdout, stderr = runUniter(t, work, uniterEnv(t, "UNITER_DATA_DIR="+data, "UNITER_BUNDLE="+testenv.FixtureBundle(t)),
		"index", "-q", filepath.Join(work, "list.jsonl"))
	if code != 0 || !strings.Contains(stdout, "1 added") {
		t.Fatalf("index from a JSONL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	st := openGalleryDir(t, data)
	img, err := st.Image(galleryCtx, "first", 0)
	if err != nil || string(img.Metadata) != `{"k":1}` {
		t.Errorf("indexed from the JSONL into UNITER_DATA_DIR: %+v %v", img, err)
	}
	st.Close()
	for key, env := range map[string]string{"search.max_limit": "UNITER_SEARCH_MAX_LIMIT=0", "gallery.thumbnail_size": "UNITER_GALLERY_THUMBNAIL_SIZE=-3",
		"search.candidates": "UNITER_SEARCH_CANDIDATES=20000"} {
		code, _, stderr := runUniter(t, work, uniterEnv(t, env, "UNITER_BUNDLE="+testenv.FixtureBundle(t)), "index", "-q", work)
		if code == 0 || !strings.Contains(stderr, "config "+key) {
			t.Errorf("%s: exit %d, stderr %s (want an error naming %s)", env, code, stderr, key)
		}
	}
	code, _, stderr = runUniter(t, work, uniterEnv(t, "UNITER_BUNDLE="+testenv.FixtureBundle(t)), "index", "-q", "--data-dir=", work)
	if code == 0 || !strings.Contains(stderr, "config data_dir") {
		t.Errorf("--data-dir='': exit %d, stderr %s (want an error naming data_dir)", code, stderr)
	}
}
