package local

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// A term reconciles explicitly, then implicitly: the second call answers a
// task the first found running from that judgement, without reading its
// directory again. A task that ends between the two calls (or during the
// second) must still end in the status stream after every answer: its
// FINISHED is the last status, and no RUNNING follows it.
func TestTaskEndingBetweenAReconcilePairEndsAfterTheAnswers(t *testing.T) {
	work := t.TempDir()
	cfg := testConfig(t, work)
	// A window the test's steps fit in, so that the answer is reused.
	cfg.PollInterval = time.Second
	a := newTestExec(t, cfg)
	release := filepath.Join(work, "release")
	tk := task("t-ends-between", waitForFile(release))
	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := newTestExec(t, cfg)
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	b.waitState(tk.ID, executor.StateRunning, true)
	touch(t, release)
	eventually(t, "the task's exit file", func() bool {
		_, _, err := readExit(b.taskDir(tk.ID))
		return err == nil
	})
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reconcile answers", func() bool {
		n := 0
		for _, s := range b.forTask(tk.ID) {
			if s.Reconcile {
				n++
			}
		}
		return n == 2
	})
	b.waitState(tk.ID, executor.StateFinished, false)
	ss := b.forTask(tk.ID)
	if last := ss[len(ss)-1]; last.State != executor.StateFinished {
		t.Errorf("last status %+v, want FINISHED; all: %+v", last, ss)
	}
	if n := countState(ss, executor.StateFinished); n != 1 {
		t.Errorf("FINISHED reported %d times, want once: %+v", n, ss)
	}
}

// The implicit call right after an explicit one does not judge again what
// the explicit one found running: its answer is that judgement.
func TestImplicitReconcileAfterAnExplicitOneReusesItsJudgement(t *testing.T) {
	work := t.TempDir()
	cfg := testConfig(t, work)
	cfg.PollInterval = time.Minute
	a := newTestExec(t, cfg)
	release := filepath.Join(work, "release")
	tk := task("t-judged-once", waitForFile(release))
	a.launch(tk)
	a.waitState(tk.ID, executor.StateRunning, false)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := newTestExec(t, cfg)
	if err := b.Reconcile(context.Background(), []string{tk.ID}); err != nil {
		t.Fatal(err)
	}
	// Were the directory read again, the task would be FINISHED now.
	touch(t, release)
	eventually(t, "the task's exit file", func() bool {
		_, _, err := readExit(b.taskDir(tk.ID))
		return err == nil
	})
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	var answers []executor.Status
	eventually(t, "two reconcile answers", func() bool {
		answers = answers[:0]
		for _, s := range b.forTask(tk.ID) {
			if s.Reconcile {
				answers = append(answers, s)
			}
		}
		return len(answers) == 2
	})
	if answers[1].State != executor.StateRunning {
		t.Errorf("implicit answer %+v, want RUNNING from the explicit call's judgement", answers[1])
	}
	// Once the window is over, the task is judged again.
	b.mu.Lock()
	b.lastReconcile = reconcileSpan{}
	b.mu.Unlock()
	if err := b.Reconcile(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	b.waitState(tk.ID, executor.StateFinished, true)
}
