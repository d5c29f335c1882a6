package history_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/history"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
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

// ended is the Ended event of job's run fired i minutes after t0.
func ended(job string, i int) events.Event {
	fire := t0.Add(time.Duration(i) * time.Minute)
	return events.Event{
		Kind: events.Ended, Time: fire.Add(time.Minute), Term: 7, Job: job, TaskID: model.TaskID(job, fire, 0, 0),
		FireTime: fire, Host: "h1", State: executor.StateFinished, StartedAt: fire.Add(time.Second),
		EndedAt: fire.Add(30 * time.Second), Outcome: events.Done,
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigIsValidated(t *testing.T) {
	st := schedtest.NewStore()
	c, _ := st.Open(context.Background())
	defer c.Close()
	for _, tc := range []struct {
		name string
		cfg  history.Config
		want string
	}{
		{"no session", history.Config{}, "exactly one of Coordinator and Open"},
		{"both", history.Config{Coordinator: c, Open: st.Open}, "exactly one of Coordinator and Open"},
		{"keep negative", history.Config{Coordinator: c, Keep: -1}, "Keep is -1"},
		{"keep too large", history.Config{Coordinator: c, Keep: history.MaxKeep + 1}, "Keep is 10001"},
		{"max jobs too large", history.Config{Coordinator: c, MaxJobs: history.MaxMaxJobs + 1}, "MaxJobs"},
		{"queue too large", history.Config{Coordinator: c, QueueSize: history.MaxQueueSize + 1}, "QueueSize"},
		{"write timeout too long", history.Config{Coordinator: c, WriteTimeout: time.Hour}, "WriteTimeout"},
		{"nil sink", history.Config{Coordinator: c, Sinks: []events.Sink{nil}}, "Sinks[0] is nil"},
	} {
		_, err := history.NewRecorder(tc.cfg)
		if !errors.Is(err, history.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewRecorder = %v, want ErrInvalidConfig saying %q", tc.name, err, tc.want)
		}
	}
}

func TestFromEventTakesOnlyEnds(t *testing.T) {
	ev := ended("j", 0)
	ev.State, ev.ExitCode, ev.Attempt, ev.Outcome = executor.StateFailed, 3, 1, events.Retry
	ev.Message = strings.Repeat("é", model.MaxExecutionMessage) // twice the bytes
	ex, ok := history.FromEvent(ev)
	if !ok {
		t.Fatal("FromEvent(Ended) is not an execution")
	}
	want := model.Execution{TaskID: ev.TaskID, Job: "j", FireTime: ev.FireTime, Attempt: 1, Host: "h1",
		State: executor.StateFailed, ExitCode: 3, StartTime: ev.StartedAt, CompleteTime: ev.EndedAt,
		Success: false, Outcome: "retry"}
	msg := ex.Message
	ex.Message = ""
	if ex != want {
		t.Fatalf("FromEvent = %+v, want %+v", ex, want)
	}
	if len(msg) > model.MaxExecutionMessage || !strings.HasPrefix(ev.Message, msg) || !utf8Valid(msg) {
		t.Fatalf("message of %d bytes not cut to at most %d at a rune boundary", len(msg), model.MaxExecutionMessage)
	}
	noEnd := ended("j", 0)
	noEnd.EndedAt = time.Time{}
	if ex, _ := history.FromEvent(noEnd); !ex.CompleteTime.Equal(noEnd.Time) {
		t.Fatalf("an end without EndedAt completes at %v, want the event's time %v", ex.CompleteTime, noEnd.Time)
	}
	for _, k := range []events.Kind{events.Fired, events.Launched, events.Running, events.Misfired, events.Leadership} {
		ev := ended("j", 0)
		ev.Kind = k
		if _, ok := history.FromEvent(ev); ok {
			t.Errorf("FromEvent(%s) is an execution; only Ended ones are", k)
		}
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestRecorderWritesEndsAndKeepsTheLastN(t *testing.T) {
	st := schedtest.NewStore()
	var seen atomic.Int64
	extra := &closingSink{emit: func(events.Event) { seen.Add(1) }}
	r, err := history.NewRecorder(history.Config{Open: st.Open, Keep: 3, Sinks: []events.Sink{extra}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 5 {
		r.Emit(events.Event{Kind: events.Fired, Job: "j", FireTime: t0})
		r.Emit(ended("j", i))
	}
	eventually(t, "5 executions are written", func() bool { return r.Written() == 5 })
	got, err := r.Executions(context.Background(), "j", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ex := range got {
		ids = append(ids, ex.TaskID)
	}
	want := []string{ended("j", 4).TaskID, ended("j", 3).TaskID, ended("j", 2).TaskID}
	if !slices.Equal(ids, want) {
		t.Fatalf("history = %v, want the last 3, latest first: %v", ids, want)
	}
	if n := seen.Load(); n != 10 {
		t.Fatalf("the extra sink saw %d events, want all 10", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !extra.closed.Load() {
		t.Fatal("Close did not close the extra sink")
	}
	if _, err := r.Executions(context.Background(), "j", 10); !errors.Is(err, history.ErrClosed) {
		t.Fatalf("Executions after Close = %v, want ErrClosed", err)
	}
	r.Emit(ended("j", 9)) // after Close: dropped, no panic
	if r.Dropped() != 1 {
		t.Fatalf("Dropped = %d after an Emit on a closed Recorder, want 1", r.Dropped())
	}
}

type closingSink struct {
	emit   func(events.Event)
	closed atomic.Bool
}

func (s *closingSink) Emit(ev events.Event) { s.emit(ev) }
func (s *closingSink) Close() error         { s.closed.Store(true); return nil }

func TestRecorderRewritesTheSameRunInPlace(t *testing.T) {
	st := schedtest.NewStore()
	r, err := history.NewRecorder(history.Config{Open: st.Open})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Emit(ended("j", 0))
	r.Emit(ended("j", 0))
	eventually(t, "both writes are done", func() bool { return r.Written() == 2 })
	if got, _ := r.Executions(context.Background(), "j", 10); len(got) != 1 {
		t.Fatalf("one run written twice: %d executions, want 1", len(got))
	}
}

func TestAFailingStoreIsCountedAndNeverReachesTheCaller(t *testing.T) {
	st := schedtest.NewStore()
	st.SetWriteHook(func(op, path string) error { return errors.New("injected") })
	var logged strings.Builder
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: lockedWriter{&mu, &logged}})
	r, err := history.NewRecorder(history.Config{Open: st.Open, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 20 {
		r.Emit(ended("j", i))
	}
	eventually(t, "every write failed", func() bool { return r.Failed() == 20 })
	mu.Lock()
	lines := strings.Count(logged.String(), "an execution was not recorded")
	mu.Unlock()
	if lines != 1 {
		t.Fatalf("%d log lines for 20 failures in a row, want 1 (rate-limited)", lines)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestEmitNeverBlocksOnAStuckStore(t *testing.T) {
	st := schedtest.NewStore()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	st.SetWriteHook(func(op, path string) error { <-release; return nil })
	r, err := history.NewRecorder(history.Config{Open: st.Open, QueueSize: 8, FlushTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 10_000
	for i := range n {
		r.Emit(ended("j", i))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("%d Emits on a stuck store took %v; Emit must not wait on the store", n, took)
	}
	if d := r.Dropped(); d < n-8-1 {
		t.Fatalf("Dropped = %d, want the %d that found the queue full counted", d, n-9)
	}
	unblock()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderOpensANewSessionAfterOneEnded(t *testing.T) {
	st := schedtest.NewStore()
	var opened []coord.Coordinator
	var mu sync.Mutex
	open := func(ctx context.Context) (coord.Coordinator, error) {
		c, err := st.Open(ctx)
		mu.Lock()
		opened = append(opened, c)
		mu.Unlock()
		return c, err
	}
	r, err := history.NewRecorder(history.Config{Open: open})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Emit(ended("j", 0))
	eventually(t, "the first write", func() bool { return r.Written() == 1 })
	mu.Lock()
	_ = opened[0].Close() // the session ends behind the Recorder's back
	mu.Unlock()
	r.Emit(ended("j", 1))
	eventually(t, "the second write", func() bool { return r.Written() == 2 })
	mu.Lock()
	n := len(opened)
	mu.Unlock()
	if n != 2 {
		t.Fatalf("%d sessions opened, want a second one after the first ended", n)
	}
	if _, ok := st.Value(store.HistoryPath("j", store.HistoryKey(mustExecution(t, ended("j", 1))))); !ok {
		t.Fatal("the second execution is not in the store")
	}
}

func mustExecution(t *testing.T, ev events.Event) model.Execution {
	ex, ok := history.FromEvent(ev)
	if !ok {
		t.Fatal("not an execution")
	}
	return ex
}

func TestReaderRefusesBadInput(t *testing.T) {
	st := schedtest.NewStore()
	r, err := history.NewReader(history.Config{Open: st.Open})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		job   string
		limit int
	}{{"j", 0}, {"j", -1}, {"j", model.MaxExecutionsLimit + 1}, {"", 10}, {"a/b", 10}, {"a@-@b", 10}} {
		if _, err := r.Executions(ctx, tc.job, tc.limit); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("Executions(%q, %d) = %v, want ErrInvalid", tc.job, tc.limit, err)
		}
	}
	got, err := r.Executions(ctx, "unknown", model.MaxExecutionsLimit)
	if err != nil || len(got) != 0 {
		t.Fatalf("Executions of a job never run = %v, %v; want none", got, err)
	}
}

func TestDeregisteredJobsHistoriesAreBounded(t *testing.T) {
	st := schedtest.NewStore()
	r, err := history.NewRecorder(history.Config{Open: st.Open, MaxJobs: 2, JobsPruneInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, job := range []string{"a", "b", "c", "d"} {
		r.Emit(ended(job, i))
	}
	eventually(t, "4 writes", func() bool { return r.Written() == 4 })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, p := range st.Paths(store.HistoryRoot) {
		rest, ok := strings.CutPrefix(p, store.HistoryRoot+"/")
		if ok && !strings.Contains(rest, "/") {
			jobs = append(jobs, rest)
		}
	}
	if !slices.Equal(jobs, []string{"c", "d"}) {
		t.Fatalf("jobs with history %v, want the 2 latest of the deregistered ones [c d]", jobs)
	}
}
