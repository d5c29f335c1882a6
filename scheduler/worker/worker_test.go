package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker"
)

func TestPlacedTaskRunsAndReportsInOrder(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	inc := rn.w.Info().Incarnation
	mark := filepath.Join(dir, "ran")
	r.place("w1", inc, task("t1", "touch '"+mark+"'"))
	reps := r.waitState(id(rn.w), "t1", executor.StateFinished)
	got := statesOf(reps, "t1")
	want := []executor.State{executor.StateStaging, executor.StateRunning, executor.StateFinished}
	if strings.Join(statesStr(got), ",") != strings.Join(statesStr(want), ",") {
		t.Errorf("reported states %v, want %v", got, want)
	}
	for _, rep := range reps {
		if rep.Incarnation != inc {
			t.Errorf("report of incarnation %q, want %q", rep.Incarnation, inc)
		}
	}
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the task did not run: %v", err)
	}
	// A task placed on another incarnation of the same name is not ours.
	r.place("w1", "0123456789abcdef", task("t2", "touch '"+filepath.Join(dir, "ran2")+"'"))
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "ran2")); err == nil {
		t.Error("a task placed on another incarnation ran")
	}
	if s := statesOf(r.reports(id(rn.w)), "t2"); len(s) != 0 {
		t.Errorf("reported %v for a task of another incarnation", s)
	}
}

func statesStr(s []executor.State) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return out
}

func TestKillRequestKillsTheTask(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	led := ledger(t, dir, "t1")
	r.place("w1", rn.w.Info().Incarnation, task("t1", longTask(led, filepath.Join(dir, "never"))))
	pid := ledgerPid(t, led)
	r.waitState(id(rn.w), "t1", executor.StateRunning)
	r.askKill("w1", "t1")
	r.waitState(id(rn.w), "t1", executor.StateKilled)
	eventually(t, "task process gone", func() bool { return !pidAlive(pid) })

	// A kill asked before the worker saw the placement: never launched,
	// though the kill and the placement reach the worker by two watches.
	for i := 2; i < 12; i++ {
		tid := fmt.Sprintf("t%d", i)
		r.askKill("w1", tid)
		led := ledger(t, dir, tid)
		r.place("w1", rn.w.Info().Incarnation, task(tid, longTask(led, filepath.Join(dir, "never"))))
		r.waitState(id(rn.w), tid, executor.StateKilled)
		if l := ledgerLines(led); len(l) != 0 {
			t.Errorf("%s, killed before launch, ran: %v", tid, l)
		}
	}
}

