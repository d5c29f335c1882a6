package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/history"
	"github.com/hasched/hasched/scheduler/history/pg"
	"github.com/hasched/hasched/scheduler/model"
)

// Run history: `hasched serve`'s flags and the Recorder they make, and
// `hasched job history NAME`.

const (
	flagHistoryKeep            = "history-keep"
	flagHistoryPostgresURL     = "history-postgres-url"
	flagHistoryPostgresURLFile = "history-postgres-url-file"
)

// historySecretEnv is the environment variable that may hold the
// PostgreSQL URL (and so its password); like the API's passwords it is
// dropped from the environment once read, so no task inherits it.
var historySecretEnv = envName(flagHistoryPostgresURL)

// historyFlags are serve's run-history flags.
type historyFlags struct {
	keep             int
	postgresURL      string
	postgresURLFile  string
	urlOnCommandLine bool
}

func (f *historyFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.keep, flagHistoryKeep, history.DefaultKeep, fmt.Sprintf("run history: how many runs of each job the coordinator keeps (1..%d; 0: the default); a deregistered job's history is kept too, up to %d jobs' histories", history.MaxKeep, history.DefaultMaxJobs))
	fs.StringVar(&f.postgresURL, flagHistoryPostgresURL, "", "run history: also write every run to this PostgreSQL database (postgres://user:password@host:5432/db), in Elastic-Job-Cloud's JOB_EXECUTION_LOG and JOB_STATUS_TRACE_LOG tables; it holds a password: prefer $"+historySecretEnv+" or --"+flagHistoryPostgresURLFile)
	fs.StringVar(&f.postgresURLFile, flagHistoryPostgresURLFile, "", "run history: file holding the PostgreSQL URL (its first line)")
}

// historyConfig is what the flags amount to.
type historyConfig struct {
	keep        int
	postgresURL string // a secret
	warnings    []string
}

// validate checks the flags; it reads the URL file but connects nowhere.
func (f historyFlags) validate() (historyConfig, error) {
	if f.keep < 0 || f.keep > history.MaxKeep {
		return historyConfig{}, usagef("--%s %d: must be in 1..%d (0: the default, %d)", flagHistoryKeep, f.keep, history.MaxKeep, history.DefaultKeep)
	}
	cfg := historyConfig{keep: f.keep}
	if cfg.keep == 0 {
		cfg.keep = history.DefaultKeep
	}
	u, err := secretFrom("--"+flagHistoryPostgresURL, f.postgresURL, "--"+flagHistoryPostgresURLFile, f.postgresURLFile, f.urlOnCommandLine, &cfg.warnings)
	if err != nil {
		return cfg, err
	}
	if u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		// Never quote it: it may be a password put in the wrong place.
		return cfg, usagef("--%s: not a postgres:// or postgresql:// URL", flagHistoryPostgresURL)
	}
	cfg.postgresURL = u
	return cfg, nil
}

// dropHistorySecretFromEnv: see historySecretEnv.
func dropHistorySecretFromEnv() { _ = os.Unsetenv(historySecretEnv) }

// startHistory makes the Recorder every serve process runs: it is the
// scheduler's event sink (only the leader's term emits, so standbys record
// nothing) and the API's history reader. With a PostgreSQL URL it hands
// every event to a pg.Sink too, which it owns. The caller closes it.
func startHistory(cfg historyConfig, open func(context.Context) (coord.Coordinator, error), log hclog.Logger) (*history.Recorder, error) {
	log = log.Named("history")
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	var sinks []events.Sink
	if cfg.postgresURL != "" {
		s, err := pg.New(pg.Config{URL: cfg.postgresURL, Logger: log.Named("postgres")})
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagHistoryPostgresURL, err)
		}
		sinks = append(sinks, s)
	}
	r, err := history.NewRecorder(history.Config{Open: open, Keep: cfg.keep, Logger: log, Sinks: sinks})
	if err != nil {
		for _, s := range sinks {
			_ = s.(*pg.Sink).Close()
		}
		return nil, err
	}
	log.Info("run history on", "keep", cfg.keep, "postgres", cfg.postgresURL != "")
	return r, nil
}

// jobHistoryCmd is `hasched job history NAME`.
func jobHistoryCmd(cf *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show a job's last runs, the latest first",
		Long: `Show a job's last runs from run history, the latest first: task id, shard,
attempt, host, start and end, exit code, final state and what the scheduler did
about it. The history of a deregistered job can still be read.`,
		Example: "  hasched job history foo_job\n  hasched job history foo_job --limit 100 -o json",
		Args:    exactArgs("NAME"),
		RunE: clientRun(cf, func(s *session, args []string) error {
			if limit < 1 || limit > model.MaxExecutionsLimit {
				return usagef("--limit %d: must be in 1..%d", limit, model.MaxExecutionsLimit)
			}
			exs, err := s.c.Executions(s.ctx, args[0], limit)
			if err != nil {
				return err
			}
			if s.format == outputJSON {
				return printJSON(s.out, nonNil(exs))
			}
			if len(exs) == 0 {
				_, err := fmt.Fprintln(s.out, "(none)")
				return err
			}
			t := newTable(s.out, "TASK ID", "SHARD", "ATTEMPT", "HOST", "STARTED", "ENDED", "EXIT", "STATE", "OUTCOME", "MESSAGE")
			for _, ex := range exs {
				t.row(ex.TaskID, strconv.Itoa(ex.Shard), strconv.Itoa(ex.Attempt), orDash(ex.Host),
					timestampOrDash(ex), timestamp(ex.CompleteTime), strconv.Itoa(ex.ExitCode), string(ex.State),
					orDash(ex.Outcome), orDash(ex.Message))
			}
			return t.flush()
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", model.DefaultExecutionsLimit, fmt.Sprintf("how many runs to show (1..%d)", model.MaxExecutionsLimit))
	return cmd
}

func timestampOrDash(ex model.Execution) string {
	if ex.StartTime.IsZero() {
		return "-"
	}
	return timestamp(ex.StartTime)
}
