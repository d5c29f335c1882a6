package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// fireWrites registers n jobs, each with a running parent (one task ran
// before) unless fresh, and returns the share of each that moves its fire
// at t0, of shards shards, from ready to running.
func fireWrites(t *testing.T, w *store.Writer, prefix string, n, shards int, fresh bool) []store.FireWrite {
	t.Helper()
	ctx := context.Background()
	out := make([]store.FireWrite, n)
	for i := range out {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		rn := registerJob(t, w, name)
		if !fresh {
			old := rec(name, t0.Add(-time.Hour), 0, 0)
			if _, err := w.CreateRunning(ctx, name, old); err != nil {
				t.Fatal(err)
			}
			if err := w.DeleteRunning(ctx, old); err != nil {
				t.Fatal(err)
			}
		}
		rn.LastFire = t0
		var recs []*model.TaskRecord
		for s := range shards {
			recs = append(recs, rec(name, t0, s, 0))
		}
		out[i] = store.FireWrite{Job: name, Running: recs, Ready: rn}
	}
	return out
}

// wantFiresWritten checks that every share is stored: its running nodes
// and its ready node at the version WriteFires returned.
func wantFiresWritten(t *testing.T, w *store.Writer, writes []store.FireWrite, out []store.FireWritten) {
	t.Helper()
	ctx := context.Background()
	ready, err := w.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	running, err := w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(writes) {
		t.Fatalf("WriteFires returned %d shares, want %d", len(out), len(writes))
	}
	for i, wr := range writes {
		r := ready[wr.Job]
		if !r.LastFire.Equal(t0) || r.Version != out[i].Ready.Version || out[i].Ready.Version == wr.Ready.Version {
			t.Fatalf("%s: stored ready node %+v, returned %+v", wr.Job, r, out[i].Ready)
		}
		if len(running[wr.Job]) != len(wr.Running) || len(out[i].Running) != len(wr.Running) {
			t.Fatalf("%s: %d running nodes stored, %d returned; want %d", wr.Job, len(running[wr.Job]), len(out[i].Running), len(wr.Running))
		}
		// The returned version is the one the next versioned write needs.
		if _, err := w.SetReady(ctx, wr.Job, out[i].Ready); err != nil {
			t.Fatalf("%s: SetReady at WriteFires' version: %v", wr.Job, err)
		}
	}
}

