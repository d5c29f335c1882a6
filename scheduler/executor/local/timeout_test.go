package local

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// stubbornCommand ignores SIGTERM, as do the sleeps it starts: only the
// SIGKILL after KillGrace ends it.
const stubbornCommand = "trap '' TERM\nsleep 300"

// wantNoState fails if task id ever reported state.
func wantNoState(t *testing.T, te *testExec, id string, state executor.State) {
	t.Helper()
	for _, s := range te.forTask(id) {
		if s.State == state {
			t.Errorf("task %s reported %s: %+v", id, state, te.forTask(id))
		}
	}
}

// A task's timeout counts from its start, which its pid file records with
// the deadline; past it the task ends TIMED_OUT, saying after how long, and
// its whole group is gone once KillGrace has passed, SIGTERM ignored or not.
func TestTimeoutStopsTheTaskCountedFromItsStart(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.KillGrace = 300 * time.Millisecond
	e := newTestExec(t, cfg)
	tk := task("t-timeout", stubbornCommand)
	tk.Timeout = time.Second
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, e.Executor, tk.ID)
	if got := p.Deadline.Sub(p.Time); got != tk.Timeout {
		t.Fatalf("pid file: deadline %v after the start, want the timeout %v", got, tk.Timeout)
	}
	eventually(t, "the sleep started", func() bool { return len(groupMembers(p.Pgid)) >= 3 })

	st := e.waitState(tk.ID, executor.StateTimedOut, false)
	if st.Message != "timed out after 1s" || st.Reconcile {
		t.Errorf("TIMED_OUT status %+v: want the message %q, an update", st, "timed out after 1s")
	}
	if st.Time.Before(p.Deadline) {
		t.Errorf("TIMED_OUT at %v, before the deadline %v", st.Time, p.Deadline)
	}
	eventually(t, "the process group gone after SIGKILL", func() bool { return len(groupMembers(p.Pgid)) == 0 })
	wantNoState(t, e, tk.ID, executor.StateKilled)
	wantNoState(t, e, tk.ID, executor.StateFailed)
	// Every later judgement agrees: the timeout is in the task directory.
	from := len(e.all())
	if err := e.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reconciliation answer", func() bool { return len(e.all()) > from })
	if got := e.all()[from]; got.State != executor.StateTimedOut || got.Message != "timed out after 1s" {
		t.Errorf("reconciled after the end: %+v, want TIMED_OUT", got)
	}
}

// A task adopted by the next executor (the scheduler restarted) keeps the
// deadline its start set: the adopter stops it then, not a timeout after it
// took over.
func TestAdoptionKeepsTheDeadline(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	a := newTestExec(t, cfg)
	tk := task("t-timeout-adopted", "sleep 300")
	tk.Timeout = 3 * time.Second
	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, a.Executor, tk.ID)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// No executor watches it for a while: its clock runs on.
	time.Sleep(1500 * time.Millisecond)

	b := newTestExec(t, cfg)
	adopted := time.Now()
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	if st := b.waitState(tk.ID, executor.StateRunning, true); st.Host != cfg.Host {
		t.Errorf("reconciled %+v: want RUNNING on %q", st, cfg.Host)
	}
	st := b.waitState(tk.ID, executor.StateTimedOut, false)
	if st.Time.Before(p.Deadline) {
		t.Errorf("TIMED_OUT at %v, before the deadline %v", st.Time, p.Deadline)
	}
	if late := adopted.Add(tk.Timeout); !st.Time.Before(late) {
		t.Errorf("TIMED_OUT at %v: the timeout was counted from the adoption (%v), not from the start (deadline %v)", st.Time, late, p.Deadline)
	}
	if st.Message != "timed out after 3s" {
		t.Errorf("message %q, want %q", st.Message, "timed out after 3s")
	}
	if again := readPid(t, b.Executor, tk.ID); !again.Deadline.Equal(p.Deadline) {
		t.Errorf("deadline changed from %v to %v", p.Deadline, again.Deadline)
	}
	eventually(t, "the process group gone", func() bool { return len(groupMembers(p.Pgid)) == 0 })
}

// A task already past its deadline when an executor adopts it is stopped by
// the adoption itself (the Reconcile call), and the adopter sends the
// SIGKILL too.
func TestTaskPastItsDeadlineAtAdoptionIsStoppedAtOnce(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.KillGrace = 300 * time.Millisecond
	a := newTestExec(t, cfg)
	tk := task("t-timeout-overdue", stubbornCommand)
	tk.Timeout = 500 * time.Millisecond
	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, a.Executor, tk.ID)
	eventually(t, "the sleep started", func() bool { return len(groupMembers(p.Pgid)) >= 3 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(p.Deadline) + 300*time.Millisecond)
	if len(groupMembers(p.Pgid)) < 3 {
		t.Fatal("the task stopped with no executor watching it")
	}

	b := newTestExec(t, cfg)
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.taskDir(tk.ID), fileTimedOut)); err != nil {
		t.Fatalf("after the Reconcile that adopted it, the overdue task is not marked timed out: %v", err)
	}
	b.waitState(tk.ID, executor.StateTimedOut, false)
	eventually(t, "the process group gone after SIGKILL", func() bool { return len(groupMembers(p.Pgid)) == 0 })
}

