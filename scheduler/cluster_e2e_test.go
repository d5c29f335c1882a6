package scheduler

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/cluster"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker"
	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"
)

// End-to-end tests of hasched's own cluster: scheduler processes on one
// embedded etcd, each with the cluster executor and its own real worker
// (its own work directory), running real processes that append to a
// ledger file. Each task appends "start <task id> <pgid> <task dir>" when
// it starts and "end <task id> <pgid>" when it ends.

// clusterNode is one `hasched serve` process: a scheduler with the
// cluster executor, and a worker.
type clusterNode struct {
	name     string
	n        *node
	sched    *sessions // the scheduler's sessions
	w        *worker.Worker
	workDir  string
	wss      *workerSessions
	stopW    context.CancelFunc
	workerRc chan error
	stopOnce sync.Once
}

// workerSessions remembers a worker's sessions, so that the test closes
// those a stopped worker leaves open until its deadline.
type workerSessions struct {
	open func(context.Context) (coord.Coordinator, error)
	mu   sync.Mutex
	all  []coord.Coordinator
}

func (s *workerSessions) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := s.open(ctx)
	if err == nil {
		s.mu.Lock()
		s.all = append(s.all, c)
		s.mu.Unlock()
	}
	return c, err
}

func (s *workerSessions) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		_ = c.Close()
	}
}

func startClusterNode(t *testing.T, open func(context.Context) (coord.Coordinator, error), name string) *clusterNode {
	t.Helper()
	cn := &clusterNode{name: name, sched: &sessions{open: open}, wss: &workerSessions{open: open}, workDir: t.TempDir(), workerRc: make(chan error, 1)}
	logger := testLogger(t).Named(name)
	w, err := worker.New(worker.Config{
		Open: cn.wss.Open, Name: name, Host: name + ".host", CPUs: 4, MemoryMB: 4096, WorkDir: cn.workDir,
		Logger:          logger,
		Local:           local.Config{PollInterval: 20 * time.Millisecond, KillGrace: time.Second},
		StampInterval:   50 * time.Millisecond,
		OpTimeout:       2 * time.Second,
		RetryInterval:   50 * time.Millisecond,
		WatchdogCommand: watchdogtest.Command(cn.workDir),
		DrainTimeout:    5 * time.Second,
	})
	mustDo(t, err)
	cn.w = w
	wctx, cancel := context.WithCancel(context.Background())
	cn.stopW = cancel
	go func() { cn.workerRc <- w.Run(wctx) }()
	// Registered first, so it runs last: after the scheduler stopped.
	t.Cleanup(func() {
		cn.stopWorker(t)
		cn.wss.closeAll()
		killTasksOf(cn.workDir)
	})
	factory, err := cluster.NewFactory(cluster.Config{Logger: logger.Named("executor"), RetryInterval: 50 * time.Millisecond, OpTimeout: 2 * time.Second})
	mustDo(t, err)
	cn.n = startNode(t, Config{
		Open: cn.sched.Open, Executor: factory, ExecutorName: "cluster", Advertise: name + ":8899",
		Logger: logger, LaunchInterval: 50 * time.Millisecond, RetryBackoff: 100 * time.Millisecond,
	})
	eventually(t, "worker "+name+" registered", func() bool { return w.Info().Incarnation != "" })
	return cn
}

// stopWorker ends the worker's Run by its context, as a process that
// stops without draining: its tasks run on, its session closes at the
// watchdog's deadline.
func (cn *clusterNode) stopWorker(t *testing.T) {
	cn.stopOnce.Do(func() {
		cn.stopW()
		select {
		case err := <-cn.workerRc:
			if err != nil {
				t.Errorf("worker %s: Run: %v", cn.name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("worker %s: Run did not return", cn.name)
		}
	})
}

// killTasksOf SIGKILLs every task group of a work directory.
func killTasksOf(dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "tasks"))
	for _, de := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "tasks", de.Name(), "task.json"))
		if err != nil {
			continue
		}
		var tk executor.Task
		if json.Unmarshal(b, &tk) == nil && tk.ID != "" {
			_, _ = local.KillGroup(dir, tk.ID)
		}
	}
}

// ledgerCommand is a task that records its start, then runs body, then
// records its end.
func ledgerCommand(ledger, body string) string {
	q := "'" + strings.ReplaceAll(ledger, "'", `'\''`) + "'"
	// The task's shell runs under the local executor's wrapper, which
	// leads the group: field 5 of /proc/$$/stat.
	return "read -r _ _ _ _ pg _ </proc/$$/stat\n" +
		`echo "start $HASCHED_TASK_ID $pg $HASCHED_TASK_DIR" >>` + q + "\n" +
		body + "\n" +
		`echo "end $HASCHED_TASK_ID $pg" >>` + q + "\n"
}

