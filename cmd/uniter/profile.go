package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	ort "github.com/uniter-serve/uniter/runtime"
)

// profileSummaryCmd sums ONNX Runtime profiles (ort.profile_dir) per operator type.
func profileSummaryCmd() *cobra.Command {
	var asJSON bool
	var top int
	cmd := &cobra.Command{
		Use:   "profile-summary FILE...",
		Short: "sum ONNX Runtime profiles (ort.profile_dir) per operator: calls, time, share",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, path := range args {
				p, err := ort.ReadProfile(path)
				if err != nil {
					return err
				}
				if asJSON {
					if err := printJSON(cmd.OutOrStdout(), map[string]any{"file": path, "profile": p}); err != nil {
						return err
					}
					continue
				}
				var kernels float64
				for _, o := range p.Ops {
					kernels += o.Time.Seconds()
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d runs, %.1f ms per run, %.1f ms of it in kernels\n", path, p.Runs,
					perRun(p.Total.Seconds(), p.Runs), perRun(kernels, p.Runs))
				fmt.Fprintln(w, "operator\tcalls\tms per run\tshare of kernel time\t")
				for i, o := range p.Ops {
					if top > 0 && i == top {
						break
					}
					fmt.Fprintf(w, "%s\t%d\t%.2f\t%.1f%%\t\n", o.Op, o.Calls, perRun(o.Time.Seconds(), p.Runs), 100*o.Time.Seconds()/kernels)
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the sums as JSON")
	cmd.Flags().IntVar(&top, "top", 15, "operators listed, largest first (0: all)")
	return cmd
}

// perRun is a total in seconds as milliseconds per run.
func perRun(seconds float64, runs int) float64 {
	if runs == 0 {
		return 0
	}
	return 1000 * seconds / float64(runs)
}
