package schedtest

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// Cluster is a fake place where tasks run, shared by every Executor opened
// from it (one per term), so that tasks outlive terms as they do on Mesos.
// Statuses go to the Executor opened last that is not closed; with none
// open they are dropped, and a later reconciliation reports the task.
type Cluster struct {
	// FinishOnLaunch makes every newly launched task report RUNNING and
	// then FINISHED at once.
	FinishOnLaunch bool
	// LaunchErr, if set, fails every Launch with it.
	LaunchErr error
	// LaunchGate, if set, makes every Launch wait for a value from it (or
	// its context) before it does anything, as a slow fetch would.
	LaunchGate chan struct{}

	mu        sync.Mutex
	appGates  map[string]chan struct{} // apps whose Launch waits, as for a slow fetch
	deadlined int                      // Launch calls whose context had a deadline
	tasks     map[string]*fakeTask
	order     []string          // task IDs in the order they were started
	calls     map[string]int    // Launch calls naming each task ID
	starters  map[string]string // task ID -> name of the executor that started it
	current   *Executor
	opened    int
	kills     map[string]int
	changed   chan struct{}
	notes     []executor.Status // every status sent, for assertions
}

type fakeTask struct {
	task  executor.Task
	state executor.State
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{
		tasks:    map[string]*fakeTask{},
		calls:    map[string]int{},
		starters: map[string]string{},
		kills:    map[string]int{},
		changed:  make(chan struct{}),
	}
}

// GateApp makes every Launch of app's tasks wait, as a slow fetch of its
// package would, until release is called.
func (c *Cluster) GateApp(app string) (release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.appGates == nil {
		c.appGates = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	c.appGates[app] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// DeadlinedLaunches counts the Launch calls whose context had a deadline:
// the executor owns its deadlines, so the scheduler sets none.
func (c *Cluster) DeadlinedLaunches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadlined
}

// Factory opens Executors on the cluster; name identifies them in Starter.
func (c *Cluster) Factory(name string) executor.Factory {
	return func(ctx context.Context, _ executor.Term) (executor.Executor, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.opened++
		e := &Executor{c: c, name: name, ch: make(chan executor.Status, 100000)}
		c.current = e
		return e, nil
	}
}

// Opened counts the Executors opened so far.
func (c *Cluster) Opened() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened
}

// Started lists the IDs of the tasks started, in order (each once: a
// second Launch of an ID does not start it again).
func (c *Cluster) Started() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}

// Task returns a started task as it was launched.
func (c *Cluster) Task(id string) (executor.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tasks[id]
	if !ok {
		return executor.Task{}, false
	}
	return t.task, true
}

// LaunchCalls counts the Launch calls that named id.
func (c *Cluster) LaunchCalls(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// Starter names the executor that started id ("" if none did).
func (c *Cluster) Starter(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starters[id]
}

// Kills counts the Kill calls for id.
func (c *Cluster) Kills(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kills[id]
}

// State is a task's state ("" if it was never started).
func (c *Cluster) State(id string) executor.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tasks[id]; ok {
		return t.state
	}
	return ""
}

// Running lists the IDs of the tasks not ended, sorted.
func (c *Cluster) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, t := range c.tasks {
		if !t.state.Terminal() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Changed is closed at the next change of the cluster (a start, a status).
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Report moves a started task to state and reports it, as its process
// ending or its agent vanishing would.
func (c *Cluster) Report(id string, state executor.State, message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tasks[id]; ok {
		t.state = state
	}
	c.sendLocked(executor.Status{TaskID: id, State: state, Message: message})
}

func (c *Cluster) sendLocked(s executor.Status) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	s.Host = "fake"
	c.notes = append(c.notes, s)
	close(c.changed)
	c.changed = make(chan struct{})
	if c.current == nil {
		return
	}
	select {
	case c.current.ch <- s:
	default:
		panic("schedtest: status channel full")
	}
}

// Executor is one term's handle on a Cluster.
type Executor struct {
	c      *Cluster
	name   string
	ch     chan executor.Status
	closed bool // guarded by c.mu
}

var errClosed = errors.New("schedtest: executor closed")

func (e *Executor) Launch(ctx context.Context, tasks []executor.Task) error {
	c := e.c
	c.mu.Lock()
	if _, ok := ctx.Deadline(); ok {
		c.deadlined++
	}
	var gate chan struct{}
	if len(tasks) > 0 {
		gate = c.appGates[tasks[0].App]
	}
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.LaunchGate != nil {
		select {
		case <-c.LaunchGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return errClosed
	}
	if c.LaunchErr != nil {
		return c.LaunchErr
	}
	for _, t := range tasks {
		c.calls[t.ID]++
		if ft, ok := c.tasks[t.ID]; ok {
			c.sendLocked(executor.Status{TaskID: t.ID, State: ft.state})
			continue
		}
		ft := &fakeTask{task: t, state: executor.StateRunning}
		c.tasks[t.ID] = ft
		c.order = append(c.order, t.ID)
		c.starters[t.ID] = e.name
		c.sendLocked(executor.Status{TaskID: t.ID, State: executor.StateRunning})
		if c.FinishOnLaunch {
			ft.state = executor.StateFinished
			c.sendLocked(executor.Status{TaskID: t.ID, State: executor.StateFinished})
		}
	}
	return nil
}

func (e *Executor) Kill(ctx context.Context, id string) error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return errClosed
	}
	c.kills[id]++
	t, ok := c.tasks[id]
	if !ok {
		return nil
	}
	if !t.state.Terminal() {
		t.state = executor.StateKilled
	}
	c.sendLocked(executor.Status{TaskID: id, State: t.state})
	return nil
}

func (e *Executor) Reconcile(ctx context.Context, ids []string) error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.closed {
		return errClosed
	}
	if len(ids) == 0 {
		for id, t := range c.tasks {
			if !t.state.Terminal() {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
	}
	for _, id := range ids {
		state := executor.StateUnknown
		if t, ok := c.tasks[id]; ok {
			state = t.state
		}
		c.sendLocked(executor.Status{TaskID: id, State: state, Reconcile: true})
	}
	return nil
}

func (e *Executor) Statuses() <-chan executor.Status { return e.ch }

func (e *Executor) Close() error {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.ch)
		if c.current == e {
			c.current = nil
		}
	}
	return nil
}

// Info is what Status reports of the executor.
func (e *Executor) Describe() map[string]string { return map[string]string{"name": e.name} }
