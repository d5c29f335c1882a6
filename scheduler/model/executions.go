package model

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hasched/hasched/scheduler/executor"
)

// Execution is the record of one run of one task: what ran, where, when,
// how it ended and what the scheduler did about it. It is what run history
// keeps (GET /api/job/{job}/executions). The JSON names are
// Elastic-Job-Cloud's (its JobExecutionEvent: taskId, jobName,
// shardingItem, hostname, startTime, completeTime, success) where it has
// one.
type Execution struct {
	TaskID   string    `json:"taskId"`
	Job      string    `json:"jobName"`
	Shard    int       `json:"shardingItem"`
	FireTime time.Time `json:"fireTime"`
	Attempt  int       `json:"attempt"`
	// Host is where it ran, as the executor names it (a worker, a Mesos
	// agent); empty if it never started.
	Host  string         `json:"hostname"`
	State executor.State `json:"state"`
	// ExitCode is the process's exit code (negative: the signal that
	// ended it, as the executor reports it).
	ExitCode int `json:"exitCode"`
	// Message is the executor's last word on the run (bounded: see
	// MaxExecutionMessage).
	Message string `json:"message,omitempty"`
	// StartTime is when the executor accepted it; zero if it never did.
	StartTime    time.Time `json:"startTime"`
	CompleteTime time.Time `json:"completeTime"`
	// Success is Elastic-Job-Cloud's is_success: the run finished.
	Success bool `json:"success"`
	// Outcome is what the scheduler did about the end: done, retry,
	// failover, given_up.
	Outcome string `json:"outcome"`
}

// MaxExecutionMessage bounds an Execution's Message, in bytes: a task's
// last words must not make a history node large.
const MaxExecutionMessage = 1024

// MaxExecutionsLimit is the most executions one read returns.
const MaxExecutionsLimit = 1000

// DefaultExecutionsLimit is how many executions a read returns when the
// caller names no limit.
const DefaultExecutionsLimit = 20

// CheckExecutionsLimit refuses a read's limit out of [1,
// MaxExecutionsLimit].
func CheckExecutionsLimit(limit int) error {
	if limit < 1 || limit > MaxExecutionsLimit {
		return &ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not in [1, %d]", limit, MaxExecutionsLimit), Err: ErrOutOfBounds}
	}
	return nil
}

// Trimmed returns the execution with its Message cut to
// MaxExecutionMessage bytes (at a rune boundary).
func (e Execution) Trimmed() Execution {
	if len(e.Message) <= MaxExecutionMessage {
		return e
	}
	cut := MaxExecutionMessage
	for cut > 0 && !utf8.RuneStart(e.Message[cut]) {
		cut--
	}
	e.Message = e.Message[:cut]
	return e
}
