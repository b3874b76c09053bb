package tests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/internal/pgtest"
)

var galleryCtx = context.Background()

// TestGalleryCrashSafety uploads many images to a real `uniter serve` from several clients at
// once and SIGKILLs the server in the middle. Every upload the server had answered with
// success must be in the gallery afterwards, and the gallery must open cleanly (the store's
// consistency check) and serve again after a restart: with the bbolt file and with a
// PostgreSQL replica.
func TestGalleryCrashSafety(t *testing.T) {
	t.Parallel()
	t.Run("bbolt", func(t *testing.T) {
		t.Parallel()
		data := filepath.Join(t.TempDir(), "data")
		crashSafety(t, uniterEnv(t), []string{"--data-dir", data}, func(t *testing.T) gallery.Store { return openGalleryDir(t, data) })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := pgtest.Start(t)
		crashSafety(t, uniterEnv(t, "UNITER_GALLERY_BACKEND=postgres", "UNITER_GALLERY_DSN="+dsn), nil, func(t *testing.T) gallery.Store {
			st, err := gallery.OpenPostgres(galleryCtx, dsn, gallery.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Check(); err != nil {
				t.Errorf("gallery consistency check: %v", err)
			}
			return st
		})
	})
}

// crashSafety runs the uploads and the SIGKILL against `uniter serve args...` in env, then
// checks the store open gives.
func crashSafety(t *testing.T, env, args []string, open func(t *testing.T) gallery.Store) {
	s := startServe(t, env, args...)

	const clients, perClient, killAfter = 4, 60, 30
	var mu sync.Mutex
	acked := map[string]string{} // id → sha256 of every acknowledged upload
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			if err := s.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
				t.Errorf("kill: %v", err)
			}
			close(killed)
		})
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				select {
				case <-killed:
					return
				default:
				}
				id := fmt.Sprintf("c%d-%03d", c, i)
				body, _ := json.Marshal(map[string]any{"id": id, "metadata": map[string]int{"client": c, "i": i},
					"image": map[string]string{"data": base64.StdEncoding.EncodeToString(galleryImage(t, uint64(1000+c*perClient+i)))}})
				resp, err := hc.Post(s.url+"/v1/images", "application/json", bytes.NewReader(body))
				if err != nil {
					continue // the server died mid-request: not acknowledged
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusCreated {
					if err == nil {
						select {
						case <-killed:
						default:
							t.Errorf("upload %s: %d %s", id, resp.StatusCode, raw)
						}
					}
					continue
				}
				var up api.ImageUploadResponse
				if err := json.Unmarshal(raw, &up); err != nil || up.ID != id {
					t.Errorf("upload %s: answer %s", id, raw)
					continue
				}
				mu.Lock()
				acked[id] = up.SHA256
				n := len(acked)
				mu.Unlock()
				if n == killAfter {
					kill()
				}
			}
		})
	}
	wg.Wait()
	kill() // in case fewer uploads than killAfter succeeded
	s.wait(t, killTimeout)
	if len(acked) < killAfter {
		t.Fatalf("only %d uploads were acknowledged before the kill", len(acked))
	}
	if len(acked) == clients*perClient {
		t.Fatalf("every upload finished before the kill: the test killed nothing in flight")
	}

	// Straight from the store: consistent, and holding every acknowledged image.
	st := open(t)
	stats, err := st.Stats(galleryCtx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Images < len(acked) {
		t.Errorf("gallery holds %d images, %d were acknowledged", stats.Images, len(acked))
	}
	listed := 0
	for after := ""; ; {
		page, next, err := st.ListImages(galleryCtx, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(page)
		if next == "" {
			break
		}
		after = next
	}
	if listed != stats.Images {
		t.Errorf("listing finds %d images, the count says %d", listed, stats.Images)
	}
	for id, sum := range acked {
		img, err := st.Image(galleryCtx, id, gallery.PartRegions|gallery.PartThumbnail)
		if err != nil {
			t.Errorf("acknowledged image %s: %v", id, err)
			continue
		}
		if img.SHA256 != sum || img.Regions.Len() == 0 || len(img.Thumbnail) == 0 {
			t.Errorf("acknowledged image %s: sha %s (want %s), %d regions, %d thumbnail bytes", id, img.SHA256, sum, img.Regions.Len(), len(img.Thumbnail))
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d uploads acknowledged before SIGKILL, %d images in the gallery", len(acked), stats.Images)

	// And the service comes back on it.
	s = startServe(t, env, args...)
	for id := range acked {
		if status, raw := s.do(t, http.MethodGet, "/v1/images/"+id, "", nil); status != http.StatusOK {
			t.Errorf("GET %s after restart: %d %s", id, status, raw)
		}
	}
	res := s.searchImages(t, map[string]any{"text": "a red square", "limit": 5})
	if res.GallerySize != stats.Images || len(res.Results) != 5 {
		t.Errorf("search after restart: gallery %d (want %d), %d results", res.GallerySize, stats.Images, len(res.Results))
	}
	s.stop(t)
}
