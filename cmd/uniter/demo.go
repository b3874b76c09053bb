package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/ingest"
	"github.com/uniter-serve/uniter/offline"
	"github.com/uniter-serve/uniter/shapes"
)

// demoSplit is the Shapes World split a demo gallery holds.
const demoSplit = "test-100"

// fillDemo fills an empty gallery with Shapes World's test-100 (gallery.demo): generated into
// DATA_DIR/demo/test-100 if missing, its 100 images indexed and its true captions stored as
// texts, so that search and the page work without set-up. It runs in the background of a
// serving process and logs its progress, which it also records in progress (GET /v1/gallery
// and the page show it); a gallery that holds anything is left alone. It returns when done,
// failed or ctx ends.
func fillDemo(ctx context.Context, cfg *Config, g *galleryService, progress *api.DemoProgress, log *slog.Logger) {
	st, err := g.service.Store().Stats(ctx)
	if err != nil {
		log.Warn("demo gallery: cannot read the gallery", "err", err)
		return
	}
	if st.Images > 0 || st.Texts > 0 {
		return
	}
	status := api.DemoStatus{State: api.DemoGenerating, Split: demoSplit}
	progress.Set(status)
	fail := func(what string, err error) {
		log.Warn("demo gallery: "+what, "err", err)
		status.State, status.Error = api.DemoFailed, what+": "+err.Error()
		progress.Set(status)
	}
	dir := filepath.Join(cfg.DataDir, "demo", demoSplit)
	start := time.Now()
	log.Info("demo gallery: the gallery is empty; filling it with Shapes World "+demoSplit+" in the background (gallery.demo: false turns this off)", "dir", dir)
	if _, err := offline.EnsureSplit(ctx, dir, demoSplit); err != nil {
		fail("generating the split", err)
		return
	}
	items, err := ingest.List(filepath.Join(dir, "images"))
	if err != nil {
		fail("listing the images", err)
		return
	}
	status.State, status.Total = api.DemoIndexing, len(items)
	progress.Set(status)
	next := 0
	st2, err := ingest.Images(ctx, g.service, items, ingest.ImageOptions{Workers: 1, Batch: 10,
		Progress: func(done, total int, _ string) {
			status.Images, status.Total = done, total
			progress.Set(status)
			if done >= next || done == total {
				log.Info("demo gallery: indexing", "images", done, "of", total)
				next = done + total/4
			}
		}})
	if err != nil {
		fail("indexing", err)
		return
	}
	status.State = api.DemoTexts
	progress.Set(status)
	recs, err := shapes.ReadRecords(dir)
	if err != nil {
		fail("reading the captions", err)
		return
	}
	var texts []*gallery.Text
	for _, r := range recs {
		for i, c := range r.Captions {
			texts = append(texts, &gallery.Text{ID: fmt.Sprintf("demo-%d-%d", r.ID, i), Text: c.Text})
		}
	}
	added, _, err := ingest.Texts(ctx, g.service, texts, nil)
	if err != nil {
		fail("storing the captions", err)
		return
	}
	status.State = api.DemoReady
	progress.Set(status)
	log.Info("demo gallery: ready", "images", st2.Added, "texts", added, "seconds", int(time.Since(start).Seconds()))
}
