// Package events is what the scheduler tells observers as it works: fires,
// launches, task runs and their ends, misfires, leadership. Metrics, run
// history and alerts are observers; none of them may slow scheduling, so
// the scheduler hands each event to a Sink that never blocks, and an
// observer that does I/O does it behind a Queue, which drops (and counts)
// what it has no room for.
package events

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Kind says what happened.
type Kind string

const (
	// Fired: a fire of Job at FireTime entered the ready queue, Lag after
	// FireTime (0 if ahead of it, as a pass writes its fires up to 20 ms
	// before they are due): a cron fire, or a trigger's (Lag 0).
	Fired Kind = "fired"
	// Misfired: Count fires of Job up to FireTime were not queued
	// (misfire off collapses due fires into the latest; a full ready queue
	// drops them).
	Misfired Kind = "misfired"
	// Launched: the task was handed to the executor, Lag after its
	// FireTime (the schedule lag; a retry's lag counts from its fire too).
	Launched Kind = "launched"
	// Running: the executor first reported the task RUNNING, Lag after
	// its FireTime.
	Running Kind = "running"
	// Ended: a run of the task ended in State; Outcome says what the
	// scheduler does about it.
	Ended Kind = "ended"
	// Leadership: this process became leader (Leader true) of Term, or
	// its term ended.
	Leadership Kind = "leadership"
	// JobRemoved: Job was deregistered (by itself or with its app);
	// observers drop what they keep per job.
	JobRemoved Kind = "job_removed"
)

// Outcome is what the scheduler does with a task run that ended.
type Outcome string

const (
	// Done: the run ended as it should (finished, or killed as asked).
	Done Outcome = "done"
	// Retry: it failed and runs again as the next attempt.
	Retry Outcome = "retry"
	// Failover: it goes to the failover queue to run again.
	Failover Outcome = "failover"
	// GivenUp: it failed or was lost and will not run again.
	GivenUp Outcome = "given_up"
)

// Event is one thing that happened. Which fields are set depends on Kind.
type Event struct {
	Kind Kind
	// Time is when the scheduler saw it.
	Time time.Time
	// Term is the leader's fencing token.
	Term int64
	// Leader is set on Leadership events.
	Leader bool

	Job      string
	TaskID   string
	Shard    int
	Attempt  int
	FireTime time.Time
	// Lag is, for Fired, Launched and Running, how long after FireTime.
	Lag time.Duration
	// Count is, for Misfired, how many fires were not queued.
	Count int

	// Of a task's run (Running, Ended):
	Host      string
	State     executor.State
	ExitCode  int
	Message   string
	StartedAt time.Time // when the executor accepted it; zero if never
	EndedAt   time.Time
	Outcome   Outcome
}

// Sink receives events. Emit must not block and must not keep ev's
// caller waiting on I/O.
type Sink interface {
	Emit(ev Event)
}

// Discard is a Sink that drops everything.
var Discard Sink = discard{}

type discard struct{}

func (discard) Emit(Event) {}

// Fanout hands each event to every sink, in order.
type Fanout []Sink

// Emit implements Sink.
func (f Fanout) Emit(ev Event) {
	for _, s := range f {
		s.Emit(ev)
	}
}

// Func adapts a function that does not block to a Sink.
type Func func(Event)

// Emit implements Sink.
func (f Func) Emit(ev Event) { f(ev) }

// Queue runs a slow observer behind a bounded buffer on one goroutine of
// its own: Emit never blocks; an event that finds the buffer full is
// dropped and counted.
type Queue struct {
	ch      chan Event
	handle  func(Event)
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
	mu      sync.RWMutex // Emit (read) against Close (write)
	closed  bool
}

// NewQueue starts a Queue of size events (at least 1) that calls handle
// for each event, one at a time. Close stops it.
func NewQueue(size int, handle func(Event)) *Queue {
	q := &Queue{ch: make(chan Event, max(1, size)), handle: handle, done: make(chan struct{})}
	go q.run()
	return q
}

func (q *Queue) run() {
	defer close(q.done)
	for ev := range q.ch {
		q.handle(ev)
	}
}

// Emit implements Sink.
func (q *Queue) Emit(ev Event) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		q.dropped.Add(1)
		return
	}
	select {
	case q.ch <- ev:
	default:
		q.dropped.Add(1)
	}
}

// Dropped is how many events found the queue full or closed.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Close stops taking events and waits until handle has returned for every
// event taken. The handler must return promptly once its own context is
// cancelled; cancel that first when waiting is not wanted.
func (q *Queue) Close() {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		close(q.ch)
		q.mu.Unlock()
	})
	<-q.done
}
