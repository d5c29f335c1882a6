package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// writeStartedTask makes the directory of a task that some executor
// started, recording p as its process, with a free alive lock file.
func writeStartedTask(t *testing.T, e *Executor, tk executor.Task, p pidFile) string {
	t.Helper()
	dir := e.taskDir(tk.ID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	tj, _ := json.Marshal(tk)
	pj, _ := json.Marshal(p)
	writeFile(t, filepath.Join(dir, fileTask), tj)
	writeFile(t, filepath.Join(dir, fileAlive), nil)
	writeFile(t, filepath.Join(dir, filePid), pj)
	return dir
}

// A task recorded in another PID namespace whose wrapper is gone (its alive
// lock is free) and left no exit file is LOST, not RUNNING for ever.
func TestTaskFromAnotherPidNamespaceWithoutExitFileIsLost(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-foreign-ns", "true")
	host := currentHost()
	writeStartedTask(t, e.Executor, tk, pidFile{
		Pid: 1, Pgid: 1, StartTime: 1, BootID: host.bootID,
		PidNS: "pid:[1]", Host: "other", AliveLock: true, Time: time.Now().UTC(),
	})
	if err := e.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	s := e.waitState(tk.ID, executor.StateLost, true)
	if s.Message != "process vanished" {
		t.Errorf("message %q", s.Message)
	}
}

// While the wrapper (here: the test) holds the alive lock, the foreign task
// runs; once the lock is free, the monitor finds it LOST.
func TestTaskFromAnotherPidNamespaceRunsWhileItsLockIsHeld(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-foreign-held", "true")
	host := currentHost()
	dir := writeStartedTask(t, e.Executor, tk, pidFile{
		Pid: 1, Pgid: 1, StartTime: 1, BootID: host.bootID,
		PidNS: "pid:[1]", Host: "other", AliveLock: true, Time: time.Now().UTC(),
	})
	f, err := os.OpenFile(filepath.Join(dir, fileAlive), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := e.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	e.waitState(tk.ID, executor.StateRunning, true)
	f.Close() // the wrapper dies without an exit file
	e.waitState(tk.ID, executor.StateLost, false)
}

// A task whose recorded pid now names another process (its start time
// differs: the pid was reused) is LOST.
func TestTaskWhosePidWasReusedIsLost(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	tk := task("t-pid-reused", "true")
	host := currentHost()
	me, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	writeStartedTask(t, e.Executor, tk, pidFile{
		Pid: os.Getpid(), Pgid: os.Getpid(), StartTime: me.startTime + 1, BootID: host.bootID,
		PidNS: host.pidNS, Host: "test-host", AliveLock: true, Time: time.Now().UTC(),
	})
	if err := e.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	e.waitState(tk.ID, executor.StateLost, true)
	if !processAlive(os.Getpid()) {
		t.Fatal("unreachable")
	}
}

// A real task's wrapper holds its alive lock while it runs and frees it
// when it ends.
func TestWrapperHoldsTheAliveLock(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	release := filepath.Join(t.TempDir(), "release")
	tk := task("t-alive", waitForFile(release))
	e.launch(tk)
	e.waitState(tk.ID, executor.StateRunning, false)
	if p := readPid(t, e.Executor, tk.ID); !p.AliveLock {
		t.Errorf("pid file does not record the alive lock: %+v", p)
	}
	if held, ok := aliveHeld(e.taskDir(tk.ID)); !held || !ok {
		t.Errorf("alive lock held=%v ok=%v while the task runs", held, ok)
	}
	touch(t, release)
	e.waitState(tk.ID, executor.StateFinished, false)
	// FINISHED comes from the exit file, which the wrapper writes just
	// before it exits: the lock goes a moment later.
	eventually(t, "alive lock freed after the task ended", func() bool {
		held, ok := aliveHeld(e.taskDir(tk.ID))
		return !held && ok
	})
}
