package main

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

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/gallery"
	"github.com/uniter-serve/uniter/gallery/featimport"
	"github.com/uniter-serve/uniter/gallery/lmdb"
	"github.com/uniter-serve/uniter/models"
)

// featureSource lists and reads the records of an .npz folder or an img_db LMDB.
type featureSource struct {
	kind  string // "npz" or "lmdb"
	names []string
	read  func(name string) ([]byte, error)
	each  func(fn func(name string, raw []byte) error) error
	close func() error
}

func openFeatureSource(path string) (*featureSource, error) {
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
		src := &featureSource{kind: "lmdb", close: db.Close}
		// UNITER's img_db keys are the .npz file names; "__keys__" and the like are bookkeeping.
		src.each = func(fn func(string, []byte) error) error {
			return db.ForEach(func(k, v []byte) error {
				if strings.HasPrefix(string(k), "__") {
					return nil
				}
				return fn(string(k), v)
			})
		}
		if err := src.each(func(name string, _ []byte) error { src.names = append(src.names, name); return nil }); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return src, nil
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: want a folder of .npz files, an LMDB folder (with data.mdb) or a data.mdb file", path)
	}
	src := &featureSource{kind: "npz", close: func() error { return nil }}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".npz") {
			return err
		}
		rel, err := filepath.Rel(path, p)
		src.names = append(src.names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(src.names)
	src.each = func(fn func(string, []byte) error) error {
		for _, name := range src.names {
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

func importFeaturesCmd(load loader) *cobra.Command {
	sel := featimport.DefaultSelection
	var batch int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "import-features PATH",
		Short: "import bottom-up-attention features (.npz folder or UNITER img_db LMDB) into the gallery",
		Long: "PATH is a folder of .npz files or UNITER's img_db LMDB (the folder holding data.mdb, or the\n" +
			"file). Each record holds features [N, D], norm_bb [N, 6] (x1, y1, x2, y2, w, h divided by the\n" +
			"image size) or [N, 7], conf [N] and soft_labels [N, C], float16 or float32, as UNITER's\n" +
			"convert_imgdir.py writes them; image_w and image_h, when present, put the boxes in pixels.\n" +
			"UNITER's selection applies: the first n regions, n = min(max_bb, max(min_bb, #conf > conf_th)).\n" +
			"IDs are the file names (LMDB keys) without .npz. The gallery's features stay float16.\n\n" +
			"All or nothing: every record is read and checked first (format, the bundle's feature_dim,\n" +
			"IDs taken by other images), and an error names the record; then the records are written in\n" +
			"transactions of --batch, and if writing fails midway the records this run added are removed.\n" +
			"Records already stored (same bytes) are skipped, so importing again is harmless.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			m, err := models.ReadManifest(cfg.Bundle)
			if err != nil {
				return err
			}
			switch {
			case sel.MinBoxes < 0 || sel.MaxBoxes < 1 || sel.MinBoxes > sel.MaxBoxes:
				return fmt.Errorf("--min-bb %d, --max-bb %d: want 0 <= min-bb <= max-bb, max-bb >= 1", sel.MinBoxes, sel.MaxBoxes)
			case sel.MaxBoxes > cfg.Limits.MaxRegions:
				return fmt.Errorf("--max-bb %d is above limits.max_regions (%d): the encoder would refuse such images", sel.MaxBoxes, cfg.Limits.MaxRegions)
			}
			src, err := openFeatureSource(args[0])
			if err != nil {
				return err
			}
			defer src.close()
			if len(src.names) == 0 {
				return fmt.Errorf("%s: no records", args[0])
			}
			st, err := gallery.Open(cfg.DataDir, gallery.Options{FeatureDim: m.Model.FeatureDim})
			if err != nil {
				return fmt.Errorf("config data_dir: %w", err)
			}
			opts := featimport.Options{Selection: sel, FeatureDim: m.Model.FeatureDim, Source: "import:" + src.kind}
			return errors.Join(importFeatures(cmd, st, src, opts, max(batch, 1), quiet), st.Close())
		},
	}
	f := cmd.Flags()
	f.Float32Var(&sel.ConfThreshold, "conf-th", sel.ConfThreshold, "keep regions with confidence above this ...")
	f.IntVar(&sel.MinBoxes, "min-bb", sel.MinBoxes, "... but at least this many ...")
	f.IntVar(&sel.MaxBoxes, "max-bb", sel.MaxBoxes, "... and at most this many")
	f.IntVar(&batch, "batch", 256, "records per transaction")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar on stderr")
	return cmd
}

func importFeatures(cmd *cobra.Command, st gallery.Store, src *featureSource, opts featimport.Options, batch int, quiet bool) error {
	ctx := cmd.Context()
	start := time.Now()
	// Pass 1: check everything before writing anything.
	bar := newProgressBar(cmd.ErrOrStderr(), "check", len(src.names), quiet)
	ids := map[string]string{} // id → record name
	done := 0
	err := src.each(func(name string, raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, err := featimport.Image(name, raw, opts)
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
		bar.update(done, "")
		return nil
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("nothing imported: %w", err)
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
	bar = newProgressBar(cmd.ErrOrStderr(), "import", len(src.names), quiet)
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
		img, err := featimport.Image(name, raw, opts)
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
		bar.update(done, fmt.Sprintf("%d new", len(added)+len(pending)))
		return nil
	})
	if err == nil {
		err = flush()
	}
	bar.finish()
	if err != nil {
		return rollback(err)
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(cmd.OutOrStdout(), "%d records from %s: %d imported, %d already stored in %.1fs\n",
		len(src.names), src.kind, len(added), len(src.names)-len(added), secs)
	return nil
}
