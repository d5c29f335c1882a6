package local

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// reconcileAcrossAnEnd is a term's reconcile pair across a task's end: a
// task waiting for a file runs under one executor, which closes; a second
// executor (cfg) reconciles it explicitly and answers RUNNING, the task
// then ends (its exit file written), and the second executor reconciles
// implicitly. It returns that executor, the task and the reconcile
// answers, once there are two.
func reconcileAcrossAnEnd(t *testing.T, cfg Config, name string) (*testExec, executor.Task, []executor.Status) {
	t.Helper()
	a := newTestExec(t, cfg)
	release := filepath.Join(cfg.WorkDir, "release")
	tk := task(name, waitForFile(release))
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
	return b, tk, answers
}

// A term reconciles explicitly, then implicitly: the second call answers a
// task the first found running from that judgement, without reading its
// directory again. A task that ends between the two calls (or during the
// second) must still end in the status stream after every answer: its
// FINISHED is the last status, and no RUNNING follows it.
func TestTaskEndingBetweenAReconcilePairEndsAfterTheAnswers(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	// A window the test's steps fit in, so that the answer is reused.
	cfg.PollInterval = time.Second
	b, tk, _ := reconcileAcrossAnEnd(t, cfg, "t-ends-between")
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
	cfg := testConfig(t, t.TempDir())
	cfg.PollInterval = time.Minute
	// Were the directory read again by the implicit call, the task would
	// be FINISHED in its answer.
	b, tk, answers := reconcileAcrossAnEnd(t, cfg, "t-judged-once")
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
