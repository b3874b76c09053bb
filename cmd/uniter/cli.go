package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/pipeline"
	ort "github.com/uniter-serve/uniter/runtime"
)

type loader func(*cobra.Command) (*Config, error)

// withService loads config and the model, runs fn, and closes everything.
func withService(cmd *cobra.Command, load loader, fn func(*service) error) error {
	cfg, err := load(cmd)
	if err != nil {
		return err
	}
	svc, err := openService(cfg, cfg.logger())
	if err != nil {
		return err
	}
	return closeAfter(fn(svc), svc)
}

// closeAfter closes c once the work that returned err is done and reports both errors, the
// work's first.
func closeAfter(err error, c io.Closer) error {
	return errors.Join(err, c.Close())
}

// readInput reads the image input of match and align: an image file or a regions JSON file.
func readInput(regionsFile, imageFile string) (pipeline.Input, error) {
	switch {
	case (regionsFile == "") == (imageFile == ""):
		return pipeline.Input{}, fmt.Errorf("give exactly one of --image and --regions")
	case imageFile != "":
		raw, err := os.ReadFile(imageFile)
		if err != nil {
			return pipeline.Input{}, err
		}
		return pipeline.Input{Image: raw}, nil
	}
	r, err := readRegions(regionsFile)
	if err != nil {
		return pipeline.Input{}, err
	}
	return pipeline.Input{Regions: &r}, nil
}

func readRegions(path string) (detector.Regions, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return detector.Regions{}, err
	}
	r, err := api.ParseRegions(raw)
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func matchCmd(load loader) *cobra.Command {
	var regionsFile, imageFile string
	var texts []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "match (--image IMAGE | --regions R.json) --text TEXT [--text TEXT ...]",
		Short: "score texts against an image (ITM score, logit, OT distance)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readInput(regionsFile, imageFile)
			if err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				out, err := s.bundle.Match(cmd.Context(), in, texts)
				if err != nil {
					return err
				}
				resp := api.NewMatchResponse(out, s.info.Name)
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SCORE\tLOGIT\tOT DIST\tTOKENS\tTEXT")
				unknown := false
				for _, r := range resp.Results {
					trunc := ""
					if r.Truncated {
						trunc = " (truncated)"
					}
					if len(r.UnknownWords) > 0 {
						trunc += " (unknown words: " + unknownList(r.UnknownWords) + ")"
						unknown = true
					}
					fmt.Fprintf(tw, "%.4f\t%.4f\t%.4f\t%d\t%s%s\n", r.Score, r.Logit, r.OTDistance, r.Tokens, r.Text, trunc)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if unknown {
					fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", unknownNote(s.info))
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&regionsFile, "regions", "", "regions JSON file: {width, height, boxes, features}")
	cmd.Flags().StringVar(&imageFile, "image", "", "image file (JPEG, PNG, GIF, WebP, BMP) for the detector")
	cmd.Flags().StringArrayVar(&texts, "text", nil, "a text to score (repeat for several)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	_ = cmd.MarkFlagRequired("text")
	return cmd
}

func alignCmd(load loader) *cobra.Command {
	var regionsFile, imageFile, text, drawFile, by string
	var top int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "align (--image IMAGE | --regions R.json) --text TEXT [--by attention|ot]",
		Short: "word-region alignment of one text and an image (by attention or optimal transport)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if drawFile != "" && imageFile == "" {
				return fmt.Errorf("--draw needs --image (there is no picture to draw on with --regions)")
			}
			in, err := readInput(regionsFile, imageFile)
			if err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				by, err := pipeline.ResolveAlignBy(by, s.bundle.HasAttention())
				if err != nil {
					return fmt.Errorf("--by: %w", err)
				}
				attention := by == pipeline.AlignByAttention
				a, err := s.bundle.Align(cmd.Context(), in, text, pipeline.AlignOptions{TopRegions: top, Attention: attention})
				if err != nil {
					return err
				}
				resp := api.NewAlignResponse(a, api.LabelsFor(s.bundle), s.info.Name)
				words := resp.WordRegions
				if attention {
					words = resp.Attention.WordRegions
				}
				if drawFile != "" {
					if err := drawAlignment(in.Image, resp.Regions, words, drawFile); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "score %.4f  logit %.4f  OT distance %.4f  model %s  aligned by %s\n\n", resp.Score, resp.Logit, resp.OTDistance, resp.Model, by)
				if len(resp.UnknownWords) > 0 {
					fmt.Fprintf(out, "unknown words: %s\n%s\n\n", unknownList(resp.UnknownWords), unknownNote(s.info))
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "WORD\tCHARS\tBEST REGIONS (share)")
				for _, w := range words {
					var parts []string
					for _, r := range w.Regions {
						b := resp.Regions[r.Region].Box
						parts = append(parts, fmt.Sprintf("#%d [%.0f,%.0f,%.0f,%.0f] %.2f", r.Region, b[0], b[1], b[2], b[3], r.Share))
					}
					fmt.Fprintf(tw, "%s\t%d-%d\t%s\n", w.Text, w.Start, w.End, strings.Join(parts, "; "))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&regionsFile, "regions", "", "regions JSON file: {width, height, boxes, features}")
	cmd.Flags().StringVar(&imageFile, "image", "", "image file (JPEG, PNG, GIF, WebP, BMP) for the detector")
	cmd.Flags().StringVar(&text, "text", "", "the text to align")
	cmd.Flags().IntVar(&top, "top", 3, "regions listed per word")
	cmd.Flags().StringVar(&by, "by", "", `word-region alignment: "attention" (the default when the model has the attention graph) or "ot" (the transport plan); --json has both with attention`)
	cmd.Flags().StringVar(&drawFile, "draw", "", "write the image with each word's best-aligned region drawn and labelled with the word (PNG; needs --image)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	_ = cmd.MarkFlagRequired("text")
	return cmd
}

// graphIO is run-graph's file format: named tensors with shape and flat row-major data.
type graphIO map[string]struct {
	Shape []int64   `json:"shape"`
	Data  []float64 `json:"data"`
}

func runGraphCmd(load loader) *cobra.Command {
	var graph, inFile, outFile string
	cmd := &cobra.Command{
		Use:   "run-graph --graph ROLE --in inputs.json --out outputs.json",
		Short: "run one bundle graph on raw tensors (for parity checks)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := os.ReadFile(inFile)
			if err != nil {
				return err
			}
			var in graphIO
			if err := json.Unmarshal(raw, &in); err != nil {
				return fmt.Errorf("%s: %w", inFile, err)
			}
			return withService(cmd, load, func(s *service) error {
				tensors := map[string]ort.Tensor{}
				specs := map[string]ort.DType{}
				for _, g := range s.bundle.Manifest.Graphs[graph].Inputs {
					specs[g.Name] = ort.DType(g.DType)
				}
				for name, t := range in {
					tt := ort.Tensor{Shape: t.Shape}
					for _, v := range t.Data {
						if specs[name] == ort.Int64 {
							tt.I64 = append(tt.I64, int64(v))
						} else {
							tt.F32 = append(tt.F32, float32(v))
						}
					}
					tensors[name] = tt
				}
				out, err := s.bundle.RunGraph(cmd.Context(), graph, tensors)
				if err != nil {
					return err
				}
				res := graphIO{}
				for name, t := range out {
					e := res[name]
					e.Shape = t.Shape
					for _, v := range t.F32 {
						e.Data = append(e.Data, float64(v))
					}
					for _, v := range t.I64 {
						e.Data = append(e.Data, float64(v))
					}
					res[name] = e
				}
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				return closeAfter(json.NewEncoder(f).Encode(res), f)
			})
		},
	}
	cmd.Flags().StringVar(&graph, "graph", pipeline.GraphEncoder, "graph role: encoder, encoder_attention, mlm_head or mrc_head")
	cmd.Flags().StringVar(&inFile, "in", "", "inputs JSON: {name: {shape, data}}")
	cmd.Flags().StringVar(&outFile, "out", "", "outputs JSON, same format")
	_ = cmd.MarkFlagRequired("in")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// unknownList names unknown words with their code point spans: "rose" (2–6), "✿" (7–8).
func unknownList(ws []api.UnknownWord) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%q (%d–%d)", w.Word, w.Start, w.End)
	}
	return strings.Join(parts, ", ")
}