// ledgerEntry is one task start of the ledger.
type ledgerEntry struct {
	id    string
	pgid  int
	dir   string
	ended bool
}

// readLedger returns the ledger's starts in order, and fails the test on
// a task ID started twice or a line it cannot read.
func readLedger(t *testing.T, path string) []*ledgerEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []*ledgerEntry
	byID := map[string]*ledgerEntry{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "start" && len(f) == 4:
			if prev := byID[f[1]]; prev != nil {
				t.Fatalf("task %s started twice: pgid %d in %s, then pgid %s in %s", f[1], prev.pgid, prev.dir, f[2], f[3])
			}
			pg, _ := strconv.Atoi(f[2])
			e := &ledgerEntry{id: f[1], pgid: pg, dir: f[3]}
			byID[f[1]] = e
			out = append(out, e)
		case f[0] == "end" && len(f) == 3:
			e := byID[f[1]]
			if e == nil {
				t.Fatalf("task %s ended without a start", f[1])
			}
			e.ended = true
		default:
			t.Fatalf("ledger line %q", line)
		}
	}
	return out
}

// workerOf names the node whose work directory holds a task directory.
func workerOf(nodes []*clusterNode, taskDir string) string {
	for _, cn := range nodes {
		if strings.HasPrefix(taskDir, cn.workDir+string(filepath.Separator)) {
			return cn.name
		}
	}
	return "?"
}

// TestClusterLeaderFailoverAdoptsTasksAndRunsEveryShardOnce: three nodes;
// a job of three shards fires every second, each shard running 1.5 s; the
// leader's election session is revoked on the server while tasks run (as
// if it had died). The next leader adopts the running tasks: no task
// starts twice, every shard of every fire runs exactly once, and the
// shards spread over the three workers.
func TestClusterLeaderFailoverAdoptsTasksAndRunsEveryShardOnce(t *testing.T) {
	open := etcdOpen(t)
	ledger := filepath.Join(t.TempDir(), "ledger")
	a := startClusterNode(t, open, "a")
	eventually(t, "a leads", a.n.leading)
	b := startClusterNode(t, open, "b")
	c := startClusterNode(t, open, "c")
	nodes := []*clusterNode{a, b, c}
	ctx := ctxT(t)
	eventually(t, "b and c see a lead", func() bool {
		for _, cn := range []*clusterNode{b, c} {
			st, err := cn.n.s.Status(ctx)
			if err != nil || st.LeaderAddress != "a:8899" {
				return false
			}
		}
		return true
	})

	const shards = 3
	job := testJob("ledger", "* * * * * ?")
	job.ShardingTotalCount = shards
	job.Failover = true
	job.ScriptCommandLine = ledgerCommand(ledger, "sleep 1.5")
	register(t, a.n.s, job)
	eventually(t, "two fires' shards started under a", func() bool { return len(readLedger(t, ledger)) >= 2*shards })

	// a's election session ends on the server while its tasks run.
	downAt := time.Now()
	sess := a.sched.campaigning()
	if _, err := sess.Client().Revoke(ctx, sess.Lease()); err != nil {
		t.Fatalf("revoke a's election lease: %v", err)
	}
	var next *clusterNode
	eventually(t, "b or c leads", func() bool {
		for _, cn := range []*clusterNode{b, c} {
			if cn.n.leading() {
				next = cn
				return true
			}
		}
		return false
	})
	t.Logf("%s took over %v after a's session was revoked", next.name, time.Since(downAt).Round(time.Millisecond))
	before := len(readLedger(t, ledger))
	eventually(t, "three more fires' shards started", func() bool { return len(readLedger(t, ledger)) >= before+3*shards })

	// Every shard of every fire handed to the queue so far runs.
	want := firedTaskIDs(t, open, job.JobName, shards)
	eventually(t, "every fired shard started", func() bool {
		started := map[string]bool{}
		for _, e := range readLedger(t, ledger) {
			started[e.id] = true
		}
		for _, id := range want {
			if !started[id] {
				return false
			}
		}
		return true
	})
	for _, cn := range nodes {
		cn.n.stop()
	}
	// What was launched before the schedulers stopped runs to its end.
	final := firedTaskIDs(t, open, job.JobName, shards)
	valid := map[string]bool{}
	for _, id := range final {
		valid[id] = true
	}
	var entries []*ledgerEntry
	eventually(t, "every started task ended", func() bool {
		entries = readLedger(t, ledger)
		for _, e := range entries {
			if !e.ended {
				return false
			}
		}
		return true
	})
	perWorker := map[string]int{}
	for _, e := range entries {
		if !valid[e.id] {
			t.Errorf("task %s ran, but is no shard of a fire (fires: %v)", e.id, final)
		}
		perWorker[workerOf(nodes, e.dir)]++
	}
	t.Logf("%d tasks ran once each, per worker: %v", len(entries), perWorker)
	for _, cn := range nodes {
		if perWorker[cn.name] == 0 {
			t.Errorf("worker %s ran nothing: %v", cn.name, perWorker)
		}
	}
}

