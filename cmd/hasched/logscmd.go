package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
)

func newLogsCmd() *cobra.Command {
	var (
		follow, stderr bool
		tail           int
		workerName     string
	)
	cmd := &cobra.Command{
		Use:   "logs TASK",
		Short: "Print a task's output, from whichever host ran it",
		Long: `Print the standard output (or, with --stderr, the standard error) of a task, by
its id (hasched tasks running lists them), from the work directory of the
process whose worker ran it: any process of the cluster finds it and relays
it. What is kept is the current output file and the one rotated before it
(each up to the executor's cap), for as long as the executor keeps the task's
directory (a day by default) and the cluster knows where the task ran (its
placement, ten minutes after it ended by default; after that --worker names
the worker to ask).

-f follows the output as the task writes it, until the task has ended, the
server ends the stream (after an hour), or Ctrl-C. Tasks of the Mesos
executor keep their output in the Mesos agents' sandboxes; hasched does not
serve it.`,
		Example: `  hasched logs 'backup@-@1733212800000@-@0@-@0'
  hasched logs -f --tail 20 'backup@-@1733212800000@-@0@-@0'
  hasched logs --stderr 'backup@-@1733212800000@-@0@-@0'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes one task id", cmd.CommandPath())
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing the output as the task writes it, until it ends")
	cmd.Flags().BoolVar(&stderr, "stderr", false, "print the task's standard error instead of its standard output")
	cmd.Flags().StringVar(&workerName, "worker", "", "ask the process of this worker (hasched workers), for a task that ended longer ago than the cluster remembers where it ran")
	cmd.Flags().IntVar(&tail, "tail", 0, fmt.Sprintf("start at the last N lines (0: all that is kept; at most %d)", model.MaxLogTailLines))
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if tail < 0 || tail > model.MaxLogTailLines {
			return usagef("--tail %d: give 0 to %d lines", tail, model.MaxLogTailLines)
		}
		if err := model.CheckTaskID(args[0]); err != nil {
			return usagef("%q is not a task id (job@-@fireMillis@-@shard@-@attempt, as hasched tasks lists them)", args[0])
		}
		s, cancel, err := cf.connect(cmd)
		if err != nil {
			return err
		}
		defer cancel()
		ctx := s.ctx
		if follow {
			// A followed log outlives --timeout; Ctrl-C or SIGTERM ends it.
			var stop context.CancelFunc
			ctx, stop = signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
		}
		q := api.LogQuery{Stream: model.StreamStdout, Tail: tail, Follow: follow, Worker: workerName}
		if stderr {
			q.Stream = model.StreamStderr
		}
		body, err := s.c.TaskLog(ctx, args[0], q)
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = io.Copy(s.out, body)
		if follow && errors.Is(ctx.Err(), context.Canceled) {
			return nil // Ctrl-C: the user is done reading
		}
		return err
	}
	return cmd
}
