package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasched/hasched/internal/client"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
)

// maxDefinition caps an app or job file.
const maxDefinition = 1 << 20

// clientFlags are the flags of every command that talks to a server.
type clientFlags struct {
	server       string
	user         string
	password     string
	passwordFile string
	caCert       string
	clientCert   string
	clientKey    string
	output       string
	timeout      time.Duration
}

func addClientFlags(cmd *cobra.Command) *clientFlags {
	cf := &clientFlags{}
	fs := cmd.PersistentFlags()
	fs.StringVar(&cf.server, "server", client.DefaultBaseURL, "URL of a hasched server (any process of the cluster)")
	fs.StringVar(&cf.user, "user", "", "user name for HTTP Basic auth (needed for writes if the server has --auth-user)")
	fs.StringVar(&cf.password, "password", "", "password for HTTP Basic auth; on the command line every user of the host sees it (ps): prefer $HASCHED_PASSWORD or --password-file")
	fs.StringVar(&cf.passwordFile, "password-file", "", "file holding the password for HTTP Basic auth (its first line)")
	fs.StringVar(&cf.caCert, "ca-cert", "", "PEM CA bundle to verify an https:// --server with (default: the system's roots)")
	fs.StringVar(&cf.clientCert, "client-cert", "", "PEM client certificate for a server with --tls-client-ca (with --client-key)")
	fs.StringVar(&cf.clientKey, "client-key", "", "the PEM private key of --client-cert")
	fs.StringVarP(&cf.output, "output", "o", outputTable, "output format: table or json")
	fs.DurationVar(&cf.timeout, "timeout", 30*time.Second, "how long to wait for the server")
	return cf
}

// session is one client command's connection to the server.
type session struct {
	c      *client.Client
	ctx    context.Context
	out    io.Writer
	format string
}

// connect validates the client flags; the context it returns ends after
// --timeout.
func (cf *clientFlags) connect(cmd *cobra.Command) (*session, context.CancelFunc, error) {
	switch cf.output {
	case outputTable, outputJSON:
	default:
		return nil, nil, usagef("--output %q: use table or json", cf.output)
	}
	if cf.timeout <= 0 {
		return nil, nil, usagef("--timeout %v: must be positive", cf.timeout)
	}
	var warnings []string
	password, err := secretFrom("--password", cf.password, "--password-file", cf.passwordFile, cmd.Flags().Changed("password"), &warnings)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	tlsConfig, err := cf.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(client.Config{
		BaseURL:   cf.server,
		User:      cf.user,
		Password:  password,
		UserAgent: "hasched/" + buildVersion(),
		TLS:       tlsConfig,
	})
	if err != nil {
		return nil, nil, usagef("--server/--user/--password: %v", err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), cf.timeout)
	return &session{c: c, ctx: ctx, out: cmd.OutOrStdout(), format: cf.output}, cancel, nil
}

