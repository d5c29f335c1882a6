package scheduler

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// triggerAndStart triggers a job and returns the task it started.
func triggerAndStart(t *testing.T, e *memEnv, job string) string {
	t.Helper()
	before := startedOf(e.cluster, job)
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: job}))
	eventually(t, "the triggered run starts", func() bool { return len(startedOf(e.cluster, job)) > len(before) })
	for _, id := range startedOf(e.cluster, job) {
		if !slices.Contains(before, id) {
			return id
		}
	}
	panic("unreachable")
}

func runningIDs(t *testing.T, s *Scheduler) []string {
	t.Helper()
	recs, err := s.RunningTasks(ctxT(t))
	mustDo(t, err)
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func failoverRecords(t *testing.T, s *Scheduler) []model.TaskRecord {
	t.Helper()
	recs, err := s.FailoverTasks(ctxT(t))
	mustDo(t, err)
	return recs
}

func withAttempt(id string, attempt int) string {
	ref, err := model.ParseTaskID(id)
	if err != nil {
		panic(err)
	}
	ref.Attempt = attempt
	return ref.ID()
}

func TestTriggeredTaskIsBuiltFromJobAndApp(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.ShardingTotalCount = 3
	job.ShardingItemParameters = "0=Beijing,2=Shanghai"
	job.JobParameter = "p"
	job.TimeoutSeconds = 90
	register(t, e.svc(), job)
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "j"}))
	eventually(t, "three shards start", func() bool { return len(startedOf(e.cluster, "j")) == 3 })
	for shard, param := range []string{"Beijing", "", "Shanghai"} {
		id := model.TaskID("j", t0, shard, 0)
		task, ok := e.cluster.Task(id)
		if !ok {
			t.Fatalf("task %s not started; started: %v", id, e.cluster.Started())
		}
		want := executor.Task{ID: id, Job: "j", App: "app", FireTime: t0, Shard: shard, ShardingTotalCount: 3,
			ShardParameter: param, JobParameter: "p", Command: "bin/start.sh", AppCacheEnable: true,
			CPUs: 0.5, MemoryMB: 64, AppCPUs: 1, AppMemoryMB: 128, Timeout: 90 * time.Second}
		if !task.FireTime.Equal(want.FireTime) {
			t.Fatalf("fire time %v, want %v", task.FireTime, want.FireTime)
		}
		task.FireTime = want.FireTime
		if !reflect.DeepEqual(task, want) {
			t.Errorf("shard %d:\n got  %+v\n want %+v", shard, task, want)
		}
	}
	eventually(t, "the records say RUNNING", func() bool {
		recs, err := e.svc().RunningTasks(ctxT(t))
		mustDo(t, err)
		for _, r := range recs {
			if r.LaunchedAt.IsZero() || r.State != executor.StateRunning {
				return false
			}
		}
		return len(recs) == 3
	})
}

