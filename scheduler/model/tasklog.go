package model

import "fmt"

// CheckTaskID accepts only a task id TaskID could have made: a valid job
// name and the canonical spelling of its numbers. Whatever reads a task's
// files or nodes by an id from a request checks it first, so that no path
// is ever built from anything else.
func CheckTaskID(id string) error {
	ref, err := ParseTaskID(id)
	if err != nil {
		return err
	}
	if err := ValidateName("task id's job name", ref.Job, true); err != nil {
		return fmt.Errorf("%w: task id %q: %v", ErrInvalid, id, err)
	}
	if ref.ID() != id {
		return fmt.Errorf("%w: task id %q is not in canonical form (%q)", ErrInvalid, id, ref.ID())
	}
	return nil
}

// Log streams of a task.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// TaskLocation is where a task ran, as far as the store still tells:
// which worker name its placement names, and the API address of that
// worker's live registration, if it has one.
type TaskLocation struct {
	TaskID string `json:"taskId"`
	// Worker is the worker name (its work directory keeps the log).
	Worker string `json:"worker"`
	// API is the advertised REST address of a live incarnation of Worker;
	// empty while none is registered.
	API string `json:"api,omitempty"`
	// Host is the host the worker reported for the task.
	Host string `json:"host,omitempty"`
}

// MaxLogTailLines bounds the lines a log read may start back from the end.
const MaxLogTailLines = 100000
