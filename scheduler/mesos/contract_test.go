package mesos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/hasched/hasched/integration/mesosfake"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/executortest"
)

// TestContract runs the executor contract suite on the executors of
// successive terms of one framework (one state store) on one fake master.
func TestContract(t *testing.T) {
	executortest.Run(t, newContractHarness(t))
}

// contractHarness plays the agents' command executor: the fake master runs
// no commands, so a driver ends the tasks built to succeed or fail as soon
// as the master has them RUNNING; tasks built to block (ignoring SIGTERM or
// not: no signal is sent) run until Release (FinishTask), a kill, or their
// max_completion_time, which the fake master enforces as an agent does.
type contractHarness struct {
	m     *mesosfake.Master
	state *memState
	host  string

	mu     sync.Mutex
	behave map[string]executortest.Behaviour
	driven map[string]bool // ended by the driver
	terms  int64
}

func newContractHarness(t *testing.T) *contractHarness {
	m := newMaster(t, mesosfake.Config{})
	// Room for every scenario's tasks, and for the duplicate launch of a
	// running task by the next term (refused by the master, not placed).
	if _, err := m.AddAgent(mesosfake.AgentSpec{Hostname: "agent-under-test", CPUs: 64, MemMB: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	h := &contractHarness{
		m: m, state: newMemState(), host: "agent-under-test",
		behave: map[string]executortest.Behaviour{}, driven: map[string]bool{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.drive(ctx)
	}()
	// Registered after newMaster's cleanup, so it runs before it.
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return h
}

// drive ends every RUNNING task built to succeed or fail, once.
func (h *contractHarness) drive(ctx context.Context) {
	for {
		var due []mesosfake.TaskRecord
		err := h.m.WaitUntil(ctx, func() bool {
			due = due[:0]
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, r := range h.m.Tasks() {
				b, ok := h.behave[r.ID]
				if ok && (b == executortest.Succeeds || b == executortest.Fails) && r.Known && r.State == mesos.TASK_RUNNING && !h.driven[r.ID] {
					due = append(due, r)
				}
			}
			return len(due) > 0
		})
		if err != nil {
			return // ctx ended: the harness is done
		}
		for _, r := range due {
			h.mu.Lock()
			b := h.behave[r.ID]
			h.driven[r.ID] = true
			h.mu.Unlock()
			// An error means the task ended otherwise meanwhile (killed, its
			// agent lost): the suite then sees an end it did not expect.
			if b == executortest.Fails {
				_ = h.m.FailTask(r.ID, fmt.Sprintf("Command exited with status %d", executortest.FailExitCode))
			} else {
				_ = h.m.FinishTask(r.ID)
			}
		}
	}
}

func (h *contractHarness) Open(ctx context.Context) (executor.Executor, error) {
	f, err := NewFactory(testConfig(h.m.URL()))
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.terms++
	token := h.terms
	h.mu.Unlock()
	return f(ctx, executor.Term{Token: token, State: h.state})
}

func (h *contractHarness) Task(id string, b executortest.Behaviour) executor.Task {
	h.mu.Lock()
	h.behave[id] = b
	h.mu.Unlock()
	cmd := "echo start"
	if b == executortest.Fails {
		cmd += fmt.Sprintf("; exit %d", executortest.FailExitCode)
	}
	return executor.Task{ID: id, Job: "contract", App: "app", Command: cmd, CPUs: 0.1, MemoryMB: 16}
}

func (h *contractHarness) Release(_ context.Context, id string) error {
	return h.m.FinishTask(id)
}

// Running: the master has the task on an agent, not (yet) ended.
func (h *contractHarness) Running(id string) (bool, error) {
	r, ok := h.m.Task(id)
	if !ok || !r.Known {
		return false, nil
	}
	switch r.State {
	case mesos.TASK_STAGING, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_KILLING:
		return true, nil
	}
	return false, nil
}

func (h *contractHarness) Starts(id string) (int, error) { return h.m.Launches(id), nil }

func (h *contractHarness) Host() string { return h.host }

func (h *contractHarness) Timeout() time.Duration { return waitTimeout }
