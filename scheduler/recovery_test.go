package scheduler

import (
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// These tests make one store write fail, which ends the term as a crash
// would at that point (the term's memory is dropped and the next term
// starts from the store), and check that the next term completes what the
// failed one had started, without losing or repeating a run.

func isSetOf(path string) func(op, p string) bool {
	return func(op, p string) bool { return op == "set" && p == path }
}

func TestCrashBetweenCreatingRunningNodesAndDequeuingTheFire(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.ShardingTotalCount = 2
	job.ConcurrencyPolicy = model.ConcurrencyForbid // a half-moved fire must not block itself
	register(t, e.svc(), job)
	// Set #1 queues the triggered fire, set #2 would dequeue it (step b).
	failOnce(e.store, 2, isSetOf(store.ReadyPath("j")))
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j"}))
	eventually(t, "both shards run", func() bool { return len(e.cluster.Running()) == 2 })
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", []string{model.TaskID("j", t0, 0, 0), model.TaskID("j", t0, 1, 0)})
	if e.cluster.Opened() < 2 {
		t.Fatalf("the failed write did not end the term (executors opened: %d)", e.cluster.Opened())
	}
	if rn := readyNodeOf(t, e.store, "j"); len(rn.FireTimes) != 0 {
		t.Fatalf("the fire is still queued: %v", rn.FireTimes)
	}
}

func TestCrashBetweenTheShardsRunningNodes(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.ShardingTotalCount = 3
	register(t, e.svc(), job)
	failOnce(e.store, 1, func(op, p string) bool { return op == "create" && strings.HasSuffix(p, "@-@1@-@0") })
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j"}))
	eventually(t, "all shards run", func() bool { return len(e.cluster.Running()) == 3 })
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", []string{model.TaskID("j", t0, 0, 0), model.TaskID("j", t0, 1, 0), model.TaskID("j", t0, 2, 0)})
	for _, id := range e.cluster.Started() {
		if n := e.cluster.LaunchCalls(id); n != 1 {
			t.Errorf("%s was handed to the executor %d times, want once", id, n)
		}
	}
}

func TestCrashAfterLaunchBeforeItIsRecorded(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	register(t, e.svc(), testJob("j", "0 0 0 * * ?"))
	id := model.TaskID("j", t0, 0, 0)
	// The first write to the task's record after Launch (its RUNNING
	// status, or the launch's confirmation) fails.
	failOnce(e.store, 1, isSetOf(store.RunningPath("j", id)))
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j"}))
	eventually(t, "the next term confirms the launch", func() bool {
		if e.cluster.Opened() != 2 {
			return false
		}
		recs, err := e.svc().RunningTasks(ctxT(t))
		return err == nil && len(recs) == 1 && recs[0].ID == id && !recs[0].LaunchedAt.IsZero()
	})
	settle(e.cluster)
	// The next term either launched it again (a no-op for the executor)
	// or learnt from the reconciliation that it runs; it never started
	// twice.
	wantStarted(t, e.cluster, "j", []string{id})
	if n := e.cluster.LaunchCalls(id); n > 2 {
		t.Fatalf("handed to the executor %d times, want at most twice", n)
	}
	// It is still the same run: finishing it removes it.
	e.cluster.Report(id, executor.StateFinished, "")
	eventually(t, "its record goes", func() bool { return len(runningIDs(t, e.svc())) == 0 })
}

func TestCrashDuringARetry(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Retries = 1
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "j")
	// The retry's move of attempt 0 to the failover queue (where it waits
	// out its back-off) fails: the term ends, the next one finds the
	// failure by reconciling and retries it.
	failOnce(e.store, 1, func(op, p string) bool { return op == "delete" && p == store.RunningPath("j", id) })
	e.cluster.Report(id, executor.StateFailed, "exit 1")
	next := withAttempt(id, 1)
	eventually(t, "attempt 0 waits out its back-off", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
	e.clock.Advance(time.Second)
	eventually(t, "attempt 1 runs", func() bool { return e.cluster.State(next) == executor.StateRunning })
	eventually(t, "attempt 0's record goes", func() bool {
		got := runningIDs(t, e.svc())
		return len(got) == 1 && got[0] == next
	})
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", []string{id, next})
	if e.cluster.Opened() != 2 {
		t.Fatalf("executors opened = %d, want 2 (the failed write ends the term)", e.cluster.Opened())
	}
}

func TestCrashWhileMovingALostTaskToFailover(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Failover = true
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "j")
	failOnce(e.store, 1, func(op, p string) bool { return op == "delete" && p == store.RunningPath("j", id) })
	e.cluster.Report(id, executor.StateLost, "agent gone")
	next := withAttempt(id, 1)
	eventually(t, "attempt 1 runs", func() bool { return e.cluster.State(next) == executor.StateRunning })
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", []string{id, next})
	if fo := failoverRecords(t, e.svc()); len(fo) != 0 {
		t.Fatalf("failover queue %+v, want empty", fo)
	}
	if got := runningIDs(t, e.svc()); len(got) != 1 || got[0] != next {
		t.Fatalf("running %v, want only %s", got, next)
	}
}