// tlsConfig is the client's TLS for https:// servers: nil (the system's
// roots) unless --ca-cert or --client-cert says otherwise.
func (cf *clientFlags) tlsConfig() (*tls.Config, error) {
	if (cf.clientCert == "") != (cf.clientKey == "") {
		return nil, usagef("--client-cert and --client-key go together")
	}
	if cf.caCert == "" && cf.clientCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cf.caCert != "" {
		pool, err := loadCAFile(cf.caCert)
		if err != nil {
			return nil, usagef("--ca-cert: %v", err)
		}
		tc.RootCAs = pool
	}
	if cf.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(cf.clientCert, cf.clientKey)
		if err != nil {
			return nil, usagef("--client-cert/--client-key: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// clientRun adapts a client command body to cobra.
func clientRun(cf *clientFlags, f func(s *session, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, cancel, err := cf.connect(cmd)
		if err != nil {
			return err
		}
		defer cancel()
		return f(s, args)
	}
}

// result prints the answer to a write.
func (s *session) result(res api.Result, err error) error {
	if err != nil {
		return err
	}
	if s.format == outputJSON {
		return printJSON(s.out, res)
	}
	_, err = fmt.Fprintln(s.out, res.Message)
	return err
}

// readDefinition reads a JSON file named by -f ("-": standard input).
func readDefinition(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "" {
		return nil, usagef("%s needs -f FILE (-f - reads standard input)", cmd.CommandPath())
	}
	var r io.Reader = cmd.InOrStdin()
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, path
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDefinition+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxDefinition {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxDefinition)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", name, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%s is not a JSON object", name)
	}
	return b, nil
}

func newAppCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Register, inspect and manage apps (where a job's code comes from)",
		Example: `  hasched app register -f app.json
  hasched app list
  hasched app get foo_app -o json`,
		Args: noArgs,
	}
	cf := addClientFlags(cmd)
	cmd.AddCommand(
		fileCmd(cf, "app", "register", "Register an app",
			`  hasched app register -f app.json
  echo '{"appName":"foo_app","bootstrapScript":"bin/start.sh"}' | hasched app register -f -`,
			(*client.Client).RegisterAppJSON),
		fileCmd(cf, "app", "update", "Replace an app's configuration",
			"  hasched app update -f app.json",
			(*client.Client).UpdateAppJSON),
		&cobra.Command{
			Use:     "get NAME",
			Short:   "Show an app",
			Example: "  hasched app get foo_app\n  hasched app get foo_app -o json",
			Args:    exactArgs("NAME"),
			RunE: clientRun(cf, func(s *session, args []string) error {
				app, err := s.c.App(s.ctx, args[0])
				if err != nil {
					return err
				}
				if s.format == outputJSON {
					return printJSON(s.out, app)
				}
				disabled, err := s.c.AppDisabled(s.ctx, args[0])
				if err != nil {
					return err
				}
				return details(s.out,
					[2]string{"Name", app.AppName},
					[2]string{"App URL", orDash(app.AppURL)},
					[2]string{"Bootstrap script", orDash(app.BootstrapScript)},
					[2]string{"CPU count", num(app.CPUCount)},
					[2]string{"Memory MB", num(app.MemoryMB)},
					[2]string{"App cache", yesNo(app.AppCacheEnable)},
					[2]string{"Event trace sampling", strconv.Itoa(app.EventTraceSamplingCount)},
					[2]string{"Disabled", yesNo(disabled)},
				)
			}),
		},
		&cobra.Command{
			Use:     "list",
			Short:   "List the apps",
			Example: "  hasched app list\n  hasched app list -o json",
			Args:    noArgs,
			RunE: clientRun(cf, func(s *session, _ []string) error {
				apps, err := s.c.Apps(s.ctx)
				if err != nil {
					return err
				}
				if s.format == outputJSON {
					return printJSON(s.out, nonNil(apps))
				}
				t := newTable(s.out, "NAME", "APP URL", "BOOTSTRAP SCRIPT", "CPU", "MEMORY MB", "CACHE")
				for _, a := range apps {
					t.row(a.AppName, orDash(a.AppURL), orDash(a.BootstrapScript), num(a.CPUCount), num(a.MemoryMB), yesNo(a.AppCacheEnable))
				}
				return t.flush()
			}),
		},
		nameCmd(cf, "deregister", "Remove an app, with every job of it (their tasks are killed)",
			"  hasched app deregister foo_app", (*client.Client).DeregisterApp),
		nameCmd(cf, "disable", "Disable an app: none of its jobs is launched until it is enabled",
			"  hasched app disable foo_app", (*client.Client).DisableApp),
		nameCmd(cf, "enable", "Enable a disabled app",
			"  hasched app enable foo_app", (*client.Client).EnableApp),
	)
	return cmd
}

// fileCmd is a write that sends the definition of one kind ("app" or
// "job") read from --file.
func fileCmd(cf *clientFlags, kind, use, short, example string, send func(*client.Client, context.Context, []byte) (api.Result, error)) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:     use + " -f FILE",
		Short:   short,
		Example: example,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readDefinition(cmd, file)
			if err != nil {
				return err
			}
			return clientRun(cf, func(s *session, _ []string) error {
				return s.result(send(s.c, s.ctx, body))
			})(cmd, args)
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "the "+kind+" as Elastic-Job-Cloud JSON; - reads standard input")
	return c
}

// nameCmd is a write that takes one name.
func nameCmd(cf *clientFlags, use, short, example string, send func(*client.Client, context.Context, string) (api.Result, error)) *cobra.Command {
	return &cobra.Command{
		Use:     use + " NAME",
		Short:   short,
		Example: example,
		Args:    exactArgs("NAME"),
		RunE: clientRun(cf, func(s *session, args []string) error {
			return s.result(send(s.c, s.ctx, args[0]))
		}),
	}
}

