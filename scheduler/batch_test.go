package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// pathCountingOpen opens sessions whose leaderships count the fenced
// writes (calls of the term's coord.Writer, a batch counting once) that
// touch a path under prefix, and show observe, if set, every node they
// create or set, as they are sent.
type pathCountingOpen struct {
	open    func(context.Context) (coord.Coordinator, error)
	prefix  string
	n       atomic.Int64
	observe func(path string, value []byte)
}

func (o *pathCountingOpen) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	return pathCountingCoordinator{Coordinator: c, o: o}, nil
}

type pathCountingCoordinator struct {
	coord.Coordinator
	o *pathCountingOpen
}

func (c pathCountingCoordinator) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	l, err := c.Coordinator.Campaign(ctx, election, value)
	if err != nil {
		return nil, err
	}
	return pathCountingLeadership{Leadership: l, o: c.o}, nil
}

type pathCountingLeadership struct {
	coord.Leadership
	o *pathCountingOpen
}

func (l pathCountingLeadership) Writer() coord.Writer {
	return pathCountingWriter{Writer: l.Leadership.Writer(), o: l.o}
}

type pathCountingWriter struct {
	coord.Writer
	o *pathCountingOpen
}

func (w pathCountingWriter) count(paths ...string) {
	for _, p := range paths {
		if strings.HasPrefix(p, w.o.prefix) {
			w.o.n.Add(1)
			return
		}
	}
}

func (w pathCountingWriter) seen(path string, value []byte) {
	if w.o.observe != nil {
		w.o.observe(path, value)
	}
}

func (w pathCountingWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	w.count(path)
	w.seen(path, value)
	return w.Writer.Create(ctx, path, value, opts...)
}

func (w pathCountingWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	w.count(path)
	w.seen(path, value)
	return w.Writer.Set(ctx, path, value, expected)
}

func (w pathCountingWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	w.count(path)
	return w.Writer.Delete(ctx, path, expected)
}

func (w pathCountingWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	paths := make([]string, len(ops))
	for i, op := range ops {
		paths[i] = op.Path
		if op.Kind() != coord.OpDelete {
			w.seen(op.Path, op.Value)
		}
	}
	w.count(paths...)
	return w.Writer.Apply(ctx, ops...)
}

// togetherJobs registers n single-shard jobs that all fire at 11:00 (the
// fake clock stands at 10:00), after one fire of each has run (so their
// running parents exist, as they do for every job after its first fire).
func togetherJobs(t *testing.T, e *memEnv, n int) []string {
	t.Helper()
	names := make([]string, n)
	jobs := make([]model.Job, n)
	for i := range names {
		names[i] = fmt.Sprintf("j%03d", i)
		jobs[i] = testJob(names[i], "0 0 11 * * ?")
	}
	register(t, e.svc(), jobs...)
	return names
}