func TestTaskLostWhileNoLeaderRanFailsOverInTheNextTerm(t *testing.T) {
	e := newMemEnv(t)
	n := e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Failover = true
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "j")
	eventually(t, "the record is marked launched", func() bool {
		recs, _ := e.svc().RunningTasks(ctxT(t))
		return len(recs) == 1 && !recs[0].LaunchedAt.IsZero()
	})
	n.stop()
	e.cluster.Report(id, executor.StateLost, "agent gone") // nobody listens
	e.start()
	next := withAttempt(id, 1)
	eventually(t, "the new term's reconciliation fails it over", func() bool { return e.cluster.State(next) == executor.StateRunning })
}

// A pass's tasks start once their running nodes are written, before their
// ready nodes are: a term that ends in between may leave tasks that run,
// and end, before the next term reconciles them. Neither a fire produced
// in that pass nor one moved from the ready queue may then run twice: the
// next term's first pass completes both from their running nodes, before
// it handles the ended tasks' statuses. The ready node's write fails once
// the task has started and ended.
func TestCrashBeforeTheReadyNodeAfterTheTaskEnded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger bool
		nth     int // the failing write of the ready node
	}{
		{"cron fire", false, 1},
		{"triggered fire", true, 2}, // set #1 queues the fire
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t)
			e.cluster.FinishOnLaunch = true
			e.start()
			register(t, e.svc(), testJob("j", "0 0 11 * * ?"))
			fire := t0.Add(time.Hour)
			if tc.trigger {
				fire = t0
			}
			id := model.TaskID("j", fire, 0, 0)
			seen := 0
			e.store.SetWriteHook(func(op, p string) error {
				if op != "set" || p != store.ReadyPath("j") {
					return nil
				}
				if seen++; seen != tc.nth {
					return nil
				}
				deadline := time.Now().Add(10 * time.Second)
				for e.cluster.State(id) == "" && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				return errInjected
			})
			if tc.trigger {
				mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j"}))
			} else {
				e.clock.Advance(time.Hour)
			}
			eventually(t, "the next term removes the ended task's node", func() bool {
				return e.cluster.Opened() >= 2 && len(runningIDs(t, e.svc())) == 0
			})
			settle(e.cluster)
			wantStarted(t, e.cluster, "j", []string{id})
			rn := readyNodeOf(t, e.store, "j")
			if len(rn.FireTimes) != 0 {
				t.Fatalf("fires %v still queued", rn.FireTimes)
			}
			if !tc.trigger && !rn.LastFire.Equal(fire) {
				t.Fatalf("LastFire %v, want the fire %v", rn.LastFire, fire)
			}
		})
	}
}
