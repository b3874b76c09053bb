package main

import (
	"errors"
	"fmt"

	"github.com/uniter-serve/uniter/gallery"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/gallery/featimport"
	"github.com/uniter-serve/uniter/pipeline"
)

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
			m, err := pipeline.ReadManifest(cfg.Bundle)
			if err != nil {
				return err
			}
			switch {
			case sel.MinBoxes < 0 || sel.MaxBoxes < 1 || sel.MinBoxes > sel.MaxBoxes:
				return fmt.Errorf("--min-bb %d, --max-bb %d: want 0 <= min-bb <= max-bb, max-bb >= 1", sel.MinBoxes, sel.MaxBoxes)
			case sel.MaxBoxes > cfg.Limits.MaxRegions:
				return fmt.Errorf("--max-bb %d is above limits.max_regions (%d): the encoder would refuse such images", sel.MaxBoxes, cfg.Limits.MaxRegions)
			}
			src, err := featimport.OpenSource(args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			// Imported records have class labels (soft_labels, in the bundle's region label
			// space) and no attributes.
			st, err := openStore(cmd.Context(), cfg, m.Model.FeatureDim, gallery.Unnamed{Class: m.Regions.BackgroundIndex, Attr: -1})
			if err != nil {
				return err
			}
			check, write := progressBar(cmd, quiet, "check", "records"), progressBar(cmd, quiet, "import", "records")
			res, err := featimport.Import(cmd.Context(), st, src, featimport.ImportOptions{
				Options: featimport.Options{Selection: sel, FeatureDim: m.Model.FeatureDim, Source: "import:" + src.Kind},
				Batch:   max(batch, 1), Check: check.Update, Write: write.Update})
			check.Finish()
			write.Finish()
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%d records from %s: %d imported, %d already stored in %.1fs\n",
					res.Records, src.Kind, res.Imported, res.AlreadyStored, res.Seconds)
			}
			return errors.Join(err, st.Close())
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
