package model

import (
	"errors"
	"fmt"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Errors of the scheduler's service; match with errors.Is.
var (
	ErrNotFound = errors.New("scheduler: not found")
	ErrExists   = errors.New("scheduler: already exists")
	// ErrNotLeader: a write reached a process that is not the leader. The
	// API forwards it to Status().LeaderAddress.
	ErrNotLeader = errors.New("scheduler: not the leader")
	// ErrNoLeader: no process leads at the moment; retry later.
	ErrNoLeader = errors.New("scheduler: no leader")
	// ErrConflict: the request contradicts the current state (for
	// example triggering a DAEMON job, or deregistering an app that still
	// has jobs).
	ErrConflict = errors.New("scheduler: conflict")
	// ErrInvalid is wrapped by every *ValidationError.
	ErrInvalid = errors.New("scheduler: invalid input")
	// ErrOutOfBounds is wrapped, besides ErrInvalid, by the
	// *ValidationError of a number past its bound (MaxShardingTotalCount,
	// MaxRetries, …).
	ErrOutOfBounds = errors.New("scheduler: number out of bounds")
	// ErrUnavailable: this process has no session with the coordinator at
	// the moment (it is starting, or reconnecting); retry later.
	ErrUnavailable = errors.New("scheduler: coordinator unavailable")
)

// ValidationError refuses one field of a request.
type ValidationError struct {
	Field  string
	Reason string
	// Err, if set, is a more specific sentinel (ErrOutOfBounds).
	Err error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold, and errors.Is(err, e.Err).
func (e *ValidationError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// TaskRecord is a task the store knows as running or waiting for failover.
type TaskRecord struct {
	ID       string         `json:"taskId"`
	Job      string         `json:"jobName"`
	Shard    int            `json:"shardingItem"`
	FireTime time.Time      `json:"fireTime"`
	Attempt  int            `json:"attempt"`
	State    executor.State `json:"state"`
	Host     string         `json:"host,omitempty"`
	Message  string         `json:"message,omitempty"`
	// LaunchedAt is zero until the executor accepted the task.
	LaunchedAt time.Time `json:"launchedAt,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// KillRequested is set before the scheduler kills the task (disable,
	// REPLACE), so that its end is not taken for a failure, in this term
	// or the next.
	KillRequested bool `json:"killRequested,omitempty"`
	// NotBefore holds a failover task back until then (the retry back-off
	// after a failure).
	NotBefore time.Time `json:"notBefore,omitzero"`
	// JobParameter, if set, replaces the job's jobParameter for this run:
	// a trigger's own (model.Trigger), kept through retries and failover.
	JobParameter *string `json:"jobParameter,omitempty"`
}

// ReadyEntry is one job's pending fires on the ready queue.
type ReadyEntry struct {
	Job       string      `json:"jobName"`
	Times     int         `json:"times"`
	FireTimes []time.Time `json:"fireTimes"`
}

// Status describes this process and the leader it follows.
type Status struct {
	// Self is this process's advertised API address.
	Self string `json:"self"`
	// Leader says whether this process leads.
	Leader bool `json:"leader"`
	// LeaderAddress is the leader's advertised API address ("" if none).
	LeaderAddress string `json:"leaderAddress"`
	// Term is the fencing token of this process's current term (0 when it
	// does not lead).
	Term        int64     `json:"term,omitempty"`
	LeaderSince time.Time `json:"leaderSince,omitempty"`
	Coordinator string    `json:"coordinator"`
	Executor    string    `json:"executor"`
	// ExecutorInfo holds what the executor reports of itself (Mesos:
	// master URL, framework id, connected).
	ExecutorInfo map[string]string `json:"executorInfo,omitempty"`
}

// ConfigKind says what a stored configuration configures.
type ConfigKind string

// Configuration kinds, as the quarantine reports them.
const (
	KindApp ConfigKind = "app"
	KindJob ConfigKind = "job"
)

// QuarantinedConfig is a stored configuration that fails validation (an
// older version's, written into the coordinator behind the API's back, or
// not even JSON): the leader does not schedule it and leaves its state
// alone. Registering or updating the app or job of that name through the
// API replaces it; deregistering removes it.
type QuarantinedConfig struct {
	Kind ConfigKind `json:"kind"`
	Name string     `json:"name"`
	// Error is why it is refused (Check's error, or the decoding's).
	Error string `json:"error"`
	// SeenAt is when the process that answers first found it so.
	SeenAt time.Time `json:"seenAt"`
}
