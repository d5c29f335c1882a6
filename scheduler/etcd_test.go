package scheduler

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/etcd"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// etcdServer serves every lifecycle test of the package.
var etcdServer etcdtest.Shared

// etcdOpen returns an Open function for sessions in a namespace of the
// test's own on the shared embedded server.
func etcdOpen(t *testing.T) func(context.Context) (coord.Coordinator, error) {
	t.Helper()
	return etcdtest.Opener(etcdServer.Config(t, "sched", 2*time.Second))
}

func TestOnlyTheLeaderLaunchesAndHandOverRunsEveryFireOnce(t *testing.T) {
	handOver(t, func(t *testing.T, a *node, _ *sessions) {
		a.stop() // SIGTERM: a resigns, b takes over at once
	})
}

func TestLeaderSessionExpiryHandsOverAndRunsEveryFireOnce(t *testing.T) {
	handOver(t, func(t *testing.T, _ *node, aSessions *sessions) {
		// a's election session expires as if a had gone silent; a goes on
		// as a standby with a new session.
		c := aSessions.campaigning()
		if _, err := c.Client().Revoke(ctxT(t), c.Lease()); err != nil {
			t.Fatalf("revoke a's lease: %v", err)
		}
	})
}

// sessions records the etcd sessions a node opens.
type sessions struct {
	mu   sync.Mutex
	open func(context.Context) (coord.Coordinator, error)
	all  []*etcd.Coordinator
}

func (s *sessions) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.all = append(s.all, c.(*etcd.Coordinator))
	s.mu.Unlock()
	return c, nil
}

// campaigning returns a's live session that holds a key (its candidacy);
// the read session holds none.
func (s *sessions) campaigning() *etcd.Coordinator {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		select {
		case <-c.Done():
			continue
		default:
		}
		if s.isCandidate(c) {
			return c
		}
	}
	panic("no campaigning session")
}

func (s *sessions) isCandidate(c *etcd.Coordinator) bool {
	resp, err := c.Client().Get(context.Background(), "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return false
	}
	for _, kv := range resp.Kvs {
		if kv.Lease == int64(c.Lease()) {
			return true
		}
	}
	return false
}

// handOver runs a job firing every second on a and b, takes a down with
// down, and checks that b took over and that every fire ran exactly once.
func handOver(t *testing.T, down func(t *testing.T, a *node, aSessions *sessions)) {
	open := etcdOpen(t)
	cluster := schedtest.NewCluster()
	cluster.FinishOnLaunch = true
	aSessions := &sessions{open: open}
	cfg := func(name string, open func(context.Context) (coord.Coordinator, error)) Config {
		return Config{
			Open:           open,
			Executor:       cluster.Factory(name),
			ExecutorName:   "fake",
			Advertise:      name + ":8899",
			LaunchInterval: 50 * time.Millisecond,
		}
	}
	a := startNode(t, cfg("a", aSessions.Open))
	eventually(t, "a leads", a.leading)
	b := startNode(t, cfg("b", open))
	ctx := ctxT(t)
	eventually(t, "b sees a as the leader", func() bool {
		st, err := b.s.Status(ctx)
		return err == nil && st.LeaderAddress == "a:8899" && !st.Leader
	})

	job := testJob("every-second", "* * * * * ?")
	job.ConcurrencyPolicy = model.ConcurrencyForbid
	register(t, a.s, job)

	eventually(t, "a runs three fires", func() bool { return len(startedOf(cluster, job.JobName)) >= 3 })
	for _, id := range cluster.Started() {
		if s := cluster.Starter(id); s != "a" {
			t.Fatalf("%s started by %q while a leads", id, s)
		}
	}
	if err := b.s.TriggerJob(ctx, model.Trigger{JobName: job.JobName}); !errorIs(err, model.ErrNotLeader) {
		t.Fatalf("TriggerJob on the standby = %v, want ErrNotLeader", err)
	}

	downAt := time.Now()
	down(t, a, aSessions)
	eventually(t, "b leads", b.leading)
	t.Logf("b took over %v after a went down", time.Since(downAt).Round(time.Millisecond))
	before := len(startedOf(cluster, job.JobName))
	eventually(t, "b runs three fires", func() bool { return len(startedOf(cluster, job.JobName)) >= before+3 })
	// Stopped between a fire's running nodes and its ready node, b would
	// leave a fire run beyond the ready node's LastFire, for the next term
	// to complete; the check below is of a term that got that far.
	reader := store.NewReader(mustOpen(t, open))
	eventually(t, "b's ready node records the fires it started", func() bool {
		all, err := reader.Ready(ctx)
		started := startedOf(cluster, job.JobName)
		if err != nil || len(started) == 0 {
			return false
		}
		ref, err := model.ParseTaskID(started[len(started)-1])
		return err == nil && !all[job.JobName].LastFire.Before(ref.FireTime)
	})
	b.stop()
	a.stop()

	// Every fire from the registration to the last one handed to the queue
	// ran exactly once: none lost over the hand-over, none repeated.
	all, err := reader.Ready(ctx)
	rn, ok := all[job.JobName]
	if err != nil || !ok {
		t.Fatalf("read the ready node: %v, %v", ok, err)
	}
	var want []string
	for f := rn.RegisteredAt.Truncate(time.Second).Add(time.Second); !f.After(rn.LastFire); f = f.Add(time.Second) {
		if !rn.Pending(f) {
			want = append(want, model.TaskID(job.JobName, f, 0, 0))
		}
	}
	got := startedOf(cluster, job.JobName)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fires run:\n got  %v\n want %v", got, want)
	}
	var byA, byB int
	for _, id := range got {
		switch cluster.Starter(id) {
		case "a":
			byA++
		case "b":
			byB++
		}
		if n := cluster.LaunchCalls(id); n > 1 {
			t.Logf("%s was handed to the executor %d times (idempotent)", id, n)
		}
	}
	if byA < 3 || byB < 3 {
		t.Fatalf("a started %d, b started %d; want at least 3 each", byA, byB)
	}
}

