package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

func TestRegisterJobChecksItsApp(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	s := e.svc()
	ctx := ctxT(t)
	mustDo(t, s.RegisterApp(ctx, model.App{AppName: "bare", CPUCount: 1, MemoryMB: 1}))

	job := testJob("j", "0 0 0 * * ?")
	job.AppName = "missing"
	wantField(t, s.RegisterJob(ctx, job), "appName")
	job.AppName = "bare"
	wantField(t, s.RegisterJob(ctx, job), "scriptCommandLine")
	job.ScriptCommandLine = "echo hi"
	mustDo(t, s.RegisterJob(ctx, job))
	if err := s.RegisterJob(ctx, job); !errors.Is(err, model.ErrExists) {
		t.Fatalf("second RegisterJob = %v, want ErrExists", err)
	}
	if err := s.RegisterApp(ctx, model.App{AppName: "bare", CPUCount: 1, MemoryMB: 1}); !errors.Is(err, model.ErrExists) {
		t.Fatalf("second RegisterApp = %v, want ErrExists", err)
	}
	wantField(t, s.RegisterJob(ctx, model.Job{JobName: "x/y", AppName: "bare"}), "jobName")
	if err := s.UpdateJob(ctx, model.ReplaceJob(testJob("nope", "0 0 0 * * ?"))); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("UpdateJob(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Job(ctx, "nope"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("Job(unknown) = %v, want ErrNotFound", err)
	}

	got, err := s.Job(ctx, "j")
	mustDo(t, err)
	if got.ScriptCommandLine != "echo hi" || got.TimeZone != "UTC" || got.JobExecutionType != model.Transient {
		t.Fatalf("Job(j) = %+v", got)
	}
	apps, err := s.Apps(ctx)
	mustDo(t, err)
	if len(apps) != 1 || apps[0].AppName != "bare" {
		t.Fatalf("Apps = %+v", apps)
	}
	// The app cannot lose the command its job relies on... it never had
	// one; give it one and take it away again.
	mustDo(t, s.UpdateApp(ctx, model.ReplaceApp(model.App{AppName: "bare", BootstrapScript: "run", CPUCount: 1, MemoryMB: 1})))
	job.ScriptCommandLine = ""
	mustDo(t, s.UpdateJob(ctx, model.ReplaceJob(job)))
	wantField(t, s.UpdateApp(ctx, model.ReplaceApp(model.App{AppName: "bare", CPUCount: 1, MemoryMB: 1})), "bootstrapScript")
}

func TestDisabledJobStopsAndResumesWithoutBackFill(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	register(t, e.svc(), testJob("j", "0/10 * * * * ?"))
	ctx := ctxT(t)
	e.clock.Advance(10 * time.Second)
	first := model.TaskID("j", t0.Add(10*time.Second), 0, 0)
	eventually(t, "the first fire runs", func() bool { return e.cluster.State(first) == executor.StateRunning })

	mustDo(t, e.svc().DisableJob(ctx, "j"))
	if d, err := e.svc().JobDisabled(ctx, "j"); err != nil || !d {
		t.Fatalf("JobDisabled = %v, %v; want true", d, err)
	}
	eventually(t, "its task is killed and its record goes", func() bool {
		return e.cluster.State(first) == executor.StateKilled && len(runningIDs(t, e.svc())) == 0
	})
	if err := e.svc().TriggerJob(ctx, model.Trigger{JobName: "j"}); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("TriggerJob(disabled) = %v, want ErrConflict", err)
	}
	e.clock.Advance(time.Minute) // 10:01:10
	settle(e.cluster)
	if got := startedOf(e.cluster, "j"); len(got) != 1 {
		t.Fatalf("fires ran while disabled: %v", got)
	}
	mustDo(t, e.svc().EnableJob(ctx, "j"))
	settle(e.cluster)
	if got := startedOf(e.cluster, "j"); len(got) != 1 {
		t.Fatalf("enabling back-filled the disabled minute: %v", got)
	}
	e.clock.Advance(10 * time.Second)
	next := model.TaskID("j", t0.Add(80*time.Second), 0, 0)
	eventually(t, "the next fire after enabling runs", func() bool { return e.cluster.State(next) == executor.StateRunning })
	if e.cluster.State(withAttempt(first, 1)) != "" {
		t.Fatalf("the task killed by the disable was relaunched")
	}
}

