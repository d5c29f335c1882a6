package executortest

import (
	"testing"

	"github.com/hasched/hasched/scheduler/executor"
)

// checkOrder runs at the end of every scenario; it must catch what it is
// there for, or every scenario's order check passes vacuously.
func TestCheckOrderCatchesStatusesOutOfOrder(t *testing.T) {
	st := func(id string, s executor.State, reconcile bool) executor.Status {
		return executor.Status{TaskID: id, State: s, Reconcile: reconcile}
	}
	const (
		staging  = executor.StateStaging
		running  = executor.StateRunning
		finished = executor.StateFinished
		killed   = executor.StateKilled
	)
	good := [][]executor.Status{
		{st("a", staging, false), st("a", staging, false), st("a", running, false), st("a", finished, false)},
		{st("a", running, false), st("b", staging, false), st("a", finished, false), st("b", killed, false)},
		{st("a", finished, false), st("a", finished, false)},                        // an end reported again
		{st("a", finished, false), st("a", running, true)},                          // answers are not updates
		{st("a", staging, false), st("a", running, false), st("a", running, false)}, // still running
	}
	for i, ss := range good {
		if err := checkOrder(ss); err != nil {
			t.Errorf("good sequence %d refused: %v", i, err)
		}
	}
	bad := [][]executor.Status{
		{st("a", running, false), st("a", staging, false)},
		{st("a", finished, false), st("a", running, false)},
		{st("a", finished, false), st("a", killed, false)},
		{st("a", "BOGUS", false)},
	}
	for i, ss := range bad {
		if err := checkOrder(ss); err == nil {
			t.Errorf("bad sequence %d accepted", i)
		}
	}
}
