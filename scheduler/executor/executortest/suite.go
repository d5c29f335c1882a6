package executortest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Run runs every scenario against h, one after the other (they share h's
// world), each as a subtest named for the behaviour it proves.
func Run(t *testing.T, h Harness) {
	for _, s := range scenarios() {
		t.Run(s.name, func(t *testing.T) {
			s.run(t, newEnv(t, h))
		})
	}
}

type scenario struct {
	name string
	run  func(*testing.T, *env)
}

func scenarios() []scenario {
	return []scenario{
		{"LaunchedTaskRunsAndFinishesOnItsHost", testLaunchedTaskRunsAndFinishesOnItsHost},
		{"FailingTaskEndsFailedWithItsExitCode", testFailingTaskEndsFailedWithItsExitCode},
		{"KillEndsTheTaskKilledAndItsWorkStops", testKillEndsTheTaskKilledAndItsWorkStops},
		{"KillOfAnUnknownTaskIsNoError", testKillOfAnUnknownTaskIsNoError},
		{"LaunchTwiceInOneTermStartsOnce", testLaunchTwiceInOneTermStartsOnce},
		{"LaunchAgainByTheNextTermStartsOnce", testLaunchAgainByTheNextTermStartsOnce},
		{"NextTermAdoptsRunningTasksThroughExplicitReconcile", testNextTermAdoptsRunningTasks},
		{"ExplicitReconcileOfUnknownTaskAnswersUnknown", testExplicitReconcileOfUnknownTask},
		{"ImplicitReconcileReportsEveryLiveTask", testImplicitReconcileReportsEveryLiveTask},
		{"CloseClosesStatusesAndLeavesTasksRunning", testCloseClosesStatusesAndLeavesTasksRunning},
		{"StatusesOfEachTaskAreInOrder", testStatusesOfEachTaskAreInOrder},
		{"InvalidTaskRefusesTheWholeBatch", testInvalidTaskRefusesTheWholeBatch},
		{"TaskPastItsTimeoutEndsTimedOutAndItsWorkStops", testTaskPastItsTimeoutEndsTimedOut},
		{"NextTermStopsAnAdoptedTaskAtItsTimeout", testNextTermStopsAnAdoptedTaskAtItsTimeout},
		{"TaskEndingBeforeItsTimeoutKeepsItsEnd", testTaskEndingBeforeItsTimeoutKeepsItsEnd},
	}
}

// env is one scenario's view of the harness: unique task IDs, the
// executors it opened (closed at its end) and the tasks it blocked
// (released at its end, so that nothing of it outlives the scenario).
type env struct {
	t   *testing.T
	h   Harness
	ctx context.Context // no deadline: the contract's caller gives none

	mu      sync.Mutex
	prefix  string
	n       int
	blocked []string
}

func newEnv(t *testing.T, h Harness) *env {
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, h: h, ctx: ctx, prefix: strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())}
	// Registered first, so it runs last: after the executors are closed.
	t.Cleanup(func() {
		defer cancel()
		e.mu.Lock()
		blocked := e.blocked
		e.mu.Unlock()
		for _, id := range blocked {
			// A killed or released task is not live: the error is expected.
			_ = h.Release(ctx, id)
		}
	})
	return e
}

// task builds a task with a fresh ID.
func (e *env) task(b Behaviour) executor.Task {
	e.mu.Lock()
	e.n++
	id := fmt.Sprintf("%s@-@%d", e.prefix, e.n)
	if b == Blocks || b == BlocksIgnoringTerm {
		e.blocked = append(e.blocked, id)
	}
	e.mu.Unlock()
	return e.h.Task(id, b)
}

// open opens a term's executor and records its statuses.
func (e *env) open() *recorder {
	e.t.Helper()
	ex, err := e.h.Open(e.ctx)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	r := &recorder{t: e.t, ex: ex, timeout: e.h.Timeout(), changed: make(chan struct{}), done: make(chan struct{})}
	go r.collect()
	e.t.Cleanup(r.close)
	return r
}

func (e *env) launch(r *recorder, tasks ...executor.Task) {
	e.t.Helper()
	if err := r.ex.Launch(e.ctx, tasks); err != nil {
		e.t.Fatalf("Launch: %v", err)
	}
}

func (e *env) release(id string) {
	e.t.Helper()
	if err := e.h.Release(e.ctx, id); err != nil {
		e.t.Fatalf("Release %s: %v", id, err)
	}
}

