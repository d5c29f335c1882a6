package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// TestMain doubles as the real workers' watchdog command (see
// realworkers_test.go).
func TestMain(m *testing.M) {
	watchdogtest.Main()
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait of these tests.
const waitLimit = 10 * time.Second

// world is one in-memory coordination service with its fake workers.
type world struct {
	t    *testing.T
	st   *schedtest.Store
	runs *runs
}

func newWorld(t *testing.T) *world {
	return &world{t: t, st: schedtest.NewStore(), runs: newRuns()}
}

func (w *world) worker(name string, opts ...workerOpt) *fakeWorker {
	w.t.Helper()
	return startWorker(w.t, w.st, w.runs, name, opts...)
}

// leader is one term: a session that won the election, and its executor.
type leader struct {
	t    *testing.T
	sess coord.Coordinator
	l    coord.Leadership
	ex   *Executor
	rec  *recorder
}

func testConfig(t *testing.T) Config {
	level := hclog.Off
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		level = hclog.Debug
	}
	return Config{Logger: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: level}), RetryInterval: 20 * time.Millisecond, OpTimeout: 2 * time.Second}
}

// lead wins the election on a new session and opens the term's executor.
func (w *world) lead(cfg Config) *leader {
	w.t.Helper()
	return w.leadThrough(cfg, nil)
}

// countingWriter counts the batches written through it that set nodes.
type countingWriter struct {
	coord.Writer
	sets atomic.Int32
}

func (c *countingWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if slices.ContainsFunc(ops, func(op coord.Op) bool { return op.Kind() == coord.OpSet }) {
		c.sets.Add(1)
	}
	return c.Writer.Apply(ctx, ops...)
}

// leadThrough is lead with the executor writing through wrap(the term's
// Writer) if wrap is not nil.
func (w *world) leadThrough(cfg Config, wrap func(coord.Writer) coord.Writer) *leader {
	w.t.Helper()
	ctx := context.Background()
	sess, err := w.st.Open(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	l, err := sess.Campaign(cctx, store.ElectionPath, []byte("leader"))
	if err != nil {
		w.t.Fatalf("campaign: %v", err)
	}
	f, err := NewFactory(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	wr := l.Writer()
	if wrap != nil {
		wr = wrap(wr)
	}
	ex, err := f(ctx, executor.Term{Token: l.Token(), Coord: sess, Writer: wr})
	if err != nil {
		w.t.Fatalf("open the executor: %v", err)
	}
	ld := &leader{t: w.t, sess: sess, l: l, ex: ex.(*Executor)}
	ld.rec = record(w.t, ex)
	w.t.Cleanup(func() { ld.close(); _ = sess.Close() })
	return ld
}

// close ends the term: the executor closes, then the leadership is
// resigned so that another session can win.
func (ld *leader) close() {
	ld.rec.close()
	_ = ld.l.Resign(context.Background())
}

// recorder collects one executor's statuses.
type recorder struct {
	t    *testing.T
	ex   executor.Executor
	mu   sync.Mutex
	all  []executor.Status
	ch   chan struct{} // closed and replaced on every status
	done chan struct{}
	once sync.Once
}

func record(t *testing.T, ex executor.Executor) *recorder {
	r := &recorder{t: t, ex: ex, ch: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for st := range ex.Statuses() {
			r.mu.Lock()
			r.all = append(r.all, st)
			close(r.ch)
			r.ch = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) close() {
	r.once.Do(func() {
		if err := r.ex.Close(); err != nil {
			r.t.Errorf("Close: %v", err)
		}
		select {
		case <-r.done:
		case <-time.After(waitLimit):
			r.t.Errorf("Statuses not closed after Close")
		}
	})
}

func (r *recorder) statuses() []executor.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]executor.Status(nil), r.all...)
}

func (r *recorder) forTask(id string) []executor.Status {
	var out []executor.Status
	for _, s := range r.statuses() {
		if s.TaskID == id {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) dump() string {
	var b strings.Builder
	for _, s := range r.statuses() {
		fmt.Fprintf(&b, "  %s %s host=%q exit=%d reconcile=%v msg=%q\n", s.TaskID, s.State, s.Host, s.ExitCode, s.Reconcile, s.Message)
	}
	return b.String()
}

// wait returns the first status from index from on matching pred.
func (r *recorder) wait(from int, what string, pred func(executor.Status) bool) executor.Status {
	r.t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		for _, s := range r.all[min(from, len(r.all)):] {
			if pred(s) {
				r.mu.Unlock()
				return s
			}
		}
		ch := r.ch
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			r.t.Fatalf("timed out waiting for %s; statuses:\n%s", what, r.dump())
		}
	}
}

func (r *recorder) waitState(id string, state executor.State) executor.Status {
	r.t.Helper()
	return r.wait(0, fmt.Sprintf("%s %s", id, state), func(s executor.Status) bool {
		return s.TaskID == id && s.State == state && !s.Reconcile
	})
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// never checks that cond does not hold for d.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("%s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func task(id, job string, shard int, cmd string) executor.Task {
	return executor.Task{ID: id, Job: job, Shard: shard, Command: cmd, CPUs: 1, MemoryMB: 64}
}

// placementOf reads a task's placement from the store (any worker).
func (w *world) placementOf(id string) (store.StoredPlacement, bool) {
	w.t.Helper()
	for _, p := range w.st.Paths(store.PlacementsRoot) {
		parts := strings.Split(p, "/")
		if len(parts) == 4 && parts[3] == id {
			sess, _ := w.st.Open(context.Background())
			defer sess.Close()
			sp, ok, err := store.NewReader(sess).Placement(context.Background(), parts[2], id)
			if err != nil {
				w.t.Fatal(err)
			}
			return sp, ok
		}
	}
	return store.StoredPlacement{}, false
}

// placedOn counts the placements on each worker name.
func (w *world) placedOn() map[string]int {
	out := map[string]int{}
	for _, p := range w.st.Paths(store.PlacementsRoot) {
		if parts := strings.Split(p, "/"); len(parts) == 4 {
			out[parts[2]]++
		}
	}
	return out
}

// launchEventually retries Launch until the executor has seen a worker
// with room (watches are asynchronous).
func launchEventually(t *testing.T, ex executor.Executor, tasks ...executor.Task) {
	t.Helper()
	var err error
	eventually(t, "a launch that places every task", func() bool {
		err = ex.Launch(context.Background(), tasks)
		return err == nil
	})
}