// unknownNote says what unknown words are for the model described by info.
func unknownNote(info api.ModelInfo) string {
	if info.Vocabulary.Closed {
		return fmt.Sprintf("unknown words are outside the closed vocabulary of model %s (spelt in word pieces, or [UNK]): its scores say little about them.", info.Name)
	}
	return fmt.Sprintf("unknown words are outside the vocabulary of model %s (they became [UNK]): its scores say little about them.", info.Name)
}

// describeModelDomain is what the model's detector and vocabulary know, one line each.
func describeModelDomain(info api.ModelInfo) []string {
	var lines []string
	if d := info.Detector; d != nil {
		line := fmt.Sprintf("detector: %d classes, %d attributes", d.Classes, d.Attributes)
		if d.Description != "" {
			line = "detector: " + d.Description + fmt.Sprintf(" (%d classes, %d attributes)", d.Classes, d.Attributes)
		}
		if d.Domain != "" {
			line += "; domain: " + d.Domain
		}
		lines = append(lines, line)
	}
	v := info.Vocabulary
	cased, closed := "uncased", "open"
	if v.Cased {
		cased = "cased"
	}
	if v.Closed {
		closed = "closed"
	}
	line := fmt.Sprintf("vocabulary: %d tokens, %s, %s", v.Size, cased, closed)
	if v.Domain != "" {
		line += "; domain: " + v.Domain
	}
	return append(lines, line)
}

