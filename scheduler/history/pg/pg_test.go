package pg_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/history"
	"github.com/hasched/hasched/scheduler/history/pg"
	"github.com/hasched/hasched/scheduler/model"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func TestStatesAreElasticJobs(t *testing.T) {
	for s, want := range map[executor.State]string{
		executor.StateStaging: "TASK_STAGING", executor.StateRunning: "TASK_RUNNING",
		executor.StateFinished: "TASK_FINISHED", executor.StateFailed: "TASK_FAILED",
		executor.StateTimedOut: "TASK_FAILED", executor.StateKilled: "TASK_KILLED",
		executor.StateLost: "TASK_LOST", executor.StateUnknown: "TASK_UNKNOWN", "": "TASK_UNKNOWN",
	} {
		if got := pg.State(s); got != want {
			t.Errorf("State(%q) = %q, want %q", s, got, want)
		}
	}
}

func endEvent(attempt int, state executor.State) events.Event {
	return events.Event{
		Kind: events.Ended, Time: t0.Add(time.Minute), Job: "j", TaskID: model.TaskID("j", t0, 2, attempt),
		Shard: 2, Attempt: attempt, FireTime: t0, Host: "10.0.0.7", State: state, ExitCode: 1, Message: "boom",
		StartedAt: t0.Add(time.Second), EndedAt: t0.Add(30 * time.Second), Outcome: events.GivenUp,
	}
}

func TestRowsOfAnEnd(t *testing.T) {
	ev := endEvent(1, executor.StateFailed)
	ex, _ := history.FromEvent(ev)
	row := pg.ExecutionLogOf(ex)
	want := pg.ExecutionLog{ID: row.ID, JobName: "j", TaskID: ev.TaskID, Hostname: "10.0.0.7", IP: "10.0.0.7",
		ShardingItem: 2, ExecutionSource: pg.SourceFailover, FailureCause: "FAILED, exit code 1: boom",
		IsSuccess: false, StartTime: ev.StartedAt, CompleteTime: ev.EndedAt}
	if row != want {
		t.Fatalf("ExecutionLogOf = %+v, want %+v", row, want)
	}
	if len(row.ID) != 40 || pg.ExecutionLogOf(ex).ID != row.ID {
		t.Fatalf("id %q: want 40 characters, the same for the same run", row.ID)
	}
	ok := endEvent(0, executor.StateFinished)
	okEx, _ := history.FromEvent(ok)
	if r := pg.ExecutionLogOf(okEx); r.ExecutionSource != pg.SourceNormalTrigger || !r.IsSuccess || r.FailureCause != "" || r.ID == row.ID {
		t.Fatalf("a first attempt that finished: %+v", r)
	}

	trace := pg.StatusTraceOf(ev)
	wantTrace := pg.StatusTrace{ID: trace.ID, JobName: "j", OriginalTaskID: model.TaskID("j", t0, 2, 0), TaskID: ev.TaskID,
		SlaveID: "10.0.0.7", Source: pg.TraceSource, ExecutionType: pg.TypeFailover, ShardingItem: "2",
		State: "TASK_FAILED", Message: "boom", CreationTime: ev.EndedAt}
	if trace != wantTrace {
		t.Fatalf("StatusTraceOf = %+v, want %+v", trace, wantTrace)
	}
	launched := events.Event{Kind: events.Launched, Time: t0, Job: "j", TaskID: model.TaskID("j", t0, 0, 0), FireTime: t0}
	if tr := pg.StatusTraceOf(launched); tr.State != "TASK_STAGING" || tr.ExecutionType != pg.TypeReady || tr.OriginalTaskID != "" || tr.ID == trace.ID {
		t.Fatalf("StatusTraceOf(Launched) = %+v", tr)
	}
	to := endEvent(0, executor.StateTimedOut)
	to.Message = ""
	if tr := pg.StatusTraceOf(to); tr.State != "TASK_FAILED" || tr.Message != "timed out" {
		t.Fatalf("StatusTraceOf(a timeout) = %+v, want TASK_FAILED saying timed out", tr)
	}
}

func TestConfigIsValidatedAndThePasswordNeverShown(t *testing.T) {
	for _, tc := range []struct {
		cfg  pg.Config
		want string
	}{
		{pg.Config{}, "URL is empty"},
		{pg.Config{URL: "postgres://u:pw@h/db", QueueSize: -1}, "QueueSize"},
		{pg.Config{URL: "postgres://u:pw@h/db", MaxConns: pg.MaxMaxConns + 1}, "MaxConns"},
		{pg.Config{URL: "postgres://u:pw@h/db", WriteTimeout: time.Hour}, "WriteTimeout"},
		{pg.Config{URL: "postgres://u:s3cr3t-pw@h:notaport/db"}, "does not parse"},
	} {
		_, err := pg.New(tc.cfg)
		if !errors.Is(err, pg.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) = %v, want ErrInvalidConfig saying %q", tc.want, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// silentServer accepts connections and never answers: a database that is
// up on the network and hung, the case that costs a writer its timeouts.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func TestAHungDatabaseNeverBlocksEmit(t *testing.T) {
	var logged strings.Builder
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	})})
	s, err := pg.New(pg.Config{
		URL:    "postgres://hasched:s3cr3t-pw@" + silentServer(t) + "/db?sslmode=disable",
		Logger: log, QueueSize: 4, WriteTimeout: 200 * time.Millisecond, ConnectTimeout: 100 * time.Millisecond,
		FlushTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 10_000
	for i := range n {
		ev := endEvent(0, executor.StateFinished)
		ev.TaskID = model.TaskID("j", t0.Add(time.Duration(i)*time.Second), 0, 0)
		s.Emit(ev)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("%d Emits with a hung database took %v; Emit must not wait on it", n, took)
	}
	if d := s.Dropped(); d < n-4-1 {
		t.Fatalf("Dropped = %d, want those that found the queue full counted (about %d)", d, n-5)
	}
	// Close gives the queue up after FlushTimeout: it must not wait out
	// every queued event's timeout.
	closed := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(closed); took > 2*time.Second {
		t.Fatalf("Close took %v with a hung database", took)
	}
	if s.Written() != 0 || s.Failed() == 0 {
		t.Fatalf("written %d, failed %d: want failures counted, nothing written", s.Written(), s.Failed())
	}
	mu.Lock()
	out := logged.String()
	mu.Unlock()
	if !strings.Contains(out, "not written to PostgreSQL") {
		t.Fatalf("no failure logged: %q", out)
	}
	if strings.Contains(out, "s3cr3t") {
		t.Fatalf("the log shows the password: %q", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
