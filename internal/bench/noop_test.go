package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// The no-op executor keeps the part of the executor contract that applies
// to tasks that end the moment they start. (executortest's suite needs
// tasks that block and fail, which it has none of by design.)

func openNoop(t *testing.T, w *noopWorld) *noopExecutor {
	t.Helper()
	ex, err := w.factory()(context.Background(), executor.Term{})
	if err != nil {
		t.Fatal(err)
	}
	e := ex.(*noopExecutor)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func noopTask(id string) executor.Task {
	return executor.Task{ID: id, Job: "j", Command: "true", FireTime: time.Now()}
}

// next reads one status or fails after a second.
func next(t *testing.T, e *noopExecutor) executor.Status {
	t.Helper()
	select {
	case st, ok := <-e.Statuses():
		if !ok {
			t.Fatal("Statuses closed")
		}
		return st
	case <-time.After(time.Second):
		t.Fatal("no status within 1s")
	}
	return executor.Status{}
}

func wantStatus(t *testing.T, st executor.Status, id string, s executor.State, reconcile bool) {
	t.Helper()
	if st.TaskID != id || st.State != s || st.Reconcile != reconcile || st.Host != noopHost {
		t.Fatalf("status %+v, want %s %s reconcile=%v on %q", st, id, s, reconcile, noopHost)
	}
}

func TestNoopLaunchReportsRunningThenFinishedAndIsSeenOnce(t *testing.T) {
	var seen []string
	w := newNoopWorld(func(tk executor.Task, _ time.Time) { seen = append(seen, tk.ID) })
	a := openNoop(t, w)
	if err := a.Launch(context.Background(), []executor.Task{noopTask("t1")}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, next(t, a), "t1", executor.StateRunning, false)
	wantStatus(t, next(t, a), "t1", executor.StateFinished, false)

	// The next term launching it again starts nothing and reports its end.
	b := openNoop(t, w)
	if err := b.Launch(context.Background(), []executor.Task{noopTask("t1")}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, next(t, b), "t1", executor.StateFinished, false)
	if len(seen) != 1 {
		t.Errorf("launch hook saw %v, want t1 once", seen)
	}
}

func TestNoopInvalidTaskRefusesTheWholeBatch(t *testing.T) {
	w := newNoopWorld(nil)
	e := openNoop(t, w)
	noCommand := noopTask("bad")
	noCommand.Command = " "
	for _, bad := range []executor.Task{{Job: "j", Command: "true"}, noCommand} {
		err := e.Launch(context.Background(), []executor.Task{noopTask("good"), bad})
		if !errors.Is(err, executor.ErrInvalidTask) || !errors.Is(err, ErrInvalidTask) {
			t.Errorf("Launch with %+v: %v, want ErrInvalidTask", bad, err)
		}
	}
	if w.known("good") {
		t.Error("the valid task of a refused batch was launched")
	}
}

func TestNoopReconcileAndKillAnswerForKnownAndUnknownTasks(t *testing.T) {
	w := newNoopWorld(nil)
	e := openNoop(t, w)
	ctx := context.Background()
	if err := e.Launch(ctx, []executor.Task{noopTask("known")}); err != nil {
		t.Fatal(err)
	}
	next(t, e)
	next(t, e)
	if err := e.Reconcile(ctx, []string{"known", "unknown"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, next(t, e), "known", executor.StateFinished, true)
	wantStatus(t, next(t, e), "unknown", executor.StateUnknown, true)
	// Implicit: no task is ever live, so nothing is answered; a Kill of an
	// unknown task is no error and reports nothing; of a known one, its end.
	if err := e.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, "unknown"); err != nil {
		t.Fatal(err)
	}
	if err := e.Kill(ctx, "known"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, next(t, e), "known", executor.StateFinished, false)
}

func TestNoopCloseClosesStatusesAndRefusesLaterCalls(t *testing.T) {
	e := openNoop(t, newNoopWorld(nil))
	ctx := context.Background()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-e.Statuses():
		if ok {
			t.Fatal("a status after Close on an idle executor")
		}
	case <-time.After(time.Second):
		t.Fatal("Statuses not closed by Close")
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Launch":    e.Launch(ctx, []executor.Task{noopTask("t")}),
		"Kill":      e.Kill(ctx, "t"),
		"Reconcile": e.Reconcile(ctx, nil),
	} {
		if !errors.Is(err, executor.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