func TestDisabledAppStopsItsJobs(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0/10 * * * * ?")
	job.Failover = true
	register(t, e.svc(), job)
	ctx := ctxT(t)
	id := triggerAndStart(t, e, "j")
	mustDo(t, e.svc().DisableApp(ctx, "app"))
	if d, err := e.svc().AppDisabled(ctx, "app"); err != nil || !d {
		t.Fatalf("AppDisabled = %v, %v; want true", d, err)
	}
	eventually(t, "the app's task is killed", func() bool { return e.cluster.State(id) == executor.StateKilled })
	e.clock.Advance(time.Minute)
	settle(e.cluster)
	if got := startedOf(e.cluster, "j"); len(got) != 1 {
		t.Fatalf("the job of a disabled app ran: %v", got)
	}
	if fo := failoverRecords(t, e.svc()); len(fo) != 0 {
		t.Fatalf("a task killed by the disable failed over: %+v", fo)
	}
	mustDo(t, e.svc().EnableApp(ctx, "app"))
	e.clock.Advance(10 * time.Second)
	eventually(t, "the job runs again", func() bool { return len(startedOf(e.cluster, "j")) == 2 })
}

func TestDeregisterJobRemovesEverything(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0/10 * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job, testJob("other", "0 0 0 * * ?"))
	ctx := ctxT(t)
	triggerAndStart(t, e, "j")
	eventually(t, "both shards run", func() bool { return len(e.cluster.Running()) == 2 })
	mustDo(t, e.svc().DisableJob(ctx, "j")) // leaves a disable flag behind
	mustDo(t, e.svc().EnableJob(ctx, "j"))
	mustDo(t, e.svc().DisableJob(ctx, "j"))
	mustDo(t, e.svc().DeregisterJob(ctx, "j"))
	for _, root := range []string{store.JobConfigRoot, store.ReadyRoot, store.RunningRoot, store.FailoverRoot, store.DisabledJobsRoot} {
		for _, p := range e.store.Paths(root) {
			if strings.HasSuffix(p, "/j") || strings.Contains(p, "/j/") {
				t.Errorf("left after deregistration: %s", p)
			}
		}
	}
	eventually(t, "its tasks are killed", func() bool { return len(e.cluster.Running()) == 0 })
	if err := e.svc().DeregisterJob(ctx, "j"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("second DeregisterJob = %v, want ErrNotFound", err)
	}
	// The name can be used again, and the new job is enabled.
	register(t, e.svc(), testJob("j", "0/10 * * * * ?"))
	if d, err := e.svc().JobDisabled(ctx, "j"); err != nil || d {
		t.Fatalf("re-registered job disabled = %v, %v", d, err)
	}
	mustDo(t, e.svc().DeregisterApp(ctx, "app"))
	for _, root := range []string{store.AppConfigRoot, store.JobConfigRoot, store.ReadyRoot, store.DisabledAppsRoot, store.DisabledJobsRoot} {
		for _, p := range e.store.Paths(root) {
			if p != root {
				t.Errorf("left after the app's deregistration: %s", p)
			}
		}
	}
	if jobs, err := e.svc().Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("Jobs after DeregisterApp = %+v, %v", jobs, err)
	}
}

func TestUpdateJobReschedulesAtOnce(t *testing.T) {
	e := newMemEnv(t)
	e.cluster.FinishOnLaunch = true
	e.start()
	register(t, e.svc(), testJob("j", "0 0 * * * ?")) // hourly
	job := testJob("j", "0/10 * * * * ?")
	mustDo(t, e.svc().UpdateJob(ctxT(t), model.ReplaceJob(job)))
	e.clock.Advance(10 * time.Second)
	eventually(t, "the new schedule fires", func() bool { return len(startedOf(e.cluster, "j")) == 1 })
	wantStarted(t, e.cluster, "j", ids("j", t0.Add(10*time.Second)))
}

