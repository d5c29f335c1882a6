package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// A slow app (its package takes long to fetch) holds up only its own
// launches: each app with work has its own launch worker.
func TestASlowAppDoesNotHoldUpOtherApps(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	ctx := ctxT(t)
	for _, app := range []string{"slow", "fast"} {
		a := testApp(app)
		mustDo(t, e.svc().RegisterApp(ctx, a))
		j := testJob(app+"-job", "0 0 0 * * ?")
		j.AppName = app
		mustDo(t, e.svc().RegisterJob(ctx, j))
	}
	release := e.cluster.GateApp("slow")
	defer release()
	mustDo(t, e.svc().TriggerJob(ctx, model.Trigger{JobName: "slow-job"}))
	mustDo(t, e.svc().TriggerJob(ctx, model.Trigger{JobName: "fast-job"}))
	eventually(t, "the fast app's task starts while the slow app's Launch waits", func() bool {
		return len(startedOf(e.cluster, "fast-job")) == 1
	})
	if got := startedOf(e.cluster, "slow-job"); len(got) != 0 {
		t.Fatalf("the slow app's task started before its Launch was released: %v", got)
	}
	release()
	eventually(t, "the slow app's task starts once its Launch returns", func() bool {
		return len(startedOf(e.cluster, "slow-job")) == 1
	})
	// The executor owns its deadlines: a Launch that outlasts any fixed
	// cap must not be cancelled by the scheduler.
	if n := e.cluster.DeadlinedLaunches(); n != 0 {
		t.Fatalf("%d Launch calls had a deadline; the scheduler must not cap them", n)
	}
}

// A write that arrives while no process leads waits for the election
// rather than failing at once; with nobody to elect it fails after
// LeaderWait.
func TestAWriteDuringAnElectionWaitsForIt(t *testing.T) {
	e := newMemEnv(t)
	cfg := e.config()
	cfg.Advertise = "127.0.0.1:8899"
	cfg.Logger = testLogger(t)
	s, err := New(cfg)
	mustDo(t, err)
	done := make(chan error, 1)
	go func() { done <- s.RegisterApp(ctxT(t), testApp("app")) }()
	select {
	case err := <-done:
		t.Fatalf("the write returned before any process ran: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	select {
	case err := <-done:
		mustDo(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the write did not complete once a leader was elected")
	}
	eventually(t, "the waiting write is read back", func() bool {
		_, err := s.App(ctxT(t), "app")
		return err == nil
	})

	lonely, err := New(Config{Open: newMemEnv(t).store.Open, Executor: e.cluster.Factory("x"), Advertise: "h:1", LeaderWait: 200 * time.Millisecond})
	mustDo(t, err)
	start := time.Now()
	if err := lonely.TriggerJob(ctxT(t), model.Trigger{JobName: "j"}); !errors.Is(err, model.ErrNoLeader) {
		t.Fatalf("a write with nobody to elect = %v, want ErrNoLeader", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("the write gave up after %v, before LeaderWait", waited)
	}
}

// Elastic-Job-Cloud's documented update of an app names only the fields it
// changes; the others keep their stored values, for apps and jobs.
func TestUpdatesKeepTheFieldsTheyLeaveOut(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	ctx := ctxT(t)
	app := testApp("app")
	app.AppURL = "http://repo/app.tgz"
	mustDo(t, e.svc().RegisterApp(ctx, app))
	job := testJob("j", "0 0 0 * * ?")
	job.ScriptCommandLine = ""
	job.ShardingTotalCount = 3
	job.Retries = 2
	mustDo(t, e.svc().RegisterJob(ctx, job))

	u, err := model.DecodeAppUpdate(stringsReader(`{"appName":"app","appCacheEnable":false}`))
	mustDo(t, err)
	mustDo(t, e.svc().UpdateApp(ctx, u))
	got, err := e.svc().App(ctx, "app")
	mustDo(t, err)
	if got.BootstrapScript != app.BootstrapScript || got.AppURL != app.AppURL || got.AppCacheEnable {
		t.Fatalf("app after a partial update: %+v", got)
	}

	ju, err := model.DecodeJobUpdate(stringsReader(`{"jobName":"j","cron":"0 0 1 * * ?"}`))
	mustDo(t, err)
	mustDo(t, e.svc().UpdateJob(ctx, ju))
	gotJob, err := e.svc().Job(ctx, "j")
	mustDo(t, err)
	if gotJob.Cron != "0 0 1 * * ?" || gotJob.ShardingTotalCount != 3 || gotJob.Retries != 2 {
		t.Fatalf("job after a partial update: %+v", gotJob)
	}
	// The merged result is validated: an update that makes the job
	// invalid is refused and changes nothing.
	bad, err := model.DecodeJobUpdate(stringsReader(`{"jobName":"j","shardingItemParameters":"5=x"}`))
	mustDo(t, err)
	wantField(t, e.svc().UpdateJob(ctx, bad), "shardingItemParameters")
	if again, _ := e.svc().Job(ctx, "j"); again.ShardingItemParameters != "" {
		t.Fatalf("a refused update was written: %+v", again)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// A leader deposed after it decided to launch (paused, cut off) launches
// nothing: every Launch is preceded by a fenced write.
func TestADeposedLeaderLaunchesNothing(t *testing.T) {
	ctx := ctxT(t)
	st := schedtest.NewStore()
	cluster := schedtest.NewCluster()
	c, err := st.Open(ctx)
	mustDo(t, err)
	defer c.Close()
	l, err := c.Campaign(ctx, store.ElectionPath, []byte("me"))
	mustDo(t, err)
	ex, err := cluster.Factory("deposed")(ctx, executor.Term{Token: l.Token()})
	mustDo(t, err)
	defer ex.Close()
	launch := fencedLaunch(store.NewWriter(c, l.Writer(), 5*time.Second), l, ex)
	task := executor.Task{ID: model.TaskID("j", t0, 0, 0), Job: "j", App: "app", Command: "true", CPUs: 1, MemoryMB: 1}

	mustDo(t, launch(ctx, []executor.Task{task}))
	if got := cluster.Started(); len(got) != 1 {
		t.Fatalf("the leader's launch started %v", got)
	}
	// A successor takes over while this leader still believes it leads.
	mustDo(t, l.Resign(ctx))
	next := executor.Task{ID: model.TaskID("j", t0, 1, 0), Job: "j", App: "app", Command: "true", CPUs: 1, MemoryMB: 1}
	if err := launch(ctx, []executor.Task{next}); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("a deposed leader's launch = %v, want ErrNotLeader", err)
	}
	if got := cluster.Started(); len(got) != 1 {
		t.Fatalf("a deposed leader started %v", got)
	}
}
