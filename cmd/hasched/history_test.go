package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/history"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

func TestJobHistoryCommand(t *testing.T) {
	st := schedtest.NewStore()
	c, err := st.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	w := store.NewHistoryWriter(c)
	for i, state := range []executor.State{executor.StateFinished, executor.StateFailed, executor.StateTimedOut} {
		fire := t0.Add(time.Duration(i) * time.Minute)
		ex := model.Execution{TaskID: model.TaskID("foo_job", fire, 0, 0), Job: "foo_job", FireTime: fire, Host: "host-a",
			State: state, ExitCode: i, StartTime: fire.Add(time.Second), CompleteTime: fire.Add(10 * time.Second),
			Success: state == executor.StateFinished, Outcome: "done", Message: "run " + string(state)}
		if err := w.Record(context.Background(), ex); err != nil {
			t.Fatal(err)
		}
	}
	r, err := history.NewReader(history.Config{Coordinator: c})
	if err != nil {
		t.Fatal(err)
	}
	_, env := server(t, func(cfg *api.Config) { cfg.History = r })

	out := cli(t, env, "", "job", "history", "foo_job").ok(t).
		has(t, "TASK ID", "EXIT", "OUTCOME", "host-a", "TIMED_OUT", "FAILED", "FINISHED", "2026-12-02T10:02:10Z", "run TIMED_OUT").stdout
	if a, b := strings.Index(out, "TIMED_OUT"), strings.Index(out, "FINISHED"); a > b {
		t.Fatalf("the latest run is not first:\n%s", out)
	}
	var exs []model.Execution
	decodeOut(t, cli(t, env, "", "job", "history", "foo_job", "--limit", "1", "-o", "json").ok(t), &exs)
	if len(exs) != 1 || exs[0].State != executor.StateTimedOut || exs[0].Job != "foo_job" {
		t.Fatalf("job history --limit 1 -o json = %+v, want the latest run only", exs)
	}
	cli(t, env, "", "job", "history", "never_ran").ok(t).has(t, "(none)")
	var none []model.Execution
	if r := cli(t, env, "", "job", "history", "never_ran", "-o", "json").ok(t); strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("-o json of no runs = %q, want []", r.stdout)
	} else {
		decodeOut(t, r, &none)
	}
	cli(t, env, "", "job", "history", "foo_job", "--limit", "0").fails(t, "--limit 0")
	cli(t, env, "", "job", "history", "foo_job", "--limit", "1001").fails(t, "--limit 1001")
	cli(t, env, "", "job", "history").fails(t, "NAME")
	cli(t, env, "", "job", "history", "a@-@b").fails(t, "invalid job")
}

func TestJobHistoryOnAServerWithoutHistory(t *testing.T) {
	_, env := server(t, nil)
	cli(t, env, "", "job", "history", "foo_job").fails(t, "run history is not configured")
}

