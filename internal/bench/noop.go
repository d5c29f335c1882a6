package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Errors of the no-op executor, wrapping the contract's so that the
// scheduler treats them as it treats every executor's.
var (
	ErrExecutorClosed = fmt.Errorf("bench executor: %w", executor.ErrClosed)
	ErrInvalidTask    = fmt.Errorf("bench executor: %w", executor.ErrInvalidTask)
)

// noopHost is the Status.Host of every task the no-op executor "runs".
const noopHost = "bench"

// noopWorld is what the no-op executors of every term (and of both
// schedulers) share, as the executors of one cluster share its hosts: the
// IDs launched so far, so that a relaunch by a later term starts nothing
// and is answered with the task's end, as the contract asks. Tasks end the
// moment they start, so nothing else needs remembering.
//
// launched grows by one entry per task; the bench's bounds (jobs firing
// once a second, for a bounded duration) bound it.
type noopWorld struct {
	// onLaunch learns of each task's first launch and when Launch was
	// called for it; it must not block.
	onLaunch func(t executor.Task, calledAt time.Time)

	mu       sync.Mutex
	launched map[string]struct{}
}

func newNoopWorld(onLaunch func(executor.Task, time.Time)) *noopWorld {
	return &noopWorld{onLaunch: onLaunch, launched: map[string]struct{}{}}
}

// claim records id as launched and says whether this is its first launch.
func (w *noopWorld) claim(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.launched[id]; ok {
		return false
	}
	w.launched[id] = struct{}{}
	return true
}

func (w *noopWorld) known(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.launched[id]
	return ok
}

// factory opens a term's executor over the world.
func (w *noopWorld) factory() executor.Factory {
	return func(ctx context.Context, _ executor.Term) (executor.Executor, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return newNoopExecutor(w), nil
	}
}

// noopExecutor implements executor.Executor for the bench: each task
// launched reports RUNNING and FINISHED at once and nothing runs, so what
// the bench measures is the scheduler and its coordinator, not processes.
type noopExecutor struct {
	w     *noopWorld
	gate  executor.Gate
	queue *executor.StatusQueue
	out   chan executor.Status
	// done ends the drain goroutine; drained is closed when it has.
	done      chan struct{}
	drained   chan struct{}
	closeOnce sync.Once
}

// statusBuffer lets a status consumer fall a little behind without the
// queue's goroutine waiting on every status.
const statusBuffer = 256

func newNoopExecutor(w *noopWorld) *noopExecutor {
	e := &noopExecutor{
		w:       w,
		queue:   executor.NewStatusQueue(),
		out:     make(chan executor.Status, statusBuffer),
		done:    make(chan struct{}),
		drained: make(chan struct{}),
	}
	go func() {
		defer close(e.drained)
		e.queue.Drain(e.out, e.done)
	}()
	return e
}

var _ executor.Executor = (*noopExecutor)(nil)

func (e *noopExecutor) push(id string, s executor.State, reconcile bool) {
	e.queue.Push(executor.Status{TaskID: id, State: s, Time: time.Now().UTC(), Host: noopHost, Reconcile: reconcile})
}

// checkTask refuses what no executor could run, as the contract asks.
func checkTask(t executor.Task) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%w: empty task ID (job %q)", ErrInvalidTask, t.Job)
	case strings.TrimSpace(t.Command) == "":
		return fmt.Errorf("%w: task %s has no command", ErrInvalidTask, t.ID)
	}
	return nil
}

// Launch reports each task RUNNING then FINISHED; a task launched before
// (by any term) is only reported FINISHED again. The time it was called is
// what the bench's schedule lag ends at.
func (e *noopExecutor) Launch(ctx context.Context, tasks []executor.Task) error {
	calledAt := time.Now()
	leave, err := e.gate.Enter(ErrExecutorClosed)
	if err != nil {
		return err
	}
	defer leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range tasks {
		if err := checkTask(t); err != nil {
			return err
		}
	}
	for _, t := range tasks {
		if e.w.claim(t.ID) {
			if e.w.onLaunch != nil {
				e.w.onLaunch(t, calledAt)
			}
			e.push(t.ID, executor.StateRunning, false)
		}
		e.push(t.ID, executor.StateFinished, false)
	}
	return nil
}

// Kill of a known task reports its end again (it has always ended);
// of an unknown one, nothing.
func (e *noopExecutor) Kill(ctx context.Context, id string) error {
	leave, err := e.gate.Enter(ErrExecutorClosed)
	if err != nil {
		return err
	}
	defer leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.w.known(id) {
		e.push(id, executor.StateFinished, false)
	}
	return nil
}

// Reconcile answers FINISHED for a known task and UNKNOWN otherwise; an
// implicit reconciliation answers nothing, as no task is ever live.
func (e *noopExecutor) Reconcile(ctx context.Context, ids []string) error {
	leave, err := e.gate.Enter(ErrExecutorClosed)
	if err != nil {
		return err
	}
	defer leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		st := executor.StateUnknown
		if e.w.known(id) {
			st = executor.StateFinished
		}
		e.push(id, st, true)
	}
	return nil
}

func (e *noopExecutor) Statuses() <-chan executor.Status { return e.out }

// Close refuses later calls, waits for those in flight, and closes
// Statuses once its goroutine has handed over what fits.
func (e *noopExecutor) Close() error {
	e.closeOnce.Do(func() {
		e.gate.Shut()
		e.gate.Wait()
		close(e.done)
		<-e.drained
	})
	return nil
}
