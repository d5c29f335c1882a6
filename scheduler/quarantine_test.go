package scheduler

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// writeRaw writes a node straight into the store, as something other than
// hasched's API would (an older version, an operator with etcdctl).
func (e *memEnv) writeRaw(path string, value []byte) {
	e.t.Helper()
	ctx := ctxT(e.t)
	c, err := e.store.Open(ctx)
	mustDo(e.t, err)
	defer c.Close()
	_, err = c.Create(ctx, path, value)
	mustDo(e.t, err)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	mustDo(t, err)
	return b
}

func quarantinedNames(t *testing.T, s *Scheduler) []string {
	t.Helper()
	var q []model.QuarantinedConfig
	var err error
	eventually(t, "the read session is open", func() bool {
		q, err = s.Quarantined(ctxT(t))
		return !errors.Is(err, model.ErrUnavailable)
	})
	mustDo(t, err)
	var out []string
	for _, c := range q {
		if c.Error == "" || c.SeenAt.IsZero() {
			t.Fatalf("quarantine report %+v lacks its error or time", c)
		}
		out = append(out, string(c.Kind)+"/"+c.Name)
	}
	return out
}

// TestBadStoredConfigsAreQuarantinedNotFatal: a stored job with 2^40
// shards, one that is not JSON and an app past its bounds, written behind
// the API's back, used to fail (or kill) every leader in turn. Now the
// scheduler leads, schedules the good jobs, leaves the bad ones' state
// alone and reports them, on every process and across a failover; the API
// fixes or removes them.
func TestBadStoredConfigsAreQuarantinedNotFatal(t *testing.T) {
	e := newMemEnv(t)
	good := testJob("good", "")
	good.JobExecutionType = model.Daemon
	huge := testJob("huge", "0 0 0 * * ?")
	huge.ShardingTotalCount = 1 << 40
	hugeTask := model.TaskRecord{ID: model.TaskID("huge", t0, 7, 0), Job: "huge", Shard: 7, FireTime: t0, State: "TASK_RUNNING", LaunchedAt: t0, UpdatedAt: t0}
	badApp := testApp("badapp")
	badApp.CPUCount = 1e9
	e.writeRaw(store.AppPath("app"), mustJSON(t, testApp("app")))
	e.writeRaw(store.AppPath("badapp"), mustJSON(t, badApp))
	e.writeRaw(store.JobPath("good"), mustJSON(t, good))
	e.writeRaw(store.JobPath("huge"), mustJSON(t, huge))
	e.writeRaw(store.ReadyPath("huge"), mustJSON(t, store.Ready{RegisteredAt: t0}))
	e.writeRaw(store.RunningPath("huge", hugeTask.ID), mustJSON(t, hugeTask))
	e.writeRaw(store.JobPath("garbage"), []byte(`{not json`))

	a := e.start()
	cfgB := e.config()
	cfgB.Advertise = "127.0.0.1:8898"
	cfgB.Executor = e.cluster.Factory("b")
	b := startNode(t, cfgB)

	eventually(t, "the good daemon job runs", func() bool { return len(startedOf(e.cluster, "good")) == 1 })
	want := []string{"app/badapp", "job/garbage", "job/huge"}
	for _, n := range []*node{a, b} {
		if got := quarantinedNames(t, n.s); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("quarantined %v, want %v", got, want)
		}
	}
	if err := a.s.TriggerJob(ctxT(t), model.Trigger{JobName: "huge"}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("TriggerJob(huge) = %v, want ErrConflict (quarantined)", err)
	}
	if _, err := b.s.Job(ctxT(t), "garbage"); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("Job(garbage) = %v, want ErrConflict (quarantined)", err)
	}
	if jobs, err := b.s.Jobs(ctxT(t)); err != nil || len(jobs) != 2 {
		t.Fatalf("Jobs = %d jobs, %v; want good and huge, the undecodable one skipped", len(jobs), err)
	}
	wantStateLeftAlone := func() {
		t.Helper()
		for _, p := range []string{store.ReadyPath("huge"), store.RunningPath("huge", hugeTask.ID), store.JobPath("garbage")} {
			if _, ok := e.store.Value(p); !ok {
				t.Fatalf("%s was removed; a quarantined job's state is left alone", p)
			}
		}
	}
	wantStateLeftAlone()

	a.stop()
	eventually(t, "b takes over", b.leading)
	if got := quarantinedNames(t, b.s); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after the failover quarantined %v, want %v", got, want)
	}
	settle(e.cluster)
	wantStateLeftAlone()
	if got := startedOf(e.cluster, "huge"); len(got) != 0 {
		t.Fatalf("a quarantined job started %v", got)
	}

	// An update fixes the job: applied to the stored configuration, it
	// keeps the job's other fields and adopts its running task.
	u, err := model.DecodeJobUpdate(strings.NewReader(`{"jobName":"huge","shardingTotalCount":2}`))
	mustDo(t, err)
	mustDo(t, b.s.UpdateJob(ctxT(t), u))
	mustDo(t, b.s.TriggerJob(ctxT(t), model.Trigger{JobName: "huge"}))
	eventually(t, "both shards of the fixed job start", func() bool { return len(startedOf(e.cluster, "huge")) >= 2 })
	settle(e.cluster)
	if got := startedOf(e.cluster, "huge"); len(got) != 2 {
		t.Fatalf("started %v, want the two shards of the triggered run", got)
	}
	// Registering replaces an undecodable one; deregistering removes an app.
	mustDo(t, b.s.RegisterJob(ctxT(t), testJob("garbage", "0 0 0 * * ?")))
	mustDo(t, b.s.DeregisterApp(ctxT(t), "badapp"))
	if got := quarantinedNames(t, b.s); len(got) != 0 {
		t.Fatalf("quarantined %v after the fixes, want none", got)
	}
	if _, ok := e.store.Value(store.AppPath("badapp")); ok {
		t.Fatalf("the deregistered app is still stored")
	}
	fixed, err := b.s.Job(ctxT(t), "huge")
	mustDo(t, err)
	if fixed.ShardingTotalCount != 2 || fixed.Cron != huge.Cron || fixed.CPUCount != huge.CPUCount {
		t.Fatalf("fixed job %+v lost its stored fields", fixed)
	}
}