// A worker whose registration is gone writes nothing more: its next report
// fails the fence, and its tasks are killed.
func TestReportsOfALostRegistrationAreNeverWritten(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	old := id(rn.w)
	led := ledger(t, dir, "t1")
	stop := filepath.Join(dir, "stop")
	r.place("w1", rn.w.Info().Incarnation, task("t1", longTask(led, stop)))
	pid := ledgerPid(t, led)
	r.waitState(old, "t1", executor.StateRunning)
	before := len(r.reports(old))

	// The registration vanishes on the server (as when the server expired
	// the session) while the worker's session object still looks live.
	if err := r.leader.Delete(context.Background(), store.WorkerPath(old), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	// The task finishes: its FINISHED must not be written.
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new incarnation", func() bool { i := rn.w.Info(); return i.Incarnation != "" && i.ID() != old })
	eventually(t, "task process gone", func() bool { return !pidAlive(pid) })
	time.Sleep(200 * time.Millisecond)
	if got := len(r.reports(old)); got != before {
		t.Errorf("%d reports after the registration was gone, want %d", got, before)
	}
}

// The safety clock kills every task when SafeUntil passes, and the worker
// goes on as a new incarnation that claims nothing of the old one.
func TestSafetyClockKillsTasksWhenSafeUntilPasses(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	old := rn.w.Info()
	led := ledger(t, dir, "t1")
	r.place("w1", old.Incarnation, task("t1", longTask(led, filepath.Join(dir, "never"))))
	pid := ledgerPid(t, led)
	r.waitState(old.ID(), "t1", executor.StateRunning)

	sess := rn.sessions.last().(*schedtest.Session)
	until := time.Now().Add(300 * time.Millisecond)
	sess.SetSafeUntil(until)
	eventually(t, "task killed", func() bool { return !pidAlive(pid) })
	if early := time.Until(until); early > 0 {
		t.Errorf("killed %v before SafeUntil", early)
	}
	eventually(t, "a new incarnation", func() bool { i := rn.w.Info(); return i.Incarnation != "" && i.Incarnation != old.Incarnation })
	for _, s := range statesOf(r.reports(old.ID()), "t1") {
		if s.Terminal() {
			t.Errorf("the tripped incarnation reported %s", s)
		}
	}
	if _, p := r.placement("w1", "t1"); p.Incarnation != old.Incarnation {
		t.Errorf("placement re-bound to %s; the new incarnation must claim nothing", p.Incarnation)
	}
	if _, err := r.leader.Get(context.Background(), store.WorkerPath(old.ID())); !errors.Is(err, coord.ErrNotFound) {
		t.Errorf("old registration: %v, want it gone", err)
	}

	// And when the session simply expires.
	cur := rn.w.Info()
	led2 := ledger(t, dir, "t2")
	r.place("w1", cur.Incarnation, task("t2", longTask(led2, filepath.Join(dir, "never"))))
	pid2 := ledgerPid(t, led2)
	rn.sessions.last().(*schedtest.Session).Expire()
	eventually(t, "task killed on expiry", func() bool { return !pidAlive(pid2) })
}

// A restart with the same work dir claims its predecessor's running task
// without starting it again, reports a task that finished meanwhile, and
// kills one whose placement the leader marked LOST first.
func TestRestartAdoptsClaimsAndKillsLostClaims(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	inc1 := rn.w.Info().Incarnation
	ledA, ledB, ledC := ledger(t, dir, "a"), ledger(t, dir, "b"), ledger(t, dir, "c")
	stopA, stopB := filepath.Join(dir, "stopA"), filepath.Join(dir, "stopB")
	r.place("w1", inc1, task("a", longTask(ledA, stopA)))
	r.place("w1", inc1, task("b", longTask(ledB, stopB)))
	r.place("w1", inc1, task("c", longTask(ledC, filepath.Join(dir, "never"))))
	pidA, pidB, pidC := ledgerPid(t, ledA), ledgerPid(t, ledB), ledgerPid(t, ledC)
	for _, id := range []string{"a", "b", "c"} {
		r.waitState(rn.w.Info().ID(), id, executor.StateRunning)
	}
	rn.stop(t)
	if !pidAlive(pidA) || !pidAlive(pidC) {
		t.Fatal("tasks did not survive the worker's stop")
	}
	// While down: b finishes, the leader marks c LOST.
	if err := os.WriteFile(stopB, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b exits", func() bool { return !pidAlive(pidB) })
	n, p := r.placement("w1", "c")
	p.State = executor.StateLost
	if _, err := r.leader.Set(context.Background(), n.Path, mustJSON(t, p), n.Version); err != nil {
		t.Fatal(err)
	}

	rn2 := r.start("w1", dir)
	inc2 := rn2.w.Info().Incarnation
	if inc2 == inc1 {
		t.Fatal("the restart kept the incarnation")
	}
	reps := r.waitState(rn2.w.Info().ID(), "a", executor.StateRunning)
	r.waitState(rn2.w.Info().ID(), "b", executor.StateFinished)
	if _, p := r.placement("w1", "a"); p.Incarnation != inc2 {
		t.Errorf("placement a bound to %s, want %s", p.Incarnation, inc2)
	}
	if l := ledgerLines(ledA); len(l) != 1 {
		t.Errorf("task a started %d times: %v", len(l), l)
	}
	if !pidAlive(pidA) {
		t.Error("the adopted task a died")
	}
	eventually(t, "c killed (its claim lost)", func() bool { return !pidAlive(pidC) })
	reps = r.reports(rn2.w.Info().ID())
	if s := statesOf(reps, "c"); len(s) != 0 {
		t.Errorf("the lost claim c was reported: %v", s)
	}
	if _, p := r.placement("w1", "c"); p.Incarnation != inc1 || p.State != executor.StateLost {
		t.Errorf("placement c = %s of %s, want LOST of %s", p.State, p.Incarnation, inc1)
	}
	// The adopted task goes on being watched.
	if err := os.WriteFile(stopA, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitState(rn2.w.Info().ID(), "a", executor.StateFinished)
}

func mustJSON(t *testing.T, v model.Placement) []byte {
	t.Helper()
	b, err := jsonMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSecondWorkerOnAWorkDirIsRefused(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	r.start("w1", dir)
	ss := &sessions{open: r.open}
	w2, err := worker.New(r.config("w2", dir, ss))
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Run(context.Background()); !errors.Is(err, worker.ErrWorkDirBusy) {
		t.Fatalf("second Run: %v, want ErrWorkDirBusy", err)
	}
}

func TestDrainFinishesTransientKillsDaemonAndDeregisters(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	rn := r.start("w1", dir)
	info := rn.w.Info()
	short := task("short", "sleep 0.5")
	daemon := task("daemon", longTask(ledger(t, dir, "d"), filepath.Join(dir, "never")))
	daemon.Daemon = true
	r.place("w1", info.Incarnation, short)
	r.place("w1", info.Incarnation, daemon)
	pid := ledgerPid(t, ledger(t, dir, "d"))
	r.waitState(info.ID(), "short", executor.StateRunning)

	drained := make(chan error, 1)
	go func() { drained <- rn.w.Drain(context.Background()) }()
	eventually(t, "registered as draining", func() bool {
		b, ok := r.st.Value(store.WorkerPath(info.ID()))
		var w model.Worker
		return ok && jsonUnmarshal(b, &w) == nil && w.Draining
	})
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(limit):
		t.Fatal("Drain did not return")
	}
	reps := r.reports(info.ID())
	if s := statesOf(reps, "short"); len(s) == 0 || s[len(s)-1] != executor.StateFinished {
		t.Errorf("short task reported %v, want it FINISHED", s)
	}
	if s := statesOf(reps, "daemon"); len(s) == 0 || s[len(s)-1] != executor.StateKilled {
		t.Errorf("daemon task reported %v, want it KILLED", s)
	}
	if pidAlive(pid) {
		t.Error("the daemon task still runs")
	}
	if _, ok := r.st.Value(store.WorkerPath(info.ID())); ok {
		t.Error("still registered after the drain")
	}
	rn.stop(t) // Run has returned nil: stop only collects it
}
