package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/detector"
	"github.com/uniter-serve/uniter/models"
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
	return joinClose(fn(svc), svc)
}

func joinClose(err error, c io.Closer) error {
	if cerr := c.Close(); cerr != nil && err == nil {
		return cerr
	}
	return err
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
	var regionsFile string
	var texts []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "match --regions R.json --text TEXT [--text TEXT ...]",
		Short: "score texts against an image's regions (ITM score, logit, OT distance)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := readRegions(regionsFile)
			if err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				results, err := s.bundle.Match(cmd.Context(), r, texts)
				if err != nil {
					return err
				}
				resp := api.NewMatchResponse(results, s.info.Name)
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SCORE\tLOGIT\tOT DIST\tTOKENS\tTEXT")
				for _, r := range resp.Results {
					trunc := ""
					if r.Truncated {
						trunc = " (truncated)"
					}
					fmt.Fprintf(tw, "%.4f\t%.4f\t%.4f\t%d\t%s%s\n", r.Score, r.Logit, r.OTDistance, r.Tokens, r.Text, trunc)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&regionsFile, "regions", "", "regions JSON file: {width, height, boxes, features}")
	cmd.Flags().StringArrayVar(&texts, "text", nil, "a text to score (repeat for several)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	_ = cmd.MarkFlagRequired("regions")
	_ = cmd.MarkFlagRequired("text")
	return cmd
}

func alignCmd(load loader) *cobra.Command {
	var regionsFile, text string
	var top int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "align --regions R.json --text TEXT",
		Short: "word-region alignment of one text and an image's regions (optimal transport)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := readRegions(regionsFile)
			if err != nil {
				return err
			}
			return withService(cmd, load, func(s *service) error {
				a, err := s.bundle.Align(cmd.Context(), r, text, models.AlignOptions{TopRegions: top})
				if err != nil {
					return err
				}
				resp := api.NewAlignResponse(a, s.info.Name)
				if asJSON {
					return printJSON(cmd.OutOrStdout(), resp)
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "score %.4f  logit %.4f  OT distance %.4f  model %s\n\n", resp.Score, resp.Logit, resp.OTDistance, resp.Model)
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "WORD\tCHARS\tBEST REGIONS (share)")
				for _, w := range resp.WordRegions {
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
	cmd.Flags().StringVar(&text, "text", "", "the text to align")
	cmd.Flags().IntVar(&top, "top", 3, "regions listed per word")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	_ = cmd.MarkFlagRequired("regions")
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
				return joinClose(json.NewEncoder(f).Encode(res), f)
			})
		},
	}
	cmd.Flags().StringVar(&graph, "graph", models.GraphEncoder, "graph role: encoder, encoder_attention, mlm_head or mrc_head")
	cmd.Flags().StringVar(&inFile, "in", "", "inputs JSON: {name: {shape, data}}")
	cmd.Flags().StringVar(&outFile, "out", "", "outputs JSON, same format")
	_ = cmd.MarkFlagRequired("in")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
