package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// yearly is a cron that does not fire while a test runs.
const yearly = "0 0 0 1 1 ?"

func TestConcurrentRegistrationsEachGetTheirOwnAnswer(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	concurrentRegistrations(t, e.svc(), e.cluster)
}

func TestConcurrentRegistrationsEachGetTheirOwnAnswerOnEtcd(t *testing.T) {
	cluster := schedtest.NewCluster()
	n := startNode(t, Config{Open: etcdOpen(t), Executor: cluster.Factory("a"), ExecutorName: "fake"})
	eventually(t, "the scheduler leads", n.leading)
	concurrentRegistrations(t, n.s, cluster)
}

// concurrentRegistrations has 8 clients register at once, each valid jobs
// (a DAEMON one among them) and ones that must be refused: a name all of
// them register, a job of an unknown app, a job that exists. Each must get
// its own answer, and the store and the term hold exactly the valid ones.
func concurrentRegistrations(t *testing.T, s *Scheduler, cluster *schedtest.Cluster) {
	t.Helper()
	const clients = 8
	register(t, s, testJob("taken", yearly))
	ctx := ctxT(t)

	type answer struct {
		job string
		err error
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			orphan := testJob(fmt.Sprintf("c%d-orphan", c), yearly)
			orphan.AppName = "no-such-app"
			daemon := testJob(fmt.Sprintf("c%d-daemon", c), "")
			daemon.JobExecutionType = model.Daemon
			jobs := []model.Job{testJob(fmt.Sprintf("c%d-0", c), yearly), testJob("dup", yearly), testJob(fmt.Sprintf("c%d-1", c), yearly),
				orphan, daemon, testJob("taken", yearly), testJob(fmt.Sprintf("c%d-2", c), yearly)}
			for _, j := range jobs {
				err := s.RegisterJob(ctx, j)
				mu.Lock()
				answers = append(answers, answer{j.JobName, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	want := []string{"dup", "taken"}
	dupWon := 0
	for _, a := range answers {
		switch {
		case a.job == "dup" && a.err == nil:
			dupWon++
		case a.job == "dup" || a.job == "taken":
			if !errors.Is(a.err, model.ErrExists) {
				t.Fatalf("registering %s: %v, want model.ErrExists", a.job, a.err)
			}
		case strings.HasSuffix(a.job, "-orphan"):
			wantField(t, a.err, "appName")
		default:
			if a.err != nil {
				t.Fatalf("registering %s: %v, want success", a.job, a.err)
			}
			want = append(want, a.job)
		}
	}
	if dupWon != 1 {
		t.Fatalf("%d of %d registrations of dup succeeded, want exactly 1", dupWon, clients)
	}
	slices.Sort(want)
	if got := storedJobNames(t, s); !slices.Equal(got, want) {
		t.Fatalf("stored jobs:\n got  %v\n want %v", got, want)
	}
	if got := termJobNames(t, s); !slices.Equal(got, want) {
		t.Fatalf("the term's jobs:\n got  %v\n want %v", got, want)
	}
	for c := range clients {
		job := fmt.Sprintf("c%d-daemon", c)
		eventually(t, job+" runs", func() bool { return len(startedOf(cluster, job)) == 1 })
	}
}

func TestQueuedRequestsAreServedInOrderRegistrationsTogether(t *testing.T) {
	e := newMemEnv(t)
	writes := &countingOpen{open: e.store.Open}
	e.start(func(c *Config) { c.Open = writes.Open })
	register(t, e.svc(), testJob("taken", yearly))

	orphan := testJob("orphan", yearly)
	orphan.AppName = "no-such-app"
	trigger := request{reply: make(chan error, 1), op: func(ctx context.Context, tm *term) error { return tm.triggerJob(ctx, model.Trigger{JobName: "a"}) }}
	group := []request{
		registration(t, testJob("a", yearly)),
		registration(t, orphan),
		registration(t, testJob("a", yearly)),
		registration(t, testJob("taken", yearly)),
		registration(t, testJob("b", yearly)),
		trigger, // a is registered by the time it is served
		registration(t, testJob("c", yearly)),
	}
	var served error
	var n int64
	var aReady []byte // a's ready node before the launcher takes the fire
	mustDo(t, e.svc().write(ctxT(t), func(ctx context.Context, tm *term) error {
		before := writes.n.Load()
		served = tm.serveRequests(ctx, group)
		n = writes.n.Load() - before
		aReady, _ = e.store.Value(store.ReadyPath("a"))
		return nil
	}))
	if served != nil {
		t.Fatalf("serving the group: %v", served)
	}
	answers := replies(group)
	wantField(t, answers[1], "appName")
	for _, i := range []int{2, 3} {
		if !errors.Is(answers[i], model.ErrExists) {
			t.Fatalf("request %d: %v, want model.ErrExists", i, answers[i])
		}
	}
	for _, i := range []int{0, 4, 5, 6} {
		if answers[i] != nil {
			t.Fatalf("request %d: %v, want success", i, answers[i])
		}
	}
	// a and b in one batch, the trigger's write, c's batch.
	if n != 3 {
		t.Fatalf("the group took %d store writes, want 3", n)
	}
	var rn store.Ready
	if err := json.Unmarshal(aReady, &rn); err != nil || len(rn.FireTimes) != 1 {
		t.Fatalf("a's ready node %s (%v), want the triggered fire in it", aReady, err)
	}
	want := []string{"a", "b", "c", "taken"}
	if got := storedJobNames(t, e.svc()); !slices.Equal(got, want) {
		t.Fatalf("stored jobs %v, want %v", got, want)
	}
}

func TestABatchCutByALostTermWritesNothing(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	register(t, e.svc())
	group := []request{registration(t, testJob("x", yearly)), registration(t, testJob("y", yearly))}
	var lost int64
	err := e.svc().write(ctxT(t), func(ctx context.Context, tm *term) error {
		lost = tm.l.Token()
		if err := tm.l.Resign(ctx); err != nil {
			return err
		}
		return tm.serveRequests(ctx, group)
	})
	if !errors.Is(err, model.ErrNotLeader) {
		t.Fatalf("serving a group after the term ended: %v, want model.ErrNotLeader", err)
	}
	for i, err := range replies(group) {
		if !errors.Is(err, model.ErrNotLeader) {
			t.Fatalf("registration %d of a lost term: %v, want model.ErrNotLeader", i, err)
		}
	}
	for _, p := range []string{store.JobPath("x"), store.JobPath("y"), store.ReadyPath("x"), store.ReadyPath("y")} {
		if _, ok := e.store.Value(p); ok {
			t.Fatalf("a lost term's batch wrote %s", p)
		}
	}
	// The next term serves the same registrations.
	eventually(t, "a new term leads", func() bool {
		st, err := e.svc().Status(ctxT(t))
		return err == nil && st.Leader && st.Term != lost
	})
	register(t, e.svc(), testJob("x", yearly), testJob("y", yearly))
}

func TestConcurrentRegistrationsEachGetTheirOwnAnswerOnZooKeeper(t *testing.T) {
	cluster := schedtest.NewCluster()
	n := startNode(t, Config{Open: zkOpen(t), Executor: cluster.Factory("a"), ExecutorName: "fake"})
	eventually(t, "the scheduler leads", n.leading)
	concurrentRegistrations(t, n.s, cluster)
}

func TestRegistrationsReplaceLeftoversOfEarlierJobsOnEtcd(t *testing.T) {
	registrationsReplaceLeftovers(t, etcdOpen(t))
}

func TestRegistrationsReplaceLeftoversOfEarlierJobsOnZooKeeper(t *testing.T) {
	registrationsReplaceLeftovers(t, zkOpen(t))
}

// zkOpen returns an Open function for sessions in a namespace of the
// test's own on the ZooKeeper server HASCHED_ZK_TEST_SERVERS names; the
// test is skipped without one (integration/with-zookeeper.sh runs it).
func zkOpen(t *testing.T) func(context.Context) (coord.Coordinator, error) {
	cfg := zk.Config{Servers: zktest.Servers(t), Namespace: fmt.Sprintf("sched-%d", time.Now().UnixNano()), SessionTimeout: 4 * time.Second}
	return func(ctx context.Context) (coord.Coordinator, error) { return zk.New(ctx, cfg) }
}

// registrationsReplaceLeftovers registers, concurrently, jobs that meet
// what interrupted deregistrations of earlier jobs of their names left.
func registrationsReplaceLeftovers(t *testing.T, open func(context.Context) (coord.Coordinator, error)) {
	n := startNode(t, Config{Open: open, Executor: schedtest.NewCluster().Factory("a"), ExecutorName: "fake"})
	eventually(t, "the scheduler leads", n.leading)
	register(t, n.s, testJob("warm-up", yearly))
	ctx := ctxT(t)
	// What interrupted deregistrations leave, written behind the term's
	// back after it loaded: x's ready node with a fire, y's disable flag.
	plain := mustOpen(t, open)
	if _, err := plain.Create(ctx, store.ReadyPath("x"), []byte(`{"fireTimes":["2024-05-01T10:00:00Z"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Create(ctx, store.DisabledJobPath("y"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, name := range []string{"x", "y", "z"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.s.RegisterJob(ctx, testJob(name, yearly))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
	}
	ready, err := n.s.ReadyTasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 0 {
		t.Fatalf("ready fires %+v, want none: x's leftover queue replaced", ready)
	}
	if _, err := plain.Get(ctx, store.DisabledJobPath("y")); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("y's leftover disable flag: %v, want it removed", err)
	}
	if disabled, err := n.s.JobDisabled(ctx, "y"); err != nil || disabled {
		t.Fatalf("y disabled = %v, %v; want enabled", disabled, err)
	}
}

// registration is the request RegisterJob sends for job.
func registration(t *testing.T, job model.Job) request {
	t.Helper()
	spec, err := job.Check()
	if err != nil {
		t.Fatal(err)
	}
	return request{register: &spec, reply: make(chan error, 1)}
}

// replies collects the answer of every request of a served group; a
// request left unanswered fails the collection.
func replies(group []request) []error {
	out := make([]error, len(group))
	for i, req := range group {
		select {
		case out[i] = <-req.reply:
		case <-time.After(5 * time.Second):
			out[i] = fmt.Errorf("request %d was not answered", i)
		}
	}
	return out
}

func storedJobNames(t *testing.T, s *Scheduler) []string {
	t.Helper()
	jobs, err := s.Jobs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs {
		out = append(out, j.JobName)
	}
	slices.Sort(out)
	return out
}

// termJobNames reads the jobs the current term holds, on its loop.
func termJobNames(t *testing.T, s *Scheduler) []string {
	t.Helper()
	var out []string
	mustDo(t, s.write(ctxT(t), func(_ context.Context, tm *term) error {
		out = sortedKeys(tm.jobs)
		return nil
	}))
	return out
}