// The fires of many jobs due in the same second are written, ready nodes
// and running nodes, in ceil(2 ops a job / QuickBatchOps) fenced writes, not
// two per job (a SetReady, then a LaunchFire), and each is launched once.
func TestFiresDueTogetherAreWrittenInFewBatches(t *testing.T) {
	e := newMemEnv(t)
	writes := &pathCountingOpen{open: e.store.Open, prefix: store.ReadyRoot + "/"}
	e.start(func(c *Config) { c.Open = writes.Open })
	const jobs = 120
	names := togetherJobs(t, e, jobs)
	// Each job's first fire, so that its running parent exists.
	fire := t0.Add(time.Hour)
	e.clock.Advance(time.Hour)
	eventually(t, "every job's first fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	for _, name := range names {
		e.cluster.Report(model.TaskID(name, fire, 0, 0), executor.StateFinished, "")
	}
	eventually(t, "the first fires' records go", func() bool { return len(runningIDs(t, e.svc())) == 0 })
	settle(e.cluster)

	before := writes.n.Load()
	next := fire.Add(24 * time.Hour)
	e.clock.Advance(24 * time.Hour)
	eventually(t, "every job's second fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	settle(e.cluster)
	got := writes.n.Load() - before
	if want := int64((2*jobs + coord.QuickBatchOps - 1) / coord.QuickBatchOps); got > want {
		t.Fatalf("the fires of %d jobs due together took %d writes of ready nodes, want at most %d", jobs, got, want)
	}
	for _, name := range names {
		wantStarted(t, e.cluster, name, ids(name, fire, next))
		if n := e.cluster.LaunchCalls(model.TaskID(name, next, 0, 0)); n != 1 {
			t.Fatalf("%s's fire was handed to the executor %d times, want once", name, n)
		}
	}
}

// The launches of many jobs' fires are fenced together: one fence per
// worker's turn, not one per job.
func TestLaunchesOfFiresDueTogetherShareFences(t *testing.T) {
	e := newMemEnv(t)
	fences := &pathCountingOpen{open: e.store.Open, prefix: "/ha/term"}
	e.start(func(c *Config) { c.Open = fences.Open })
	const jobs = 120
	togetherJobs(t, e, jobs)
	before := fences.n.Load()
	e.clock.Advance(time.Hour)
	eventually(t, "every job's fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	settle(e.cluster)
	// The worker takes every batch queued when it turns: the first
	// batch's turn may be alone, the rest come in a few more.
	if got := fences.n.Load() - before; got > jobs/4 {
		t.Fatalf("the launches of %d jobs' fires took %d fences, want at most %d", jobs, got, jobs/4)
	}
}

// A fire launched as soon as its running nodes are written needs no fence
// of its own: the write proved the term led (fencedLaunches' freshFence).
// Some rounds may fence on a loaded machine; not every one.
func TestAFireLaunchedAsItIsWrittenIsNotFencedAgain(t *testing.T) {
	e := newMemEnv(t)
	fences := &pathCountingOpen{open: e.store.Open, prefix: "/ha/term"}
	e.start(func(c *Config) { c.Open = fences.Open })
	togetherJobs(t, e, 1)
	const rounds = 5
	before := fences.n.Load()
	e.clock.Advance(time.Hour)
	for round := 1; round <= rounds; round++ {
		eventually(t, fmt.Sprintf("fire %d runs", round), func() bool { return len(e.cluster.Running()) == round })
		settle(e.cluster)
		e.clock.Advance(24 * time.Hour)
	}
	if got := fences.n.Load() - before; got >= rounds {
		t.Fatalf("%d fires launched as they were written took %d fences, want fewer", rounds, got)
	}
}

// The status writes of many tasks reported together take few batches: the
// FINISHED of each of 120 tasks, 120 writes one at a time.
func TestStatusesReportedTogetherAreWrittenInFewBatches(t *testing.T) {
	e := newMemEnv(t)
	writes := &pathCountingOpen{open: e.store.Open, prefix: store.RunningRoot + "/"}
	e.start(func(c *Config) { c.Open = writes.Open })
	const jobs = 120
	names := togetherJobs(t, e, jobs)
	fire := t0.Add(time.Hour)
	e.clock.Advance(time.Hour)
	eventually(t, "every job's fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	eventually(t, "every launch is recorded", func() bool {
		recs, err := e.svc().RunningTasks(ctxT(t))
		if err != nil || len(recs) != jobs {
			return false
		}
		for _, r := range recs {
			if r.LaunchedAt.IsZero() {
				return false
			}
		}
		return true
	})
	settle(e.cluster)
	before := writes.n.Load()
	// The loop is held while the statuses queue, so that it reads them
	// together, as it does when an executor reports faster than the loop
	// writes.
	held, hold := make(chan struct{}), make(chan struct{})
	go func() {
		_ = e.svc().write(context.Background(), func(context.Context, *term) error {
			close(held)
			<-hold
			return nil
		})
	}()
	<-held
	for _, name := range names {
		e.cluster.Report(model.TaskID(name, fire, 0, 0), executor.StateFinished, "")
	}
	close(hold)
	eventually(t, "every record goes", func() bool { return len(runningIDs(t, e.svc())) == 0 })
	if got, most := writes.n.Load()-before, int64(jobs/10); got > most {
		t.Fatalf("%d statuses reported together took %d writes of running nodes, want at most %d", jobs, got, most)
	}
}

// A term that ends between the batches of a pass's fires leaves every
// job's running nodes written or not, and its ready node written only if
// they are: the next term starts each fire exactly once. A fire whose
// running nodes and ready node were written has unconfirmed tasks,
// launched again (a no-op for the executor if the first term's worker
// launched them); one whose running nodes alone were written is produced
// again and completed from them; the others are produced again. The first case fails a batch of ready nodes (some of
// the jobs then have their ready node written, some not), the second a
// batch of running nodes.
func TestCrashBetweenTheBatchesOfFiresDueTogether(t *testing.T) {
	t.Run("ready nodes", func(t *testing.T) {
		crashBetweenFires(t, coord.QuickBatchOps/2+1, isSetPrefix(store.ReadyRoot+"/"))
	})
	t.Run("running nodes", func(t *testing.T) {
		crashBetweenFires(t, coord.QuickBatchOps+1, func(op, p string) bool {
			return op == "create" && strings.HasPrefix(p, store.RunningRoot+"/") && strings.Count(p, "/") == 4
		})
	})
}

func crashBetweenFires(t *testing.T, nth int, match func(op, path string) bool) {
	e := newMemEnv(t)
	e.start()
	const jobs = 120
	names := togetherJobs(t, e, jobs)
	failOnce(e.store, nth, match)
	fire := t0.Add(time.Hour)
	e.clock.Advance(time.Hour)
	eventually(t, "the failed write ends the term", func() bool { return e.cluster.Opened() >= 2 })
	eventually(t, "every job's fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	settle(e.cluster)
	for _, name := range names {
		id := model.TaskID(name, fire, 0, 0)
		wantStarted(t, e.cluster, name, []string{id})
		if n := e.cluster.LaunchCalls(id); n > 2 {
			t.Fatalf("%s was handed to the executor %d times, want at most twice", id, n)
		}
		if rn := readyNodeOf(t, e.store, name); len(rn.FireTimes) != 0 || !rn.LastFire.Equal(fire) {
			t.Fatalf("%s's ready node %+v, want its fire taken and LastFire at it", name, rn)
		}
	}
}

// A term that ends between the batches of the statuses it read together
// leaves a prefix of their writes: the next term reconciles the rest, and
// no finished task runs again.
func TestCrashBetweenTheBatchesOfStatusesReportedTogether(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	const jobs = 120
	names := togetherJobs(t, e, jobs)
	fire := t0.Add(time.Hour)
	e.clock.Advance(time.Hour)
	eventually(t, "every job's fire runs", func() bool { return len(e.cluster.Running()) == jobs })
	settle(e.cluster)
	// The second batch of deletes fails (or, if the loop reads the
	// statuses in smaller groups, some later write).
	failOnce(e.store, coord.QuickBatchOps+1, func(op, p string) bool { return op == "delete" && strings.HasPrefix(p, store.RunningRoot+"/") })
	for _, name := range names {
		e.cluster.Report(model.TaskID(name, fire, 0, 0), executor.StateFinished, "")
	}
	eventually(t, "every record goes", func() bool { return len(runningIDs(t, e.svc())) == 0 })
	settle(e.cluster)
	for _, name := range names {
		id := model.TaskID(name, fire, 0, 0)
		wantStarted(t, e.cluster, name, []string{id})
		if n := e.cluster.LaunchCalls(id); n > 2 {
			t.Fatalf("%s was handed to the executor %d times, want at most twice", id, n)
		}
	}
}

func isSetPrefix(prefix string) func(op, p string) bool {
	return func(op, p string) bool { return op == "set" && strings.HasPrefix(p, prefix) }
}

func TestFiresAndStatusesOfManyJobsInBatchesOnEtcd(t *testing.T) {
	firesAndStatusesInBatches(t, etcdOpen(t))
}

func TestFiresAndStatusesOfManyJobsInBatchesOnZooKeeper(t *testing.T) {
	firesAndStatusesInBatches(t, zkOpen(t))
}

// firesAndStatusesInBatches runs the batched writes on a real backend:
// the first fires of 120 new jobs due together (whose running parents the
// batches make), their statuses, and their second fires in few batches;
// every fire starts once.
func firesAndStatusesInBatches(t *testing.T, open func(context.Context) (coord.Coordinator, error)) {
	cluster := schedtest.NewCluster()
	clock := newClock(t0)
	writes := &pathCountingOpen{open: open, prefix: store.ReadyRoot + "/"}
	n := startNode(t, Config{Open: writes.Open, Executor: cluster.Factory("a"), ExecutorName: "fake", Clock: clock.Now})
	eventually(t, "the scheduler leads", n.leading)
	const jobs = 120
	names := make([]string, jobs)
	specs := make([]model.Job, jobs)
	for i := range names {
		names[i] = fmt.Sprintf("j%03d", i)
		specs[i] = testJob(names[i], "0 0 11 * * ?")
	}
	register(t, n.s, specs...)
	fire := t0.Add(time.Hour)
	clock.Advance(time.Hour)
	eventually(t, "every job's first fire runs", func() bool { return len(cluster.Running()) == jobs })
	for _, name := range names {
		cluster.Report(model.TaskID(name, fire, 0, 0), executor.StateFinished, "")
	}
	eventually(t, "the first fires' records go", func() bool { return len(runningIDs(t, n.s)) == 0 })
	settle(cluster)

	before := writes.n.Load()
	next := fire.Add(24 * time.Hour)
	clock.Advance(24 * time.Hour)
	eventually(t, "every job's second fire runs", func() bool { return len(cluster.Running()) == jobs })
	settle(cluster)
	if got, want := writes.n.Load()-before, int64((2*jobs+coord.QuickBatchOps-1)/coord.QuickBatchOps); got > want {
		t.Fatalf("the fires of %d jobs due together took %d writes of ready nodes, want at most %d", jobs, got, want)
	}
	for _, name := range names {
		wantStarted(t, cluster, name, ids(name, fire, next))
	}
	ready, err := n.s.ReadyTasks(ctxT(t))
	mustDo(t, err)
	if len(ready) != 0 {
		t.Fatalf("ready fires %+v, want none", ready)
	}
}

// A launch worker holds a batch until its fire time, and never longer
// than fireLead: a batch whose fire is an hour off by the scheduler's
// clock (set back since the pass) is launched all the same.
func TestALaunchWorkerWaitsForTheFireTimeAtMostFireLead(t *testing.T) {
	var mu sync.Mutex
	launchedAt := map[string]time.Time{}
	l := newLaunchers(func(_ context.Context, batches [][]executor.Task) []error {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range batches {
			launchedAt[b[0].Job] = time.Now()
		}
		return make([]error, len(batches))
	}, time.Now)
	defer l.stop()
	soon := time.Now().Add(fireLead / 2)
	pushed := time.Now()
	l.push("app", launchBatch{job: "soon", notBefore: soon, tasks: []executor.Task{{ID: "soon", Job: "soon", FireTime: soon}}})
	eventually(t, "soon is launched", func() bool { mu.Lock(); defer mu.Unlock(); return !launchedAt["soon"].IsZero() })
	late := time.Now().Add(time.Hour)
	l.push("app", launchBatch{job: "late", notBefore: late, tasks: []executor.Task{{ID: "late", Job: "late", FireTime: late}}})
	eventually(t, "late is launched", func() bool { mu.Lock(); defer mu.Unlock(); return !launchedAt["late"].IsZero() })
	mu.Lock()
	defer mu.Unlock()
	if at := launchedAt["soon"]; at.Before(soon) {
		t.Errorf("launched %v before its fire time", soon.Sub(at))
	}
	if took := launchedAt["late"].Sub(pushed); took > time.Second {
		t.Errorf("a batch an hour ahead waited %v, want at most about fireLead", took)
	}
}

// A launch worker takes every batch queued for its app at once: one call
// (one fence) for them, each batch still its own result, in order.
func TestALaunchWorkerTakesTheQueuedBatchesTogether(t *testing.T) {
	release := make(chan struct{})
	var calls [][]string // each call's batches' jobs
	var mu sync.Mutex
	l := newLaunchers(func(_ context.Context, batches [][]executor.Task) []error {
		mu.Lock()
		first := len(calls) == 0
		var jobs []string
		for _, b := range batches {
			jobs = append(jobs, b[0].Job)
		}
		calls = append(calls, jobs)
		mu.Unlock()
		if first {
			<-release
		}
		errs := make([]error, len(batches))
		for i, b := range batches {
			if b[0].Job == "bad" {
				errs[i] = errInjected
			}
		}
		return errs
	}, time.Now)
	defer l.stop()
	batch := func(job string) launchBatch {
		return launchBatch{job: job, tasks: []executor.Task{{ID: model.TaskID(job, t0, 0, 0), Job: job}}}
	}
	l.push("app", batch("a"))
	eventually(t, "the worker launches a", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	for _, job := range []string{"b", "bad", "c"} {
		l.push("app", batch(job))
	}
	close(release)
	var results []launchResult
	eventually(t, "every batch has its result", func() bool {
		results = append(results, l.results.drain()...)
		return len(results) == 4
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || strings.Join(calls[1], ",") != "b,bad,c" {
		t.Fatalf("launch calls %v, want [a] then [b bad c]", calls)
	}
	for i, job := range []string{"a", "b", "bad", "c"} {
		if results[i].job != job || (results[i].err != nil) != (job == "bad") {
			t.Fatalf("result %d: %s %v, want %s (failed only if bad)", i, results[i].job, results[i].err, job)
		}
	}
}

// A job whose fire has more shards than a batch holds, due with many
// others: its share is written alone (running nodes first, in batches,
// then its ready node), the others in shared batches, and every shard of
// every fire starts once.
func TestAFireTooLargeForABatchAmongFiresDueTogether(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	names := togetherJobs(t, e, 60)
	big := testJob("big", "0 0 11 * * ?")
	big.ShardingTotalCount = coord.MaxBatchOps + 30
	register(t, e.svc(), big)
	fire := t0.Add(time.Hour)
	e.clock.Advance(time.Hour)
	want := len(names) + big.ShardingTotalCount
	eventually(t, "every shard of every fire runs", func() bool { return len(e.cluster.Running()) == want })
	settle(e.cluster)
	for _, id := range e.cluster.Started() {
		if n := e.cluster.LaunchCalls(id); n != 1 {
			t.Fatalf("%s was handed to the executor %d times, want once", id, n)
		}
	}
	if got := len(startedOf(e.cluster, "big")); got != big.ShardingTotalCount {
		t.Fatalf("%d shards of big started, want %d", got, big.ShardingTotalCount)
	}
	for _, name := range append(names, "big") {
		if rn := readyNodeOf(t, e.store, name); len(rn.FireTimes) != 0 || !rn.LastFire.Equal(fire) {
			t.Fatalf("%s's ready node %+v, want its fire taken and LastFire at it", name, rn)
		}
	}
}

// concurrentLaunches is an executor whose Launch calls wait until two are
// in flight at once (or a deadline passes) and count the most in flight.
type concurrentLaunches struct {
	inFlight, most atomic.Int32
	deadline       time.Time
}

func (e *concurrentLaunches) Launch(context.Context, []executor.Task) error {
	n := e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	for m := e.most.Load(); n > m && !e.most.CompareAndSwap(m, n); m = e.most.Load() {
	}
	for e.most.Load() < 2 && time.Now().Before(e.deadline) {
		time.Sleep(time.Millisecond)
	}
	return nil
}
func (e *concurrentLaunches) Kill(context.Context, string) error        { return nil }
func (e *concurrentLaunches) Reconcile(context.Context, []string) error { return nil }
func (e *concurrentLaunches) Statuses() <-chan executor.Status          { return nil }
func (e *concurrentLaunches) Close() error                              { return nil }

// The batches a launch worker takes together (different jobs' fires) are
// launched at once after their one fence, not one Launch after another:
// the last job of a pass does not wait for every other job's Launch.
// leaderLaunches is fencedLaunches through ex for a term that leads on a
// store of its own, and its leadership. The launches do not see the
// leadership end (unaware): only the store's fence can refuse them.
func leaderLaunches(t *testing.T, ex executor.Executor) (func(context.Context, [][]executor.Task) []error, coord.Leadership) {
	t.Helper()
	ctx := ctxT(t)
	c, err := schedtest.NewStore().Open(ctx)
	mustDo(t, err)
	t.Cleanup(func() { _ = c.Close() })
	l, err := c.Campaign(ctx, store.ElectionPath, []byte("me"))
	mustDo(t, err)
	return fencedLaunches(store.NewWriter(c, l.Writer(), time.Minute), unaware{l}, ex), l
}

// unaware is a leadership that has not heard yet that it is over (a
// paused or cut-off leader): only the store can tell it.
type unaware struct{ coord.Leadership }

func (unaware) Lost() <-chan struct{} { return nil }

func TestTheBatchesOfOneFenceLaunchAtOnce(t *testing.T) {
	ex := &concurrentLaunches{deadline: time.Now().Add(5 * time.Second)}
	launch, _ := leaderLaunches(t, ex)
	errs := launch(ctxT(t), [][]executor.Task{{{ID: "a"}}, {{ID: "b"}}, {{ID: "c"}}})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if got := ex.most.Load(); got < 2 {
		t.Fatalf("at most %d Launch calls in flight, want the batches launched at once", got)
	}
}

// countedLaunches counts the Launch calls it gets.
type countedLaunches struct{ n atomic.Int32 }

func (e *countedLaunches) Launch(context.Context, []executor.Task) error {
	e.n.Add(1)
	return nil
}
func (e *countedLaunches) Kill(context.Context, string) error        { return nil }
func (e *countedLaunches) Reconcile(context.Context, []string) error { return nil }
func (e *countedLaunches) Statuses() <-chan executor.Status          { return nil }
func (e *countedLaunches) Close() error                              { return nil }

// A launch stands on the term's latest write, whatever it was: no fence
// is made while one was acknowledged within freshFence, one is made when
// the term has not written yet or wrote longer ago. A term deposed since
// its last write, which has not heard of it, launches nothing then.
func TestALaunchStandsOnTheTermsLatestWrite(t *testing.T) {
	ctx := ctxT(t)
	st := schedtest.NewStore()
	c, err := st.Open(ctx)
	mustDo(t, err)
	t.Cleanup(func() { _ = c.Close() })
	l, err := c.Campaign(ctx, store.ElectionPath, []byte("me"))
	mustDo(t, err)
	w := store.NewWriter(c, l.Writer(), time.Minute)
	ex := &countedLaunches{}
	launch := fencedLaunches(w, unaware{l}, ex)
	var fences atomic.Int32
	st.SetWriteHook(func(op, p string) error {
		if p == "/ha/term" {
			fences.Add(1)
		}
		return nil
	})
	mustDo(t, launch(ctx, [][]executor.Task{{{ID: "a"}}})[0])
	if fences.Load() == 0 {
		t.Fatal("a launch before the term's first write made no fence")
	}
	// A loaded machine may take longer than freshFence between the write
	// and the launch now and then: a few tries.
	fresh := false
	for i := range 10 {
		if _, err := w.CreateReady(ctx, fmt.Sprintf("j%d", i), time.Now()); err != nil {
			t.Fatal(err)
		}
		before := fences.Load()
		mustDo(t, launch(ctx, [][]executor.Task{{{ID: "a"}}})[0])
		if fences.Load() == before {
			fresh = true
			break
		}
	}
	if !fresh {
		t.Fatal("every launch made a fence, though the term had just written")
	}
	time.Sleep(2 * freshFence)
	before := fences.Load()
	mustDo(t, launch(ctx, [][]executor.Task{{{ID: "a"}}})[0])
	if fences.Load() == before {
		t.Fatalf("a launch %v after the term's last write made no fence", 2*freshFence)
	}

	mustDo(t, l.Resign(ctx))
	time.Sleep(2 * freshFence)
	launched := ex.n.Load()
	err = launch(ctx, [][]executor.Task{{{ID: "a"}}})[0]
	if n := ex.n.Load() - launched; !errors.Is(err, coord.ErrNotLeader) || n != 0 {
		t.Fatalf("a deposed term's launch on a stale proof: launched %d times, error %v; want the fence to fail and nothing launched", n, err)
	}
}

// TestAPassMadeAheadLaunchesNothingBeforeItsFire runs a job of two shards
// firing every second on the real clock: the term makes and writes each
// pass fireLead ahead of its fires, and must send none of their running
// nodes, nor a ready node whose LastFire names them, earlier than that,
// and launch none of their tasks before the fire time.
func TestAPassMadeAheadLaunchesNothingBeforeItsFire(t *testing.T) {
	e := newMemEnv(t)
	var mu sync.Mutex
	var wrong []string
	fires := map[time.Time]bool{}
	writes := &pathCountingOpen{open: e.store.Open, observe: func(path string, value []byte) {
		sent := time.Now()
		var due time.Time
		switch {
		case strings.HasPrefix(path, store.RunningRoot+"/") && len(value) > 0:
			var rec model.TaskRecord
			mustDo(t, json.Unmarshal(value, &rec))
			due = rec.FireTime
		case strings.HasPrefix(path, store.ReadyRoot+"/"):
			var rn store.Ready
			mustDo(t, json.Unmarshal(value, &rn))
			due = rn.LastFire
		}
		if due.IsZero() {
			return // another node, or a ready node before the first fire
		}
		mu.Lock()
		defer mu.Unlock()
		fires[due] = true
		// A millisecond for the wall clock against the timer's.
		if sent.Before(due.Add(-fireLead - time.Millisecond)) {
			wrong = append(wrong, fmt.Sprintf("%s for %s sent %v early", path, due.Format(time.StampMilli), due.Sub(sent)))
		}
	}}
	launched := 0
	e.start(func(c *Config) {
		c.Open = writes.Open
		c.Clock = nil
		c.Executor = observingFactory(e, func(task executor.Task) {
			at := time.Now()
			mu.Lock()
			defer mu.Unlock()
			launched++
			if at.Before(task.FireTime) {
				wrong = append(wrong, fmt.Sprintf("%s launched %v before its fire", task.ID, task.FireTime.Sub(at)))
			}
		})
	})
	job := testJob("j", "* * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	eventually(t, "three fires run", func() bool { return len(startedOf(e.cluster, "j")) >= 6 })
	mu.Lock()
	defer mu.Unlock()
	if len(wrong) > 0 {
		t.Fatalf("ahead of their time:\n%s", strings.Join(wrong, "\n"))
	}
	if len(fires) < 3 || launched < 6 {
		t.Fatalf("saw the writes of %d fires and %d launches, want at least 3 and 6", len(fires), launched)
	}
}

// observingFactory opens e's cluster executor as host "a", telling
// observe of each task handed to Launch, as Launch is called.
func observingFactory(e *memEnv, observe func(executor.Task)) executor.Factory {
	return func(ctx context.Context, term executor.Term) (executor.Executor, error) {
		ex, err := e.cluster.Factory("a")(ctx, term)
		if err != nil {
			return nil, err
		}
		return launchObserver{Executor: ex, observe: observe}, nil
	}
}

// launchObserver tells observe of each task handed to Launch, as it is.
type launchObserver struct {
	executor.Executor
	observe func(executor.Task)
}

func (o launchObserver) Launch(ctx context.Context, tasks []executor.Task) error {
	for _, task := range tasks {
		o.observe(task)
	}
	return o.Executor.Launch(ctx, tasks)
}

// preparingExecutor is an executor that can prepare tasks ahead, recording
// the first time each task was handed to Prepare.
type preparingExecutor struct {
	executor.Executor
	rec *preparedTasks
}

type preparedTasks struct {
	// clock tells the time of a Prepare call (time.Now if nil): the
	// scheduler's clock, to compare with fire times.
	clock func() time.Time
	// prepared, if not nil, is called with each task as it is first
	// handed to Prepare, and when, before Prepare returns.
	prepared func(task executor.Task, at time.Time)
	mu       sync.Mutex
	tasks    map[string]executor.Task
	at       map[string]time.Time
}

// preparingFactory opens e's cluster executor as host "a", recording in
// rec what it is handed to prepare.
func preparingFactory(e *memEnv, rec *preparedTasks) executor.Factory {
	return func(ctx context.Context, term executor.Term) (executor.Executor, error) {
		ex, err := e.cluster.Factory("a")(ctx, term)
		if err != nil {
			return nil, err
		}
		return preparingExecutor{Executor: ex, rec: rec}, nil
	}
}

func (p preparingExecutor) Prepare(tasks []executor.Task) {
	p.rec.mu.Lock()
	defer p.rec.mu.Unlock()
	for _, task := range tasks {
		if _, ok := p.rec.at[task.ID]; !ok {
			p.rec.tasks[task.ID] = task
			p.rec.at[task.ID] = time.Now()
			if p.rec.clock != nil {
				p.rec.at[task.ID] = p.rec.clock()
			}
			if p.rec.prepared != nil {
				p.rec.prepared(task, p.rec.at[task.ID])
			}
		}
	}
}

// TestAPassHandsItsTasksToPrepareBeforeItWritesThem runs a job of two
// shards firing every second: each fire's tasks must reach an executor's
// Prepare before their running nodes are sent, the same tasks it then
// launches.
func TestAPassHandsItsTasksToPrepareBeforeItWritesThem(t *testing.T) {
	e := newMemEnv(t)
	rec := &preparedTasks{tasks: map[string]executor.Task{}, at: map[string]time.Time{}}
	var mu sync.Mutex
	sent := map[string]time.Time{}
	writes := &pathCountingOpen{open: e.store.Open, observe: func(path string, value []byte) {
		if !strings.HasPrefix(path, store.RunningRoot+"/") || len(value) == 0 {
			return
		}
		var r model.TaskRecord
		mustDo(t, json.Unmarshal(value, &r))
		mu.Lock()
		defer mu.Unlock()
		if _, ok := sent[r.ID]; !ok && r.ID != "" {
			sent[r.ID] = time.Now()
		}
	}}
	e.start(func(c *Config) {
		c.Open = writes.Open
		c.Clock = nil
		c.Executor = preparingFactory(e, rec)
	})
	job := testJob("j", "* * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	eventually(t, "three fires run", func() bool { return len(startedOf(e.cluster, "j")) >= 6 })
	mu.Lock()
	defer mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, id := range startedOf(e.cluster, "j") {
		launched, _ := e.cluster.Task(id)
		prepared, ok := rec.tasks[id]
		switch {
		case !ok:
			t.Errorf("%s launched without being prepared", id)
		case !reflect.DeepEqual(prepared, launched):
			t.Errorf("%s prepared as %+v, launched as %+v", id, prepared, launched)
		case sent[id].IsZero():
			t.Errorf("%s launched, its running node never seen", id)
		case !rec.at[id].Before(sent[id]):
			t.Errorf("%s prepared %v after its running node was sent", id, rec.at[id].Sub(sent[id]))
		}
	}
}

// TestTasksArePreparedAheadOfTheirPass runs a job of two shards firing
// every second: from its second fire on, each fire's tasks must reach
// Prepare before the loop makes the fire's pass (fireLead before it), so
// that an executor has prepareLead, not fireLead, to prepare them; and
// they must be the tasks it then launches.
func TestTasksArePreparedAheadOfTheirPass(t *testing.T) {
	e := newMemEnv(t)
	rec := &preparedTasks{tasks: map[string]executor.Task{}, at: map[string]time.Time{}}
	e.start(func(c *Config) {
		c.Clock = nil
		c.Executor = preparingFactory(e, rec)
	})
	job := testJob("j", "* * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	checkPreparedAhead(t, e, rec, "j")
}

// checkPreparedAhead waits for four fires of job, of two shards, to run,
// and checks that the tasks of those after its first were handed to
// Prepare, as launched, before their pass could have been made (fireLead
// before the fire, by the scheduler's clock).
func checkPreparedAhead(t *testing.T, e *memEnv, rec *preparedTasks, job string) {
	t.Helper()
	eventually(t, "four fires run", func() bool { return len(startedOf(e.cluster, job)) >= 8 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var first time.Time
	for _, id := range startedOf(e.cluster, job) {
		launched, _ := e.cluster.Task(id)
		if first.IsZero() || launched.FireTime.Before(first) {
			first = launched.FireTime
		}
	}
	checked := 0
	for _, id := range startedOf(e.cluster, job) {
		launched, _ := e.cluster.Task(id)
		if launched.FireTime.Equal(first) {
			continue // registered at any time, perhaps within the lead
		}
		checked++
		prepared, ok := rec.tasks[id]
		switch {
		case !ok:
			t.Errorf("%s launched without being prepared", id)
		case !reflect.DeepEqual(prepared, launched):
			t.Errorf("%s prepared as %+v, launched as %+v", id, prepared, launched)
		case !rec.at[id].Before(launched.FireTime.Add(-fireLead)):
			t.Errorf("%s prepared %v before its fire, not ahead of its pass (%v before it)",
				id, launched.FireTime.Sub(rec.at[id]), fireLead)
		}
	}
	if checked < 6 {
		t.Errorf("checked %d tasks, want at least 6", checked)
	}
}

// TestTasksArePreparedAheadAfterTheClockIsSetBack sets the wall clock back
// an hour while a job's next fire is handed to Prepare ahead (and so, for
// the term, prepared through): a job registered then fires within
// seconds, long before the time the fires were prepared through, and its
// tasks must be prepared ahead all the same.
func TestTasksArePreparedAheadAfterTheClockIsSetBack(t *testing.T) {
	e := newMemEnv(t)
	var offset atomic.Int64
	var jumped atomic.Bool
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	rec := &preparedTasks{clock: clock, tasks: map[string]executor.Task{}, at: map[string]time.Time{},
		prepared: func(task executor.Task, at time.Time) {
			// Within Prepare, so that the loop sees no time between
			// the preparation and the jump.
			if task.Job == "before" && at.Before(task.FireTime.Add(-fireLead)) && jumped.CompareAndSwap(false, true) {
				offset.Store(int64(-time.Hour))
			}
		}}
	e.start(func(c *Config) {
		c.Clock = clock
		c.Executor = preparingFactory(e, rec)
	})
	register(t, e.svc(), testJob("before", "* * * * * ?"))
	eventually(t, "the clock is set back", jumped.Load)
	job := testJob("after", "* * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	checkPreparedAhead(t, e, rec, "after")
}

// TestStatusesWaitTheLingerBeforeTheirWrites runs a job of two shards
// firing every second on the real clock: the writes that follow a task's
// launch (its confirmation, its RUNNING) must come statusLinger after the
// Launch, not while its process starts.
func TestStatusesWaitTheLingerBeforeTheirWrites(t *testing.T) {
	e := newMemEnv(t)
	var mu sync.Mutex
	launchedAt := map[string]time.Time{}
	var early []string
	checked := 0
	writes := &pathCountingOpen{open: e.store.Open, observe: func(path string, value []byte) {
		if !strings.HasPrefix(path, store.RunningRoot+"/j/") {
			return
		}
		at := time.Now()
		mu.Lock()
		defer mu.Unlock()
		launched, ok := launchedAt[path]
		if !ok {
			return // its creation, before the launch
		}
		delete(launchedAt, path) // the first write after it only
		checked++
		if after := at.Sub(launched); after < statusLinger-time.Millisecond {
			early = append(early, fmt.Sprintf("%s written %v after its Launch", path, after))
		}
	}}
	e.start(func(c *Config) {
		c.Open = writes.Open
		c.Clock = nil
		c.Executor = observingFactory(e, func(task executor.Task) {
			mu.Lock()
			defer mu.Unlock()
			launchedAt[store.RunningPath(task.Job, task.ID)] = time.Now()
		})
	})
	job := testJob("j", "* * * * * ?")
	job.ShardingTotalCount = 2
	register(t, e.svc(), job)
	eventually(t, "six tasks' writes after their launch", func() bool { mu.Lock(); defer mu.Unlock(); return checked >= 6 })
	mu.Lock()
	defer mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("written within the linger (%v):\n%s", statusLinger, strings.Join(early, "\n"))
	}
}
