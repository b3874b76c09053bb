// Package ingest adds files to the gallery in bulk: folders and lists of images (detected
// through the retrieval service, committed in batches, resumable) and text files.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/retrieval"
)

// ImageExts are the file extensions List picks up in a folder.
var ImageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".webp": true, ".bmp": true}

// Item is one image file to add, with the ID and metadata it gets.
type Item struct {
	Path     string
	ID       string
	Metadata json.RawMessage
}

// List is what to add from arg: every image file of a folder (recursively; IDs are the
// relative paths without extension, '/' written ':', metadata {"path": relative path}), one
// image file, or a JSONL file of {"path", "id", "metadata"} (paths relative to the file; id
// and metadata optional). IDs must be valid and distinct.
func List(arg string) ([]Item, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	var items []Item
	if st.IsDir() {
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !ImageExts[strings.ToLower(filepath.Ext(path))] {
				return err
			}
			rel, err := filepath.Rel(arg, path)
			if err != nil {
				return err
			}
			meta, _ := json.Marshal(map[string]string{"path": filepath.ToSlash(rel)})
			items = append(items, Item{Path: path, ID: idFromPath(rel), Metadata: meta})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("%s: no image files (%s)", arg, strings.Join(slices.Sorted(mapsKeys(ImageExts)), " "))
		}
	} else if ImageExts[strings.ToLower(filepath.Ext(arg))] {
		meta, _ := json.Marshal(map[string]string{"path": filepath.Base(arg)})
		items = []Item{{Path: arg, ID: idFromPath(filepath.Base(arg)), Metadata: meta}}
	} else {
		if items, err = readList(arg); err != nil {
			return nil, err
		}
	}
	seen := map[string]string{}
	for _, it := range items {
		if err := gallery.ValidID(it.ID); err != nil {
			return nil, fmt.Errorf("%s: %w", it.Path, err)
		}
		if other, ok := seen[it.ID]; ok {
			return nil, fmt.Errorf("%s and %s both get the id %q", other, it.Path, it.ID)
		}
		seen[it.ID] = it.Path
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

func readList(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var items []Item
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
		items = append(items, Item{Path: p, ID: rec.ID, Metadata: rec.Metadata})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no images listed", path)
	}
	return items, nil
}

// nonEmpty is sums without the empty key of an unshared store.
func nonEmpty(sum string) []string {
	if sum == "" {
		return nil
	}
	return []string{sum}
}

// Stats count what Images did.
type Stats struct {
	Total, Added, Skipped, Failed int
	// Elsewhere counts images another indexer was working on (a shared PostgreSQL gallery):
	// left to it; a later run adds any it did not finish.
	Elsewhere int
	Done      int      // items read (of Total); fewer when cancelled
	Failures  []string // the first 20 failures, "path: error"
	Seconds   float64
}

// ImageOptions tune Images.
type ImageOptions struct {
	Workers int // images read and detected at once; 0 means 1
	Batch   int // images per transaction; 0 means 1
	// Progress reports items done of total with a note of the counts; nil is silent.
	Progress func(done, total int, note string)
	// ClaimLease is how long an image claimed on a shared store (gallery.Claimer) stays this
	// indexer's if it dies without releasing it; 0 means 10 minutes.
	ClaimLease time.Duration
}

// claims are this run's claims on a shared store (nil when the store is not shared).
type claims struct {
	c     gallery.Claimer
	owner string
	lease time.Duration
}

func newClaims(store gallery.Store, lease time.Duration) *claims {
	c, ok := store.(gallery.Claimer)
	if !ok {
		return nil
	}
	host, _ := os.Hostname()
	var r [6]byte
	_, _ = rand.Read(r[:])
	if lease <= 0 {
		lease = 10 * time.Minute
	}
	return &claims{c: c, owner: fmt.Sprintf("%s/%d/%x", host, os.Getpid(), r), lease: lease}
}

// claim reports whether this run may detect the image with these bytes.
func (c *claims) claim(ctx context.Context, raw []byte) (sum string, ok bool, err error) {
	if c == nil {
		return "", true, nil
	}
	h := sha256.Sum256(raw)
	sum = hex.EncodeToString(h[:])
	ok, err = c.c.Claim(ctx, sum, c.owner, c.lease)
	return sum, ok, err
}

// release ends claims once their images are stored (or failed); a failure only delays others
// until the lease ends.
func (c *claims) release(sums []string) {
	if c == nil || len(sums) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.c.Release(ctx, c.owner, sums)
}

