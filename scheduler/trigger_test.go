package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// A run triggered with its own job parameter gets it, in every attempt and
// across a leader failover, while the job's other runs get the job's.
func TestATriggerWithItsOwnParameterKeepsItThroughRetriesAndFailover(t *testing.T) {
	e := newMemEnv(t)
	triggerParameters(t, e, e.store.Open)
}

func TestATriggerWithItsOwnParameterKeepsItThroughRetriesAndFailoverOnEtcd(t *testing.T) {
	triggerParameters(t, newMemEnv(t), etcdOpen(t))
}

func TestATriggerWithItsOwnParameterKeepsItThroughRetriesAndFailoverOnZooKeeper(t *testing.T) {
	triggerParameters(t, newMemEnv(t), zkOpen(t))
}

// triggerParameters runs e's schedulers on the store open opens.
func triggerParameters(t *testing.T, e *memEnv, open func(context.Context) (coord.Coordinator, error)) {
	onStore := func(c *Config) { c.Open = open }
	e.start(onStore)
	readyNodeOf := func(t *testing.T, _ any, job string) store.Ready {
		t.Helper()
		c := mustOpen(t, open)
		n, err := c.Get(ctxT(t), store.ReadyPath(job))
		mustDo(t, err)
		var rn store.Ready
		mustDo(t, json.Unmarshal(n.Value, &rn))
		return rn
	}
	job := testJob("j", "0 0 0 * * ?")
	job.JobParameter = "the job's"
	job.Retries = 2
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, e.svc(), job)

	// A plain trigger runs with the job's parameter and, FORBID, holds the
	// next fires on the ready queue.
	plain := triggerAndStart(t, e, "j")
	if task, _ := e.cluster.Task(plain); task.JobParameter != "the job's" {
		t.Fatalf("a plain trigger's task has job parameter %q", task.JobParameter)
	}
	param := func(s string) *string { return &s }
	for i := range model.MaxPendingTriggerParameters {
		mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j", JobParameter: param(string(rune('a' + i)))}))
	}
	if err := e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j", JobParameter: param("one too many")}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("trigger %d with a parameter: %v, want ErrConflict", model.MaxPendingTriggerParameters+1, err)
	}
	rn := readyNodeOf(t, e.store, "j")
	if len(rn.FireTimes) != model.MaxPendingTriggerParameters || len(rn.Parameters) != model.MaxPendingTriggerParameters {
		t.Fatalf("ready node: %d fires, %d parameters; want %d of each", len(rn.FireTimes), len(rn.Parameters), model.MaxPendingTriggerParameters)
	}
	first := rn.FireTimes[0]

	// A leader failover with the fires still pending: the next term reads
	// the parameters from the store.
	e.n.stop()
	e.start(onStore)
	// ALLOW from now on: the pending runs start together, and a retry
	// does not wait behind them.
	u, err := model.DecodeJobUpdate(strings.NewReader(`{"jobName":"j","concurrencyPolicy":"ALLOW"}`))
	mustDo(t, err)
	mustDo(t, e.svc().UpdateJob(ctxT(t), u))
	e.cluster.Report(plain, executor.StateFinished, "")
	id := model.TaskID("j", first, 0, 0)
	eventually(t, "the first triggered run starts", func() bool { return e.cluster.State(id) == executor.StateRunning })
	if task, _ := e.cluster.Task(id); task.JobParameter != "a" {
		t.Fatalf("the triggered task has job parameter %q, want its own", task.JobParameter)
	}
	for i, f := range rn.FireTimes {
		tid := model.TaskID("j", f, 0, 0)
		eventually(t, "every triggered run starts", func() bool { return e.cluster.State(tid) == executor.StateRunning })
		if task, _ := e.cluster.Task(tid); task.JobParameter != string(rune('a'+i)) {
			t.Errorf("run %d has job parameter %q, want %q", i, task.JobParameter, string(rune('a'+i)))
		}
	}
	// Launched fires leave their parameters behind with the ready node.
	if rn := readyNodeOf(t, e.store, "j"); len(rn.FireTimes) != 0 || len(rn.Parameters) != 0 {
		t.Fatalf("the ready node keeps %d fires and the parameters %v", len(rn.FireTimes), rn.Parameters)
	}
	// It fails: the retry has it too, and so does the one after a failover.
	e.cluster.Report(id, executor.StateFailed, "exit 1")
	eventually(t, "the failed run waits for its retry", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
	e.clock.Advance(time.Second)
	retry := withAttempt(id, 1)
	eventually(t, "the retry runs", func() bool { return e.cluster.State(retry) == executor.StateRunning })
	e.cluster.Report(retry, executor.StateFailed, "exit 1")
	eventually(t, "the retry waits for the next", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
	e.n.stop()
	e.start(onStore)
	e.clock.Advance(2 * time.Second)
	last := withAttempt(id, 2)
	eventually(t, "the second retry runs", func() bool { return e.cluster.State(last) == executor.StateRunning })
	for _, tid := range []string{retry, last} {
		if task, _ := e.cluster.Task(tid); task.JobParameter != "a" {
			t.Errorf("%s has job parameter %q, want the trigger's", tid, task.JobParameter)
		}
	}
}
