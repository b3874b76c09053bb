package featimport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/lmdb"
)

// Source lists and reads the records of an .npz folder or of UNITER's img_db LMDB. Close it
// once.
type Source struct {
	Kind  string   // "npz" or "lmdb"
	Names []string // the records' names (file names, LMDB keys), in reading order
	each  func(fn func(name string, raw []byte) error) error
	close func() error
}

// Close releases the source (the LMDB's mapping).
func (s *Source) Close() error { return s.close() }

// OpenSource opens path: a folder of .npz files (read recursively, in name order), an LMDB
// folder holding data.mdb, or a data.mdb file.
func OpenSource(path string) (*Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	isLMDB := !st.IsDir() && strings.HasSuffix(path, ".mdb")
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "data.mdb")); err == nil {
			isLMDB = true
		}
	}
	if isLMDB {
		db, err := lmdb.Open(path)
		if err != nil {
			return nil, err
		}
		src := &Source{Kind: "lmdb", close: db.Close}
		// UNITER's img_db keys are the .npz file names; "__keys__" and the like are bookkeeping.
		src.each = func(fn func(string, []byte) error) error {
			return db.ForEach(func(k, v []byte) error {
				if strings.HasPrefix(string(k), "__") {
					return nil
				}
				return fn(string(k), v)
			})
		}
		if err := src.each(func(name string, _ []byte) error { src.Names = append(src.Names, name); return nil }); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return src, nil
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: want a folder of .npz files, an LMDB folder (with data.mdb) or a data.mdb file", path)
	}
	src := &Source{Kind: "npz", close: func() error { return nil }}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".npz") {
			return err
		}
		rel, err := filepath.Rel(path, p)
		src.Names = append(src.Names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(src.Names)
	src.each = func(fn func(string, []byte) error) error {
		for _, name := range src.Names {
			raw, err := os.ReadFile(filepath.Join(path, filepath.FromSlash(name)))
			if err != nil {
				return err
			}
			if err := fn(name, raw); err != nil {
				return err
			}
		}
		return nil
	}
	return src, nil
}

// ImportOptions tune Import.
type ImportOptions struct {
	Options
	Batch int // records per transaction; 0 means 256
	// Check and Write report the two passes (records done, total, a note); nil is silent.
	Check, Write func(done, total int, note string)
}

// ImportResult counts what Import did.
type ImportResult struct {
	Records, Imported, AlreadyStored int
	Seconds                          float64
}

// Import stores every record of src in st, all or nothing: every record is read and checked
// first (format, feature dimension, IDs taken by other images) and the first error, naming the
// record, stops the import before anything is written; then records are written in
// transactions of opts.Batch, and if writing fails midway the records this run added are
// removed again. Records already stored (same bytes) are skipped.
func Import(ctx context.Context, st gallery.Store, src *Source, opts ImportOptions) (ImportResult, error) {
	start := time.Now()
	res := ImportResult{Records: len(src.Names)}
	if len(src.Names) == 0 {
		return res, errors.New("no records")
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = 256
	}
	report := func(f func(int, int, string), done int, note string) {
		if f != nil {
			f(done, len(src.Names), note)
		}
	}
	// Pass 1: check everything before writing anything.
	ids := map[string]string{} // id → record name
	done := 0
	err := src.each(func(name string, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := Image(name, raw, opts.Options)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if other, ok := ids[img.ID]; ok {
			return fmt.Errorf("%s and %s both get the id %q", other, name, img.ID)
		}
		ids[img.ID] = name
		switch _, err := st.ImageBySHA256(ctx, img.SHA256); {
		case err == nil: // already stored: skipped when writing
		case !errors.Is(err, gallery.ErrNotFound):
			return err
		default:
			if _, err := st.Image(ctx, img.ID, 0); err == nil {
				return fmt.Errorf("%s: id %q is taken by another image in the gallery", name, img.ID)
			} else if !errors.Is(err, gallery.ErrNotFound) {
				return err
			}
		}
		done++
		report(opts.Check, done, "")
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("nothing imported: %w", err)
	}

	// Pass 2: write in batches; on failure remove what this run added.
	var added []string
	rollback := func(cause error) error {
		var errs []error
		for _, id := range added {
			if err := st.DeleteImage(context.WithoutCancel(ctx), id); err != nil && !errors.Is(err, gallery.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w (and removing the %d records this run added failed: %v)", cause, len(added), errors.Join(errs...))
		}
		return fmt.Errorf("%w (the %d records this run had added were removed)", cause, len(added))
	}
	var pending []*gallery.Image
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		res, err := st.PutImages(context.WithoutCancel(ctx), pending)
		if err != nil {
			return err
		}
		for _, r := range res {
			if !r.Duplicate {
				added = append(added, r.ID)
			}
		}
		pending = pending[:0]
		return nil
	}
	done = 0
	err = src.each(func(name string, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := Image(name, raw, opts.Options)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pending = append(pending, img)
		if len(pending) >= batch {
			if err := flush(); err != nil {
				return fmt.Errorf("writing up to %s: %w", name, err)
			}
		}
		done++
		report(opts.Write, done, fmt.Sprintf("%d new", len(added)+len(pending)))
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, rollback(err)
	}
	res.Imported, res.AlreadyStored = len(added), len(src.Names)-len(added)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
