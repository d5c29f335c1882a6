package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// waitStaged waits until e has a staged directory with a pid file, and
// returns it with the waiting wrapper's pid file.
func waitStaged(t *testing.T, e *Executor) (string, pidFile) {
	t.Helper()
	var dir string
	var p pidFile
	eventually(t, "a staged task dir with its pid file", func() bool {
		matches, _ := filepath.Glob(filepath.Join(e.cfg.tmpDir(), stagedPrefix+"*"))
		for _, m := range matches {
			if pf, err := readPidFile(m); err == nil && pf.Pid > 0 {
				dir, p = m, pf
				return true
			}
		}
		return false
	})
	return dir, p
}

// setPrepTTL sets how long e's preparations wait for their Launch.
func setPrepTTL(e *Executor, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.prepTTL = d
}

// noStaged says whether tmp/ holds no staged directory.
func noStaged(e *Executor) bool {
	matches, _ := filepath.Glob(filepath.Join(e.cfg.tmpDir(), stagedPrefix+"*"))
	return len(matches) == 0
}

// A prepared task runs nothing and claims nothing until its Launch; the
// Launch then runs it from its preparation (the wrapper forked ahead), in
// its own task directory, with nothing of the staged one left.
func TestAPreparedTaskRunsOnlyOnceLaunchedInItsOwnDir(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	setPrepTTL(e.Executor, time.Hour) // used, however slow the machine
	ran := filepath.Join(t.TempDir(), "ran")
	tk := task("t-prepared", `echo run >>`+shellQuote(ran)+`
pwd -P >pwd.txt
printenv PWD >pwdenv.txt`)
	e.Prepare([]executor.Task{tk})
	staged, p := waitStaged(t, e.Executor)
	time.Sleep(100 * time.Millisecond) // what an early start would need
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("the prepared task ran before its Launch")
	}
	dir := e.taskDir(tk.ID)
	if _, err := os.Stat(dir); !notExist(err) {
		t.Fatalf("the prepared task is claimed before its Launch: %v", err)
	}
	if !processAlive(p.Pid) {
		t.Fatalf("the prepared wrapper %d is not waiting", p.Pid)
	}

	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)
	if got := readPid(t, e.Executor, tk.ID); got.Pid != p.Pid {
		t.Errorf("the task ran as pid %d, not as its prepared wrapper %d", got.Pid, p.Pid)
	}
	for _, f := range []string{"pwd.txt", "pwdenv.txt"} {
		if b, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(b)) != dir {
			t.Errorf("%s: %q, want the task dir %q", f, b, dir)
		}
	}
	if got, _ := os.ReadFile(ran); string(got) != "run\n" {
		t.Errorf("runs: %q", got)
	}
	if _, err := os.Stat(staged); !notExist(err) {
		t.Errorf("the staged dir %s is left: %v", staged, err)
	}
	states := []executor.State{}
	for _, s := range e.forTask(tk.ID) {
		states = append(states, s.State)
	}
	want := []executor.State{executor.StateStaging, executor.StateRunning, executor.StateFinished}
	if len(states) != len(want) || states[0] != want[0] || states[1] != want[1] || states[2] != want[2] {
		t.Errorf("statuses %v, want %v", states, want)
	}
}

// A preparation whose Launch does not come, whether it expires or the
// executor closes, leaves no process, no claim and no staged directory,
// and its task never runs.
func TestAPreparedTaskNeverLaunchedLeavesNoTrace(t *testing.T) {
	for _, how := range []string{"expired", "closed"} {
		t.Run(how, func(t *testing.T) {
			e := newTestExec(t, testConfig(t, t.TempDir()))
			ran := filepath.Join(t.TempDir(), "ran")
			tk := task("t-"+how, `touch `+shellQuote(ran))
			e.Prepare([]executor.Task{tk})
			_, p := waitStaged(t, e.Executor)
			if how == "expired" {
				// Shortened once it is seen: on a loaded machine the
				// preparation itself may take longer.
				setPrepTTL(e.Executor, 200*time.Millisecond)
			}
			if how == "closed" {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "the prepared wrapper gone", func() bool { return !processAlive(p.Pid) })
			eventually(t, "the staged dir gone", func() bool { return noStaged(e.Executor) })
			if _, err := os.Stat(ran); err == nil {
				t.Error("a task prepared and never launched ran")
			}
			if _, err := os.Stat(e.taskDir(tk.ID)); !notExist(err) {
				t.Errorf("a task prepared and never launched is claimed: %v", err)
			}
		})
	}
}

