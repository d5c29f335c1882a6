package kube

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/executortest"
)

// TestContract runs the executor contract suite on the fake clientset, a
// simulated kubelet (the kubelet type) running the Pods: successive terms'
// executors over one namespace, as successive leaders over one cluster.
// The kubelet enforces activeDeadlineSeconds, so the timeout scenarios
// run too; SIGTERM is not simulated (a deleted Pod is gone at once, as
// the fake API server deletes without grace), so BlocksIgnoringTerm is
// Blocks.
func TestContract(t *testing.T) {
	executortest.Run(t, &contractHarness{t: t, w: newWorld(t), st: &memState{}})
}

type contractHarness struct {
	t  *testing.T
	w  *world
	st *memState

	mu    sync.Mutex
	token int64
}

func (h *contractHarness) Open(ctx context.Context) (executor.Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.token++
	token := h.token
	h.mu.Unlock()
	f, err := NewFactory(h.w.config(h.t))
	if err != nil {
		return nil, err
	}
	return f(ctx, executor.Term{Token: token, State: h.st})
}

func (h *contractHarness) Task(id string, b executortest.Behaviour) executor.Task {
	cmd := "block"
	switch b {
	case executortest.Succeeds:
		cmd = "exit 0"
	case executortest.Fails:
		cmd = fmt.Sprintf("exit %d", executortest.FailExitCode)
	}
	return testTask(id, cmd)
}

func (h *contractHarness) Release(_ context.Context, id string) error { return h.w.kubelet.release(id) }
func (h *contractHarness) Running(id string) (bool, error)            { return h.w.kubelet.running(id) }
func (h *contractHarness) Starts(id string) (int, error)              { return h.w.kubelet.startCount(id), nil }
func (h *contractHarness) Host() string                               { return testNode }
func (h *contractHarness) Timeout() time.Duration                     { return waitLimit }