func TestStandbyServesReadsAndRefusesWrites(t *testing.T) {
	e := newMemEnv(t)
	leader := e.start(func(c *Config) { c.Advertise = "leader:8899" })
	register(t, leader.s, testJob("j", "0 0 0 * * ?"))
	cfg := e.config()
	cfg.Advertise = "standby:8899"
	cfg.Executor = e.cluster.Factory("b")
	standby := startNode(t, cfg)
	ctx := ctxT(t)
	eventually(t, "the standby reads", func() bool { _, err := standby.s.Job(ctx, "j"); return err == nil })
	st, err := standby.s.Status(ctx)
	mustDo(t, err)
	if st.Leader || st.LeaderAddress != "leader:8899" || st.Self != "standby:8899" || st.Executor != "fake" {
		t.Fatalf("standby Status = %+v", st)
	}
	if err := standby.s.TriggerJob(ctx, model.Trigger{JobName: "j"}); !errors.Is(err, model.ErrNotLeader) || !strings.Contains(err.Error(), "leader:8899") {
		t.Fatalf("TriggerJob on the standby = %v, want ErrNotLeader naming the leader", err)
	}
	st, err = leader.s.Status(ctx)
	mustDo(t, err)
	if !st.Leader || st.LeaderAddress != "leader:8899" || st.Term == 0 || st.ExecutorInfo["name"] != "a" {
		t.Fatalf("leader Status = %+v", st)
	}

	// The leader stops: the standby takes over.
	leader.stop()
	eventually(t, "the standby leads", standby.leading)
	mustDo(t, standby.s.TriggerJob(ctx, model.Trigger{JobName: "j"}))
	eventually(t, "the standby launches", func() bool { return len(startedOf(e.cluster, "j")) == 1 })
	if got := e.cluster.Starter(startedOf(e.cluster, "j")[0]); got != "b" {
		t.Fatalf("started by %q, want the new leader b", got)
	}
}

func TestNoProcessRunning(t *testing.T) {
	s, err := New(Config{Open: newMemEnv(t).store.Open, Executor: newMemEnv(t).cluster.Factory("x"), Advertise: "h:1", LeaderWait: -1})
	mustDo(t, err)
	ctx := context.Background()
	if _, err := s.Jobs(ctx); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("Jobs before Run = %v, want ErrUnavailable", err)
	}
	if err := s.TriggerJob(ctx, model.Trigger{JobName: "j"}); !errors.Is(err, model.ErrNoLeader) {
		t.Fatalf("TriggerJob before Run = %v, want ErrNoLeader", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	e := newMemEnv(t)
	good := e.config()
	good.Advertise = "h:1"
	for name, mod := range map[string]func(*Config){
		"no Open":                    func(c *Config) { c.Open = nil },
		"no Executor":                func(c *Config) { c.Executor = nil },
		"no Advertise":               func(c *Config) { c.Advertise = "" },
		"Advertise without port":     func(c *Config) { c.Advertise = "host" },
		"negative LaunchInterval":    func(c *Config) { c.LaunchInterval = -1 },
		"negative ReconcileInterval": func(c *Config) { c.ReconcileInterval = -1 },
		"negative QueueLimit":        func(c *Config) { c.QueueLimit = -1 },
		"RetryBackoff over its cap":  func(c *Config) { c.RetryBackoff = MaxRetryBackoff + 1 },
		"huge QueueLimit":            func(c *Config) { c.QueueLimit = MaxQueueLimit + 1 },
	} {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("New with %s succeeded", name)
		}
	}
	s, err := New(good)
	mustDo(t, err)
	if s.cfg.LaunchInterval != DefaultLaunchInterval || s.cfg.QueueLimit != DefaultQueueLimit || s.cfg.ReconcileInterval != 0 {
		t.Fatalf("defaults: %+v", s.cfg)
	}
}