// newJobTriggerCmd is `hasched job trigger NAME [--param P]`.
func newJobTriggerCmd(cf *clientFlags) *cobra.Command {
	var param string
	cmd := &cobra.Command{
		Use:   "trigger NAME",
		Short: "Run a TRANSIENT job once, now (with its own job parameter: --param)",
		Example: `  hasched job trigger foo_job
  hasched job trigger foo_job --param day=2026-12-01`,
		Args: exactArgs("NAME"),
	}
	cmd.Flags().StringVar(&param, "param", "", "the run's job parameter, in place of the job's (an empty value counts when given)")
	cmd.RunE = clientRun(cf, func(s *session, args []string) error {
		tr := model.Trigger{JobName: args[0]}
		if cmd.Flags().Changed("param") {
			tr.JobParameter = &param
		}
		return s.result(s.c.TriggerJobWith(s.ctx, tr))
	})
	return cmd
}

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Register, inspect, trigger and manage jobs",
		Example: `  hasched job register -f job.json
  hasched job list
  hasched job trigger foo_job`,
		Args: noArgs,
	}
	cf := addClientFlags(cmd)
	cmd.AddCommand(
		fileCmd(cf, "job", "register", "Register a job",
			`  hasched job register -f job.json
  cat <<'EOF' | hasched job register -f -
  {"jobName":"foo_job","appName":"foo_app","cron":"0/30 * * * * ?",
   "shardingTotalCount":2,"scriptCommandLine":"echo shard $HASCHED_SHARDING_ITEM"}
  EOF`,
			(*client.Client).RegisterJobJSON),
		fileCmd(cf, "job", "update", "Replace a job's configuration",
			"  hasched job update -f job.json",
			(*client.Client).UpdateJobJSON),
		nameCmd(cf, "deregister", "Remove a job (its tasks are killed)",
			"  hasched job deregister foo_job", (*client.Client).DeregisterJob),
		newJobTriggerCmd(cf),
		nameCmd(cf, "disable", "Disable a job: it is not launched until it is enabled",
			"  hasched job disable foo_job", (*client.Client).DisableJob),
		nameCmd(cf, "enable", "Enable a disabled job",
			"  hasched job enable foo_job", (*client.Client).EnableJob),
		jobHistoryCmd(cf),
		&cobra.Command{
			Use:     "list",
			Short:   "List the jobs",
			Example: "  hasched job list\n  hasched job list -o json",
			Args:    noArgs,
			RunE: clientRun(cf, func(s *session, _ []string) error {
				jobs, err := s.c.Jobs(s.ctx)
				if err != nil {
					return err
				}
				if s.format == outputJSON {
					return printJSON(s.out, nonNil(jobs))
				}
				t := newTable(s.out, "NAME", "APP", "TYPE", "CRON", "TIME ZONE", "SHARDS", "CPU", "MEMORY MB", "FAILOVER", "MISFIRE")
				for _, j := range jobs {
					t.row(j.JobName, j.AppName, string(j.JobExecutionType), orDash(j.Cron), orDash(j.TimeZone),
						strconv.Itoa(j.ShardingTotalCount), num(j.CPUCount), num(j.MemoryMB), yesNo(j.Failover), yesNo(j.Misfire))
				}
				return t.flush()
			}),
		},
		&cobra.Command{
			Use:     "get NAME",
			Short:   "Show a job",
			Example: "  hasched job get foo_job\n  hasched job get foo_job -o json",
			Args:    exactArgs("NAME"),
			RunE: clientRun(cf, func(s *session, args []string) error {
				job, err := s.c.Job(s.ctx, args[0])
				if err != nil {
					return err
				}
				if s.format == outputJSON {
					return printJSON(s.out, job)
				}
				disabled, err := s.c.JobDisabled(s.ctx, args[0])
				if err != nil {
					return err
				}
				return details(s.out,
					[2]string{"Name", job.JobName},
					[2]string{"App", job.AppName},
					[2]string{"Execution type", string(job.JobExecutionType)},
					[2]string{"Cron", orDash(job.Cron)},
					[2]string{"Time zone", orDash(job.TimeZone)},
					[2]string{"Sharding total count", strconv.Itoa(job.ShardingTotalCount)},
					[2]string{"Sharding item parameters", orDash(job.ShardingItemParameters)},
					[2]string{"Job parameter", orDash(job.JobParameter)},
					[2]string{"CPU count", num(job.CPUCount)},
					[2]string{"Memory MB", num(job.MemoryMB)},
					[2]string{"Failover", yesNo(job.Failover)},
					[2]string{"Misfire", yesNo(job.Misfire)},
					[2]string{"Concurrency policy", orDash(string(job.ConcurrencyPolicy))},
					[2]string{"Retries", strconv.Itoa(job.Retries)},
					[2]string{"Timeout", timeoutText(job.Timeout())},
					[2]string{"Script command line", orDash(job.ScriptCommandLine)},
					[2]string{"Description", orDash(job.Description)},
					[2]string{"Disabled", yesNo(disabled)},
				)
			}),
		},
	)
	return cmd
}

