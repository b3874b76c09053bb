package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/gallery"
)

// imageExts are the file extensions `uniter index` picks up in a folder.
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".webp": true, ".bmp": true}

// indexItem is one image to index.
type indexItem struct {
	path     string
	id       string
	metadata json.RawMessage
}

func indexCmd(load loader) *cobra.Command {
	var workers, batch int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "index DIR | LIST.jsonl | IMAGE",
		Short: "add a folder of images (or a JSONL list) to the gallery: detect, store features and thumbnails",
		Long: "Detects every image of DIR (recursively: .jpg .jpeg .png .gif .webp .bmp) or of a JSONL file\n" +
			"whose lines are {\"path\": \"...\", \"id\": \"...\", \"metadata\": {...}} (paths relative to the\n" +
			"file; id and metadata optional), or one IMAGE file, and stores it in the gallery of data_dir.\n\n" +
			"IDs: the JSONL's, or the file's path relative to DIR without its extension, with '/' written\n" +
			"':' and characters IDs cannot hold written '_' (images/00042.png → images:00042); folder\n" +
			"images get the metadata {\"path\": relative path}.\n\n" +
			"Idempotent and resumable: an image whose bytes (SHA-256) are already stored is skipped\n" +
			"without running the detector, so an interrupted run continues where it stopped. Images are\n" +
			"read and detected by --workers goroutines (graph runs are bounded by limits.max_concurrent)\n" +
			"and committed every --batch images (each commit is fsynced). A file that fails (not an\n" +
			"image, too large, an ID taken by other bytes) is reported and the others go on; the exit\n" +
			"status is then 1. The gallery must not be open in a running `uniter serve`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			items, err := listIndexItems(args[0])
			if err != nil {
				return err
			}
			return withGallery(cmd, load, func(_ *Config, _ *service, g *galleryService) error {
				return runIndex(cmd, g, items, workers, batch, quiet)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images read and detected at once")
	f.IntVar(&batch, "batch", 32, "images per transaction")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar on stderr")
	return cmd
}

// listIndexItems reads a JSONL list or walks a folder; IDs must be distinct.
func listIndexItems(arg string) ([]indexItem, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	var items []indexItem
	if st.IsDir() {
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !imageExts[strings.ToLower(filepath.Ext(path))] {
				return err
			}
			rel, err := filepath.Rel(arg, path)
			if err != nil {
				return err
			}
			meta, _ := json.Marshal(map[string]string{"path": filepath.ToSlash(rel)})
			items = append(items, indexItem{path: path, id: idFromPath(rel), metadata: meta})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("%s: no image files (%s)", arg, strings.Join(slices.Sorted(mapsKeys(imageExts)), " "))
		}
	} else if imageExts[strings.ToLower(filepath.Ext(arg))] {
		meta, _ := json.Marshal(map[string]string{"path": filepath.Base(arg)})
		items = []indexItem{{path: arg, id: idFromPath(filepath.Base(arg)), metadata: meta}}
	} else {
		if items, err = readIndexJSONL(arg); err != nil {
			return nil, err
		}
	}
	seen := map[string]string{}
	for _, it := range items {
		if err := gallery.ValidID(it.id); err != nil {
			return nil, fmt.Errorf("%s: %w", it.path, err)
		}
		if other, ok := seen[it.id]; ok {
			return nil, fmt.Errorf("%s and %s both get the id %q", other, it.path, it.id)
		}
		seen[it.id] = it.path
	}
	return items, nil
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// idFromPath is the ID of a file indexed from a folder: its relative path without the
// extension, sanitised (gallery.SanitizeID: '/' as ':').
func idFromPath(rel string) string {
	return gallery.SanitizeID(strings.TrimSuffix(filepath.ToSlash(rel), filepath.Ext(rel)))
}

func readIndexJSONL(path string) ([]indexItem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var items []indexItem
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var rec struct {
			Path     string          `json:"path"`
			ID       string          `json:"id"`
			Metadata json.RawMessage `json:"metadata"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s line %d: %w (want {\"path\", \"id\", \"metadata\"})", path, line, err)
		}
		if rec.Path == "" {
			return nil, fmt.Errorf("%s line %d: no path", path, line)
		}
		p := rec.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		if rec.ID == "" {
			rec.ID = idFromPath(rec.Path)
		}
		if _, err := gallery.ValidMetadata(rec.Metadata); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		items = append(items, indexItem{path: p, id: rec.ID, metadata: rec.Metadata})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no images listed", path)
	}
	return items, nil
}

// indexStats count what runIndex did.
type indexStats struct {
	total, added, skipped, failed int
	failures                      []string
}

// runIndex detects items on workers goroutines and commits them in batches from one writer.
func runIndex(cmd *cobra.Command, g *galleryService, items []indexItem, workers, batch int, quiet bool) error {
	// Ctrl-C stops feeding images; what was detected is committed before the command exits.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	workers, batch = max(workers, 1), max(batch, 1)
	type result struct {
		item     indexItem
		img      *gallery.Image
		existing string
		err      error
	}
	jobs := make(chan indexItem)
	results := make(chan result, workers)
	go func() { // feeds the workers; exits at the end or when ctx ends
		defer close(jobs)
		for _, it := range items {
			select {
			case jobs <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range jobs {
				raw, err := os.ReadFile(it.path)
				r := result{item: it, err: err}
				if err == nil {
					r.img, r.existing, r.err = g.service.PrepareImage(ctx, raw, it.id, it.metadata)
				}
				results <- r
			}
		})
	}
	go func() { wg.Wait(); close(results) }() // results closes once every worker is done

	st := indexStats{total: len(items)}
	start := time.Now()
	bar := newProgressBar(cmd.ErrOrStderr(), "index", len(items), quiet)
	var pending []*gallery.Image
	var pendingItems []indexItem
	lastCommit := time.Now()
	var commitErr error
	commit := func() {
		if len(pending) == 0 || commitErr != nil {
			return
		}
		// A commit outlives a Ctrl-C: what was detected is kept.
		res, err := g.store.PutImages(context.WithoutCancel(ctx), pending)
		if errors.Is(err, gallery.ErrConflict) || errors.Is(err, gallery.ErrInvalid) {
			// One bad image fails its whole batch: store them one by one to find it.
			res, err = nil, nil
			for i, img := range pending {
				r, err1 := g.store.PutImages(context.WithoutCancel(ctx), []*gallery.Image{img})
				if err1 != nil {
					st.fail(pendingItems[i].path, err1)
					continue
				}
				res = append(res, r[0])
			}
		}
		if err != nil {
			commitErr = err
			return
		}
		for _, r := range res {
			if r.Duplicate {
				st.skipped++
			} else {
				st.added++
			}
		}
		pending, pendingItems, lastCommit = pending[:0], pendingItems[:0], time.Now()
	}
	done := 0
	for r := range results {
		done++
		switch {
		case r.err != nil && ctx.Err() != nil:
			// interrupted: not a failure of this file
		case r.err != nil:
			st.fail(r.item.path, r.err)
		case r.img == nil:
			st.skipped++
		default:
			pending, pendingItems = append(pending, r.img), append(pendingItems, r.item)
		}
		if len(pending) >= batch || time.Since(lastCommit) > 5*time.Second {
			commit()
		}
		bar.update(done, fmt.Sprintf("%d new, %d already stored, %d failed", st.added+len(pending), st.skipped, st.failed))
	}
	commit()
	bar.finish()
	if commitErr != nil {
		return commitErr
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(cmd.OutOrStdout(), "%d images: %d added, %d already stored, %d failed in %.1fs (%.1f images/s)\n",
		st.total, st.added, st.skipped, st.failed, secs, float64(done)/max(secs, 1e-9))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted after %d of %d images (run again to continue): %w", done, st.total, err)
	}
	if st.failed > 0 {
		for _, f := range st.failures {
			fmt.Fprintln(cmd.ErrOrStderr(), "failed:", f)
		}
		if st.failed > len(st.failures) {
			fmt.Fprintf(cmd.ErrOrStderr(), "... and %d more\n", st.failed-len(st.failures))
		}
		return fmt.Errorf("%d of %d images failed", st.failed, st.total)
	}
	return nil
}

func (s *indexStats) fail(path string, err error) {
	s.failed++
	if len(s.failures) < 20 {
		s.failures = append(s.failures, fmt.Sprintf("%s: %v", path, err))
	}
}

// progressBar redraws one stderr line at most every 200 ms, and at the end.
type progressBar struct {
	w       io.Writer
	name    string
	total   int
	start   time.Time
	last    time.Time
	off     bool
	printed bool
}

func newProgressBar(w io.Writer, name string, total int, quiet bool) *progressBar {
	return &progressBar{w: w, name: name, total: total, start: time.Now(), off: quiet}
}

func (p *progressBar) update(done int, note string) {
	now := time.Now()
	if p.off || (done < p.total && now.Sub(p.last) < 200*time.Millisecond) {
		return
	}
	p.last, p.printed = now, true
	const width = 30
	frac := float64(done) / float64(max(p.total, 1))
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	if n < width {
		bar = bar[:n] + ">" + bar[n+1:]
	}
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-9)
	eta := float64(p.total-done) / max(rate, 1e-9)
	fmt.Fprintf(p.w, "\r%s [%s] %d/%d %.1f/s %s left, %s   ", p.name, bar, done, p.total, rate,
		(time.Duration(eta) * time.Second).Round(time.Second), note)
}

func (p *progressBar) finish() {
	if p.printed {
		fmt.Fprintln(p.w)
	}
}

func indexTextsCmd(load loader) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "index-texts FILE",
		Short: "add texts to the gallery's text collection (for image → text search)",
		Long: "FILE is JSONL, one {\"id\": \"...\", \"text\": \"...\", \"metadata\": {...}} per line (id and metadata\n" +
			"optional: the ID defaults to the first 16 hex digits of the text's SHA-256), or plain text with\n" +
			"one text per line. Texts are stored in transactions of gallery.max_text_batch; a text already\n" +
			"stored with the same id, text and metadata is skipped, one whose id holds another text fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			texts, err := readTexts(args[0])
			if err != nil {
				return err
			}
			return withGallery(cmd, load, func(cfg *Config, _ *service, g *galleryService) error {
				return addTexts(cmd, g, texts, cfg.Gallery.MaxTextBatch, quiet)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar on stderr")
	return cmd
}

func readTexts(path string) ([]*gallery.Text, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jsonl := strings.HasSuffix(strings.ToLower(path), ".jsonl") || strings.HasSuffix(strings.ToLower(path), ".json")
	var texts []*gallery.Text
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !jsonl {
			texts = append(texts, &gallery.Text{Text: line})
			continue
		}
		var rec struct {
			ID       string          `json:"id"`
			Text     string          `json:"text"`
			Metadata json.RawMessage `json:"metadata"`
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("%s line %d: %w (want {\"id\", \"text\", \"metadata\"})", path, i+1, err)
		}
		if rec.Text == "" {
			return nil, fmt.Errorf("%s line %d: no text", path, i+1)
		}
		texts = append(texts, &gallery.Text{ID: rec.ID, Text: rec.Text, Metadata: rec.Metadata})
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("%s: no texts", path)
	}
	return texts, nil
}

func addTexts(cmd *cobra.Command, g *galleryService, texts []*gallery.Text, batch int, quiet bool) error {
	bar := newProgressBar(cmd.ErrOrStderr(), "index-texts", len(texts), quiet)
	added, dup := 0, 0
	for lo := 0; lo < len(texts); lo += batch {
		hi := min(lo+batch, len(texts))
		res, err := g.service.AddTexts(cmd.Context(), texts[lo:hi])
		if err != nil {
			bar.finish()
			return fmt.Errorf("texts %d–%d (nothing of them stored; %d before them were): %w", lo+1, hi, lo, err)
		}
		for _, r := range res {
			if r.Duplicate {
				dup++
			} else {
				added++
			}
		}
		bar.update(hi, "")
	}
	bar.finish()
	fmt.Fprintf(cmd.OutOrStdout(), "%d texts: %d added, %d already stored\n", len(texts), added, dup)
	return nil
}
