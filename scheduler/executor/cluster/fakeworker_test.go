package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// Commands the fake worker understands.
const (
	cmdSucceed = "exit 0"
	cmdFail    = "exit 3"
	cmdBlock   = "block"
	failCode   = 3
)

// fakeWorker follows the worker's side of the protocol on its own session:
// an ephemeral registration, placements bound to its incarnation "run" as
// goroutines, kill requests and timeouts honoured, reports appended to its outbox in
// order, each write fenced by its registration. It can freeze (stop doing
// anything, its session kept: a hung process) and die (its session closed).
type fakeWorker struct {
	t    *testing.T
	st   *schedtest.Store
	sess coord.Coordinator
	reg  model.Worker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// reports are written by one goroutine, in order.
	reports chan executor.Status

	// runs counts task starts, shared by a worker and its restarts.
	runs *runs

	mu     sync.Mutex
	regVer coord.Version
	seq    int64
	tasks  map[string]*fakeTask // started by this incarnation
	killed map[string]bool
}

// runs is the fake cluster's view of which tasks run where.
type runs struct {
	mu      sync.Mutex
	starts  map[string]int
	running map[string]string // task → the incarnation running it
	release map[string]chan struct{}
}

func newRuns() *runs {
	return &runs{starts: map[string]int{}, running: map[string]string{}, release: map[string]chan struct{}{}}
}

func (r *runs) releaseCh(id string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.release[id]
	if ch == nil {
		ch = make(chan struct{})
		r.release[id] = ch
	}
	return ch
}

// Release ends a blocking task with success.
func (r *runs) Release(id string) error {
	ch := r.releaseCh(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-ch:
		return fmt.Errorf("task %s released already", id)
	default:
		close(ch)
	}
	return nil
}

func (r *runs) Starts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts[id]
}

func (r *runs) Running(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id] != ""
}

// ended removes a task's run by inc, if inc still runs it.
func (r *runs) ended(id, inc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[id] == inc {
		delete(r.running, id)
	}
}

type fakeTask struct {
	id   string
	kill chan struct{}
}

type workerOpt func(*model.Worker)

func withLabels(kv map[string]string) workerOpt { return func(w *model.Worker) { w.Labels = kv } }
func withCPUs(c float64) workerOpt              { return func(w *model.Worker) { w.CPUs = c } }

var incCounter struct {
	sync.Mutex
	n int
}

func newIncarnation() string {
	incCounter.Lock()
	defer incCounter.Unlock()
	incCounter.n++
	return fmt.Sprintf("%016x", 0xabc000+incCounter.n)
}

// startWorker registers a worker named name and starts following its
// placements and kill requests.
func startWorker(t *testing.T, st *schedtest.Store, r *runs, name string, opts ...workerOpt) *fakeWorker {
	t.Helper()
	reg := model.Worker{Name: name, Incarnation: newIncarnation(), Host: name + ".host", CPUs: 4, MemoryMB: 1024, Started: time.Now()}
	for _, o := range opts {
		o(&reg)
	}
	return runWorker(t, st, r, reg, "")
}

// restart starts a new incarnation of w's name, which claims what w's
// incarnation ran (w is frozen or dead: its work dir is free).
func (w *fakeWorker) restart() *fakeWorker {
	w.t.Helper()
	reg := w.reg
	reg.Incarnation = newIncarnation()
	reg.Started = time.Now()
	return runWorker(w.t, w.st, w.runs, reg, w.reg.Incarnation)
}

func runWorker(t *testing.T, st *schedtest.Store, r *runs, reg model.Worker, adopt string) *fakeWorker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sess, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{t: t, st: st, sess: sess, reg: reg, ctx: ctx, cancel: cancel, reports: make(chan executor.Status, 1024),
		runs: r, tasks: map[string]*fakeTask{}, killed: map[string]bool{}}
	n, err := sess.Create(ctx, store.WorkerPath(reg.ID()), mustJSON(reg), coord.Ephemeral())
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	w.regVer = n.Version
	if _, err := sess.Create(ctx, store.OutboxRoot, nil); err != nil && !errors.Is(err, coord.ErrExists) {
		t.Fatalf("create the outbox root: %v", err)
	}
	if err := w.fenced(coord.CreateOp(store.OutboxPath(reg.ID()), nil)); err != nil {
		t.Fatalf("create the outbox: %v", err)
	}
	if adopt != "" {
		w.claim(adopt)
	}
	w.wg.Add(3)
	go func() { defer w.wg.Done(); w.writeReports() }()
	go func() { defer w.wg.Done(); w.followPlacements() }()
	go func() { defer w.wg.Done(); w.followKills() }()
	t.Cleanup(w.die)
	return w
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// fenced applies ops after a Set of the registration at its version.
func (w *fakeWorker) fenced(ops ...coord.Op) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	all := append([]coord.Op{coord.SetOp(store.WorkerPath(w.reg.ID()), mustJSON(w.reg), w.regVer)}, ops...)
	res, err := w.sess.Apply(w.ctx, all...)
	if err != nil {
		return err
	}
	w.regVer = res[0].Version
	return nil
}

// setDraining changes the registration.
func (w *fakeWorker) setDraining(d bool) {
	w.t.Helper()
	w.mu.Lock()
	w.reg.Draining = d
	w.mu.Unlock()
	if err := w.fenced(); err != nil {
		w.t.Fatalf("set draining: %v", err)
	}
}