func TestNewLeaderRebuildsRunningTasksFromTheStore(t *testing.T) {
	open := etcdOpen(t)
	cluster := schedtest.NewCluster()
	cfg := func(name string) Config {
		return Config{Open: open, Executor: cluster.Factory(name), Advertise: name + ":1", LaunchInterval: 50 * time.Millisecond}
	}
	a := startNode(t, cfg("a"))
	eventually(t, "a leads", a.leading)
	ctx := ctxT(t)
	daemon := testJob("daemon", "")
	daemon.JobExecutionType = model.Daemon
	daemon.ShardingTotalCount = 2
	transient := testJob("transient", "0 0 0 * * ?")
	transient.Failover = true
	register(t, a.s, daemon, transient)
	mustDo(t, a.s.TriggerJob(ctx, model.Trigger{JobName: "transient"}))
	eventually(t, "three tasks run", func() bool { return len(cluster.Running()) == 3 })
	eventually(t, "their records are marked launched", func() bool {
		recs, err := a.s.RunningTasks(ctx)
		if err != nil || len(recs) != 3 {
			return false
		}
		for _, r := range recs {
			if r.LaunchedAt.IsZero() {
				return false
			}
		}
		return true
	})
	running := cluster.Running()

	b := startNode(t, cfg("b"))
	a.stop()
	eventually(t, "b leads", b.leading)
	// b adopts the three tasks: it starts nothing new.
	settle(cluster)
	if got := cluster.Running(); fmt.Sprint(got) != fmt.Sprint(running) {
		t.Fatalf("running after the hand-over %v, want the same %v", got, running)
	}
	if n := len(cluster.Started()); n != 3 {
		t.Fatalf("%d tasks started, want still 3", n)
	}
	// And it handles their statuses: a lost daemon shard is relaunched.
	var shard0 string
	for _, id := range running {
		if ref, _ := model.ParseTaskID(id); ref.Job == "daemon" && ref.Shard == 0 {
			shard0 = id
		}
	}
	cluster.Report(shard0, executor.StateLost, "agent gone")
	eventually(t, "b relaunches the lost shard", func() bool { return cluster.State(withAttempt(shard0, 1)) == executor.StateRunning })
	if s := cluster.Starter(withAttempt(shard0, 1)); s != "b" {
		t.Fatalf("relaunched by %q, want b", s)
	}
}

func mustOpen(t *testing.T, open func(context.Context) (coord.Coordinator, error)) coord.Coordinator {
	t.Helper()
	c, err := open(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