// A preparation loses to a claim made before its Launch (another executor
// launched the task afresh): its Launch adopts that task, and the task
// runs once.
func TestAPreparedTaskLosesToAnEarlierClaim(t *testing.T) {
	work := t.TempDir()
	runs := filepath.Join(t.TempDir(), "runs")
	release := filepath.Join(t.TempDir(), "release")
	a := newTestExec(t, testConfig(t, work))
	setPrepTTL(a.Executor, time.Hour)
	b := newTestExec(t, testConfig(t, work))
	tk := task("t-race", "echo run >>"+shellQuote(runs)+"\n"+waitForFile(release))
	a.Prepare([]executor.Task{tk})
	_, p := waitStaged(t, a.Executor)
	b.launch(tk)
	b.waitState(tk.ID, executor.StateRunning, false)
	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	if n := countState(a.forTask(tk.ID), executor.StateStaging); n != 0 {
		t.Errorf("the prepared launcher reported STAGING %d times: it claimed the task too", n)
	}
	eventually(t, "the prepared wrapper gone", func() bool { return !processAlive(p.Pid) })
	eventually(t, "the staged dir gone", func() bool { return noStaged(a.Executor) })
	touch(t, release)
	a.waitState(tk.ID, executor.StateFinished, false)
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("task ran %d times: %q", strings.Count(string(got), "run"), got)
	}
}

// A Launch of a task other than the one prepared under its ID runs what it
// was given, and the preparation goes.
func TestALaunchOfAChangedTaskDiscardsItsPreparation(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	setPrepTTL(e.Executor, time.Hour)
	out := t.TempDir()
	tk := task("t-changed", `touch `+shellQuote(filepath.Join(out, "old")))
	e.Prepare([]executor.Task{tk})
	_, p := waitStaged(t, e.Executor)
	tk.Command = `touch ` + shellQuote(filepath.Join(out, "new"))
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)
	if _, err := os.Stat(filepath.Join(out, "new")); err != nil {
		t.Errorf("the launched command did not run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "old")); err == nil {
		t.Error("the prepared command ran")
	}
	if got := readPid(t, e.Executor, tk.ID); got.Pid == p.Pid {
		t.Error("the changed task ran as the prepared wrapper")
	}
	eventually(t, "the staged dir gone", func() bool { return noStaged(e.Executor) })
}

// A prepared task's go-ahead is withheld when the caller's start check
// fails at its Launch: it ends LOST and its command never runs.
func TestAPreparedTaskHonoursTheStartCheck(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	setPrepTTL(e.Executor, time.Hour)
	ran := filepath.Join(t.TempDir(), "ran")
	tk := task("t-withheld", `touch `+shellQuote(ran))
	e.Prepare([]executor.Task{tk})
	waitStaged(t, e.Executor)
	ctx := executor.WithStartCheck(context.Background(), func() error { return errors.New("session over") })
	if err := e.Launch(ctx, []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	e.waitState(tk.ID, executor.StateLost, false)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(ran); err == nil {
		t.Error("a task whose go-ahead was withheld ran")
	}
}

// A preparation whose claim fails for another reason than a claim made
// before (here its staged directory is gone) does not fail the Launch: the
// task is launched afresh and runs once.
func TestAPreparedTaskWhoseClaimFailsIsLaunchedAfresh(t *testing.T) {
	e := newTestExec(t, testConfig(t, t.TempDir()))
	setPrepTTL(e.Executor, time.Hour)
	runs := filepath.Join(t.TempDir(), "runs")
	tk := task("t-unclaimable", "echo run >>"+shellQuote(runs))
	e.Prepare([]executor.Task{tk})
	staged, p := waitStaged(t, e.Executor)
	if err := os.RemoveAll(staged); err != nil {
		t.Fatal(err)
	}
	e.launch(tk)
	e.waitState(tk.ID, executor.StateFinished, false)
	if got := readPid(t, e.Executor, tk.ID); got.Pid == p.Pid {
		t.Error("the task ran as the wrapper of a preparation it could not claim")
	}
	eventually(t, "the prepared wrapper gone", func() bool { return !processAlive(p.Pid) })
	if got, _ := os.ReadFile(runs); string(got) != "run\n" {
		t.Errorf("runs: %q", got)
	}
}