func regionsCmd(load loader) *cobra.Command {
	var asJSON, features bool
	var drawFile, featureDType, regionsOut string
	var top int
	cmd := &cobra.Command{
		Use:   "regions IMAGE",
		Short: "detect an image's regions (boxes, confidences, labels) as the encoder sees them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case featureDType != api.FeaturesFloat16 && featureDType != api.FeaturesFloat32:
				return fmt.Errorf("--feature-dtype %q: want %s or %s", featureDType, api.FeaturesFloat16, api.FeaturesFloat32)
			case cmd.Flags().Changed("feature-dtype") && !features:
				return fmt.Errorf("--feature-dtype needs --features")
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				det, hit, err := s.bundle.Detect(cmd.Context(), raw)
				if err != nil {
					return err
				}
				dtype := ""
				if features {
					dtype = featureDType
				}
				resp := api.NewRegionsResponse(det, hit, api.LabelsFor(s.bundle), top, dtype, s.info.Name)
				if drawFile != "" {
					if err := drawRegions(raw, resp, drawFile); err != nil {
						return err
					}
				}
				if regionsOut != "" {
					if err := writeRegionsInput(det, hit, s.bundle, regionsOut); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d×%d, %d regions from %d proposals, model %s\n\n",
					resp.Image.Format, resp.Image.Width, resp.Image.Height, len(resp.Regions), resp.Image.Proposals, resp.Model)
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "#\tBOX (x1,y1,x2,y2)\tCONF\tLABELS\tATTRIBUTES")
				for _, r := range resp.Regions {
					fmt.Fprintf(tw, "%d\t%.0f,%.0f,%.0f,%.0f\t%.3f\t%s\t%s\n", r.Index, r.Box[0], r.Box[1], r.Box[2], r.Box[3],
						*r.Confidence, labelList(r.Labels), labelList(r.Attributes))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				// What the model knows: its regions and words mean something only inside it.
				fmt.Fprintln(cmd.OutOrStdout())
				for _, line := range describeModelDomain(s.info) {
					fmt.Fprintln(cmd.OutOrStdout(), line)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	cmd.Flags().BoolVar(&features, "features", false, "with --json, include the features (base64, --feature-dtype)")
	cmd.Flags().StringVar(&featureDType, "feature-dtype", api.FeaturesFloat16, "the features' encoding with --features: float16 or float32 (exactly what the encoder reads)")
	cmd.Flags().StringVar(&regionsOut, "regions-out", "", "write the regions as the --regions input of match, align and the tasks reads them ({width, height, boxes, features}, float32 features)")
	cmd.Flags().StringVar(&drawFile, "draw", "", "write the image with the boxes and labels drawn on it (PNG)")
	cmd.Flags().IntVar(&top, "top", 3, "labels listed per region")
	return cmd
}

// writeRegionsInput writes a detection as the regions input R (api.RegionsJSON), with the
// float32 features the encoder reads: match --regions on it scores as match --image does.
func writeRegionsInput(det *detector.Detection, hit bool, b *pipeline.Bundle, path string) error {
	resp := api.NewRegionsResponse(det, hit, api.LabelsFor(b), 1, api.FeaturesFloat32, b.Manifest.Name)
	r, err := resp.RegionsInput()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

func labelList(ls []api.LabelProb) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%s %.2f", l.Label, l.Probability))
	}
	return strings.Join(parts, ", ")
}

func drawRegions(raw []byte, resp api.RegionsResponse, path string) error {
	img, err := detector.Decode(raw, detector.DecodeLimits{})
	if err != nil {
		return err
	}
	boxes := make([]detector.Box, len(resp.Regions))
	captions := make([]string, len(resp.Regions))
	for i, r := range resp.Regions {
		boxes[i] = r.Box
		captions[i] = fmt.Sprintf("%d", i)
		if len(r.Labels) > 0 {
			captions[i] = fmt.Sprintf("%d %s %.2f", i, r.Labels[0].Label, *r.Confidence)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return closeAfter(png.Encode(f, detector.Draw(img, boxes, captions)), f)
}

// drawAlignment draws, for each word, the region holding most of its transport mass, labelled
// with the words (and their shares) it is the best region of.
func drawAlignment(raw []byte, regions []api.Region, aligned []api.WordRegions, path string) error {
	img, err := detector.Decode(raw, detector.DecodeLimits{})
	if err != nil {
		return err
	}
	var order []int
	words := map[int][]string{}
	for _, w := range aligned {
		if len(w.Regions) == 0 {
			continue
		}
		r := w.Regions[0]
		if _, seen := words[r.Region]; !seen {
			order = append(order, r.Region)
		}
		words[r.Region] = append(words[r.Region], fmt.Sprintf("%s %.2f", w.Text, r.Share))
	}
	boxes := make([]detector.Box, len(order))
	captions := make([]string, len(order))
	for i, r := range order {
		boxes[i] = regions[r].Box
		captions[i] = strings.Join(words[r], ", ")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return closeAfter(png.Encode(f, detector.Draw(img, boxes, captions)), f)
}