// claim re-binds every non-terminal placement of incarnation old to w's,
// and resumes those tasks (they kept running through the restart).
func (w *fakeWorker) claim(old string) {
	rd := store.NewReader(w.sess)
	ps, _, err := rd.PlacementsOf(w.ctx, w.reg.Name)
	if err != nil {
		w.t.Fatalf("claim: %v", err)
	}
	for _, p := range ps {
		if p.Incarnation != old || p.State.Terminal() {
			continue
		}
		np := p.Placement
		np.Incarnation = w.reg.Incarnation
		if err := w.fenced(store.SetPlacementOp(np, p.Version)); err != nil {
			continue // lost the claim: the task is killed at once, never reported
		}
		w.adoptTask(p.Task)
	}
}

func (w *fakeWorker) report(st executor.Status) {
	st.Time = time.Now()
	st.Host = w.reg.Host
	select {
	case w.reports <- st:
	case <-w.ctx.Done():
	}
}

func (w *fakeWorker) writeReports() {
	for {
		select {
		case st := <-w.reports:
			w.mu.Lock()
			seq := w.seq
			w.seq++
			w.mu.Unlock()
			path := fmt.Sprintf("%s/%s%020d", store.OutboxPath(w.reg.ID()), store.ReportPrefix, seq)
			if err := w.fenced(coord.CreateOp(path, mustJSON(model.Report{Incarnation: w.reg.Incarnation, Status: st}))); err != nil {
				return // the registration is gone: nothing more is reported
			}
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *fakeWorker) followPlacements() {
	ch, err := w.sess.WatchChildren(w.ctx, store.PlacementsPath(w.reg.Name))
	if err != nil {
		return
	}
	rd := store.NewReader(w.sess)
	for ev := range ch {
		for _, id := range ev.Children {
			w.mu.Lock()
			_, seen := w.tasks[id]
			w.mu.Unlock()
			if seen {
				continue
			}
			p, ok, err := rd.Placement(w.ctx, w.reg.Name, id)
			if err != nil || !ok || p.Incarnation != w.reg.Incarnation || p.State.Terminal() {
				continue
			}
			w.startTask(p.Task, true)
		}
	}
}

func (w *fakeWorker) followKills() {
	ch, err := w.sess.WatchChildren(w.ctx, store.KillsPath(w.reg.Name))
	if err != nil {
		return
	}
	for ev := range ch {
		for _, id := range ev.Children {
			w.mu.Lock()
			ft := w.tasks[id]
			done := w.killed[id]
			w.killed[id] = true
			w.mu.Unlock()
			if ft != nil && !done {
				close(ft.kill)
			}
		}
	}
}

// adoptTask resumes a task the previous incarnation started.
func (w *fakeWorker) adoptTask(t executor.Task) { w.startTask(t, false) }

func (w *fakeWorker) startTask(t executor.Task, fresh bool) {
	ft := &fakeTask{id: t.ID, kill: make(chan struct{})}
	w.mu.Lock()
	w.tasks[t.ID] = ft
	w.mu.Unlock()
	w.runs.mu.Lock()
	if fresh {
		w.runs.starts[t.ID]++
	}
	w.runs.running[t.ID] = w.reg.Incarnation
	w.runs.mu.Unlock()
	release := w.runs.releaseCh(t.ID)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		// The task's Timeout, as its placement carried it, counted from
		// this start (an adopted task's clock restarts: a fake's licence).
		var timedOut <-chan time.Time
		if t.Timeout > 0 {
			tm := time.NewTimer(t.Timeout)
			defer tm.Stop()
			timedOut = tm.C
		}
		w.report(executor.Status{TaskID: t.ID, State: executor.StateRunning})
		end := executor.Status{TaskID: t.ID, State: executor.StateFinished}
		switch t.Command {
		case cmdSucceed:
		case cmdFail:
			end = executor.Status{TaskID: t.ID, State: executor.StateFailed, ExitCode: failCode, Message: "exit 3"}
		default:
			select {
			case <-release:
			case <-ft.kill:
				end = executor.Status{TaskID: t.ID, State: executor.StateKilled, Message: "killed as asked"}
			case <-timedOut:
				end = executor.Status{TaskID: t.ID, State: executor.StateTimedOut, Message: fmt.Sprintf("timed out after %v", t.Timeout)}
			case <-w.ctx.Done():
				// Frozen or dead: the task stays as it is (a dead worker's
				// tasks die with it: see die).
				return
			}
		}
		w.runs.ended(t.ID, w.reg.Incarnation)
		w.report(end)
	}()
}

// freeze stops everything the worker does; its session (and registration)
// stays, as with a hung process.
func (w *fakeWorker) freeze() {
	w.cancel()
	w.wg.Wait()
}

// die freezes the worker, kills its tasks and closes its session: the
// registration goes.
func (w *fakeWorker) die() {
	w.freeze()
	w.mu.Lock()
	ids := make([]string, 0, len(w.tasks))
	for id := range w.tasks {
		ids = append(ids, id)
	}
	w.tasks = map[string]*fakeTask{}
	w.mu.Unlock()
	for _, id := range ids {
		w.runs.ended(id, w.reg.Incarnation)
	}
	if err := w.sess.Close(); err != nil && !errors.Is(err, coord.ErrClosed) {
		w.t.Errorf("close the worker's session: %v", err)
	}
}
