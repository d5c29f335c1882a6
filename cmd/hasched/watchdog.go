package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hasched/hasched/scheduler/worker/watchdog"
)

// newWatchdogCmd is the orphan watchdog a worker starts for its work
// directory (package scheduler/worker/watchdog). Hidden: users never run it.
func newWatchdogCmd() *cobra.Command {
	var dir string
	var foreground bool
	cmd := &cobra.Command{
		Use:    "watchdog --dir DIR",
		Short:  "Kill the tasks of a worker that died, once its deadline passes",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			return watchdog.Main(cmd.Context(), dir, foreground, 0, os.Args)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the worker's work directory")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run here instead of detaching")
	return cmd
}
