package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/zk"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// etcdServer serves the history tests' etcd runs.
var etcdServer etcdtest.Shared

func TestMain(m *testing.M) {
	os.Exit(etcdServer.Main(m))
}

// The history scenarios, on each backend: the in-memory coordinator,
// the embedded etcd, and the ZooKeeper server make zk-server-tests starts.

func TestHistory(t *testing.T) {
	runHistory(t, func(t *testing.T) coord.Coordinator {
		c, err := schedtest.NewStore().Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestHistoryOnEtcd(t *testing.T) {
	runHistory(t, func(t *testing.T) coord.Coordinator {
		c, err := etcdtest.Opener(etcdServer.Config(t, "history", 5*time.Second))(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestHistoryOnZooKeeper(t *testing.T) {
	servers := zktest.Servers(t)
	runHistory(t, func(t *testing.T) coord.Coordinator {
		cfg := zk.Config{Servers: servers, Namespace: fmt.Sprintf("history-%d", time.Now().UnixNano()), SessionTimeout: 4 * time.Second}
		c, err := zk.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func runHistory(t *testing.T, open func(*testing.T) coord.Coordinator) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, coord.Coordinator)
	}{
		{"ReadsTheLatestFirstWithinTheLimit", historyReadsLatestFirst},
		{"RewritingARunOverwritesIt", historyRewriteOverwrites},
		{"PruneKeepsTheLastN", historyPruneKeepsLastN},
		{"PruneJobsRemovesOnlyDeregisteredJobsStalestFirst", historyPruneJobs},
		{"AJobWithoutHistoryHasNone", historyEmpty},
		{"AnUndecodableRunIsLeftOut", historyUndecodable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t)
			t.Cleanup(func() { _ = c.Close() })
			tc.run(t, c)
		})
	}
}

func execution(job string, fire time.Time, shard, attempt int, end time.Time) model.Execution {
	return model.Execution{
		TaskID: model.TaskID(job, fire, shard, attempt), Job: job, Shard: shard, FireTime: fire, Attempt: attempt,
		Host: "h1", State: executor.StateFinished, StartTime: fire.Add(time.Second), CompleteTime: end,
		Success: true, Outcome: "done",
	}
}

func record(t *testing.T, w store.HistoryWriter, exs ...model.Execution) {
	t.Helper()
	for _, ex := range exs {
		if err := w.Record(context.Background(), ex); err != nil {
			t.Fatalf("Record(%s): %v", ex.TaskID, err)
		}
	}
}

func taskIDs(exs []model.Execution) []string {
	out := make([]string, len(exs))
	for i, ex := range exs {
		out[i] = ex.TaskID
	}
	return out
}

func historyReadsLatestFirst(t *testing.T, c coord.Coordinator) {
	ctx := context.Background()
	w, r := store.NewHistoryWriter(c), store.NewReader(c)
	var want []string
	// Recorded out of end order: the read is by end time, not by write.
	for _, i := range []int{3, 0, 4, 1, 2} {
		fire := t0.Add(time.Duration(i) * time.Minute)
		record(t, w, execution("j", fire, 0, 0, fire.Add(10*time.Second)))
	}
	for i := 4; i >= 0; i-- {
		want = append(want, model.TaskID("j", t0.Add(time.Duration(i)*time.Minute), 0, 0))
	}
	got, err := r.Executions(ctx, "j", 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(taskIDs(got), want) {
		t.Fatalf("Executions = %v, want the latest end first %v", taskIDs(got), want)
	}
	got, err = r.Executions(ctx, "j", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(taskIDs(got), want[:2]) {
		t.Fatalf("Executions(limit 2) = %v, want %v", taskIDs(got), want[:2])
	}
	ex := execution("j", t0.Add(4*time.Minute), 0, 0, t0.Add(4*time.Minute+10*time.Second))
	if g := got[0]; !g.CompleteTime.Equal(ex.CompleteTime) || !g.FireTime.Equal(ex.FireTime) || g.Host != "h1" ||
		g.State != executor.StateFinished || !g.Success || g.Outcome != "done" || g.Job != "j" {
		t.Fatalf("read back %+v, want %+v", g, ex)
	}
	if _, err := r.Executions(ctx, "j", 0); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("Executions(limit 0) = %v, want ErrInvalid", err)
	}
}

func historyRewriteOverwrites(t *testing.T, c coord.Coordinator) {
	ctx := context.Background()
	w, r := store.NewHistoryWriter(c), store.NewReader(c)
	ex := execution("j", t0, 1, 0, t0.Add(time.Minute))
	record(t, w, ex)
	ex.Message = "again"
	record(t, w, ex)
	got, err := r.Executions(ctx, "j", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Message != "again" {
		t.Fatalf("after writing one run twice: %+v, want one run with the second write's message", got)
	}
	// The same task ending at another time is another run.
	ex.CompleteTime = ex.CompleteTime.Add(time.Second)
	record(t, w, ex)
	if got, _ := r.Executions(ctx, "j", 10); len(got) != 2 {
		t.Fatalf("after a second end of the task: %d runs, want 2", len(got))
	}
}

func historyPruneKeepsLastN(t *testing.T, c coord.Coordinator) {
	ctx := context.Background()
	w, r := store.NewHistoryWriter(c), store.NewReader(c)
	// More than one batch to delete.
	const n, keep = coord.MaxBatchOps + 30, 7
	for i := range n {
		fire := t0.Add(time.Duration(i) * time.Minute)
		record(t, w, execution("j", fire, 0, 0, fire.Add(time.Second)))
	}
	record(t, w, execution("other", t0, 0, 0, t0.Add(time.Second)))
	removed, err := w.Prune(ctx, "j", keep)
	if err != nil || removed != n-keep {
		t.Fatalf("Prune = %d, %v; want %d removed", removed, err, n-keep)
	}
	got, err := r.Executions(ctx, "j", model.MaxExecutionsLimit)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := n - 1; i >= n-keep; i-- {
		want = append(want, model.TaskID("j", t0.Add(time.Duration(i)*time.Minute), 0, 0))
	}
	if !slices.Equal(taskIDs(got), want) {
		t.Fatalf("after Prune: %v, want the last %d: %v", taskIDs(got), keep, want)
	}
	if removed, err := w.Prune(ctx, "j", keep); err != nil || removed != 0 {
		t.Fatalf("a second Prune = %d, %v; want nothing to do", removed, err)
	}
	if got, _ := r.Executions(ctx, "other", 10); len(got) != 1 {
		t.Fatalf("another job's history: %d runs, want 1 (untouched)", len(got))
	}
	if _, err := w.Prune(ctx, "j", 0); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("Prune(keep 0) = %v, want ErrInvalid", err)
	}
}

func historyPruneJobs(t *testing.T, c coord.Coordinator) {
	ctx := context.Background()
	w, r := store.NewHistoryWriter(c), store.NewReader(c)
	// "live" is registered; "old", "mid" and "new" are not, and their last
	// runs ended in that order.
	if _, err := c.Create(ctx, store.JobPath("live"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	record(t, w,
		execution("live", t0, 0, 0, t0),
		execution("old", t0, 0, 0, t0.Add(time.Hour)),
		execution("mid", t0, 0, 0, t0.Add(2*time.Hour)),
		execution("new", t0, 0, 0, t0.Add(3*time.Hour)),
		execution("old", t0, 1, 0, t0.Add(time.Minute)), // not its last run
	)
	removed, err := w.PruneJobs(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"old", "mid"}) {
		t.Fatalf("PruneJobs(2) removed %v, want the stalest deregistered ones [old mid]", removed)
	}
	jobs, err := r.HistoryJobs(ctx)
	if err != nil || !slices.Equal(jobs, []string{"live", "new"}) {
		t.Fatalf("jobs with history: %v, %v; want [live new]", jobs, err)
	}
	// Only registered jobs' history left beyond the bound: none goes.
	removed, err = w.PruneJobs(ctx, 1)
	if err != nil || !slices.Equal(removed, []string{"new"}) {
		t.Fatalf("PruneJobs(1) = %v, %v; want [new]", removed, err)
	}
	if removed, err := w.PruneJobs(ctx, 1); err != nil || len(removed) != 0 {
		t.Fatalf("PruneJobs(1) with only a registered job left = %v, %v; want nothing removed", removed, err)
	}
}

func historyEmpty(t *testing.T, c coord.Coordinator) {
	got, err := store.NewReader(c).Executions(context.Background(), "nobody", 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("Executions of a job without history = %v, %v; want none", got, err)
	}
}

func historyUndecodable(t *testing.T, c coord.Coordinator) {
	ctx := context.Background()
	w := store.NewHistoryWriter(c)
	good := execution("j", t0, 0, 0, t0.Add(time.Second))
	record(t, w, good)
	bad := execution("j", t0, 1, 0, t0.Add(2*time.Second))
	if _, err := c.Create(ctx, store.HistoryPath("j", store.HistoryKey(bad)), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	got, err := store.NewReader(c).Executions(ctx, "j", 10)
	if err != nil || !slices.Equal(taskIDs(got), []string{good.TaskID}) {
		t.Fatalf("Executions = %v, %v; want only the decodable run", taskIDs(got), err)
	}
}

func TestHistoryKeySortsByEndTime(t *testing.T) {
	early := execution("j", t0, 0, 0, t0.Add(time.Second))
	late := execution("j", t0, 0, 0, t0.Add(10*time.Second))
	if !(store.HistoryKey(early) < store.HistoryKey(late)) {
		t.Fatalf("keys %q, %q: the earlier end must sort first", store.HistoryKey(early), store.HistoryKey(late))
	}
	if k := store.HistoryKey(model.Execution{TaskID: "x"}); k != "00000000000000000000~x" {
		t.Fatalf("key of a run without an end = %q, want it at zero", k)
	}
	if err := coord.ValidateName(store.HistoryKey(late)); err != nil {
		t.Fatalf("a history key is not a valid node name: %v", err)
	}
}

func TestRecordRefusesARunWithoutJobOrTask(t *testing.T) {
	c, err := schedtest.NewStore().Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ex := range []model.Execution{{Job: "j"}, {TaskID: "t"}} {
		if err := store.NewHistoryWriter(c).Record(context.Background(), ex); !errors.Is(err, coord.ErrInvalidPath) {
			t.Errorf("Record(%+v) = %v, want ErrInvalidPath", ex, err)
		}
	}
}
