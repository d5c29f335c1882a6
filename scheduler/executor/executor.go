// Package executor is the contract between the scheduler and what runs its
// tasks: local processes (package local) or a Mesos framework.
package executor

import (
	"context"
	"errors"
	"time"

	"github.com/hasched/hasched/coord"
)

// Task is one shard of one run of a job, as the launcher hands it over.
type Task struct {
	// ID is deterministic: the same job, fire time, shard and attempt
	// always give the same ID (see scheduler.TaskID), so a new leader that
	// launches a task its predecessor already launched is recognised.
	ID       string    `json:"id"`
	Job      string    `json:"job"`
	App      string    `json:"app"`
	FireTime time.Time `json:"fireTime"`
	Shard    int       `json:"shard"`
	Attempt  int       `json:"attempt"`
	// ShardingTotalCount, ShardParameter and JobParameter make up the
	// sharding context handed to the task.
	ShardingTotalCount int    `json:"shardingTotalCount"`
	ShardParameter     string `json:"shardParameter"`
	JobParameter       string `json:"jobParameter"`
	// Command is run by /bin/sh -c: the job's scriptCommandLine, or the
	// app's bootstrapScript.
	Command string `json:"command"`
	// Image is the container image of the app's tasks (empty: the
	// executor's default); only container executors (kubernetes) use it.
	Image string `json:"image,omitempty"`
	// AppURL is where the app's package comes from (empty: none).
	AppURL string `json:"appURL,omitempty"`
	// AppChecksum, if set, is "sha256:<hex>" of the package at AppURL; an
	// executor that fetches the package refuses one that does not match.
	AppChecksum    string  `json:"appChecksum,omitempty"`
	AppCacheEnable bool    `json:"appCacheEnable"`
	CPUs           float64 `json:"cpus"`
	MemoryMB       float64 `json:"memoryMB"`
	// AppCPUs and AppMemoryMB are the app's own overhead, counted once per
	// agent (Mesos).
	AppCPUs     float64 `json:"appCpus"`
	AppMemoryMB float64 `json:"appMemoryMB"`
	// Daemon tasks are expected to keep running.
	Daemon bool `json:"daemon"`
	// Constraints are labels the host must have (the cluster executor
	// places the task only on a worker whose labels match them all).
	Constraints map[string]string `json:"constraints,omitempty"`
	// Timeout, if positive, is how long the task may run: then its whole
	// process group gets SIGTERM, SIGKILL after the executor's grace, and
	// it ends TIMED_OUT.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// State is where a task is in its life.
type State string

// Task states. Finished, Failed, TimedOut, Killed, Lost and Unknown are
// terminal.
const (
	StateStaging  State = "STAGING"
	StateRunning  State = "RUNNING"
	StateFinished State = "FINISHED"
	StateFailed   State = "FAILED"
	StateKilled   State = "KILLED"
	// StateTimedOut: the task ran past its Timeout and was stopped; the
	// scheduler treats it as a failure (retries, failover).
	StateTimedOut State = "TIMED_OUT"
	// StateLost: the executor cannot tell what became of the task (its
	// host or agent is gone, or it never started).
	StateLost State = "LOST"
	// StateUnknown answers a reconciliation about a task the executor has
	// never heard of.
	StateUnknown State = "UNKNOWN"
)

// Terminal says whether a task in state s will never run again.
func (s State) Terminal() bool {
	switch s {
	case StateFinished, StateFailed, StateTimedOut, StateKilled, StateLost, StateUnknown:
		return true
	}
	return false
}

// Status is one report about one task.
type Status struct {
	TaskID   string    `json:"taskId"`
	State    State     `json:"state"`
	Message  string    `json:"message,omitempty"`
	ExitCode int       `json:"exitCode,omitempty"`
	Time     time.Time `json:"time"`
	// Host is where the task runs (local: the host name; Mesos: the agent).
	Host string `json:"host,omitempty"`
	// Reconcile marks an answer to a reconciliation request.
	Reconcile bool `json:"reconcile,omitempty"`
}

// Executor runs tasks. One Executor serves one leadership term: the leader
// opens it when its term starts and closes it when the term ends. Closing
// stops the executor's own goroutines but leaves the tasks running, so that
// the next leader adopts them through Reconcile.
type Executor interface {
	// Launch starts tasks. It is idempotent per task ID: a task this or an
	// earlier executor already launched is not started again; its status
	// is reported instead. A batch holding a task that cannot be run at all
	// is refused whole with an error wrapping ErrInvalidTask.
	//
	// The executor owns its deadlines. ctx is not a time budget: the
	// caller cancels it only when the term ends or it gives the launch up,
	// and Launch then returns promptly with ctx's error, having claimed
	// nothing it did not start (a later Launch may try again). Whatever
	// Launch waits for (an app package's download, the master) it bounds
	// itself, by the executor's configuration (local: FetchTimeout), also
	// when ctx has no deadline; work cut off by such a bound ends its task
	// FAILED, not in an error of Launch. So callers must not cap ctx with a
	// deadline of their own: the executor cannot tell it from giving up,
	// and a slow but legitimate launch cut off that way would be retried
	// without end. Launch calls may run concurrently, and a slow one must
	// not hold up the others' tasks.
	Launch(ctx context.Context, tasks []Task) error
	// Kill stops a task; a Killed (or, if it had ended, its final) status
	// follows on Statuses. Killing an unknown task is not an error.
	Kill(ctx context.Context, taskID string) error
	// Reconcile asks for the current state of the named tasks (explicit),
	// or of every task the executor can see when taskIDs is empty
	// (implicit). The answers arrive on Statuses with Reconcile set; a
	// named task the executor knows nothing of is answered StateUnknown.
	Reconcile(ctx context.Context, taskIDs []string) error
	// Statuses delivers every status update, in order per task. It is
	// closed by Close.
	Statuses() <-chan Status
	// Close ends the executor's term; see Executor.
	Close() error
}

// A Preparer is an Executor that can do the slow part of a launch ahead
// of it. The scheduler hands Prepare the tasks of the next fires it
// expects to launch, some 200 ms ahead of them (prepareLead), and again
// the tasks of a pass it is about to write, a little ahead of their time
// (fireLead); the same task may come more than once. It launches them with
// Launch, as ever, once their running nodes are written, and may never
// launch some (the write failed, the term ended, the job changed or
// waits), or launch them as they were not prepared. So Prepare must start,
// claim and show nothing: no task runs and nothing another executor or a
// later term reads counts as launched before Launch, and Launch must use a
// preparation only for the very task it was made for. A prepared task
// that is not launched soon is discarded by the executor itself. Prepare
// may prepare some of the tasks or none (it is an optimisation, never
// needed for correctness), and it must not block: the scheduler's loop
// calls it.
type Preparer interface {
	Prepare(tasks []Task)
}

// Factory opens the executor of one term.
type Factory func(ctx context.Context, term Term) (Executor, error)

// Term is what the scheduler hands an executor for one leadership term.
type Term struct {
	// Token is the term's fencing token.
	Token int64
	// State keeps the executor's own small persistent state (the Mesos
	// framework id) in the coordinator, written fenced by the term.
	State StateStore
	// Coord is the leader's session and Writer its writes fenced by this
	// term, for executors that keep their state in the coordinator (the
	// cluster executor's placements).
	Coord  coord.Coordinator
	Writer coord.Writer
}

// StateStore keeps an executor's state under short keys.
type StateStore interface {
	// Load returns the value stored under key, or an error wrapping
	// ErrNoState.
	Load(ctx context.Context, key string) ([]byte, error)
	// Store writes value under key; it fails once the term is over.
	Store(ctx context.Context, key string, value []byte) error
}

// Errors of the contract, for errors.Is. Executors wrap them in sentinels
// of their own, so that callers can tell them apart without knowing which
// executor runs.
var (
	// ErrNoState says nothing is stored under a key.
	ErrNoState = errors.New("executor: no state stored")
	// ErrClosed is returned by Launch, Kill and Reconcile after Close.
	ErrClosed = errors.New("executor: closed")
	// ErrInvalidTask refuses a Launch batch holding a task that cannot be
	// run at all (no ID, no command, ...): retrying it is pointless.
	ErrInvalidTask = errors.New("executor: invalid task")
)

// Describer is implemented by executors that can say how they are doing
// (Mesos: the master, the framework id, whether it is connected); the
// scheduler shows it in its status.
type Describer interface {
	Describe() map[string]string
}
