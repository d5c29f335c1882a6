package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/events"
	"github.com/hasched/hasched/scheduler/executor"
)

// eventLog records what the scheduler tells its observers.
type eventLog struct {
	mu  sync.Mutex
	evs []events.Event
}

func (l *eventLog) Emit(ev events.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

// find returns the events that match.
func (l *eventLog) find(match func(events.Event) bool) []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []events.Event
	for _, ev := range l.evs {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func (l *eventLog) wait(t *testing.T, what string, match func(events.Event) bool) events.Event {
	t.Helper()
	var got []events.Event
	eventually(t, what, func() bool { got = l.find(match); return len(got) > 0 })
	return got[0]
}

func TestTheTermTellsItsObserversWhatItDoes(t *testing.T) {
	e := newMemEnv(t)
	log := &eventLog{}
	e.start(func(c *Config) { c.Events = log })
	lead := log.wait(t, "leadership", func(ev events.Event) bool { return ev.Kind == events.Leadership && ev.Leader })
	if lead.Term == 0 {
		t.Error("the leadership event has no term")
	}

	// A cron fire: fired, launched, running, ended done, each with its lag.
	register(t, e.svc(), testJob("j", "*/5 * * * * ?"))
	settle(e.cluster)
	e.clock.Advance(5 * time.Second)
	fire := t0.Add(5 * time.Second)
	is := func(kind events.Kind, job string) func(events.Event) bool {
		return func(ev events.Event) bool { return ev.Kind == kind && ev.Job == job }
	}
	fired := log.wait(t, "fired", is(events.Fired, "j"))
	if !fired.FireTime.Equal(fire) || fired.Lag < 0 || fired.Term != lead.Term {
		t.Errorf("fired %+v, want fire time %v and the term", fired, fire)
	}
	launched := log.wait(t, "launched", is(events.Launched, "j"))
	running := log.wait(t, "running", is(events.Running, "j"))
	if launched.TaskID == "" || launched.TaskID != running.TaskID || !launched.FireTime.Equal(fire) {
		t.Errorf("launched %+v, running %+v", launched, running)
	}
	if ds, ok := e.svc().QueueDepths(ctxT(t)); !ok || ds.Running != 1 || ds.Failover != 0 {
		t.Errorf("queue depths %+v, %v; want 1 running", ds, ok)
	}
	e.cluster.Report(launched.TaskID, executor.StateFinished, "")
	ended := log.wait(t, "ended", is(events.Ended, "j"))
	if ended.Outcome != events.Done || ended.State != executor.StateFinished || ended.TaskID != launched.TaskID || ended.EndedAt.IsZero() {
		t.Errorf("ended %+v, want done and FINISHED", ended)
	}

	// A timeout is a failure: retried while attempts remain, then given up.
	job := testJob("f", "0 0 0 * * ?")
	job.Retries = 1
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "f")
	e.cluster.Report(id, executor.StateTimedOut, "timed out after 1s")
	first := log.wait(t, "the first attempt ended", is(events.Ended, "f"))
	if first.Outcome != events.Retry || first.State != executor.StateTimedOut || first.Attempt != 0 {
		t.Errorf("first attempt ended %+v, want a retry of a TIMED_OUT", first)
	}
	e.clock.Advance(time.Second)
	next := withAttempt(id, 1)
	eventually(t, "the retry runs", func() bool { return e.cluster.State(next) == executor.StateRunning })
	e.cluster.Report(next, executor.StateTimedOut, "timed out after 1s")
	last := log.wait(t, "the retry ended", func(ev events.Event) bool { return ev.Kind == events.Ended && ev.TaskID == next })
	if last.Outcome != events.GivenUp || last.Attempt != 1 {
		t.Errorf("the retry ended %+v, want given up", last)
	}

	// With misfire off, fires that came due together collapse into one.
	m := testJob("m", "* * * * * ?")
	m.Misfire = false
	register(t, e.svc(), m)
	settle(e.cluster)
	e.clock.Advance(3 * time.Second)
	mis := log.wait(t, "misfired", is(events.Misfired, "m"))
	if mis.Count < 1 || mis.FireTime.IsZero() {
		t.Errorf("misfired %+v", mis)
	}

	mustDo(t, e.svc().DeregisterJob(ctxT(t), "j"))
	log.wait(t, "the job's removal", is(events.JobRemoved, "j"))

	e.n.stop()
	if got := log.find(func(ev events.Event) bool { return ev.Kind == events.Leadership && !ev.Leader && ev.Term == lead.Term }); len(got) != 1 {
		t.Errorf("%d ends of the term told, want 1", len(got))
	}
	if _, ok := e.svc().QueueDepths(context.Background()); ok {
		t.Error("queue depths of a process that does not lead")
	}
}
