package main

import (
	"github.com/spf13/cobra"

	"github.com/uniter-serve/uniter/internal/progress"
)

// progressBar is the command's progress on its stderr; nil (silent) with --quiet.
func progressBar(cmd *cobra.Command, quiet bool, label, unit string) *progress.Bar {
	if quiet {
		return nil
	}
	return progress.New(cmd.ErrOrStderr(), label, unit)
}