func (e *env) running(id string) bool {
	e.t.Helper()
	ok, err := e.h.Running(id)
	if err != nil {
		e.t.Fatalf("Running %s: %v", id, err)
	}
	return ok
}

func (e *env) starts(id string) int {
	e.t.Helper()
	n, err := e.h.Starts(id)
	if err != nil {
		e.t.Fatalf("Starts %s: %v", id, err)
	}
	return n
}

// eventually polls cond (a state outside the executor) until it holds.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(e.h.Timeout())
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v: %s", e.h.Timeout(), what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder collects one executor's statuses. Its goroutine ends when
// Statuses is closed, which Close does: close waits for it.
type recorder struct {
	t       *testing.T
	ex      executor.Executor
	timeout time.Duration

	mu       sync.Mutex
	statuses []executor.Status
	changed  chan struct{} // closed and replaced on every status
	done     chan struct{} // closed when Statuses is
	once     sync.Once
}

func (r *recorder) collect() {
	defer close(r.done)
	for st := range r.ex.Statuses() {
		r.mu.Lock()
		r.statuses = append(r.statuses, st)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

// close closes the executor, checks that Statuses closes, and checks the
// order of every task's statuses: so every scenario checks it.
func (r *recorder) close() {
	r.once.Do(func() {
		if err := r.ex.Close(); err != nil {
			r.t.Errorf("Close: %v", err)
		}
		select {
		case <-r.done:
		case <-time.After(r.timeout):
			r.t.Errorf("Statuses not closed %v after Close", r.timeout)
			return
		}
		if err := checkOrder(r.all()); err != nil {
			r.t.Errorf("%v\nstatuses:\n%s", err, r.dump())
		}
	})
}

func (r *recorder) all() []executor.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]executor.Status(nil), r.statuses...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statuses)
}

