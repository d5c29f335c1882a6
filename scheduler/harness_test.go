package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// TestMain doubles as the watchdog command of the real workers of
// cluster_e2e_test.go.
func TestMain(m *testing.M) {
	watchdogtest.Main()
	os.Exit(etcdServer.Main(m))
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// t0 is a round time the fake clocks start at.
var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

// testLogger logs to the test when -v is given with HASCHED_TEST_LOG=1.
func testLogger(t *testing.T) hclog.Logger {
	if os.Getenv("HASCHED_TEST_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: &testWriter{t: t}})
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// node is one scheduler process under test.
type node struct {
	t      *testing.T
	s      *Scheduler
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a scheduler until the test ends (or stop).
func startNode(t *testing.T, cfg Config) *node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Advertise == "" {
		cfg.Advertise = "127.0.0.1:8899"
	}
	if cfg.LaunchInterval == 0 {
		cfg.LaunchInterval = 5 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// stop cancels the node's Run and waits for it.
func (n *node) stop() {
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("Run returned %v", err)
		}
		n.done <- nil // later stops return at once
	case <-time.After(30 * time.Second):
		n.t.Fatalf("Run did not return 30s after its context was cancelled")
	}
}

func (n *node) leading() bool {
	st, _ := n.s.Status(context.Background())
	return st.Leader
}

// memEnv is a scheduler on an in-memory store with a fake executor.
type memEnv struct {
	t       *testing.T
	store   *schedtest.Store
	cluster *schedtest.Cluster
	clock   *fakeClock
	n       *node
}

func newMemEnv(t *testing.T) *memEnv {
	return &memEnv{t: t, store: schedtest.NewStore(), cluster: schedtest.NewCluster(), clock: newClock(t0)}
}

func (e *memEnv) config() Config {
	return Config{
		Open:         e.store.Open,
		Executor:     e.cluster.Factory("a"),
		ExecutorName: "fake",
		Clock:        e.clock.Now,
		RetryBackoff: time.Second,
	}
}

// start runs a scheduler and waits until it leads.
func (e *memEnv) start(mod ...func(*Config)) *node {
	e.t.Helper()
	cfg := e.config()
	for _, m := range mod {
		m(&cfg)
	}
	e.n = startNode(e.t, cfg)
	eventually(e.t, "the scheduler leads", e.n.leading)
	// Apps is answered from the leader's memory; RunningTasks needs the
	// read session, which opens beside the election.
	eventually(e.t, "the scheduler serves reads", func() bool {
		_, err := e.n.s.Apps(context.Background())
		_, errStore := e.n.s.RunningTasks(context.Background())
		return err == nil && errStore == nil
	})
	return e.n
}

func (e *memEnv) svc() *Scheduler { return e.n.s }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds, failing the test after 15s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Poll{Timeout: 15 * time.Second, Interval: 2 * time.Millisecond}.Until(t, what, cond)
}

// settle waits until nothing changes in the cluster for a while: the
// scheduler has acted on everything it was told.
func settle(c *schedtest.Cluster) {
	for {
		select {
		case <-c.Changed():
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testApp(name string) model.App {
	return model.App{AppName: name, BootstrapScript: "bin/start.sh", CPUCount: 1, MemoryMB: 128, AppCacheEnable: true}
}

func testJob(name, cron string) model.Job {
	return model.Job{JobName: name, AppName: "app", Cron: cron, ShardingTotalCount: 1, CPUCount: 0.5, MemoryMB: 64, Misfire: true, ConcurrencyPolicy: model.ConcurrencyAllow}
}

// register registers the app "app" (once) and the job.
func register(t *testing.T, s *Scheduler, jobs ...model.Job) {
	t.Helper()
	ctx := ctxT(t)
	if err := s.RegisterApp(ctx, testApp("app")); err != nil && !errors.Is(err, model.ErrExists) {
		t.Fatalf("RegisterApp: %v", err)
	}
	for _, j := range jobs {
		if err := s.RegisterJob(ctx, j); err != nil {
			t.Fatalf("RegisterJob(%s): %v", j.JobName, err)
		}
	}
}

// ids makes the task IDs of fires of one shard-0, attempt-0 run each.
func ids(job string, fires ...time.Time) []string {
	out := make([]string, len(fires))
	for i, f := range fires {
		out[i] = model.TaskID(job, f, 0, 0)
	}
	return out
}

// startedOf lists the started task IDs of job, sorted.
func startedOf(c *schedtest.Cluster, job string) []string {
	var out []string
	for _, id := range c.Started() {
		if ref, err := model.ParseTaskID(id); err == nil && ref.Job == job {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func wantStarted(t *testing.T, c *schedtest.Cluster, job string, want []string) {
	t.Helper()
	got := startedOf(c, job)
	want = slices.Clone(want)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("started tasks of %s:\n got  %v\n want %v", job, got, want)
	}
}

// readyNodeOf reads a job's ready node from the store.
func readyNodeOf(t *testing.T, st *schedtest.Store, job string) store.Ready {
	t.Helper()
	b, ok := st.Value(store.ReadyPath(job))
	if !ok {
		t.Fatalf("no ready node for %s", job)
	}
	var rn store.Ready
	if err := json.Unmarshal(b, &rn); err != nil {
		t.Fatal(err)
	}
	return rn
}

var errInjected = errors.New("injected failure")

// failOnce fails the nth write (1-based) for which match holds.
func failOnce(st *schedtest.Store, n int, match func(op, path string) bool) {
	var mu sync.Mutex
	seen := 0
	st.SetWriteHook(func(op, path string) error {
		if !match(op, path) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen == n {
			return errInjected
		}
		return nil
	})
}

func errorIs(err, target error) bool { return errors.Is(err, target) }

// wantField fails unless err is a *model.ValidationError naming field.
func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var verr *model.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v (%T), want a *model.ValidationError naming %q", err, err, field)
	}
	if verr.Field != field {
		t.Fatalf("error names field %q (%v), want %q", verr.Field, verr, field)
	}
}
