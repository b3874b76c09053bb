package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/internal/pgtest"
	"github.com/uniter-serve/uniter/internal/testenv"
)

// TestReplicasShareAPostgresGallery: two `uniter serve` processes on one PostgreSQL database
// are stateless replicas: an image added through one is listed and searched through the other
// at once, a text added through the second is read through the first, and the same bytes added
// through both at the same moment are stored once.
func TestReplicasShareAPostgresGallery(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Start(t)
	env := uniterEnv(t, "UNITER_GALLERY_BACKEND=postgres", "UNITER_GALLERY_DSN="+dsn)
	a, b := startServe(t, env), startServe(t, env)

	img := func(seed uint64) string {
		return base64.StdEncoding.EncodeToString(galleryImage(t, seed))
	}
	if status, raw, _ := a.call(t, "POST", "/v1/images", nil, fmt.Sprintf(`{"id": "from-a", "image": {"data": %q}}`, img(1))); status != 201 {
		t.Fatalf("adding through replica a: %d %s", status, raw)
	}
	if status, raw, _ := b.call(t, "GET", "/v1/images/from-a", nil, ""); status != 200 {
		t.Fatalf("reading through replica b: %d %s", status, raw)
	}
	status, raw, _ := b.call(t, "POST", "/v1/search/images", nil, `{"text": "a red square"}`)
	var found struct {
		Results []struct {
			ID string `json:"id"`
		} `json:"results"`
		GallerySize int `json:"gallery_size"`
	}
	if err := json.Unmarshal(raw, &found); status != 200 || err != nil || found.GallerySize != 1 || len(found.Results) != 1 || found.Results[0].ID != "from-a" {
		t.Fatalf("searching through replica b: %d %s", status, raw)
	}
	if status, raw, _ := b.call(t, "POST", "/v1/texts", nil, `{"texts": [{"id": "t1", "text": "a red square"}]}`); status != 200 {
		t.Fatalf("adding a text through replica b: %d %s", status, raw)
	}
	if status, raw, _ := a.call(t, "GET", "/v1/texts/t1", nil, ""); status != 200 {
		t.Fatalf("reading the text through replica a: %d %s", status, raw)
	}

	// The same new bytes through both replicas at once, under different ids: one is stored,
	// the other answer names it as a duplicate.
	same := img(2)
	var wg sync.WaitGroup
	answers := make([]string, 2)
	codes := make([]int, 2)
	for i, s := range []*server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, raw, _ := s.call(t, "POST", "/v1/images", nil, fmt.Sprintf(`{"id": "race-%d", "image": {"data": %q}}`, i, same))
			codes[i], answers[i] = status, string(raw)
		}()
	}
	wg.Wait()
	if !(codes[0] == 201 && codes[1] == 200 || codes[0] == 200 && codes[1] == 201) || !strings.Contains(answers[0]+answers[1], `"duplicate":true`) {
		t.Fatalf("the same image through both replicas: %d %s / %d %s; want one 201 and one 200 duplicate", codes[0], answers[0], codes[1], answers[1])
	}
	status, raw, _ = a.call(t, "GET", "/v1/images", nil, "")
	if status != 200 || strings.Count(string(raw), `"id":"race-`) != 1 {
		t.Fatalf("listing after the race: %d %s; want one race- image", status, raw)
	}
	for _, s := range []*server{a, b} {
		if strings.Contains(s.stderr.String(), dsn) {
			t.Error("the DSN appears in the log")
		}
		s.stop(t)
	}
}

