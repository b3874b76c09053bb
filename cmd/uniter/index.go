package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/uniter-serve/uniter/gallery/ingest"
)

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
			items, err := ingest.List(args[0])
			if err != nil {
				return err
			}
			return withGallery(cmd, load, func(_ *Config, _ *service, g *galleryService) error {
				// Ctrl-C stops feeding images; what was detected is committed before the command exits.
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				bar := progressBar(cmd, quiet, "index", "images")
				st, err := ingest.Images(ctx, g.service, items, ingest.ImageOptions{Workers: workers, Batch: batch, Progress: bar.Update})
				bar.Finish()
				fmt.Fprintf(cmd.OutOrStdout(), "%d images: %d added, %d already stored, %d failed in %.1fs (%.1f images/s)\n",
					st.Total, st.Added, st.Skipped, st.Failed, st.Seconds, float64(st.Done)/max(st.Seconds, 1e-9))
				if st.Elsewhere > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%d images were being indexed by another indexer on the shared gallery (run again to add any it did not finish)\n", st.Elsewhere)
				}
				switch {
				case ctx.Err() != nil:
					return fmt.Errorf("interrupted after %d of %d images (run again to continue): %w", st.Done, st.Total, ctx.Err())
				case err != nil:
					return err
				case st.Failed > 0:
					for _, f := range st.Failures {
						fmt.Fprintln(cmd.ErrOrStderr(), "failed:", f)
					}
					if st.Failed > len(st.Failures) {
						fmt.Fprintf(cmd.ErrOrStderr(), "... and %d more\n", st.Failed-len(st.Failures))
					}
					return fmt.Errorf("%d of %d images failed", st.Failed, st.Total)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "workers", runtime.NumCPU(), "images read and detected at once")
	f.IntVar(&batch, "batch", 32, "images per transaction")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar on stderr")
	return cmd
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
			texts, err := ingest.ReadTexts(args[0])
			if err != nil {
				return err
			}
			return withGallery(cmd, load, func(_ *Config, _ *service, g *galleryService) error {
				bar := progressBar(cmd, quiet, "index-texts", "texts")
				added, dup, err := ingest.Texts(cmd.Context(), g.service, texts, bar.Update)
				bar.Finish()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d texts: %d added, %d already stored\n", len(texts), added, dup)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar on stderr")
	return cmd
}
