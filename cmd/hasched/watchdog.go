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
		Use:   "watchdog --dir DIR",
		Short: "Kill the tasks of a worker that died, once its deadline passes",
		Long: `The orphan watchdog of one work directory. A worker ('hasched serve') starts
it by itself; it SIGKILLs the worker's tasks once the deadline the worker last
stamped has passed (the worker died), and exits when no deadline is ahead.`,
		Example: `  # what a worker with --work-dir /var/lib/hasched/executor runs
  hasched watchdog --dir /var/lib/hasched/executor`,
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
