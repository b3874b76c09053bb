package tests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uniter-serve/uniter/internal/pgtest"
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