// The fires of many jobs due together take ceil(ops / QuickBatchOps) fenced
// writes, not two per job as SetReady and LaunchFire took (issue 11).
func TestWriteFiresWritesManyJobsInFewBatches(t *testing.T) {
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	const jobs = 230 // two ops each: 460 ops, 8 batches
	writes := fireWrites(t, w, "job", jobs, 1, false)
	n.Store(0)
	out, err := w.WriteFires(context.Background(), writes, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := int64((2*jobs + coord.QuickBatchOps - 1) / coord.QuickBatchOps)
	if got := n.Load(); got != want {
		t.Fatalf("WriteFires of %d jobs took %d writes, want %d", jobs, got, want)
	}
	wantFiresWritten(t, w, writes, out)
}

// Jobs that never had a running task have no running parent, which a
// batch cannot make by itself: one read learns which are missing, and the
// batches make them, so the first fire of many new jobs is not a write per
// job either.
func TestWriteFiresMakesTheMissingParentsInTheBatches(t *testing.T) {
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	// A job that ran a task before: the running root exists.
	fireWrites(t, w, "old", 1, 1, false)
	const jobs = 120
	writes := fireWrites(t, w, "new", jobs, 1, true)
	n.Store(0)
	out, err := w.WriteFires(context.Background(), writes, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The running nodes' batches sent at once, of 1 op a share, all miss a
	// parent; so does the first one at a time; then batches of whole
	// shares of 2 ops each (the parent, the node); then the ready nodes'
	// batches, at once.
	perBatch := coord.QuickBatchOps / 2
	atOnce := (len(writes) + coord.QuickBatchOps - 1) / coord.QuickBatchOps
	if got, want := n.Load(), int64(atOnce+1+(len(writes)+perBatch-1)/perBatch+atOnce); got != want {
		t.Fatalf("WriteFires of %d new jobs took %d writes, want %d", len(writes), got, want)
	}
	wantFiresWritten(t, w, writes, out)

	// The Writer keeps what it learnt: the first fires of jobs registered
	// since make their parents in their batches, which miss nothing.
	later := fireWrites(t, w, "later", jobs, 1, true)
	n.Store(0)
	out, err = w.WriteFires(context.Background(), later, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n.Load(), int64((len(later)+perBatch-1)/perBatch+atOnce); got != want {
		t.Fatalf("WriteFires of %d jobs registered later took %d writes, want %d", len(later), got, want)
	}
	wantFiresWritten(t, w, later, out)
}

// A share of more running nodes than one batch holds has them written
// alone, in several; one whose running node exists already (an earlier
// term got this far) keeps it; the others still share batches.
func TestWriteFiresFallsBackForSharesThatDoNotFit(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	writes := fireWrites(t, w, "job", 31, 1, false)
	big := writes[30]
	writes = writes[:30]
	for s := 1; s < coord.MaxBatchOps+20; s++ {
		big.Running = append(big.Running, rec(big.Job, t0, s, 0))
	}
	writes = append(writes[:10], append([]store.FireWrite{big}, writes[10:]...)...)
	earlier := rec(writes[30].Job, t0, 0, 0)
	earlier.Host = "earlier-term"
	if _, err := w.CreateRunning(ctx, earlier.Job, earlier); err != nil {
		t.Fatal(err)
	}
	n.Store(0)
	out, err := w.WriteFires(ctx, writes, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The running nodes: the 10 shares before the big one in a batch; the
	// big one alone, in two batches; the 20 after it in a batch that fails
	// on the existing node, then that share alone (a batch that fails on
	// the node, which is then read back), then the 19 others in one. Then
	// the 31 ready nodes in one batch.
	if got := n.Load(); got != 7 {
		t.Fatalf("WriteFires took %d writes, want 7", got)
	}
	wantFiresWritten(t, w, writes, out)
	if got := out[30].Running[0].Host; got != "earlier-term" {
		t.Fatalf("the running node an earlier term made was returned as %q, want it kept", got)
	}
}

// A share whose ready node moved on since (a version conflict) is the
// store's failure: the term's memory is out of step with it. Its running
// nodes were written first, as every share's are, and its ready node is
// left as it was; the tasks were handed to the caller.
func TestWriteFiresFailsOnAStaleReadyNode(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	writes := fireWrites(t, w, "job", 3, 1, false)
	moved, err := w.SetReady(ctx, writes[1].Job, writes[1].Ready)
	if err != nil {
		t.Fatal(err)
	}
	started := map[int]bool{}
	if _, err := w.WriteFires(ctx, writes, func(i int, _ store.FireWritten) { started[i] = true }); !errors.Is(err, coord.ErrVersionConflict) {
		t.Fatalf("WriteFires with a stale ready node = %v, want ErrVersionConflict", err)
	}
	running, err := w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(running[writes[1].Job]) != 1 || !started[1] {
		t.Fatalf("the stale share's running nodes: %v (handed to the caller: %v), want written before its ready node", running[writes[1].Job], started[1])
	}
	ready, err := w.Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ready[writes[1].Job]; got.Version != moved.Version {
		t.Fatalf("the stale share's ready node is at %d, want it left at %d", got.Version, moved.Version)
	}
}

// A lost term's WriteFires writes nothing.
func TestWriteFiresOfALostTermWritesNothing(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, l := term(t, st)
	writes := fireWrites(t, w, "job", 60, 1, false)
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteFires(ctx, writes, nil); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("WriteFires of a lost term = %v, want ErrNotLeader", err)
	}
	if got := below(st, store.RunningRoot); len(got) != len(writes) { // the parents only
		t.Fatalf("a lost term's WriteFires left %v", got)
	}
}

// The task record writes of many statuses take a batch per QuickBatchOps
// ops, a set followed by a delete of the same node only the delete; a batch that fails on an op (a running node gone, a
// failover parent missing) is written one write at a time as before.
func TestWriteTasksBatchesAndFallsBack(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	registerJob(t, w, "j")
	const tasks = 150
	recs := make([]*model.TaskRecord, tasks)
	for i := range recs {
		recs[i] = rec("j", t0, i, 0)
	}
	if _, err := w.CreateRunning(ctx, "j", recs...); err != nil {
		t.Fatal(err)
	}
	var writes []store.TaskWrite
	for _, r := range recs {
		u := *r
		u.State = executor.StateRunning
		writes = append(writes, store.SetRunningWrite(&u))
	}
	for _, r := range recs[:tasks/2] {
		writes = append(writes, store.DeleteRunningWrite(r))
	}
	n.Store(0)
	if err := w.WriteTasks(ctx, writes); err != nil {
		t.Fatal(err)
	}
	// The sets of the nodes deleted after are left out: 150 ops.
	if got, want := n.Load(), int64((tasks+coord.QuickBatchOps-1)/coord.QuickBatchOps); got != want {
		t.Fatalf("WriteTasks of %d writes took %d writes, want %d", len(writes), got, want)
	}
	running, err := w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(running["j"]) != tasks-tasks/2 {
		t.Fatalf("%d running nodes left, want %d", len(running["j"]), tasks-tasks/2)
	}
	for _, r := range running["j"] {
		if r.State != executor.StateRunning {
			t.Fatalf("%s stored as %s, want RUNNING", r.ID, r.State)
		}
	}

	// A delete of a node gone already and a move to a failover queue
	// without its parent: the batch fails, the writes go one at a time.
	left := running["j"]
	failed := left[0]
	failed.State = executor.StateFailed
	writes = []store.TaskWrite{
		store.DeleteRunningWrite(recs[0]), // gone already
		store.MoveToFailoverWrite(&left[0], &failed),
		store.DeleteRunningWrite(&left[1]),
	}
	if err := w.WriteTasks(ctx, writes); err != nil {
		t.Fatal(err)
	}
	running, err = w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failover, err := w.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(running["j"]) != len(left)-2 || len(failover["j"]) != 1 || failover["j"][0].State != executor.StateFailed {
		t.Fatalf("after the fallback: %d running (want %d), failover %+v", len(running["j"]), len(left)-2, failover["j"])
	}
}

// The batches sent at once that fail on an op (here a running node an
// earlier term made) leave their shares to the one-at-a-time path; those
// that succeed are taken as they are.
func TestWriteFiresBatchesSentAtOnceFallBack(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	writes := fireWrites(t, w, "job", 230, 1, false) // 4 batches of running nodes, 4 of ready nodes
	earlier := rec(writes[120].Job, t0, 0, 0)
	earlier.Host = "earlier-term"
	if _, err := w.CreateRunning(ctx, earlier.Job, earlier); err != nil {
		t.Fatal(err)
	}
	var notified []int
	n.Store(0)
	out, err := w.WriteFires(ctx, writes, func(i int, _ store.FireWritten) { notified = append(notified, i) })
	if err != nil {
		t.Fatal(err)
	}
	// The running nodes: 4 batches at once, one failing; then that one's
	// 60 shares: one failing again, the share alone (a batch that fails on
	// the node, which is then read back), the other 59. Then the ready
	// nodes: 4 batches at once.
	if got := n.Load(); got != 11 {
		t.Fatalf("WriteFires took %d writes, want 11", got)
	}
	if len(notified) != len(writes) {
		t.Fatalf("%d shares notified, want %d", len(notified), len(writes))
	}
	wantFiresWritten(t, w, writes, out)
	if got := out[120].Running[0].Host; got != "earlier-term" {
		t.Fatalf("the running node an earlier term made was returned as %q, want it kept", got)
	}
}

// Every share's running nodes are written before any ready node, and the
// caller hears of each share once its running nodes are: the tasks start
// while the ready nodes, half of the writes, are still to be written.
func TestWriteFiresWritesTheRunningNodesFirst(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	writes := fireWrites(t, w, "job", 2*coord.QuickBatchOps+7, 1, false)
	// A share that only queues a fire: heard of once its ready node is.
	queued := writes[5]
	queued.Running = nil
	writes[5] = queued
	heard := map[int]int{}
	out, err := w.WriteFires(ctx, writes, func(i int, got store.FireWritten) {
		heard[i]++
		ready, err := w.Ready(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if ready[writes[i].Job].Version == writes[i].Ready.Version {
				t.Errorf("the queued share was heard of before its ready node was written")
			}
			return
		}
		if len(got.Running) != 1 {
			t.Errorf("share %d heard of with %d running nodes", i, len(got.Running))
		}
		for _, wr := range writes {
			if ready[wr.Job].Version != wr.Ready.Version {
				t.Fatalf("share %d heard of after %s's ready node was written", i, wr.Job)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		if heard[i] != 1 {
			t.Fatalf("share %d heard of %d times, want once", i, heard[i])
		}
	}
	running, err := w.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(running[queued.Job]) != 0 {
		t.Fatalf("the queued share has running nodes %v", running[queued.Job])
	}
	writes[5].Running, out[5].Running = nil, nil
	wantFiresWritten(t, w, writes[:5], out[:5])
	wantFiresWritten(t, w, writes[6:], out[6:])
}

// A Writer told which running parents exist (a term's load) makes the
// missing ones in the first fires' batches, which then miss nothing.
func TestWriteFiresMakesTheParentsItWasToldAreMissing(t *testing.T) {
	st := schedtest.NewStore()
	w, _, n := countingTerm(t, st)
	old := fireWrites(t, w, "old", 1, 1, false) // the running root exists
	running, err := w.Running(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.KnowRunningParents(running)
	const jobs = 120
	writes := append(fireWrites(t, w, "new", jobs, 1, true), old...)
	n.Store(0)
	out, err := w.WriteFires(context.Background(), writes, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The running nodes: 30 new jobs' parent and node to a batch (4 full
	// batches), the old job's node in a fifth; then the 121 ready nodes in
	// 3.
	perBatch := coord.QuickBatchOps / 2
	want := int64(jobs/perBatch + 1 + (len(writes)+coord.QuickBatchOps-1)/coord.QuickBatchOps)
	if got := n.Load(); got != want {
		t.Fatalf("WriteFires of %d new jobs took %d writes, want %d", jobs, got, want)
	}
	wantFiresWritten(t, w, writes, out)
}