func TestServeHistoryFlags(t *testing.T) {
	serveRefuses(t, nil, []string{"--history-keep", "-1"}, "--history-keep -1")
	serveRefuses(t, nil, []string{"--history-keep", "10001"}, "--history-keep 10001")
	serveRefuses(t, map[string]string{"HASCHED_HISTORY_KEEP": "20000"}, nil, "--history-keep 20000")

	dir := t.TempDir()
	urlFile := filepath.Join(dir, "pg-url")
	if err := os.WriteFile(urlFile, []byte("postgres://hasched:s3cr3t@db:5432/hist\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serveRefuses(t, nil, []string{"--history-postgres-url", "postgres://u:pw@h/db", "--history-postgres-url-file", urlFile}, "give one")
	serveRefuses(t, nil, []string{"--history-postgres-url-file", filepath.Join(dir, "missing")}, "--history-postgres-url-file")
	// A value that is not a URL is not quoted back: it may be a password.
	r := cli(t, map[string]string{"HASCHED_HISTORY_POSTGRES_URL": "hunter2-not-a-url"}, "", "serve", "--data-dir", filepath.Join(dir, "d")).
		fails(t, "not a postgres:// or postgresql:// URL")
	if strings.Contains(r.stderr, "hunter2") {
		t.Fatalf("the refused URL is shown: %s", r.stderr)
	}

	f := serveFlags{coord: "embedded", dataDir: "d", listen: "127.0.0.1:8899", executor: "local", logLevel: "info",
		embeddedClientURL: "http://127.0.0.1:2379", embeddedPeerURL: "http://127.0.0.1:2380",
		history: historyFlags{keep: 7, postgresURLFile: urlFile}}
	cfg, err := f.validate()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.history.keep != 7 || cfg.history.postgresURL != "postgres://hasched:s3cr3t@db:5432/hist" {
		t.Fatalf("history config = keep %d, url from the file %v", cfg.history.keep, cfg.history.postgresURL != "")
	}
	f.history = historyFlags{}
	if cfg, err := f.validate(); err != nil || cfg.history.keep != history.DefaultKeep || cfg.history.postgresURL != "" {
		t.Fatalf("default history config = %+v, %v; want keep %d and no PostgreSQL", cfg.history.keep, err, history.DefaultKeep)
	}
}

func TestHistorySecretIsDroppedFromTheEnvironment(t *testing.T) {
	t.Setenv(historySecretEnv, "postgres://u:pw@h/db")
	dropHistorySecretFromEnv()
	if _, ok := os.LookupEnv(historySecretEnv); ok {
		t.Fatalf("$%s is still set: tasks would inherit the database password", historySecretEnv)
	}
}

// TestServeServesRunHistory runs serve on an etcd and reads, through its
// API, runs written to that etcd's namespace: the API's reader is wired to
// the coordinator serve uses.
func TestServeServesRunHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	coordURL := startEtcd(t, "history")
	p := startProcess(t, "solo", serveFlags{coord: coordURL, executor: "local", history: historyFlags{keep: 5}})
	x := ctxT(t)
	c, err := coord.Open(x, coordURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		fire := t0.Add(time.Duration(i) * time.Minute)
		ex := model.Execution{TaskID: model.TaskID("job", fire, 0, 0), Job: "job", FireTime: fire, State: executor.StateFinished,
			CompleteTime: fire.Add(time.Second), Success: true, Outcome: "done"}
		if err := store.NewHistoryWriter(c).Record(x, ex); err != nil {
			t.Fatal(err)
		}
	}
	exs, err := p.client.Executions(x, "job", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 2 || exs[0].TaskID != model.TaskID("job", t0.Add(2*time.Minute), 0, 0) {
		t.Fatalf("GET executions through serve = %+v, want the 2 latest runs, the latest first", exs)
	}

	// The leader records the runs it sees end: a triggered run of a job
	// that fails, with where it ran and its exit code.
	if _, err := p.client.RegisterAppJSON(x, []byte(`{"appName":"app","bootstrapScript":"true"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.RegisterJobJSON(x, []byte(`{"jobName":"ran","appName":"app","cron":"0 0 0 1 1 ? 2099","shardingTotalCount":2,"scriptCommandLine":"exit $((HASCHED_SHARDING_ITEM + 4))"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.TriggerJob(x, "ran"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both shards' runs are in the history", 30*time.Second, func() error {
		if exs, err = p.client.Executions(x, "ran", 10); err != nil || len(exs) != 2 {
			return fmt.Errorf("%d runs, %v", len(exs), err)
		}
		return nil
	})
	for _, ex := range exs {
		if ex.State != executor.StateFailed || ex.ExitCode != ex.Shard+4 || ex.Success || ex.Host == "" || ex.StartTime.IsZero() || ex.CompleteTime.IsZero() || ex.Outcome != "given_up" {
			t.Errorf("recorded run %+v, want shard %d FAILED with exit code %d on a host, given up", ex, ex.Shard, ex.Shard+4)
		}
	}
	if out := cli(t, map[string]string{"HASCHED_SERVER": "http://" + p.addr}, "", "job", "history", "ran").ok(t); !strings.Contains(out.stdout, "FAILED") {
		t.Errorf("hasched job history ran:\n%s", out.stdout)
	}

	// A run past its job's timeout is stopped and recorded TIMED_OUT.
	if _, err := p.client.RegisterJobJSON(x, []byte(`{"jobName":"slow","appName":"app","cron":"0 0 0 1 1 ? 2099","timeoutSeconds":1,"scriptCommandLine":"sleep 60"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.TriggerJob(x, "slow"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the slow run is recorded", 30*time.Second, func() error {
		if exs, err = p.client.Executions(x, "slow", 10); err != nil || len(exs) != 1 {
			return fmt.Errorf("%d runs, %v", len(exs), err)
		}
		return nil
	})
	if ex := exs[0]; ex.State != executor.StateTimedOut || ex.CompleteTime.Sub(ex.StartTime) > 20*time.Second {
		t.Errorf("the slow run: %+v, want TIMED_OUT about a second after its start", ex)
	}
}