// A user's kill of a task with a timeout is a kill, also when the deadline
// passes while the task goes down (here: it ignores SIGTERM for KillGrace).
func TestUserKillOfATaskWithATimeoutStaysKilled(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.KillGrace = 3 * time.Second
	e := newTestExec(t, cfg)
	tk := task("t-timeout-killed", stubbornCommand)
	tk.Timeout = 2 * time.Second
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	p := readPid(t, e.Executor, tk.ID)
	eventually(t, "the sleep started", func() bool { return len(groupMembers(p.Pgid)) >= 3 })
	if left := time.Until(p.Deadline); left <= 0 {
		t.Fatalf("the task started %v ago, past its timeout, before the test could kill it", tk.Timeout-left)
	}
	if err := e.Kill(context.Background(), tk.ID); err != nil {
		t.Fatal(err)
	}
	e.waitState(tk.ID, executor.StateKilled, false)
	// The rest of the group outlives the deadline, until the SIGKILL.
	eventually(t, "the process group gone after SIGKILL", func() bool { return len(groupMembers(p.Pgid)) == 0 })
	if time.Now().Before(p.Deadline) {
		t.Fatalf("the group went before the deadline %v: the test proves nothing", p.Deadline)
	}
	// A later executor judges the same.
	b := newTestExec(t, cfg)
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	if st := b.waitState(tk.ID, executor.StateKilled, true); st.Message != "killed" {
		t.Errorf("reconciled %+v, want KILLED", st)
	}
	wantNoState(t, e, tk.ID, executor.StateTimedOut)
	wantNoState(t, b, tk.ID, executor.StateTimedOut)
	if _, err := os.Stat(filepath.Join(e.taskDir(tk.ID), fileTimedOut)); !notExist(err) {
		t.Errorf("a killed task was marked timed out (%v)", err)
	}
	// An executor that found the deadline passed while the kill went on
	// (one in another PID namespace, whose wrapper outlived the SIGTERM)
	// marks the task timed out after the kill: the kill still decides.
	touch(t, filepath.Join(e.taskDir(tk.ID), fileTimedOut))
	from := len(b.all())
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second reconciliation answer", func() bool { return len(b.all()) > from })
	if st := b.all()[from]; st.State != executor.StateKilled {
		t.Errorf("with a timeout marked after the kill: %+v, want KILLED", st)
	}
}

// A task that ends before its timeout ends as it did, and stays so once
// its deadline has passed.
func TestTaskEndingBeforeItsTimeoutKeepsItsEnd(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	ok, bad := task("t-in-time", "exit 0"), task("t-in-time-fails", "exit 4")
	ok.Timeout, bad.Timeout = 500*time.Millisecond, 500*time.Millisecond
	e.launch(ok, bad)
	e.waitState(ok.ID, executor.StateFinished, false)
	if st := e.waitState(bad.ID, executor.StateFailed, false); st.ExitCode != 4 {
		t.Errorf("FAILED status %+v: want exit code 4", st)
	}
	time.Sleep(time.Until(readPid(t, e.Executor, ok.ID).Deadline) + 200*time.Millisecond)
	from := len(e.all())
	if err := e.Reconcile(context.Background(), []string{ok.ID, bad.ID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both reconciled", func() bool { return len(e.all()) >= from+2 })
	for _, s := range e.all()[from:] {
		if want := map[string]executor.State{ok.ID: executor.StateFinished, bad.ID: executor.StateFailed}[s.TaskID]; s.State != want {
			t.Errorf("reconciled after the deadline: %+v, want %s", s, want)
		}
	}
	for _, id := range []string{ok.ID, bad.ID} {
		wantNoState(t, e, id, executor.StateTimedOut)
		if _, err := os.Stat(filepath.Join(e.taskDir(id), fileTimedOut)); !notExist(err) {
			t.Errorf("%s: an ended task was marked timed out (%v)", id, err)
		}
	}
}

// A task without a timeout has no deadline.
func TestNoTimeoutNoDeadline(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-no-timeout", "exit 0")
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)
	if p := readPid(t, e.Executor, tk.ID); !p.Deadline.IsZero() {
		t.Errorf("deadline %v for a task without a timeout", p.Deadline)
	}
}

// fakeInfo is a marker file as stopOf sees it.
type fakeInfo struct {
	fs.FileInfo
	mod time.Time
}

func (f fakeInfo) ModTime() time.Time { return f.mod }

// The first stop marker written decides how a stopped task ended.
func TestFirstStopMarkerDecides(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := pidFile{Time: t0, Deadline: t0.Add(30 * time.Second)}
	at := func(d time.Duration) fs.FileInfo { return fakeInfo{mod: t0.Add(d)} }
	for _, tc := range []struct {
		name             string
		killed, timedOut fs.FileInfo
		want             executor.State
		msg              string
	}{
		{"neither", nil, nil, "", ""},
		{"killed", at(time.Second), nil, executor.StateKilled, "killed"},
		{"timed out", nil, at(31 * time.Second), executor.StateTimedOut, "timed out after 30s"},
		{"killed, then timed out", at(time.Second), at(31 * time.Second), executor.StateKilled, "killed"},
		{"timed out, then killed", at(32 * time.Second), at(31 * time.Second), executor.StateTimedOut, "timed out after 30s"},
	} {
		s := stopOf(tc.killed, tc.timedOut, p)
		switch {
		case s == nil && tc.want != "":
			t.Errorf("%s: no stop, want %s", tc.name, tc.want)
		case s != nil && (s.state != tc.want || s.message != tc.msg):
			t.Errorf("%s: %s %q, want %s %q", tc.name, s.state, s.message, tc.want, tc.msg)
		}
	}
}