func TestStatusHandling(t *testing.T) {
	for _, tc := range []struct {
		name     string
		job      func(*model.Job)
		report   executor.State
		relaunch bool // a next attempt starts (after the back-off for FAILED)
	}{
		{"finished is removed", nil, executor.StateFinished, false},
		{"failed without retries or failover is given up", nil, executor.StateFailed, false},
		{"failed with retries is retried", func(j *model.Job) { j.Retries = 1 }, executor.StateFailed, true},
		{"failed with failover fails over", func(j *model.Job) { j.Failover = true }, executor.StateFailed, true},
		{"lost without failover is given up", nil, executor.StateLost, false},
		{"lost with failover fails over", func(j *model.Job) { j.Failover = true }, executor.StateLost, true},
		{"killed by someone else with failover fails over", func(j *model.Job) { j.Failover = true }, executor.StateKilled, true},
		{"unknown with failover fails over", func(j *model.Job) { j.Failover = true }, executor.StateUnknown, true},
		{"timed out without retries or failover is given up", nil, executor.StateTimedOut, false},
		{"timed out with retries is retried", func(j *model.Job) { j.Retries = 1 }, executor.StateTimedOut, true},
		{"timed out with failover fails over", func(j *model.Job) { j.Failover = true }, executor.StateTimedOut, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemEnv(t)
			e.start()
			job := testJob("j", "0 0 0 * * ?")
			if tc.job != nil {
				tc.job(&job)
			}
			register(t, e.svc(), job)
			id := triggerAndStart(t, e, "j")
			e.cluster.Report(id, tc.report, "boom")
			next := withAttempt(id, 1)
			if !tc.relaunch {
				eventually(t, "the running record goes", func() bool { return len(runningIDs(t, e.svc())) == 0 })
				settle(e.cluster)
				if got := startedOf(e.cluster, "j"); len(got) != 1 {
					t.Fatalf("started %v, want only the first attempt", got)
				}
				if fo := failoverRecords(t, e.svc()); len(fo) != 0 {
					t.Fatalf("failover queue %+v, want empty", fo)
				}
				return
			}
			if tc.report == executor.StateFailed || tc.report == executor.StateTimedOut {
				// A retry and a failover of a failure alike are held back
				// by the retry back-off on the failover queue.
				eventually(t, "the task waits on the failover queue", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
				settle(e.cluster)
				if e.cluster.State(next) != "" {
					t.Fatalf("attempt 1 started before the back-off")
				}
				e.clock.Advance(time.Second)
			}
			eventually(t, "attempt 1 starts", func() bool { return e.cluster.State(next) == executor.StateRunning })
			settle(e.cluster)
			if got := runningIDs(t, e.svc()); len(got) != 1 || got[0] != next {
				t.Fatalf("running %v, want only %s", got, next)
			}
			if fo := failoverRecords(t, e.svc()); len(fo) != 0 {
				t.Fatalf("failover queue %+v, want empty after the relaunch", fo)
			}
		})
	}
}

func TestRetriesAreCountedThenTheTaskIsGivenUp(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Retries = 2
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "j")
	for attempt := range 3 {
		cur := withAttempt(id, attempt)
		eventually(t, "the attempt runs", func() bool { return e.cluster.State(cur) == executor.StateRunning })
		e.cluster.Report(cur, executor.StateFailed, "exit 1")
		if attempt < job.Retries {
			eventually(t, "the retry waits out its back-off", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
			e.clock.Advance(time.Second << attempt)
		}
	}
	eventually(t, "the task is given up", func() bool { return len(runningIDs(t, e.svc())) == 0 })
	settle(e.cluster)
	wantStarted(t, e.cluster, "j", []string{id, withAttempt(id, 1), withAttempt(id, 2)})
}

func TestConcurrencyPolicies(t *testing.T) {
	for _, policy := range []model.ConcurrencyPolicy{model.ConcurrencyAllow, model.ConcurrencyForbid, model.ConcurrencyReplace} {
		t.Run(string(policy), func(t *testing.T) {
			e := newMemEnv(t)
			e.start()
			job := testJob("j", "0/10 * * * * ?")
			job.ConcurrencyPolicy = policy
			register(t, e.svc(), job)
			e.clock.Advance(10 * time.Second)
			first := model.TaskID("j", t0.Add(10*time.Second), 0, 0)
			second := model.TaskID("j", t0.Add(20*time.Second), 0, 0)
			eventually(t, "the first fire runs", func() bool { return e.cluster.State(first) == executor.StateRunning })
			e.clock.Advance(10 * time.Second)
			switch policy {
			case model.ConcurrencyAllow:
				eventually(t, "the second fire runs beside the first", func() bool { return e.cluster.State(second) == executor.StateRunning })
				if e.cluster.State(first) != executor.StateRunning {
					t.Fatalf("the first run is %s, want still RUNNING", e.cluster.State(first))
				}
			case model.ConcurrencyForbid:
				eventually(t, "the second fire is queued", func() bool { return len(readyNodeOf(t, e.store, "j").FireTimes) == 1 })
				settle(e.cluster)
				if s := e.cluster.State(second); s != "" {
					t.Fatalf("the second fire started (%s) while the first runs", s)
				}
				e.cluster.Report(first, executor.StateFinished, "")
				eventually(t, "the second fire runs after the first", func() bool { return e.cluster.State(second) == executor.StateRunning })
			case model.ConcurrencyReplace:
				eventually(t, "the second fire runs", func() bool { return e.cluster.State(second) == executor.StateRunning })
				if s := e.cluster.State(first); s != executor.StateKilled {
					t.Fatalf("the first run is %s, want KILLED", s)
				}
				eventually(t, "the killed run's record goes", func() bool { return len(runningIDs(t, e.svc())) == 1 })
				settle(e.cluster)
				if e.cluster.State(withAttempt(first, 1)) != "" {
					t.Fatalf("the replaced run was relaunched")
				}
			}
		})
	}
}

