// Package executortest is the one contract suite every executor passes
// (gocloud.dev's drivertest pattern, as coord/coordtest): an executor's test
// builds a Harness over its world (a work directory, a fake Mesos master) and
// calls Run. Scenarios are named for the behaviour they prove and are
// written once, here, for every executor; what only one executor does is
// tested in its own package.
package executortest

import (
	"context"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Behaviour is what a task built by Harness.Task does once it runs.
type Behaviour int

const (
	// Succeeds ends at once with success (exit code 0).
	Succeeds Behaviour = iota
	// Fails ends at once with exit code FailExitCode.
	Fails
	// Blocks runs until Harness.Release ends it with success, or it is
	// killed.
	Blocks
	// BlocksIgnoringTerm is Blocks that ignores SIGTERM: only Release or
	// a SIGKILL ends it, so its work stops after a stop only if the
	// executor follows its SIGTERM with a SIGKILL. (A harness whose tasks
	// get no signals builds it as Blocks.)
	BlocksIgnoringTerm
)

// FailExitCode is the exit code of a task that Fails.
const FailExitCode = 3

func (b Behaviour) String() string {
	switch b {
	case Succeeds:
		return "succeeds"
	case Fails:
		return "fails"
	case Blocks:
		return "blocks"
	case BlocksIgnoringTerm:
		return "blocks ignoring SIGTERM"
	}
	return "behaviour?"
}

// Harness is what an executor provides to be tested: executors of
// successive terms over one world, and tasks that behave as asked.
//
// Every executor Open returns works on the same world: a task one of them
// launched is there for the next, as after a scheduler's restart. The
// suite makes task IDs unique per scenario, so scenarios share the world
// without seeing each other's tasks (implicit reconciliation aside); it
// closes every executor it opens and releases every task it blocked.
type Harness interface {
	// Open opens the executor of a new term.
	Open(ctx context.Context) (executor.Executor, error)
	// Task builds a valid task with this ID that behaves as b once
	// started. The harness may be asked to build the same ID again (a
	// relaunch) and must then build the same task.
	Task(id string, b Behaviour) executor.Task
	// Release makes a running task built to Block end with success, as if
	// its work was done.
	Release(ctx context.Context, id string) error
	// Running says whether the task's work really runs now, from outside
	// the executor (local: its process group; Mesos: the master's view).
	Running(id string) (bool, error)
	// Starts counts how many times the task was really started (local: its
	// command ran; Mesos: the master launched it).
	Starts(id string) (int, error)
	// Host is the Status.Host of the tasks the harness's executors run.
	Host() string
	// Timeout bounds every wait for a status or a state.
	Timeout() time.Duration
}

// TimeoutOptOut is implemented by a harness whose world cannot enforce
// executor.Task's Timeout (a fake of the system that would: one that runs
// no agent, no process, no clock). The scenarios that need a timeout
// enforced are skipped for it, naming the reason; everything else still
// runs. A harness that does not implement it runs them all.
type TimeoutOptOut interface {
	// NoTimeouts says why this harness cannot show a timeout enforced, and
	// where that is tested instead.
	NoTimeouts() string
}