func (r *recorder) forTask(id string) []executor.Status {
	var out []executor.Status
	for _, s := range r.all() {
		if s.TaskID == id {
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) dump() string {
	var b strings.Builder
	for _, s := range r.all() {
		fmt.Fprintf(&b, "  %s %s host=%q exit=%d reconcile=%v msg=%q\n", s.TaskID, s.State, s.Host, s.ExitCode, s.Reconcile, s.Message)
	}
	return b.String()
}

// wait waits for a status matching pred among those reported after the
// first `from`, and returns it with its index.
func (r *recorder) wait(from int, what string, pred func(executor.Status) bool) (executor.Status, int) {
	r.t.Helper()
	deadline := time.After(r.timeout)
	closed := false
	for {
		r.mu.Lock()
		for i := from; i < len(r.statuses); i++ {
			if pred(r.statuses[i]) {
				st := r.statuses[i]
				r.mu.Unlock()
				return st, i
			}
		}
		ch := r.changed
		r.mu.Unlock()
		if closed {
			r.t.Fatalf("Statuses closed before a status %s; got:\n%s", what, r.dump())
		}
		select {
		case <-ch:
		case <-r.done:
			closed = true // one last look at what was delivered
		case <-deadline:
			r.t.Fatalf("no status %s in %v; got:\n%s", what, r.timeout, r.dump())
		}
	}
}

// waitState waits for a status of task id in state.
func (r *recorder) waitState(id string, state executor.State) executor.Status {
	r.t.Helper()
	st, _ := r.wait(0, fmt.Sprintf("%s of %s", state, id), func(s executor.Status) bool {
		return s.TaskID == id && s.State == state
	})
	return st
}

// waitReconciled waits for a reconciliation answer about id reported
// after the first `from` statuses.
func (r *recorder) waitReconciled(from int, id string) executor.Status {
	r.t.Helper()
	st, _ := r.wait(from, "answering a reconciliation about "+id, func(s executor.Status) bool {
		return s.TaskID == id && s.Reconcile
	})
	return st
}

// rank orders the states of a task's life: STAGING, RUNNING, an end.
func rank(s executor.State) int {
	switch {
	case s == executor.StateStaging:
		return 0
	case s == executor.StateRunning:
		return 1
	case s.Terminal():
		return 2
	}
	return -1
}

// checkOrder checks that, per task, the statuses not answering a
// reconciliation never go back (STAGING, RUNNING, an end) and that a task
// has one end at most (a repeated report of it is fine).
func checkOrder(statuses []executor.Status) error {
	type seen struct {
		rank int
		end  executor.State
	}
	tasks := map[string]*seen{}
	for i, s := range statuses {
		if s.Reconcile {
			continue
		}
		k := tasks[s.TaskID]
		if k == nil {
			k = &seen{rank: -1}
			tasks[s.TaskID] = k
		}
		r := rank(s.State)
		if r < 0 {
			return fmt.Errorf("status %d: task %s in state %q outside the contract", i, s.TaskID, s.State)
		}
		if r < k.rank {
			return fmt.Errorf("status %d: task %s went back to %s", i, s.TaskID, s.State)
		}
		if k.end != "" && s.State != k.end {
			return fmt.Errorf("status %d: task %s ended %s after it ended %s", i, s.TaskID, s.State, k.end)
		}
		k.rank = r
		if s.State.Terminal() {
			k.end = s.State
		}
	}
	return nil
}

// A task goes STAGING or RUNNING, then FINISHED, reported on the harness's
// host, exit code 0, as updates (not reconciliation answers); it ran once.
func testLaunchedTaskRunsAndFinishesOnItsHost(t *testing.T, e *env) {
	r := e.open()
	tk := e.task(Succeeds)
	e.launch(r, tk)
	fin := r.waitState(tk.ID, executor.StateFinished)
	if fin.Host != e.h.Host() || fin.ExitCode != 0 || fin.Reconcile {
		t.Errorf("FINISHED status %+v: want host %q, exit code 0, no reconcile", fin, e.h.Host())
	}
	ss := r.forTask(tk.ID)
	if first := ss[0].State; first != executor.StateStaging && first != executor.StateRunning {
		t.Errorf("first status %s, want STAGING or RUNNING\n%s", first, r.dump())
	}
	sawRunning := false
	for _, s := range ss {
		if s.State == executor.StateRunning {
			sawRunning = true
			if s.Host != e.h.Host() {
				t.Errorf("RUNNING on host %q, want %q", s.Host, e.h.Host())
			}
		}
		if s.State == executor.StateFinished {
			break
		}
	}
	if !sawRunning {
		t.Errorf("no RUNNING before FINISHED\n%s", r.dump())
	}
	if n := e.starts(tk.ID); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

// A task whose work fails ends FAILED with its exit code.
func testFailingTaskEndsFailedWithItsExitCode(t *testing.T, e *env) {
	r := e.open()
	tk := e.task(Fails)
	e.launch(r, tk)
	st := r.waitState(tk.ID, executor.StateFailed)
	if st.ExitCode != FailExitCode || st.Host != e.h.Host() || st.Reconcile {
		t.Errorf("FAILED status %+v: want exit code %d on host %q", st, FailExitCode, e.h.Host())
	}
	for _, s := range r.forTask(tk.ID) {
		if s.State == executor.StateFinished {
			t.Errorf("a failing task reported FINISHED\n%s", r.dump())
		}
	}
}

// Kill makes a running task end KILLED, and its work really stops; a second
// kill is no error and reports no second, different end.
func testKillEndsTheTaskKilledAndItsWorkStops(t *testing.T, e *env) {
	r := e.open()
	tk := e.task(Blocks)
	e.launch(r, tk)
	r.waitState(tk.ID, executor.StateRunning)
	e.eventually("the task's work runs", func() bool { return e.running(tk.ID) })
	if err := r.ex.Kill(e.ctx, tk.ID); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	st := r.waitState(tk.ID, executor.StateKilled)
	if st.Reconcile {
		t.Errorf("KILLED marked as a reconciliation answer: %+v", st)
	}
	e.eventually("the killed task's work stops", func() bool { return !e.running(tk.ID) })
	if err := r.ex.Kill(e.ctx, tk.ID); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

// Killing a task nobody launched is not an error.
func testKillOfAnUnknownTaskIsNoError(t *testing.T, e *env) {
	r := e.open()
	id := e.task(Succeeds).ID // built, never launched
	if err := r.ex.Kill(e.ctx, id); err != nil {
		t.Fatalf("Kill of an unknown task: %v", err)
	}
	if n := e.starts(id); n != 0 {
		t.Errorf("Kill started the task %d times", n)
	}
}

// Launching a running task again, alone or twice in one batch, does not
// start it again: its status is reported instead.
func testLaunchTwiceInOneTermStartsOnce(t *testing.T, e *env) {
	r := e.open()
	tk := e.task(Blocks)
	e.launch(r, tk)
	r.waitState(tk.ID, executor.StateRunning)
	e.eventually("the task's work starts", func() bool { return e.starts(tk.ID) > 0 })
	from := r.count()
	e.launch(r, tk)
	e.launch(r, tk, tk)
	st, _ := r.wait(from, "reporting the relaunched task", func(s executor.Status) bool { return s.TaskID == tk.ID })
	if st.State.Terminal() {
		t.Errorf("a relaunch of a running task reported %+v", st)
	}
	if n := e.starts(tk.ID); n != 1 {
		t.Fatalf("started %d times, want once", n)
	}
	e.release(tk.ID)
	r.waitState(tk.ID, executor.StateFinished)
	if n := e.starts(tk.ID); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

// The next term launching a task its predecessor launched (the launch was
// never confirmed) does not start it again but reports it RUNNING, and
// can kill it.
func testLaunchAgainByTheNextTermStartsOnce(t *testing.T, e *env) {
	a := e.open()
	tk := e.task(Blocks)
	e.launch(a, tk)
	a.waitState(tk.ID, executor.StateRunning)
	e.eventually("the task's work starts", func() bool { return e.starts(tk.ID) > 0 })
	a.close()

	b := e.open()
	e.launch(b, tk)
	b.waitState(tk.ID, executor.StateRunning)
	for _, s := range b.forTask(tk.ID) {
		if s.State.Terminal() {
			t.Errorf("the relaunch reported %s for a running task\n%s", s.State, b.dump())
		}
	}
	if n := e.starts(tk.ID); n != 1 {
		t.Fatalf("started %d times, want once", n)
	}
	if !e.running(tk.ID) {
		t.Fatal("the task's work stopped")
	}
	if err := b.ex.Kill(e.ctx, tk.ID); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	b.waitState(tk.ID, executor.StateKilled)
	e.eventually("the killed task's work stops", func() bool { return !e.running(tk.ID) })
}

// Tasks outlive their term; the next term's explicit reconciliation
// reports them RUNNING on their host, then reports their real end.
func testNextTermAdoptsRunningTasks(t *testing.T, e *env) {
	a := e.open()
	done, killed := e.task(Blocks), e.task(Blocks)
	e.launch(a, done, killed)
	a.waitState(done.ID, executor.StateRunning)
	a.waitState(killed.ID, executor.StateRunning)
	a.close()
	for _, id := range []string{done.ID, killed.ID} {
		if !e.running(id) {
			t.Fatalf("task %s stopped with its term", id)
		}
	}

	b := e.open()
	if err := b.ex.Reconcile(e.ctx, []string{done.ID, killed.ID}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	for _, id := range []string{done.ID, killed.ID} {
		st := b.waitReconciled(0, id)
		if st.State != executor.StateRunning || st.Host != e.h.Host() {
			t.Errorf("reconciled %+v: want RUNNING on %q", st, e.h.Host())
		}
	}
	e.release(done.ID)
	fin := b.waitState(done.ID, executor.StateFinished)
	if fin.Reconcile {
		t.Errorf("the adopted task's end is marked as a reconciliation answer: %+v", fin)
	}
	if err := b.ex.Kill(e.ctx, killed.ID); err != nil {
		t.Fatalf("Kill of an adopted task: %v", err)
	}
	b.waitState(killed.ID, executor.StateKilled)
	e.eventually("the adopted task's work stops", func() bool { return !e.running(killed.ID) })
	for _, id := range []string{done.ID, killed.ID} {
		if n := e.starts(id); n != 1 {
			t.Errorf("task %s started %d times, want once", id, n)
		}
	}
}

// An explicit reconciliation about a task nobody launched answers UNKNOWN.
func testExplicitReconcileOfUnknownTask(t *testing.T, e *env) {
	r := e.open()
	id := e.task(Succeeds).ID
	if err := r.ex.Reconcile(e.ctx, []string{id}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	st := r.waitReconciled(0, id)
	if st.State != executor.StateUnknown {
		t.Errorf("answer %+v, want UNKNOWN", st)
	}
}

// An implicit reconciliation, by the term that launched them and by the
// next, reports every live task RUNNING.
func testImplicitReconcileReportsEveryLiveTask(t *testing.T, e *env) {
	a := e.open()
	t1, t2 := e.task(Blocks), e.task(Blocks)
	e.launch(a, t1, t2)
	a.waitState(t1.ID, executor.StateRunning)
	a.waitState(t2.ID, executor.StateRunning)
	from := a.count()
	if err := a.ex.Reconcile(e.ctx, nil); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	for _, tk := range []executor.Task{t1, t2} {
		if st := a.waitReconciled(from, tk.ID); st.State != executor.StateRunning {
			t.Errorf("same term: answer %+v, want RUNNING", st)
		}
	}
	a.close()

	b := e.open()
	if err := b.ex.Reconcile(e.ctx, nil); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	for _, tk := range []executor.Task{t1, t2} {
		if st := b.waitReconciled(0, tk.ID); st.State != executor.StateRunning || st.Host != e.h.Host() {
			t.Errorf("next term: answer %+v, want RUNNING on %q", st, e.h.Host())
		}
	}
}

// Close closes Statuses, leaves the tasks running, and makes every later
// call fail with ErrClosed; closing twice is fine.
func testCloseClosesStatusesAndLeavesTasksRunning(t *testing.T, e *env) {
	r := e.open()
	tk := e.task(Blocks)
	e.launch(r, tk)
	r.waitState(tk.ID, executor.StateRunning)
	if err := r.ex.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(e.h.Timeout()):
		t.Fatal("Statuses not closed by Close")
	}
	if err := r.ex.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !e.running(tk.ID) {
		t.Error("Close stopped the task")
	}
	if err := r.ex.Launch(e.ctx, []executor.Task{e.task(Succeeds)}); !errors.Is(err, executor.ErrClosed) {
		t.Errorf("Launch after Close: %v, want ErrClosed", err)
	}
	if err := r.ex.Kill(e.ctx, tk.ID); !errors.Is(err, executor.ErrClosed) {
		t.Errorf("Kill after Close: %v, want ErrClosed", err)
	}
	if err := r.ex.Reconcile(e.ctx, nil); !errors.Is(err, executor.ErrClosed) {
		t.Errorf("Reconcile after Close: %v, want ErrClosed", err)
	}
	if !e.running(tk.ID) {
		t.Error("a Kill after Close stopped the task")
	}
}

// Several tasks launched together each report their life in order and end
// once: FINISHED or FAILED as their work did.
func testStatusesOfEachTaskAreInOrder(t *testing.T, e *env) {
	r := e.open()
	var tasks []executor.Task
	for _, b := range []Behaviour{Succeeds, Fails, Succeeds, Fails, Succeeds} {
		tasks = append(tasks, e.task(b))
	}
	e.launch(r, tasks...)
	for i, tk := range tasks {
		want := executor.StateFinished
		if i%2 == 1 {
			want = executor.StateFailed
		}
		r.waitState(tk.ID, want)
	}
	if err := checkOrder(r.all()); err != nil {
		t.Errorf("%v\n%s", err, r.dump())
	}
	for _, tk := range tasks {
		ends := 0
		for _, s := range r.forTask(tk.ID) {
			if s.State.Terminal() && !s.Reconcile {
				ends++
			}
		}
		if ends != 1 {
			t.Errorf("task %s reported %d ends, want 1\n%s", tk.ID, ends, r.dump())
		}
	}
}

// A batch holding an invalid task is refused with ErrInvalidTask and
// nothing of it is launched, not even its valid tasks.
func testInvalidTaskRefusesTheWholeBatch(t *testing.T, e *env) {
	r := e.open()
	valid := e.task(Succeeds)
	noID := e.task(Succeeds)
	noID.ID = ""
	noCommand := e.task(Succeeds)
	noCommand.Command = " \n"
	for _, bad := range []executor.Task{noID, noCommand} {
		err := r.ex.Launch(e.ctx, []executor.Task{valid, bad})
		if !errors.Is(err, executor.ErrInvalidTask) {
			t.Errorf("Launch with %+v: %v, want ErrInvalidTask", bad, err)
		}
	}
	// A task launched after them has ended: anything the refused batches
	// had set going would have reported by then.
	after := e.task(Succeeds)
	e.launch(r, after)
	r.waitState(after.ID, executor.StateFinished)
	if ss := r.forTask(valid.ID); len(ss) != 0 {
		t.Errorf("the valid task of a refused batch was reported:\n%s", r.dump())
	}
	if n := e.starts(valid.ID); n != 0 {
		t.Errorf("the valid task of a refused batch started %d times", n)
	}
}

// scenarioTimeout is the Timeout of the tasks that must run past it: short,
// so that the scenarios stay quick, and long enough that a task is seen
// running first.
const scenarioTimeout = time.Second

// needTimeouts skips a timeout scenario for a harness that opts out.
func (e *env) needTimeouts() {
	e.t.Helper()
	if o, ok := e.h.(TimeoutOptOut); ok {
		e.t.Skipf("the harness does not enforce timeouts: %s", o.NoTimeouts())
	}
}

// wantTimedOut checks a task's TIMED_OUT status, its only end, which came
// no sooner than its timeout after start (launched bounds the start from
// below), and waits for its work to stop.
func (e *env) wantTimedOut(r *recorder, tk executor.Task, launched time.Time) executor.Status {
	e.t.Helper()
	st := r.waitState(tk.ID, executor.StateTimedOut)
	if after := time.Since(launched); after < tk.Timeout {
		e.t.Errorf("TIMED_OUT %v after the launch, before the timeout of %v", after, tk.Timeout)
	}
	// (It may answer a reconciliation: a term that adopts a task already
	// stopped answers with its end.)
	if st.Host != e.h.Host() || st.Message == "" {
		e.t.Errorf("TIMED_OUT status %+v: want host %q and a message saying why", st, e.h.Host())
	}
	for _, s := range r.forTask(tk.ID) {
		if s.State.Terminal() && s.State != executor.StateTimedOut {
			e.t.Errorf("a timed-out task reported %s\n%s", s.State, r.dump())
		}
	}
	// It ignores SIGTERM: only the SIGKILL after the grace stops it.
	e.eventually("the timed-out task's work stops (SIGKILL after the grace)", func() bool { return !e.running(tk.ID) })
	if n := e.starts(tk.ID); n != 1 {
		e.t.Errorf("started %d times, want once", n)
	}
	return st
}

// A task that runs past its Timeout is stopped: it ends TIMED_OUT, not
// before its timeout, and its work stops, its SIGTERM ignored or not.
func testTaskPastItsTimeoutEndsTimedOut(t *testing.T, e *env) {
	e.needTimeouts()
	r := e.open()
	tk := e.task(BlocksIgnoringTerm)
	tk.Timeout = scenarioTimeout
	launched := time.Now()
	e.launch(r, tk)
	r.waitState(tk.ID, executor.StateRunning)
	e.wantTimedOut(r, tk, launched)
}

// A task's timeout counts from its start, not from the term that watches
// it: the next term, adopting it through reconciliation half its timeout
// later, stops it when the timeout since its start has run out.
func testNextTermStopsAnAdoptedTaskAtItsTimeout(t *testing.T, e *env) {
	e.needTimeouts()
	a := e.open()
	tk := e.task(BlocksIgnoringTerm)
	tk.Timeout = 2 * scenarioTimeout
	launched := time.Now()
	e.launch(a, tk)
	a.waitState(tk.ID, executor.StateRunning)
	a.close()
	time.Sleep(time.Until(launched.Add(tk.Timeout / 2)))

	b := e.open()
	adopted := time.Now()
	if err := b.ex.Reconcile(e.ctx, []string{tk.ID}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	b.waitReconciled(0, tk.ID)
	st := e.wantTimedOut(b, tk, launched)
	if late := adopted.Add(tk.Timeout); !st.Time.Before(late) {
		t.Errorf("TIMED_OUT at %v, a timeout after the adoption (%v): counted from the adoption, not from the start", st.Time, late)
	}
}

// A task that ends before its timeout ends as its work did: FINISHED or
// FAILED, never TIMED_OUT. (It holds for every executor, opted out of the
// timeout scenarios or not: a Timeout must not change anything else.)
func testTaskEndingBeforeItsTimeoutKeepsItsEnd(t *testing.T, e *env) {
	r := e.open()
	ok, bad := e.task(Succeeds), e.task(Fails)
	ok.Timeout, bad.Timeout = time.Minute, time.Minute
	e.launch(r, ok, bad)
	r.waitState(ok.ID, executor.StateFinished)
	if st := r.waitState(bad.ID, executor.StateFailed); st.ExitCode != FailExitCode {
		t.Errorf("FAILED status %+v: want exit code %d", st, FailExitCode)
	}
	for _, id := range []string{ok.ID, bad.ID} {
		for _, s := range r.forTask(id) {
			if s.State == executor.StateTimedOut {
				t.Errorf("task %s, which ended in time, reported TIMED_OUT\n%s", id, r.dump())
			}
		}
	}
}