// firedTaskIDs lists the task IDs (attempt 0) of every shard of every fire
// of job handed on from its queue: from its registration to its last
// fire, those no longer pending.
func firedTaskIDs(t *testing.T, open func(context.Context) (coord.Coordinator, error), job string, shards int) []string {
	t.Helper()
	ctx := ctxT(t)
	all, err := store.NewReader(mustOpen(t, open)).Ready(ctx)
	rn, ok := all[job]
	if err != nil || !ok {
		t.Fatalf("read the ready node: %v, %v", ok, err)
	}
	var out []string
	for f := rn.RegisteredAt.Truncate(time.Second).Add(time.Second); !f.After(rn.LastFire); f = f.Add(time.Second) {
		if rn.Pending(f) {
			continue
		}
		for s := 0; s < shards; s++ {
			out = append(out, model.TaskID(job, f, s, 0))
		}
	}
	sort.Strings(out)
	return out
}

// TestClusterStoppedWorkersDaemonShardRunsElsewhereOnlyOnceItIsDead: two
// nodes run a DAEMON job of two shards, one on each worker. b's worker
// stops without draining (its Run's context ends): its shard runs on
// until the watchdog's deadline, when its session closes too. The
// leader then runs the shard again on a, and never while the old
// process group lives.
func TestClusterStoppedWorkersDaemonShardRunsElsewhereOnlyOnceItIsDead(t *testing.T) {
	open := etcdOpen(t)
	ledger := filepath.Join(t.TempDir(), "ledger")
	a := startClusterNode(t, open, "a")
	eventually(t, "a leads", a.n.leading)
	b := startClusterNode(t, open, "b")
	nodes := []*clusterNode{a, b}

	job := testJob("daemon", "")
	job.JobExecutionType = model.Daemon
	job.ShardingTotalCount = 2
	job.Failover = true
	job.ScriptCommandLine = ledgerCommand(ledger, "while :; do sleep 0.05; done")
	register(t, a.n.s, job)
	var old *ledgerEntry
	eventually(t, "both shards run, one on each worker", func() bool {
		es := readLedger(t, ledger)
		if len(es) != 2 {
			return false
		}
		on := map[string]*ledgerEntry{}
		for _, e := range es {
			on[workerOf(nodes, e.dir)] = e
		}
		old = on["b"]
		return on["a"] != nil && old != nil
	})
	if !groupAlive(old.pgid) {
		t.Fatalf("b's shard %s is not running", old.id)
	}

	// Watch, from now on, for the shard's next start while its old group
	// lives: each look reads the ledger first, so a new start seen with
	// the old group alive after it is a real overlap.
	// b's registration must outlive the old group too: the leader runs
	// the shard elsewhere as soon as it is gone.
	reg := store.WorkerPath(b.w.Info().ID())
	reader := mustOpen(t, open)
	regGone := func() bool {
		_, err := reader.Get(ctxT(t), reg)
		return errorIs(err, coord.ErrNotFound)
	}
	stoppedAt := time.Now()
	b.stopWorker(t)
	var (
		restarted *ledgerEntry
		diedAt    time.Time
	)
	deadline := time.Now().Add(20 * time.Second)
	for restarted == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the shard did not run again; ledger: %v", readLedger(t, ledger))
		}
		es := readLedger(t, ledger)
		gone := regGone()
		alive := groupAlive(old.pgid)
		if gone && alive {
			t.Fatalf("b's registration is gone on the server while its shard's group %d still ran", old.pgid)
		}
		if !alive && diedAt.IsZero() {
			diedAt = time.Now()
		}
		if len(es) > 2 {
			restarted = es[2]
			if alive {
				t.Fatalf("%s started in %s while the old shard's group %d still ran", restarted.id, restarted.dir, old.pgid)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the old shard died %v after b's worker stopped; it ran again %v after that",
		diedAt.Sub(stoppedAt).Round(time.Millisecond), time.Since(diedAt).Round(time.Millisecond))
	oldRef, err := model.ParseTaskID(old.id)
	mustDo(t, err)
	ref, err := model.ParseTaskID(restarted.id)
	mustDo(t, err)
	if ref.Job != oldRef.Job || ref.Shard != oldRef.Shard || ref.Attempt <= oldRef.Attempt {
		t.Errorf("%s started after %s stopped: want the same shard, a later attempt", restarted.id, old.id)
	}
	if w := workerOf(nodes, restarted.dir); w != "a" {
		t.Errorf("the shard ran again on %s, want a", w)
	}
}

// groupAlive says whether a process group has a member that is not a
// zombie.
func groupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	entries, _ := os.ReadDir("/proc")
	for _, de := range entries {
		if _, err := strconv.Atoi(de.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return true
		}
	}
	return false
}