// TestDeregisterRemovesAQuarantinedJob: deregistering is the other way out.
func TestDeregisterRemovesAQuarantinedJob(t *testing.T) {
	e := newMemEnv(t)
	e.writeRaw(store.AppPath("app"), mustJSON(t, testApp("app")))
	e.writeRaw(store.JobPath("garbage"), []byte(`[1,2,3]`))
	e.writeRaw(store.ReadyPath("garbage"), mustJSON(t, store.Ready{RegisteredAt: t0}))
	e.start()
	if got := quarantinedNames(t, e.svc()); len(got) != 1 {
		t.Fatalf("quarantined %v, want job/garbage", got)
	}
	mustDo(t, e.svc().DeregisterJob(ctxT(t), "garbage"))
	if got := quarantinedNames(t, e.svc()); len(got) != 0 {
		t.Fatalf("quarantined %v after the deregistration, want none", got)
	}
	for _, p := range e.store.Paths("/") {
		if strings.Contains(p, "garbage") {
			t.Fatalf("%s is left after the deregistration", p)
		}
	}
}

// TestTheLauncherCapsShardsWhereItAllocates: even a job that got around
// Check makes at most model.MaxShardingTotalCount shards per fire.
func TestTheLauncherCapsShardsWhereItAllocates(t *testing.T) {
	for _, n := range []int{-1, 0, 3, model.MaxShardingTotalCount, 1 << 40} {
		js := newJobState(model.JobSpec{Job: model.Job{ShardingTotalCount: n}})
		if got, want := shards(js), max(0, min(n, model.MaxShardingTotalCount)); got != want {
			t.Errorf("shards of a job with shardingTotalCount %d = %d, want %d", n, got, want)
		}
	}
}