var taskKinds = []string{"running", "ready", "failover"}

func newTasksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tasks [running|ready|failover]",
		Short: "Show running tasks and the ready and failover queues",
		Long: `Show the tasks the scheduler believes run, the jobs waiting on the ready queue
and the tasks waiting on the failover queue; all three without an argument.`,
		Example: `  hasched tasks
  hasched tasks running
  hasched tasks failover -o json`,
		ValidArgs: taskKinds,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one argument; got %q", cmd.CommandPath(), args)
			}
			if len(args) == 1 && !slices.Contains(taskKinds, args[0]) {
				return usagef("%s: unknown kind %q (use running, ready or failover)", cmd.CommandPath(), args[0])
			}
			return nil
		},
	}
	cf := addClientFlags(cmd)
	cmd.RunE = clientRun(cf, func(s *session, args []string) error {
		kinds := taskKinds
		if len(args) == 1 {
			kinds = args
		}
		all := map[string]any{}
		for i, kind := range kinds {
			var v any
			var err error
			switch kind {
			case "running":
				v, err = s.c.RunningTasks(s.ctx)
			case "ready":
				v, err = s.c.ReadyTasks(s.ctx)
			case "failover":
				v, err = s.c.FailoverTasks(s.ctx)
			}
			if err != nil {
				return err
			}
			if s.format == outputJSON {
				all[kind] = v
				continue
			}
			if len(kinds) > 1 {
				if i > 0 {
					fmt.Fprintln(s.out)
				}
				fmt.Fprintln(s.out, strings.ToUpper(kind))
			}
			if err := printTasks(s.out, v); err != nil {
				return err
			}
		}
		if s.format == outputJSON {
			if len(kinds) == 1 {
				return printJSON(s.out, all[kinds[0]])
			}
			return printJSON(s.out, all)
		}
		return nil
	})
	return cmd
}

func printTasks(w io.Writer, v any) error {
	switch tasks := v.(type) {
	case []model.ReadyEntry:
		if len(tasks) == 0 {
			_, err := fmt.Fprintln(w, "(none)")
			return err
		}
		t := newTable(w, "JOB", "TIMES", "FIRE TIMES")
		for _, r := range tasks {
			t.row(r.Job, strconv.Itoa(r.Times), fireTimes(r.FireTimes))
		}
		return t.flush()
	case []model.TaskRecord:
		if len(tasks) == 0 {
			_, err := fmt.Fprintln(w, "(none)")
			return err
		}
		t := newTable(w, "TASK ID", "JOB", "SHARD", "STATE", "ATTEMPT", "HOST", "FIRE TIME", "UPDATED", "MESSAGE")
		for _, r := range tasks {
			t.row(r.ID, r.Job, strconv.Itoa(r.Shard), string(r.State), strconv.Itoa(r.Attempt), orDash(r.Host),
				timestamp(r.FireTime), timestamp(r.UpdatedAt), orDash(r.Message))
		}
		return t.flush()
	}
	return fmt.Errorf("unexpected task list %T", v)
}

