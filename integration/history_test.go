package integration

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/history/pg"
	"github.com/hasched/hasched/scheduler/model"
)

// The PostgreSQL image `make images` builds (images/build-postgres.sh);
// the official postgres image has the same contract.
const (
	pgImageEnv     = "HASCHED_PG_IMAGE"
	defaultPGImage = "hasched/postgres:15"
	pgTestPassword = "hasched-test"
)

// startPostgres runs a PostgreSQL container and returns its URL and the
// container.
func startPostgres(t testing.TB) (string, testcontainers.Container) {
	t.Helper()
	c := startContainer(t, imageFromEnv(pgImageEnv, defaultPGImage),
		testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": pgTestPassword, "POSTGRES_DB": "history"}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithWaitStrategyAndDeadline(2*time.Minute, wait.ForListeningPort("5432/tcp"),
			wait.ForLog("database system is ready to accept connections")),
	)
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", pgTestPassword), Host: hostPort(t, c, "5432/tcp"),
		Path: "/history", RawQuery: "sslmode=disable"}
	return u.String(), c
}

var pgT0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func taskEvent(kind events.Kind, fire time.Time, shard, attempt int, state executor.State) events.Event {
	ev := events.Event{Kind: kind, Time: fire.Add(2 * time.Second), Job: "report_job", TaskID: model.TaskID("report_job", fire, shard, attempt),
		Shard: shard, Attempt: attempt, FireTime: fire, Host: "10.1.2.3", State: state}
	if kind == events.Launched {
		ev.Time = fire.Add(time.Second)
	}
	if kind == events.Ended {
		ev.StartedAt, ev.EndedAt, ev.Time = fire.Add(time.Second), fire.Add(40*time.Second), fire.Add(41*time.Second)
		ev.Outcome = events.Done
		if state != executor.StateFinished {
			ev.ExitCode, ev.Message, ev.Outcome = 2, "exit status 2", events.GivenUp
		}
	}
	return ev
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHistoryPostgresWritesElasticJobTables writes a run that finished and
// one that failed through the sink, one of them twice, and reads
// Elastic-Job's tables back as its reports do.
func TestHistoryPostgresWritesElasticJobTables(t *testing.T) {
	dbURL, _ := startPostgres(t)
	s, err := pg.New(pg.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fireB := pgT0.Add(time.Minute)
	evs := []events.Event{
		taskEvent(events.Launched, pgT0, 0, 0, ""),
		taskEvent(events.Running, pgT0, 0, 0, executor.StateRunning),
		taskEvent(events.Ended, pgT0, 0, 0, executor.StateFinished),
		taskEvent(events.Ended, pgT0, 0, 0, executor.StateFinished), // again: the same rows
		taskEvent(events.Ended, fireB, 1, 1, executor.StateFailed),
		{Kind: events.Fired, Job: "report_job", FireTime: pgT0}, // not a task's: not written
	}
	for _, ev := range evs {
		s.Emit(ev)
	}
	waitFor(t, "5 events are written", 30*time.Second, func() bool { return s.Written()+s.Failed() >= 5 })
	if s.Failed() != 0 || s.Dropped() != 0 {
		t.Fatalf("failed %d, dropped %d; want every event written", s.Failed(), s.Dropped())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	type execRow struct {
		taskID, host, ip, source string
		shard                    int
		success                  bool
		cause                    *string
		start, complete          time.Time
	}
	rows, err := conn.Query(ctx, `SELECT task_id, hostname, ip, execution_source, sharding_item, is_success, failure_cause,
		start_time, complete_time FROM job_execution_log WHERE job_name = $1 ORDER BY complete_time`, "report_job")
	if err != nil {
		t.Fatal(err)
	}
	execs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (execRow, error) {
		var e execRow
		err := r.Scan(&e.taskID, &e.host, &e.ip, &e.source, &e.shard, &e.success, &e.cause, &e.start, &e.complete)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(execs) != 2 {
		t.Fatalf("JOB_EXECUTION_LOG has %d rows, want 2 (one per run; the repeated end is the same row): %+v", len(execs), execs)
	}
	a, b := execs[0], execs[1]
	if a.taskID != model.TaskID("report_job", pgT0, 0, 0) || !a.success || a.cause != nil || a.source != "NORMAL_TRIGGER" ||
		a.host != "10.1.2.3" || a.ip != "10.1.2.3" || a.shard != 0 ||
		!a.start.Equal(pgT0.Add(time.Second)) || !a.complete.Equal(pgT0.Add(40*time.Second)) {
		t.Fatalf("the finished run's row: %+v", a)
	}
	if b.success || b.cause == nil || *b.cause != "FAILED, exit code 2: exit status 2" || b.source != "FAILOVER" || b.shard != 1 {
		t.Fatalf("the failed retry's row: %+v (cause %v)", b, deref(b.cause))
	}

	rows, err = conn.Query(ctx, `SELECT task_id, state, execution_type, original_task_id, source, sharding_item, slave_id
		FROM job_status_trace_log WHERE job_name = $1 ORDER BY creation_time, state`, "report_job")
	if err != nil {
		t.Fatal(err)
	}
	traces, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var task, state, typ, orig, source, shard, slave string
		err := r.Scan(&task, &state, &typ, &orig, &source, &shard, &slave)
		return fmt.Sprintf("%s %s %s orig=%s %s shard=%s on %s", task, state, typ, orig, source, shard, slave), err
	})
	if err != nil {
		t.Fatal(err)
	}
	idA, idB := model.TaskID("report_job", pgT0, 0, 0), model.TaskID("report_job", fireB, 1, 1)
	want := []string{
		idA + " TASK_STAGING READY orig= CLOUD_SCHEDULER shard=0 on 10.1.2.3",
		idA + " TASK_RUNNING READY orig= CLOUD_SCHEDULER shard=0 on 10.1.2.3",
		idA + " TASK_FINISHED READY orig= CLOUD_SCHEDULER shard=0 on 10.1.2.3",
		idB + " TASK_FAILED FAILOVER orig=" + model.TaskID("report_job", fireB, 1, 0) + " CLOUD_SCHEDULER shard=1 on 10.1.2.3",
	}
	if !slices.Equal(traces, want) {
		t.Fatalf("JOB_STATUS_TRACE_LOG:\n%q\nwant\n%q", traces, want)
	}
	// Elastic-Job's reports look tasks up by this index.
	var idx int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'job_status_trace_log' AND indexname = 'task_id_state_index'`).Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("TASK_ID_STATE_INDEX: %d, %v", idx, err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestHistoryPostgresDownNeverBlocksEmit pauses the database under a sink
// that has written to it: every write then hangs until its timeout, and
// Emit must stay as fast as ever, dropping what the queue cannot hold.
// Thawed, the sink writes again.
func TestHistoryPostgresDownNeverBlocksEmit(t *testing.T) {
	dbURL, c := startPostgres(t)
	docker, err := testcontainers.NewDockerClientWithOpts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Terminate (registered earlier, so run later) needs it thawed.
		_, _ = docker.ContainerUnpause(ctx, c.GetContainerID(), client.ContainerUnpauseOptions{})
		_ = docker.Close()
	})
	s, err := pg.New(pg.Config{URL: dbURL, QueueSize: 16, WriteTimeout: 500 * time.Millisecond,
		ConnectTimeout: 500 * time.Millisecond, FlushTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Emit(taskEvent(events.Ended, pgT0, 0, 0, executor.StateFinished))
	waitFor(t, "the first write", 30*time.Second, func() bool { return s.Written() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := docker.ContainerPause(ctx, c.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	var slowest time.Duration
	start := time.Now()
	for i := range n {
		ev := taskEvent(events.Ended, pgT0.Add(time.Duration(i+1)*time.Minute), 0, 0, executor.StateFinished)
		t0 := time.Now()
		s.Emit(ev)
		slowest = max(slowest, time.Since(t0))
	}
	total := time.Since(start)
	if total > time.Second || slowest > 100*time.Millisecond {
		t.Fatalf("%d Emits with the database paused took %v, the slowest %v; Emit must not wait on the database", n, total, slowest)
	}
	if d := s.Dropped(); d < n-16-1 {
		t.Fatalf("Dropped = %d, want those that found the queue full counted (about %d)", d, n-17)
	}
	waitFor(t, "writes to the paused database fail by their timeout", 30*time.Second, func() bool { return s.Failed() > 0 })
	t.Logf("paused: %d Emits in %v (slowest %v), %d dropped, %d failed", n, total, slowest, s.Dropped(), s.Failed())

	if _, err := docker.ContainerUnpause(ctx, c.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		t.Fatal(err)
	}
	written := s.Written()
	waitFor(t, "the sink writes again once the database is back", 30*time.Second, func() bool {
		s.Emit(taskEvent(events.Ended, pgT0.Add(-time.Hour), 0, 0, executor.StateFinished))
		time.Sleep(100 * time.Millisecond)
		return s.Written() > written
	})
	closed := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(closed); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
}
