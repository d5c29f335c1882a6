package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/hasched/hasched/internal/bench"
)

// benchFlags are bench's flags as given.
type benchFlags struct {
	coord       string
	jobs        int
	concurrency int
	fireJobs    int
	duration    time.Duration
	json        bool
	logLevel    string
	logJSON     bool
}

// benchFlag names the flag that sets a field of bench.Config.
func benchFlag(field string) string {
	switch field {
	case "URL":
		return "--coord"
	case "Jobs":
		return "--jobs"
	case "Concurrency":
		return "--concurrency"
	case "FireJobs":
		return "--fire-jobs"
	case "Duration":
		return "--duration"
	}
	return field
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure hasched on your etcd or ZooKeeper, beside the raw client",
		Long: `Measure hasched on an etcd cluster or a ZooKeeper ensemble of your own, and
print each figure beside what the backend's raw client does on the same
servers:

  - job registrations per second through the REST API (--concurrency
    clients, --jobs jobs), beside raw creates of nodes of the same size;
  - GET /api/job/jobs with those jobs, on the leader and on a standby,
    beside the raw client reading as many nodes;
  - a graceful takeover: the leader resigns, until the standby serves;
  - schedule lag p50/p99 (cron fire time to the executor's launch) and
    launches per second, with --fire-jobs jobs firing every second for
    --duration, after they have fired for 3 s (the report notes the lag
    of those first seconds apart).

It runs two schedulers in this process, each with its REST API on a
loopback port and an executor that runs nothing (every task reports RUNNING
and FINISHED at once), in a namespace of its own: --coord's namespace with
"-bench-" and a random suffix. It removes that namespace when it ends, also
on an error or Ctrl-C (a second Ctrl-C stops at once and leaves it). The
account in --coord needs to write there.

--coord takes the URL serve takes, TLS and credentials included (see
'hasched serve --help'); the embedded etcd is not benchmarked.

A large --jobs takes a while: the leader registers some 500 to 2,000 jobs a
second on a 2-core machine, and the raw client reads ZooKeeper nodes one
round trip each.`,
		Example: `  # etcd, 1,000 jobs, 100 jobs firing every second for 10 s
  hasched bench --coord etcd://10.0.0.1:2379/hasched

  # ZooKeeper with a digest, 10,000 jobs, as JSON
  hasched bench --coord 'zk://10.0.0.1:2181/hasched?digest-file=/etc/hasched/zk-digest' \
      --jobs 10000 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.validate()
			if err != nil {
				return err
			}
			cfg.Logger = hclog.New(&hclog.LoggerOptions{
				Name:       "hasched-bench",
				Level:      hclog.LevelFromString(f.logLevel),
				JSONFormat: f.logJSON,
				Output:     cmd.ErrOrStderr(),
			})
			return runBench(cmd, cfg, f.json)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.coord, "coord", "", "the coordinator to measure: etcd://host:2379[,host:2379…]/namespace or zk://host:2181[,host:2181…]/namespace, with TLS and credentials as query parameters as for serve; the bench works in <namespace>-bench-<random>")
	fs.IntVar(&f.jobs, "jobs", bench.DefaultJobs, fmt.Sprintf("jobs to register (1 to %d)", bench.MaxJobs))
	fs.IntVar(&f.concurrency, "concurrency", bench.DefaultConcurrency, fmt.Sprintf("HTTP clients registering at once, and raw clients creating (1 to %d)", bench.MaxConcurrency))
	fs.IntVar(&f.fireJobs, "fire-jobs", bench.DefaultFireJobs, fmt.Sprintf("jobs firing every second while the schedule lag is measured (1 to %d)", bench.MaxFireJobs))
	fs.DurationVar(&f.duration, "duration", bench.DefaultDuration, fmt.Sprintf("how long the fires are measured (%v to %v)", bench.MinDuration, bench.MaxDuration))
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level on stderr: trace, debug, info, warn, error or off")
	fs.BoolVar(&f.logJSON, "log-json", false, "log as JSON lines")
	return cmd
}

// validate checks every flag and builds the bench's configuration; it
// touches nothing.
func (f benchFlags) validate() (bench.Config, error) {
	if f.coord == "" {
		return bench.Config{}, usagef("--coord is required: etcd://host:2379/namespace or zk://host:2181/namespace")
	}
	if f.coord == coordEmbedded {
		return bench.Config{}, usagef("--coord embedded: the bench measures an etcd or ZooKeeper of yours; give etcd://host:2379/namespace or zk://host:2181/namespace")
	}
	display, err := checkCoordURL(f.coord, "")
	if err != nil {
		return bench.Config{}, err
	}
	if hclog.LevelFromString(f.logLevel) == hclog.NoLevel {
		return bench.Config{}, usagef("--log-level %q is unknown; use trace, debug, info, warn, error or off", f.logLevel)
	}
	cfg := bench.Config{
		URL: f.coord, Display: display,
		Jobs: f.jobs, Concurrency: f.concurrency, FireJobs: f.fireJobs, Duration: f.duration,
	}
	cfg, err = cfg.Validate()
	var ce *bench.ConfigError
	if errors.As(err, &ce) {
		return cfg, usagef("%s %s: %s", benchFlag(ce.Field), ce.Value, ce.Reason)
	}
	return cfg, err
}

// runBench runs the bench until it ends or a signal comes, and prints its
// report, also the part measured before an error.
func runBench(cmd *cobra.Command, cfg bench.Config, asJSON bool) error {
	ctx, stopSignals := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	// The first signal ends the run, which then removes its namespace; from
	// then on a second signal kills the process at once.
	stop := context.AfterFunc(ctx, stopSignals)
	defer stop()

	rep, err := bench.Run(ctx, cfg)
	if err != nil && len(rep.Rows) == 0 {
		return benchError(cmd.Context(), ctx, rep, err)
	}
	var perr error
	if asJSON {
		perr = rep.WriteJSON(cmd.OutOrStdout())
	} else {
		perr = rep.WriteTable(cmd.OutOrStdout())
	}
	if err != nil {
		return benchError(cmd.Context(), ctx, rep, err)
	}
	return perr
}

// benchError says what became of the namespace along with the error.
func benchError(parent, ctx context.Context, rep bench.Report, err error) error {
	if ctx.Err() != nil && parent.Err() == nil {
		err = errors.New("interrupted")
	}
	switch {
	case rep.Namespace == "":
		return err
	case rep.NamespaceRemoved:
		return fmt.Errorf("%w (namespace %s removed)", err, rep.Namespace)
	}
	return fmt.Errorf("%w (namespace %s may be left: remove it with etcdctl del --prefix /%s/ or zkCli deleteall /%s)", err, rep.Namespace, rep.Namespace, rep.Namespace)
}
