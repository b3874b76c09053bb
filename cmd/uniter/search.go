package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/gallery/retrieval"
)

// searchCmd searches the configured gallery from the command line, as POST /v1/search/images
// (a text) and POST /v1/search/texts (an image file or a stored image's ID) do.
func searchCmd(load loader) *cobra.Command {
	var text, imageFile, imageID, mode, evidenceBy string
	var limit, offset, candidates int
	var evidence, asJSON bool
	cmd := &cobra.Command{
		Use:   "search (--text TEXT | --image FILE | --image-id ID) [--limit N] [--mode exact|two_stage] [--json]",
		Short: "search the gallery: a text for its images, or an image for its texts",
		Long: "Ranks the gallery's images for --text, or its texts for --image (a file: detected, not stored) or\n" +
			"--image-id (a stored image), by the default model's match score, as POST /v1/search/images and\n" +
			"POST /v1/search/texts do; --json prints the API's answer. The gallery is the configured one\n" +
			"(data_dir, or gallery.dsn): a bbolt gallery must not be open in a running `uniter serve`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			queries := 0
			for _, v := range []string{text, imageFile, imageID} {
				if v != "" {
					queries++
				}
			}
			if queries != 1 {
				return errors.New("give exactly one of --text, --image and --image-id")
			}
			q := retrieval.Query{Text: text, ImageID: imageID, Limit: limit, Offset: offset, Mode: retrieval.Mode(mode),
				Candidates: candidates, Evidence: evidence, EvidenceBy: evidenceBy}
			if imageFile != "" {
				raw, err := os.ReadFile(imageFile)
				if err != nil {
					return err
				}
				q.Image = raw
			}
			return withGallery(cmd, load, func(_ *Config, s *service, g *galleryService) error {
				start := time.Now()
				search := g.service.SearchTexts
				if text != "" {
					search = g.service.SearchImages
				}
				res, err := search(cmd.Context(), q)
				if err != nil {
					return err
				}
				resp := api.NewSearchResponse(res, s.info.Name)
				resp.Timings.Total = float64(time.Since(start).Microseconds()) / 1000
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				return writeSearchTable(cmd, resp, text == "")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&text, "text", "", "find the gallery's images for this text")
	f.StringVar(&imageFile, "image", "", "find the gallery's texts for this image file (not stored)")
	f.StringVar(&imageID, "image-id", "", "find the gallery's texts for this stored image")
	f.IntVar(&limit, "limit", 10, "hits shown")
	f.IntVar(&offset, "offset", 0, "hits skipped (paging)")
	f.StringVar(&mode, "mode", "", "exact (every item scored; the default) or two_stage (the label index proposes --candidates)")
	f.IntVar(&candidates, "candidates", 0, "two_stage: items scored (default: config search.candidates)")
	f.BoolVar(&evidence, "evidence", false, "each hit's word-region alignment")
	f.StringVar(&evidenceBy, "evidence-by", "", "attention or ot (default: attention when the model has it)")
	f.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return cmd
}

// writeSearchTable prints one line per hit (texts: with the text), then the search's counts.
func writeSearchTable(cmd *cobra.Command, r api.SearchResponse, texts bool) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	head := "RANK\tSCORE\tLOGIT\tID"
	if texts {
		head += "\tTEXT"
	}
	fmt.Fprintln(w, head)
	for i, h := range r.Results {
		line := fmt.Sprintf("%d\t%.4f\t%.4f\t%s", i+1, h.Score, h.Logit, h.ID)
		if texts {
			line += "\t" + h.Text
		}
		fmt.Fprintln(w, line)
		if h.Evidence != nil {
			var words []string
			for _, ev := range h.Evidence.Words {
				if len(ev.Regions) > 0 {
					words = append(words, fmt.Sprintf("%s→#%d", ev.Word, ev.Regions[0].Region))
				}
			}
			fmt.Fprintf(w, "\t\t\t  %s\n", strings.Join(words, " "))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	noun := "images"
	if texts {
		noun = "texts"
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "%d of %d %s (%s, %d scored) in %.0f ms\n",
		len(r.Results), r.GallerySize, noun, r.Mode, r.Candidates, r.Timings.Total)
	return err
}