// TestIndexersShareAWorkList: two `uniter index` processes on one folder and one PostgreSQL
// gallery at once add every image exactly once between them, each image either added by one
// or found stored or held by the other; a run after them finds everything stored.
func TestIndexersShareAWorkList(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Start(t)
	env := uniterEnv(t, "UNITER_GALLERY_BACKEND=postgres", "UNITER_GALLERY_DSN="+dsn)
	work := t.TempDir()
	imgs := filepath.Join(work, "photos")
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if err := os.WriteFile(filepath.Join(imgs, fmt.Sprintf("img-%02d.png", i)), galleryImage(t, uint64(500+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundle := testenv.FixtureBundle(t)
	line := regexp.MustCompile(`(\d+) images: (\d+) added, (\d+) already stored, (\d+) failed`)
	elsewhere := regexp.MustCompile(`(\d+) images were being indexed by another indexer`)
	type run struct {
		code           int
		stdout, stderr string
	}
	runs := make([]run, 2)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			code, stdout, stderr := runUniter(t, work, env, "index", "-q", "--workers", "2", "--bundle", bundle, imgs)
			runs[i] = run{code, stdout, stderr}
		})
	}
	wg.Wait()
	added := 0
	for i, r := range runs {
		m := line.FindStringSubmatch(r.stdout)
		if r.code != 0 || m == nil {
			t.Fatalf("indexer %d: exit %d\nstdout: %s\nstderr: %s", i, r.code, r.stdout, r.stderr)
		}
		a, stored, failed := atoi(m[2]), atoi(m[3]), atoi(m[4])
		other := 0
		if e := elsewhere.FindStringSubmatch(r.stdout); e != nil {
			other = atoi(e[1])
		}
		if a+stored+failed+other != n || failed != 0 {
			t.Errorf("indexer %d: %d added + %d stored + %d failed + %d with the other ≠ %d\n%s", i, a, stored, failed, other, n, r.stdout)
		}
		added += a
		t.Logf("indexer %d: %s", i, strings.TrimSpace(r.stdout))
	}
	if added != n {
		t.Errorf("the two indexers added %d images between them, want %d", added, n)
	}
	code, stdout, stderr := runUniter(t, work, env, "index", "-q", "--bundle", bundle, imgs)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d images: 0 added, %d already stored, 0 failed", n, n)) {
		t.Fatalf("a third run: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestServeFollowsADatabaseRestart: when the PostgreSQL server goes away, `uniter serve` stays
// up but answers /readyz 503 and gallery requests 503 gallery_unavailable; when the server
// comes back, both recover without a restart of uniter and nothing stored is lost.
func TestServeFollowsADatabaseRestart(t *testing.T) {
	t.Parallel()
	db := pgtest.StartPrivate(t)
	s := startServe(t, uniterEnv(t, "UNITER_GALLERY_BACKEND=postgres", "UNITER_GALLERY_DSN="+db.DSN()))
	body := fmt.Sprintf(`{"id": "kept", "image": {"data": %q}}`, base64.StdEncoding.EncodeToString(galleryImage(t, 7)))
	if status, raw, _ := s.call(t, "POST", "/v1/images", nil, body); status != 201 {
		t.Fatalf("adding an image: %d %s", status, raw)
	}

	db.Stop(t)
	if status, raw, _ := s.call(t, "GET", "/readyz", nil, ""); status != 503 {
		t.Errorf("readyz with the database down: %d %s, want 503", status, raw)
	}
	status, raw, _ := s.call(t, "GET", "/v1/images/kept", nil, "")
	wantError(t, "a gallery request with the database down", status, raw, 503, "gallery_unavailable")
	if status, _, _ := s.call(t, "GET", "/healthz", nil, ""); status != 200 || s.exited() {
		t.Fatalf("the process did not stay up (healthz %d)", status)
	}

	db.Start(t)
	if !waitFor(15*time.Second, func() bool { status, _, _ := s.call(t, "GET", "/readyz", nil, ""); return status == 200 }) {
		t.Fatal("readyz did not recover within 15 s of the database's return")
	}
	if status, raw, _ := s.call(t, "GET", "/v1/images/kept", nil, ""); status != 200 {
		t.Fatalf("the stored image after the restart: %d %s", status, raw)
	}
	s.stop(t)
}
