package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/api"
	"github.com/uniter-serve/uniter/pipeline"
)

// The downstream-task commands: each runs one request through the model that --model-name
// picks among the loaded ones (config bundle and models; the default when absent), as the
// HTTP endpoint of the same name does, and prints a table or, with --json, the API's answer.

// taskFlags are what every task command reads.
type taskFlags struct {
	regions, image []string
	model          string
	asJSON         bool
}

func (f *taskFlags) add(cmd *cobra.Command, images int) {
	what := "an image"
	if images == 2 {
		what = "the two images, left then right (repeat the flag)"
	}
	cmd.Flags().StringArrayVar(&f.image, "image", nil, what+": image file(s) for the detector")
	cmd.Flags().StringArrayVar(&f.regions, "regions", nil, "or regions JSON file(s): {width, height, boxes, features}")
	cmd.Flags().StringVar(&f.model, "model-name", "", "the loaded model to ask, by its manifest name (default: config bundle's)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the API's JSON instead of a table")
}

// inputs reads want image inputs from --image or --regions.
func (f *taskFlags) inputs(want int) ([]pipeline.Input, error) {
	var out []pipeline.Input
	switch {
	case len(f.image) > 0 && len(f.regions) > 0:
		return nil, fmt.Errorf("give --image or --regions, not both")
	case len(f.image)+len(f.regions) != want:
		return nil, fmt.Errorf("give %d of --image or --regions, got %d", want, len(f.image)+len(f.regions))
	}
	for _, img := range f.image {
		in, err := readInput("", img)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	for _, r := range f.regions {
		in, err := readInput(r, "")
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// run loads the models, picks one and calls fn with it and its inputs.
func (f *taskFlags) run(cmd *cobra.Command, load loader, images int, fn func(b *pipeline.Bundle, name string, in []pipeline.Input) (any, func(*tabwriter.Writer), error)) error {
	in, err := f.inputs(images)
	if err != nil {
		return err
	}
	return withService(cmd, load, func(s *service) error {
		b, info, err := s.pick(f.model)
		if err != nil {
			return err
		}
		resp, table, err := fn(b, info.Name, in)
		if err != nil {
			return err
		}
		if f.asJSON {
			return printJSON(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	})
}

func vqaCmd(load loader) *cobra.Command {
	var f taskFlags
	var question string
	var topK int
	cmd := &cobra.Command{
		Use:   "vqa (--image IMAGE | --regions R.json) --question TEXT [--top-k K] [--model-name NAME]",
		Short: "answer a question about an image (a model fine-tuned for VQA)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, load, 1, func(b *pipeline.Bundle, name string, in []pipeline.Input) (any, func(*tabwriter.Writer), error) {
				out, err := b.VQA(cmd.Context(), in[0], question, topK)
				if err != nil {
					return nil, nil, err
				}
				resp := api.NewVQAResponse(out, name)
				return resp, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "SCORE\tANSWER")
					for _, a := range resp.Answers {
						fmt.Fprintf(tw, "%.4f\t%s\n", a.Score, a.Answer)
					}
				}, nil
			})
		},
	}
	f.add(cmd, 1)
	cmd.Flags().StringVar(&question, "question", "", "the question")
	cmd.Flags().IntVar(&topK, "top-k", 5, "answers to print")
	_ = cmd.MarkFlagRequired("question")
	return cmd
}

func entailCmd(load loader) *cobra.Command {
	var f taskFlags
	var hypothesis string
	cmd := &cobra.Command{
		Use:   "entail (--image IMAGE | --regions R.json) --hypothesis TEXT [--model-name NAME]",
		Short: "does the image entail the hypothesis? (a model fine-tuned for visual entailment)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, load, 1, func(b *pipeline.Bundle, name string, in []pipeline.Input) (any, func(*tabwriter.Writer), error) {
				out, err := b.Entail(cmd.Context(), in[0], hypothesis)
				if err != nil {
					return nil, nil, err
				}
				return api.NewEntailmentResponse(out, name), func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "PROBABILITY\tCLASS")
					for _, p := range out.Probabilities {
						mark := ""
						if p.Label == out.Label {
							mark = "  ←"
						}
						fmt.Fprintf(tw, "%.4f\t%s%s\n", p.Probability, p.Label, mark)
					}
				}, nil
			})
		},
	}
	f.add(cmd, 1)
	cmd.Flags().StringVar(&hypothesis, "hypothesis", "", "the hypothesis")
	_ = cmd.MarkFlagRequired("hypothesis")
	return cmd
}

func nlvr2Cmd(load loader) *cobra.Command {
	var f taskFlags
	var statement string
	cmd := &cobra.Command{
		Use:   "nlvr2 (--image LEFT --image RIGHT | --regions L.json --regions R.json) --statement TEXT [--model-name NAME]",
		Short: "is the statement true of the two images? (a model fine-tuned for NLVR2)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, load, 2, func(b *pipeline.Bundle, name string, in []pipeline.Input) (any, func(*tabwriter.Writer), error) {
				out, err := b.NLVR2(cmd.Context(), [2]pipeline.Input{in[0], in[1]}, statement)
				if err != nil {
					return nil, nil, err
				}
				return api.NewNLVR2Response(out, name), func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "P(TRUE)\tLABEL\tLAYOUT\tSTATEMENT")
					fmt.Fprintf(tw, "%.4f\t%v\t%s\t%s\n", out.TrueProbability, out.True, out.Layout, out.Statement.Text)
				}, nil
			})
		},
	}
	f.add(cmd, 2)
	cmd.Flags().StringVar(&statement, "statement", "", "the statement about the pair")
	_ = cmd.MarkFlagRequired("statement")
	return cmd
}

func referCmd(load loader) *cobra.Command {
	var f taskFlags
	var expression string
	var topK int
	cmd := &cobra.Command{
		Use:   "refer (--image IMAGE | --regions R.json) --expression TEXT [--top-k K] [--model-name NAME]",
		Short: "which region does the expression refer to? (a model fine-tuned for referring expressions)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, load, 1, func(b *pipeline.Bundle, name string, in []pipeline.Input) (any, func(*tabwriter.Writer), error) {
				out, err := b.Refer(cmd.Context(), in[0], expression, topK)
				if err != nil {
					return nil, nil, err
				}
				return api.NewReferResponse(out, name), func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "REGION\tPROBABILITY\tSCORE\tBOX")
					for _, r := range out.Regions {
						box := make([]string, 4)
						for i, v := range r.Box {
							box[i] = fmt.Sprintf("%.1f", v)
						}
						fmt.Fprintf(tw, "%d\t%.4f\t%.4f\t[%s]\n", r.Index, r.Probability, r.Score, strings.Join(box, ", "))
					}
				}, nil
			})
		},
	}
	f.add(cmd, 1)
	cmd.Flags().StringVar(&expression, "expression", "", "the referring expression")
	cmd.Flags().IntVar(&topK, "top-k", 5, "regions to print")
	_ = cmd.MarkFlagRequired("expression")
	return cmd
}
