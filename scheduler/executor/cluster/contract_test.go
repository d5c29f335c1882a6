package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/executortest"
)

// TestContract runs the executor contract suite on successive terms over
// one in-memory coordinator with two fake workers. The lead runs it again
// with real workers (package scheduler/worker) once they are on main.
func TestContract(t *testing.T) {
	w := newWorld(t)
	w.worker("a", withCPUs(1000), withLabels(map[string]string{"name": "a"}))
	w.worker("b", withCPUs(1000))
	executortest.Run(t, &contractHarness{w: w})
}

type contractHarness struct {
	w *world

	mu   sync.Mutex
	prev *leader
}

// Open ends the previous term (the suite may still hold its executor; its
// writes fail from now on) and opens the next.
func (h *contractHarness) Open(ctx context.Context) (executor.Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prev != nil {
		if err := h.prev.l.Resign(ctx); err != nil {
			return nil, err
		}
	}
	sess, err := h.w.st.Open(ctx)
	if err != nil {
		return nil, err
	}
	h.w.t.Cleanup(func() { _ = sess.Close() })
	cctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	l, err := sess.Campaign(cctx, "/ha/election", []byte("x"))
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	h.prev = &leader{sess: sess, l: l}
	f, err := NewFactory(testConfig(h.w.t))
	if err != nil {
		return nil, err
	}
	return f(ctx, executor.Term{Token: l.Token(), Coord: sess, Writer: l.Writer()})
}

func (h *contractHarness) Task(id string, b executortest.Behaviour) executor.Task {
	cmd := cmdSucceed
	switch b {
	case executortest.Fails:
		cmd = cmdFail
	case executortest.Blocks, executortest.BlocksIgnoringTerm:
		// The fake workers send no signals: nothing to ignore.
		cmd = cmdBlock
	}
	// The suite's host is one: its tasks go to a.
	tk := task(id, "contract", 0, cmd)
	tk.Constraints = map[string]string{"name": "a"}
	return tk
}

func (h *contractHarness) Release(_ context.Context, id string) error { return h.w.runs.Release(id) }
func (h *contractHarness) Running(id string) (bool, error)            { return h.w.runs.Running(id), nil }
func (h *contractHarness) Starts(id string) (int, error)              { return h.w.runs.Starts(id), nil }
func (h *contractHarness) Host() string                               { return "a.host" }
func (h *contractHarness) Timeout() time.Duration                     { return waitLimit }
