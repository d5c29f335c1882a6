package store_test

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

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// term opens a session on st, wins the election and returns the term's
// store Writer and its leadership.
func term(t *testing.T, st *schedtest.Store) (*store.Writer, coord.Leadership) {
	t.Helper()
	ctx := context.Background()
	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l, err := c.Campaign(ctx, store.ElectionPath, []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	return store.NewWriter(c, l.Writer(), 5*time.Second), l
}

// below lists the nodes under root, root itself left out.
func below(st *schedtest.Store, root string) []string {
	var out []string
	for _, p := range st.Paths(root) {
		if p != root {
			out = append(out, p)
		}
	}
	return out
}

func rec(job string, fire time.Time, shard, attempt int) *model.TaskRecord {
	return &model.TaskRecord{ID: model.TaskID(job, fire, shard, attempt), Job: job, Shard: shard, FireTime: fire,
		Attempt: attempt, State: executor.StateStaging, UpdatedAt: fire}
}

func registerJob(t *testing.T, w *store.Writer, name string) store.Ready {
	t.Helper()
	rn, err := w.CreateJob(context.Background(), model.Job{JobName: name, AppName: "a", Cron: "0 0 0 * * ?"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return rn
}

func TestLaunchFireMovesTheFireAtomically(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	rn := registerJob(t, w, "j")
	rn.FireTimes = []time.Time{t0}
	rn, err := w.SetReady(ctx, "j", rn)
	if err != nil {
		t.Fatal(err)
	}

	// The ready queue's write fails: no running node may be left behind.
	st.SetWriteHook(func(op, path string) error {
		if op == "set" && path == store.ReadyPath("j") {
			return errors.New("injected")
		}
		return nil
	})
	dequeued := rn
	dequeued.FireTimes = nil
	if _, _, err := w.LaunchFire(ctx, "j", []*model.TaskRecord{rec("j", t0, 0, 0), rec("j", t0, 1, 0)}, dequeued); err == nil {
		t.Fatal("LaunchFire succeeded through a failing write")
	}
	if got := below(st, store.RunningRoot); len(got) != 0 {
		t.Fatalf("a failed LaunchFire left running nodes: %v", got)
	}
	st.SetWriteHook(nil)

	made, after, err := w.LaunchFire(ctx, "j", []*model.TaskRecord{rec("j", t0, 0, 0), rec("j", t0, 1, 0)}, dequeued)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 2 || after.Version == rn.Version {
		t.Fatalf("LaunchFire = %d records, version %v (was %v)", len(made), after.Version, rn.Version)
	}
	ready, err := w.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := ready["j"]; len(r.FireTimes) != 0 || r.Version != after.Version {
		t.Fatalf("stored ready node %+v, want empty at version %v", r, after.Version)
	}
	// The returned version is the one the next versioned write needs.
	if _, err := w.SetReady(ctx, "j", after); err != nil {
		t.Fatalf("SetReady at LaunchFire's version: %v", err)
	}
	if _, err := w.SetReady(ctx, "j", rn); !errors.Is(err, coord.ErrVersionConflict) {
		t.Fatalf("SetReady at a stale version = %v, want ErrVersionConflict", err)
	}
}

func TestLaunchFireKeepsWhatAnEarlierTermCreated(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	rn := registerJob(t, w, "j")
	earlier := rec("j", t0, 1, 0)
	earlier.Host = "earlier-term"
	if _, err := w.CreateRunning(ctx, "j", earlier); err != nil {
		t.Fatal(err)
	}
	made, _, err := w.LaunchFire(ctx, "j", []*model.TaskRecord{rec("j", t0, 0, 0), rec("j", t0, 1, 0), rec("j", t0, 2, 0)}, rn)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 3 || made[1].Host != "earlier-term" || made[0].Host != "" {
		t.Fatalf("made = %+v", made)
	}
}

// A fire with more shards than one batch holds is written in several,
// the ready queue with the last.
func TestLaunchFireOfManyShards(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	rn := registerJob(t, w, "j")
	rn.FireTimes = []time.Time{t0}
	rn, err := w.SetReady(ctx, "j", rn)
	if err != nil {
		t.Fatal(err)
	}
	n := 2*coord.MaxBatchOps + 7
	recs := make([]*model.TaskRecord, n)
	for i := range recs {
		recs[i] = rec("j", t0, i, 0)
	}
	var batches int
	st.SetWriteHook(func(op, path string) error {
		if op == "set" && path == store.ReadyPath("j") {
			batches++
		}
		return nil
	})
	rn.FireTimes = nil
	made, _, err := w.LaunchFire(ctx, "j", recs, rn)
	if err != nil {
		t.Fatal(err)
	}
	running, err := w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != n || len(running["j"]) != n || batches != 1 {
		t.Fatalf("made %d, stored %d running, ready written %d times; want %d, %d, 1", len(made), len(running["j"]), batches, n, n)
	}
}

func TestMoveToFailoverAndRelaunchAreAtomic(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	registerJob(t, w, "j")
	r0 := rec("j", t0, 0, 0)
	if _, err := w.CreateRunning(ctx, "j", r0); err != nil {
		t.Fatal(err)
	}

	// MoveToFailover: the failover node and the running node's removal,
	// together.
	ended := *r0
	ended.State = executor.StateLost
	st.SetWriteHook(func(op, path string) error {
		if op == "delete" && path == store.RunningPath("j", r0.ID) {
			return errors.New("injected")
		}
		return nil
	})
	if err := w.MoveToFailover(ctx, r0, &ended); err == nil {
		t.Fatal("MoveToFailover succeeded through a failing delete")
	}
	if _, ok := st.Value(store.FailoverPath("j", r0.ID)); ok {
		t.Fatal("a failed MoveToFailover left a failover node")
	}
	st.SetWriteHook(nil)
	if err := w.MoveToFailover(ctx, r0, &ended); err != nil {
		t.Fatal(err)
	}
	running, _ := w.Running(ctx)
	failover, _ := w.Failover(ctx)
	if len(running["j"]) != 0 || len(failover["j"]) != 1 || failover["j"][0].State != executor.StateLost {
		t.Fatalf("after MoveToFailover: running %v, failover %v", running, failover)
	}

	// Relaunch, twice: the second finds the first's running node (an
	// earlier term got that far) and keeps it.
	next, err := w.Relaunch(ctx, &ended, rec("j", t0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.Relaunch(ctx, &ended, rec("j", t0, 0, 1))
	if err != nil || again.ID != next.ID {
		t.Fatalf("a repeated Relaunch = %+v, %v", again, err)
	}
	running, _ = w.Running(ctx)
	failover, _ = w.Failover(ctx)
	if len(running["j"]) != 1 || len(failover["j"]) != 0 {
		t.Fatalf("after Relaunch: running %v, failover %v", running, failover)
	}
}

func TestADeposedTermWritesNothing(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, l := term(t, st)
	registerJob(t, w, "j")
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CreateRunning(ctx, "j", rec("j", t0, 0, 0)); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("CreateRunning after Resign = %v, want ErrNotLeader", err)
	}
	if err := w.SetJob(ctx, model.Job{JobName: "j"}); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("SetJob after Resign = %v, want ErrNotLeader", err)
	}
	if got := below(st, store.RunningRoot); len(got) != 0 {
		t.Fatalf("a deposed term wrote %v", got)
	}
}

func TestJobLifecycleAndLayout(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	if err := w.CreateApp(ctx, model.App{AppName: "a", BootstrapScript: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := w.CreateApp(ctx, model.App{AppName: "a"}); !errors.Is(err, model.ErrExists) {
		t.Fatalf("CreateApp twice = %v, want model.ErrExists", err)
	}
	// A disable flag left by an interrupted deregistration must not
	// disable a new job of the same name.
	if err := w.SetJobDisabled(ctx, "j", true, t0); err != nil {
		t.Fatal(err)
	}
	registerJob(t, w, "j")
	if d, err := w.JobDisabled(ctx, "j"); err != nil || d {
		t.Fatalf("JobDisabled after CreateJob = %v, %v", d, err)
	}
	if _, err := w.CreateJob(ctx, model.Job{JobName: "j"}, t0); !errors.Is(err, model.ErrExists) {
		t.Fatalf("CreateJob twice = %v, want model.ErrExists", err)
	}
	if _, err := w.CreateRunning(ctx, "j", rec("j", t0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{store.AppPath("a"), store.JobPath("j"), store.ReadyPath("j"), store.RunningPath("j", rec("j", t0, 0, 0).ID)} {
		if _, ok := st.Value(p); !ok {
			t.Errorf("%s is missing", p)
		}
	}
	if err := w.DeleteJob(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{store.JobConfigRoot, store.ReadyRoot, store.RunningRoot, store.FailoverRoot, store.DisabledJobsRoot} {
		if got := below(st, root); len(got) != 0 {
			t.Errorf("DeleteJob left %v", got)
		}
	}
	if err := w.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if apps, err := w.Apps(ctx); err != nil || len(apps) != 0 {
		t.Fatalf("Apps after DeleteApp = %v, %v", apps, err)
	}
}

func TestExecutorState(t *testing.T) {
	ctx := context.Background()
	w, _ := term(t, schedtest.NewStore())
	if _, err := w.ExecutorState(ctx, "framework_id"); !errors.Is(err, store.ErrNoState) {
		t.Fatalf("ExecutorState of nothing = %v, want ErrNoState", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := w.StoreExecutorState(ctx, "framework_id", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := w.ExecutorState(ctx, "framework_id"); err != nil || string(got) != v {
			t.Fatalf("ExecutorState = %q, %v; want %q", got, err, v)
		}
	}
	for _, bad := range []string{"election", "a/b", ""} {
		if err := w.StoreExecutorState(ctx, bad, nil); err == nil {
			t.Errorf("StoreExecutorState(%q) succeeded", bad)
		}
	}
}

func TestReadsOfAnEndedSessionAreUnavailable(t *testing.T) {
	ctx := context.Background()
	c, err := schedtest.NewStore().Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := store.NewReader(c)
	_ = c.Close()
	if _, err := r.Jobs(ctx); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("Jobs on a closed session = %v, want model.ErrUnavailable", err)
	}
}

// A fire whose records and ready queue together pass a batch's size limit
// still launches: the running nodes first, the queue last.
func TestLaunchFireBeyondTheBatchSizeLimit(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	rn := registerJob(t, w, "j")
	for i := range 20000 {
		rn.FireTimes = append(rn.FireTimes, t0.Add(time.Duration(i)*time.Second))
	}
	rn, err := w.SetReady(ctx, "j", rn)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*model.TaskRecord
	for i := range 50 {
		r := rec("j", t0, i, 0)
		r.Message = strings.Repeat("m", 16000) // 800 kB of records beside a 460 kB queue
		recs = append(recs, r)
	}
	rn.FireTimes = rn.FireTimes[1:]
	made, after, err := w.LaunchFire(ctx, "j", recs, rn)
	if err != nil {
		t.Fatalf("LaunchFire of a fire too large for one batch: %v", err)
	}
	ready, err := w.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 50 || len(ready["j"].FireTimes) != 19999 || ready["j"].Version != after.Version {
		t.Fatalf("made %d, queue %d at %v (returned %v)", len(made), len(ready["j"].FireTimes), ready["j"].Version, after.Version)
	}
}

// LastProof is when the last write through the Writer was acknowledged:
// zero before any, moved by every kind of write that succeeds, and not by
// one that fails (a lost term's among them).
func TestLastProofIsTheLatestWriteAcknowledged(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, l := term(t, st)
	if got := w.LastProof(); !got.IsZero() {
		t.Fatalf("LastProof before any write: %v", got)
	}
	last := time.Time{}
	for _, write := range []struct {
		name string
		do   func() error
	}{
		{"fence", func() error { return w.Fence(ctx, l.Token()) }},
		{"create", func() error { _, err := w.CreateReady(ctx, "j", time.Now()); return err }},
		{"batch", func() error { _, err := w.WriteFires(ctx, fireWrites(t, w, "b", 1, 1, false), nil); return err }},
	} {
		before := time.Now()
		if err := write.do(); err != nil {
			t.Fatalf("%s: %v", write.name, err)
		}
		got := w.LastProof()
		if got.Before(before) || got.After(time.Now()) || !got.After(last) {
			t.Fatalf("%s: LastProof %v, want between %v and now, after %v", write.name, got, before, last)
		}
		last = got
	}
	if _, err := w.SetReady(ctx, "j", store.Ready{Version: 1 << 40}); !errors.Is(err, coord.ErrVersionConflict) {
		t.Fatalf("SetReady at a version j's ready node never had: %v", err)
	}
	if got := w.LastProof(); !got.Equal(last) {
		t.Fatalf("a refused write moved LastProof from %v to %v", last, got)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Fence(ctx, l.Token()); err == nil {
		t.Fatal("a resigned term's fence succeeded")
	}
	if got := w.LastProof(); !got.Equal(last) {
		t.Fatalf("a lost term's write moved LastProof from %v to %v", last, got)
	}
}