// fireTimes shows the first few pending fire times.
func fireTimes(ts []time.Time) string {
	const show = 3
	var parts []string
	for i, t := range ts {
		if i == show {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(ts)-show))
			break
		}
		parts = append(parts, timestamp(t))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the server's view of the cluster: whether it leads, and who does",
		Example: `  hasched status
  hasched status --server http://10.0.0.2:8899 -o json`,
		Args: noArgs,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = clientRun(cf, func(s *session, _ []string) error {
		st, err := s.c.Status(s.ctx)
		if err != nil {
			return err
		}
		if s.format == outputJSON {
			return printJSON(s.out, st)
		}
		term := "-"
		if st.Term != 0 {
			term = strconv.FormatInt(st.Term, 10)
		}
		pairs := [][2]string{
			{"Self", orDash(st.Self)},
			{"Leader", yesNo(st.Leader)},
			{"Leader address", orDash(st.LeaderAddress)},
			{"Term", term},
			{"Leader since", timestamp(st.LeaderSince)},
			{"Coordinator", orDash(st.Coordinator)},
			{"Executor", orDash(st.Executor)},
		}
		keys := make([]string, 0, len(st.ExecutorInfo))
		for k := range st.ExecutorInfo {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			pairs = append(pairs, [2]string{"Executor " + k, st.ExecutorInfo[k]})
		}
		return details(s.out, pairs...)
	})
	return cmd
}

func newQuarantineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "Show stored app and job configurations that fail validation",
		Long: `Show the app and job configurations in the store that fail validation (written
by an older version, or behind the API's back, or not even JSON). They are not
scheduled and their state is left alone; register or update the app or job of
that name to replace the configuration, or deregister it.`,
		Example: `  hasched quarantine
  hasched quarantine -o json`,
		Args: noArgs,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = clientRun(cf, func(s *session, _ []string) error {
		q, err := s.c.Quarantined(s.ctx)
		if err != nil {
			return err
		}
		if s.format == outputJSON {
			return printJSON(s.out, nonNil(q))
		}
		if len(q) == 0 {
			_, err := fmt.Fprintln(s.out, "(none)")
			return err
		}
		t := newTable(s.out, "KIND", "NAME", "SEEN", "ERROR")
		for _, c := range q {
			t.row(string(c.Kind), c.Name, timestamp(c.SeenAt), c.Error)
		}
		return t.flush()
	})
	return cmd
}

func newWorkersCmd() *cobra.Command {
	var tasks bool
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "Show the processes that run tasks, their capacity and placed tasks",
		Long: `Show the hasched processes that run tasks (every serve process unless started
with --worker=false): the host, the capacity the leader places against, what
the tasks placed there use, the labels jobs' constraints match, and whether
the process is draining. --tasks lists each worker's tasks too.`,
		Example: `  hasched workers
  hasched workers --tasks
  hasched workers -o json`,
		Args: noArgs,
	}
	cmd.Flags().BoolVar(&tasks, "tasks", false, "list the tasks placed on each worker")
	cf := addClientFlags(cmd)
	cmd.RunE = clientRun(cf, func(s *session, _ []string) error {
		ws, err := s.c.Workers(s.ctx)
		if err != nil {
			return err
		}
		if s.format == outputJSON {
			return printJSON(s.out, nonNil(ws))
		}
		if len(ws) == 0 {
			_, err := fmt.Fprintln(s.out, "(none)")
			return err
		}
		t := newTable(s.out, "NAME", "HOST", "CPUS", "MEMORY MB", "TASKS", "LABELS", "STATE", "SINCE")
		for _, w := range ws {
			state := "up"
			if w.Draining {
				state = "draining"
			}
			t.row(w.Name, w.Host, fmt.Sprintf("%g/%g", w.UsedCPUs, w.CPUs), fmt.Sprintf("%g/%g", w.UsedMemoryMB, w.MemoryMB),
				fmt.Sprint(len(w.Tasks)), model.FormatLabels(w.Labels), state, timestamp(w.Started))
		}
		if err := t.flush(); err != nil || !tasks {
			return err
		}
		fmt.Fprintln(s.out)
		tt := newTable(s.out, "WORKER", "TASK", "JOB", "SHARD", "STATE", "PLACED")
		for _, w := range ws {
			for _, p := range w.Tasks {
				tt.row(w.Name, p.TaskID, p.Job, fmt.Sprint(p.Shard), string(p.State), timestamp(p.PlacedAt))
			}
		}
		return tt.flush()
	})
	return cmd
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// timeoutText shows a job's timeout: a duration, or "-" for none.
func timeoutText(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.String()
}