func TestDaemonJobIsKeptRunning(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("d", "")
	job.JobExecutionType = model.Daemon
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	eventually(t, "both shards run", func() bool { return len(e.cluster.Running()) == 2 })
	shard0, shard1 := model.TaskID("d", t0, 0, 0), model.TaskID("d", t0, 1, 0)
	if got := e.cluster.Running(); got[0] != shard0 || got[1] != shard1 {
		t.Fatalf("running %v, want %v and %v", got, shard0, shard1)
	}
	task, _ := e.cluster.Task(shard0)
	if !task.Daemon {
		t.Fatalf("task %s is not marked Daemon", shard0)
	}

	// Lost: relaunched at once as the next attempt.
	e.cluster.Report(shard0, executor.StateLost, "agent gone")
	eventually(t, "shard 0 is relaunched", func() bool { return e.cluster.State(withAttempt(shard0, 1)) == executor.StateRunning })

	// Ended: relaunched after the back-off.
	e.cluster.Report(shard1, executor.StateFinished, "")
	eventually(t, "shard 1 waits on the failover queue", func() bool { return len(failoverRecords(t, e.svc())) == 1 })
	e.clock.Advance(time.Second)
	eventually(t, "shard 1 is relaunched", func() bool { return e.cluster.State(withAttempt(shard1, 1)) == executor.StateRunning })
	settle(e.cluster)
	if got := len(e.cluster.Running()); got != 2 {
		t.Fatalf("%d tasks run, want 2", got)
	}

	if err := e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "d"}); !errorIs(err, model.ErrConflict) {
		t.Fatalf("TriggerJob(daemon) = %v, want ErrConflict", err)
	}

	// Disabled: killed and not relaunched.
	mustDo(t, e.svc().DisableJob(ctxT(t), "d"))
	eventually(t, "the daemon's records go", func() bool { return len(runningIDs(t, e.svc())) == 0 })
	settle(e.cluster)
	if got := e.cluster.Running(); len(got) != 0 {
		t.Fatalf("still running after disable: %v", got)
	}
	// Enabled: started again as a new run.
	e.clock.Advance(time.Minute)
	mustDo(t, e.svc().EnableJob(ctxT(t), "d"))
	eventually(t, "both shards run again", func() bool { return len(e.cluster.Running()) == 2 })
	if got := e.cluster.Running(); got[0] != model.TaskID("d", t0.Add(61*time.Second), 0, 0) {
		t.Fatalf("running %v, want a new run from now", got)
	}
}

func TestRunningRecordsSurviveInTheStoreAsJSON(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	register(t, e.svc(), testJob("j", "0 0 0 * * ?"))
	id := triggerAndStart(t, e, "j")
	eventually(t, "the record is marked launched", func() bool {
		b, ok := e.store.Value(store.RunningPath("j", id))
		if !ok {
			return false
		}
		var rec model.TaskRecord
		return json.Unmarshal(b, &rec) == nil && !rec.LaunchedAt.IsZero() && rec.State == executor.StateRunning && rec.Host == "fake"
	})
}