// Images detects items on opts.Workers goroutines (through svc: an image whose bytes are
// already stored is skipped without detection) and commits them from one writer every
// opts.Batch images or 5 seconds. A file that fails is counted and the others go on. When ctx
// ends, no more images are started and what was detected is still committed; the error is
// then ctx's. Resumable: running it again adds only what is missing.
func Images(ctx context.Context, svc *retrieval.Service, items []Item, opts ImageOptions) (*Stats, error) {
	workers, batch := max(opts.Workers, 1), max(opts.Batch, 1)
	store := svc.Store()
	cl := newClaims(store, opts.ClaimLease)
	type result struct {
		item      Item
		img       *gallery.Image
		existing  string
		sum       string // the claim's key, when the store is shared
		elsewhere bool   // another indexer holds the image
		err       error
	}
	jobs := make(chan Item)
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
				raw, err := os.ReadFile(it.Path)
				r := result{item: it, err: err}
				if err == nil {
					var ok bool
					r.sum, ok, r.err = cl.claim(ctx, raw)
					r.elsewhere = r.err == nil && !ok
				}
				if r.err == nil && !r.elsewhere {
					r.img, r.existing, r.err = svc.PrepareImage(ctx, raw, it.ID, it.Metadata)
				}
				results <- r
			}
		})
	}
	go func() { wg.Wait(); close(results) }() // results closes once every worker is done

	st := &Stats{Total: len(items)}
	start := time.Now()
	var pending []*gallery.Image
	var pendingItems []Item
	var pendingSums []string // claims to release once pending is committed
	lastCommit := time.Now()
	var commitErr error
	commit := func() {
		if len(pending) == 0 || commitErr != nil {
			return
		}
		// A commit outlives a Ctrl-C: what was detected is kept.
		res, err := store.PutImages(context.WithoutCancel(ctx), pending)
		if errors.Is(err, gallery.ErrConflict) || errors.Is(err, gallery.ErrInvalid) {
			// One bad image fails its whole batch: store them one by one to find it.
			res, err = nil, nil
			for i, img := range pending {
				r, err1 := store.PutImages(context.WithoutCancel(ctx), []*gallery.Image{img})
				if err1 != nil {
					st.fail(pendingItems[i].Path, err1)
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
				st.Skipped++
			} else {
				st.Added++
			}
		}
		cl.release(pendingSums)
		pending, pendingItems, pendingSums, lastCommit = pending[:0], pendingItems[:0], pendingSums[:0], time.Now()
	}
	for r := range results {
		st.Done++
		switch {
		case r.elsewhere:
			st.Elsewhere++
		case r.err != nil && ctx.Err() != nil:
			// interrupted: not a failure of this file
			cl.release(nonEmpty(r.sum))
		case r.err != nil:
			st.fail(r.item.Path, r.err)
			cl.release(nonEmpty(r.sum))
		case r.img == nil:
			st.Skipped++
			cl.release(nonEmpty(r.sum))
		default:
			pending, pendingItems = append(pending, r.img), append(pendingItems, r.item)
			if r.sum != "" {
				pendingSums = append(pendingSums, r.sum)
			}
		}
		if len(pending) >= batch || time.Since(lastCommit) > 5*time.Second {
			commit()
		}
		if opts.Progress != nil {
			note := fmt.Sprintf("%d new, %d already stored, %d failed", st.Added+len(pending), st.Skipped, st.Failed)
			if st.Elsewhere > 0 {
				note += fmt.Sprintf(", %d with another indexer", st.Elsewhere)
			}
			opts.Progress(st.Done, st.Total, note)
		}
	}
	commit()
	st.Seconds = time.Since(start).Seconds()
	if commitErr != nil {
		return st, commitErr
	}
	return st, ctx.Err()
}

func (s *Stats) fail(path string, err error) {
	s.Failed++
	if len(s.Failures) < 20 {
		s.Failures = append(s.Failures, fmt.Sprintf("%s: %v", path, err))
	}
}

// ReadTexts reads a text file: JSONL (.jsonl, .json), one {"id", "text", "metadata"} per line
// (id and metadata optional), or plain text, one text per line.
func ReadTexts(path string) ([]*gallery.Text, error) {
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

// Texts adds texts through svc in transactions of svc's MaxTextBatch; a transaction that fails
// stores none of its texts (the error says how many before it were stored).
func Texts(ctx context.Context, svc *retrieval.Service, texts []*gallery.Text, progress func(done, total int, note string)) (added, duplicates int, err error) {
	batch := svc.Config().MaxTextBatch
	for lo := 0; lo < len(texts); lo += batch {
		hi := min(lo+batch, len(texts))
		res, err := svc.AddTexts(ctx, texts[lo:hi])
		if err != nil {
			return added, duplicates, fmt.Errorf("texts %d–%d (nothing of them stored; %d before them were): %w", lo+1, hi, lo, err)
		}
		for _, r := range res {
			if r.Duplicate {
				duplicates++
			} else {
				added++
			}
		}
		if progress != nil {
			progress(hi, len(texts), "")
		}
	}
	return added, duplicates, nil
}