func TestUnknownRunningTasksAreKilled(t *testing.T) {
	e := newMemEnv(t)
	// A task the executor runs that no store node names (say, of a job
	// deregistered while its leader crashed).
	ex, err := e.cluster.Factory("old")(ctxT(t), executor.Term{})
	mustDo(t, err)
	stray := model.TaskID("gone", t0, 0, 0)
	mustDo(t, ex.Launch(ctxT(t), []executor.Task{{ID: stray, Job: "gone"}}))
	mustDo(t, ex.Close())
	e.start()
	eventually(t, "the stray task is killed", func() bool { return e.cluster.State(stray) == executor.StateKilled })
}

func TestASlowLaunchBlocksNeitherFiresNorWrites(t *testing.T) {
	e := newMemEnv(t)
	e.cluster.LaunchGate = make(chan struct{})
	e.start()
	register(t, e.svc(), testJob("slow", "0 0 0 * * ?"))
	mustDo(t, e.svc().TriggerJob(ctxT(t), model.Trigger{JobName: "slow"})) // its Launch hangs
	eventually(t, "the triggered fire is with the executor", func() bool { return len(runningIDs(t, e.svc())) == 1 })

	// Meanwhile the leader still serves writes and produces fires.
	job := testJob("cron", "0/10 * * * * ?")
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, e.svc(), job)
	e.clock.Advance(10 * time.Second)
	eventually(t, "the cron fire is handed on", func() bool { return len(runningIDs(t, e.svc())) == 2 })

	close(e.cluster.LaunchGate)
	eventually(t, "both run once the executor answers", func() bool { return len(e.cluster.Running()) == 2 })
	eventually(t, "both are recorded as launched", func() bool {
		recs, err := e.svc().RunningTasks(ctxT(t))
		mustDo(t, err)
		return len(recs) == 2 && !recs[0].LaunchedAt.IsZero() && !recs[1].LaunchedAt.IsZero()
	})
	for _, id := range e.cluster.Started() {
		if n := e.cluster.LaunchCalls(id); n != 1 {
			t.Errorf("%s handed to the executor %d times, want once", id, n)
		}
	}
}

// The loop's status wait: a status or a launch result begins a wait of
// statusLinger, whose end hands back the status that began it; while
// statuses are still queued after a turn, the next status or launch
// result is handled at once.
func TestTheStatusWaitLingersUnlessABacklogLasts(t *testing.T) {
	w := newStatusWait()
	defer w.stop()
	st := &executor.Status{TaskID: "a"}
	began := time.Now()
	if w.begin(st) || !w.waiting() {
		t.Fatal("a status with nothing queued is handled at once, want a wait")
	}
	<-w.c
	if waited := time.Since(began); waited < statusLinger {
		t.Errorf("the wait ended after %v, want %v", waited, statusLinger)
	}
	if got := w.end(); got != st || w.waiting() {
		t.Fatalf("the wait's end handed back %v (waiting %v), want the status that began it", got, w.waiting())
	}
	w.handled(3)
	if !w.begin(&executor.Status{TaskID: "b"}) || w.waiting() {
		t.Fatal("a status behind a backlog waits, want it handled at once")
	}
	if !w.begin(nil) || w.waiting() {
		t.Fatal("a launch result waits behind a backlog, want it handled at once")
	}
	w.handled(0)
	if w.begin(nil) || !w.waiting() {
		t.Fatal("a launch result with nothing queued is handled at once, want a wait")
	}
	if got := w.end(); got != nil {
		t.Fatalf("a launch result's wait handed back %v, want no status", got)
	}
	if w.begin(st) {
		t.Fatal("a status once the backlog is over is handled at once, want a wait")
	}
}
