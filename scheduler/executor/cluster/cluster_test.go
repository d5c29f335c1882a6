package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

var ctx = context.Background()

func TestFactoryRefusesATermWithoutCoordinatorOrBadConfig(t *testing.T) {
	if _, err := NewFactory(Config{Retention: -time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative Retention: %v, want ErrInvalidConfig", err)
	}
	if _, err := NewFactory(Config{OpTimeout: time.Hour}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("OpTimeout of an hour: %v, want ErrInvalidConfig", err)
	}
	f, err := NewFactory(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f(ctx, executor.Term{Token: 1}); !errors.Is(err, ErrNoCoordinator) {
		t.Errorf("a term without Coord and Writer: %v, want ErrNoCoordinator", err)
	}
}

func TestPlacesByCapacityAndLabels(t *testing.T) {
	w := newWorld(t)
	w.worker("a", withCPUs(2), withLabels(map[string]string{"zone": "a"}))
	w.worker("b", withCPUs(1), withLabels(map[string]string{"zone": "b"}))
	ld := w.lead(testConfig(t))

	zb := task("zb", "j", 0, cmdBlock)
	zb.Constraints = map[string]string{"zone": "b"}
	if err := ld.ex.Launch(ctx, []executor.Task{zb}); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if p, ok := w.placementOf("zb"); !ok || p.Worker != "b" {
		t.Fatalf("the zone=b task is placed on %+v, want b", p)
	}
	if st := ld.rec.waitState("zb", executor.StateStaging); st.Host != "b.host" {
		t.Errorf("STAGING on host %q, want b.host", st.Host)
	}
	// b is full now: the next two go to a, the fourth fits nowhere.
	t1, t2, t3 := task("t1", "k", 0, cmdBlock), task("t2", "k", 1, cmdBlock), task("t3", "k", 2, cmdBlock)
	err := ld.ex.Launch(ctx, []executor.Task{t1, t2, t3})
	if !errors.Is(err, ErrNoCapacity) || !strings.Contains(err.Error(), "t3") {
		t.Fatalf("Launch of 3 tasks with room for 2: %v, want ErrNoCapacity naming t3", err)
	}
	for _, id := range []string{"t1", "t2"} {
		if p, ok := w.placementOf(id); !ok || p.Worker != "a" {
			t.Errorf("%s is placed on %+v, want a", id, p)
		}
	}
	if _, ok := w.placementOf("t3"); ok {
		t.Error("t3 was placed beyond every worker's capacity")
	}
	// A constraint no worker has places nothing.
	zc := task("zc", "j", 1, cmdBlock)
	zc.Constraints = map[string]string{"zone": "c"}
	if err := ld.ex.Launch(ctx, []executor.Task{zc}); !errors.Is(err, ErrNoCapacity) {
		t.Errorf("a task no worker's labels match: %v, want ErrNoCapacity", err)
	}
	// Capacity comes back when a task ends.
	if err := w.runs.Release("zb"); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("zb", executor.StateFinished)
	zb2 := task("zb2", "j", 2, cmdSucceed)
	zb2.Constraints = map[string]string{"zone": "b"}
	if err := ld.ex.Launch(ctx, []executor.Task{zb2}); err != nil {
		t.Errorf("Launch after b's task ended: %v", err)
	}
}

func TestSpreadsAJobsShardsOverTheWorkers(t *testing.T) {
	w := newWorld(t)
	for _, n := range []string{"a", "b", "c"} {
		w.worker(n, withCPUs(100))
	}
	ld := w.lead(testConfig(t))
	var tasks []executor.Task
	for i := range 30 {
		tasks = append(tasks, task(fmt.Sprintf("j-%d", i), "j", i, cmdBlock))
	}
	if err := ld.ex.Launch(ctx, tasks); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	got := w.placedOn()
	for _, n := range []string{"a", "b", "c"} {
		if got[n] != 10 {
			t.Errorf("placements per worker %v, want 10 on each", got)
			break
		}
	}
	// Another job spreads too, though the workers have different free CPU.
	var more []executor.Task
	for i := range 3 {
		more = append(more, task(fmt.Sprintf("k-%d", i), "k", i, cmdBlock))
	}
	if err := ld.ex.Launch(ctx, more); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	on := map[string]bool{}
	for _, tk := range more {
		p, _ := w.placementOf(tk.ID)
		on[p.Worker] = true
	}
	if len(on) != 3 {
		t.Errorf("job k's 3 shards are on %v, want one per worker", on)
	}
	if d := ld.ex.Describe(); d["workers"] != "3" || d["placed"] != "33" {
		t.Errorf("Describe: %v", d)
	}
}

func TestNoCapacityUntilAWorkerJoins(t *testing.T) {
	w := newWorld(t)
	ld := w.lead(testConfig(t))
	tk := task("t", "j", 0, cmdSucceed)
	if err := ld.ex.Launch(ctx, []executor.Task{tk}); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("Launch without workers: %v, want ErrNoCapacity", err)
	}
	if got := w.placedOn(); len(got) != 0 {
		t.Fatalf("placed %v without workers", got)
	}
	w.worker("late")
	launchEventually(t, ld.ex, tk)
	ld.rec.waitState("t", executor.StateFinished)
	if n := w.runs.Starts("t"); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

func TestDrainingWorkerGetsNothing(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a", withCPUs(100))
	w.worker("b", withCPUs(1))
	a.setDraining(true)
	ld := w.lead(testConfig(t))
	eventually(t, "the executor sees a draining", func() bool { return ld.ex.Describe()["draining"] == "1" })
	err := ld.ex.Launch(ctx, []executor.Task{task("t1", "j", 0, cmdBlock), task("t2", "j", 1, cmdBlock)})
	if !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("Launch of 2 tasks with room for 1 beside a draining worker: %v, want ErrNoCapacity", err)
	}
	if got := w.placedOn(); got["a"] != 0 || got["b"] != 1 {
		t.Fatalf("placements %v, want one on b and none on the draining a", got)
	}
	a.setDraining(false)
	eventually(t, "a takes placements again", func() bool { return ld.ex.Describe()["draining"] == "0" })
	if err := ld.ex.Launch(ctx, []executor.Task{task("t2", "j", 1, cmdBlock)}); err != nil {
		t.Fatalf("Launch once a no longer drains: %v", err)
	}
	if p, _ := w.placementOf("t2"); p.Worker != "a" {
		t.Errorf("t2 on %q, want a", p.Worker)
	}
}

func TestLaunchIsIdempotentWithinAndAcrossTerms(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	w.worker("b")
	one := w.lead(testConfig(t))
	tk := task("t", "j", 0, cmdBlock)
	if err := one.ex.Launch(ctx, []executor.Task{tk, tk}); err != nil {
		t.Fatal(err)
	}
	one.rec.waitState("t", executor.StateRunning)
	from := one.rec.count()
	if err := one.ex.Launch(ctx, []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	if st := one.rec.wait(from, "the relaunch's report", func(s executor.Status) bool { return s.TaskID == "t" }); st.State != executor.StateRunning {
		t.Errorf("relaunch in the same term reported %+v, want RUNNING", st)
	}
	one.close()

	two := w.lead(testConfig(t))
	if err := two.ex.Launch(ctx, []executor.Task{tk}); err != nil {
		t.Fatal(err)
	}
	if st := two.rec.wait(0, "the next term's relaunch", func(s executor.Status) bool { return s.TaskID == "t" }); st.State != executor.StateRunning {
		t.Errorf("relaunch by the next term reported %+v, want RUNNING", st)
	}
	if n := w.runs.Starts("t"); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
	if got := w.placedOn(); got["a"]+got["b"] != 1 {
		t.Errorf("placements %v, want one", got)
	}
	// The new term follows the task: its end is reported there.
	if err := w.runs.Release("t"); err != nil {
		t.Fatal(err)
	}
	two.rec.waitState("t", executor.StateFinished)
}

func TestKillEndsTheTaskKilled(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	ld := w.lead(testConfig(t))
	if err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateRunning)
	if err := ld.ex.Kill(ctx, "t"); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if _, ok := w.st.Value(store.KillPath("a", "t")); !ok {
		t.Error("no kill request in the store")
	}
	ld.rec.waitState("t", executor.StateKilled)
	eventually(t, "the task stops", func() bool { return !w.runs.Running("t") })
	from := ld.rec.count()
	if err := ld.ex.Kill(ctx, "t"); err != nil {
		t.Errorf("Kill of an ended task: %v", err)
	}
	if st := ld.rec.wait(from, "the ended task's status", func(s executor.Status) bool { return s.TaskID == "t" }); st.State != executor.StateKilled {
		t.Errorf("Kill of an ended task reported %+v, want KILLED", st)
	}
	if err := ld.ex.Kill(ctx, "never-placed"); err != nil {
		t.Errorf("Kill of an unknown task: %v", err)
	}
}

func TestStatusesArriveInOrderAndReconcileAnswersFromThePlacements(t *testing.T) {
	w := newWorld(t)
	w.worker("a", withCPUs(10))
	ld := w.lead(testConfig(t))
	cmds := []string{cmdSucceed, cmdFail, cmdSucceed, cmdFail, cmdBlock}
	var tasks []executor.Task
	for i, c := range cmds {
		tasks = append(tasks, task(fmt.Sprintf("t%d", i), "j", i, c))
	}
	if err := ld.ex.Launch(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		id := fmt.Sprintf("t%d", i)
		want := []executor.State{executor.StateStaging, executor.StateRunning}
		switch c {
		case cmdSucceed:
			want = append(want, executor.StateFinished)
		case cmdFail:
			want = append(want, executor.StateFailed)
		}
		ld.rec.waitState(id, want[len(want)-1])
		var got []executor.State
		for _, s := range ld.rec.forTask(id) {
			got = append(got, s.State)
			if s.State == executor.StateFailed && s.ExitCode != failCode {
				t.Errorf("%s FAILED with exit code %d, want %d", id, s.ExitCode, failCode)
			}
			if s.Host != "a.host" {
				t.Errorf("%s %s on host %q, want a.host", id, s.State, s.Host)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: statuses %v, want %v", id, got, want)
		}
	}
	// Every report was folded and deleted.
	eventually(t, "the outbox is emptied", func() bool {
		return len(w.st.Paths(store.OutboxRoot)) == 2 // the root and a's outbox
	})
	from := ld.rec.count()
	if err := ld.ex.Reconcile(ctx, []string{"t0", "t1", "t4", "nope"}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]executor.State{"t0": executor.StateFinished, "t1": executor.StateFailed, "t4": executor.StateRunning, "nope": executor.StateUnknown} {
		st := ld.rec.wait(from, "reconciliation of "+id, func(s executor.Status) bool { return s.TaskID == id && s.Reconcile })
		if st.State != want {
			t.Errorf("reconcile %s: %+v, want %s", id, st, want)
		}
	}
	from = ld.rec.count()
	if err := ld.ex.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ld.rec.wait(from, "implicit reconciliation of t4", func(s executor.Status) bool {
		return s.TaskID == "t4" && s.Reconcile && s.State == executor.StateRunning
	})
}

func TestInvalidTaskRefusesTheWholeBatch(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	ld := w.lead(testConfig(t))
	good := task("good", "j", 0, cmdSucceed)
	badLabel := task("bad", "j", 1, cmdSucceed)
	badLabel.Constraints = map[string]string{"zone": "not ok!"}
	for name, bad := range map[string]executor.Task{
		"no id":         task("", "j", 1, cmdSucceed),
		"no command":    task("x", "j", 1, " "),
		"bad label":     badLabel,
		"slash in id":   task("a/b", "j", 1, cmdSucceed),
		"negative cpus": {ID: "y", Job: "j", Command: cmdSucceed, CPUs: -1},
	} {
		err := ld.ex.Launch(ctx, []executor.Task{good, bad})
		if !errors.Is(err, ErrInvalidTask) || !errors.Is(err, executor.ErrInvalidTask) {
			t.Errorf("%s: %v, want ErrInvalidTask", name, err)
		}
	}
	if got := w.placedOn(); len(got) != 0 {
		t.Errorf("a refused batch placed %v", got)
	}
}

func TestWorkerGoneIsLostOnlyOnceItsRegistrationIsGone(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a")
	ld := w.lead(testConfig(t))
	if err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateRunning)
	// A hung worker whose session lives: nothing is lost.
	a.freeze()
	never(t, 200*time.Millisecond, "LOST while the worker's registration is there", func() bool {
		for _, s := range ld.rec.forTask("t") {
			if s.State == executor.StateLost {
				return true
			}
		}
		return false
	})
	a.die()
	lost := ld.rec.waitState("t", executor.StateLost)
	if !strings.Contains(lost.Message, "worker a") || !strings.Contains(lost.Message, a.reg.Incarnation) {
		t.Errorf("LOST message %q does not name the worker and its incarnation", lost.Message)
	}
	if _, ok := w.st.Value(store.WorkerPath(a.reg.ID())); ok {
		t.Error("LOST reported while the registration is there")
	}
	if p, _ := w.placementOf("t"); p.State != executor.StateLost {
		t.Errorf("the placement is %s, want LOST", p.State)
	}
	eventually(t, "the dead incarnation's outbox is deleted", func() bool {
		_, ok := w.st.Value(store.OutboxPath(a.reg.ID()))
		return !ok
	})
	eventually(t, "the executor forgets the worker", func() bool { return ld.ex.Describe()["workers"] == "0" })
}

func TestReboundPlacementIsNotLost(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a")
	ld := w.lead(testConfig(t))
	if err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateRunning)
	// The process restarts: the old incarnation hangs (its session not yet
	// expired), the new one claims the task.
	a.freeze()
	a2 := a.restart()
	if p, _ := w.placementOf("t"); p.Incarnation != a2.reg.Incarnation {
		t.Fatalf("the claim did not re-bind the placement: %+v", p)
	}
	a.die()
	eventually(t, "the old incarnation's outbox is deleted", func() bool {
		_, ok := w.st.Value(store.OutboxPath(a.reg.ID()))
		return !ok
	})
	if err := w.runs.Release("t"); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateFinished)
	for _, s := range ld.rec.forTask("t") {
		if s.State == executor.StateLost {
			t.Fatalf("a re-bound placement was reported LOST:\n%s", ld.rec.dump())
		}
	}
	if n := w.runs.Starts("t"); n != 1 {
		t.Errorf("started %d times, want once", n)
	}
}

// markLost's version check is what keeps a re-bound placement: driven here
// with the stale version the index had before the claim.
func TestMarkLostReReadsOnConflict(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a")
	ld := w.lead(testConfig(t))
	if err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateRunning)
	stale, ok := ld.ex.lookup("t")
	if !ok {
		t.Fatal("t not in the index")
	}
	a.freeze()
	a2 := a.restart()
	ws := &workerState{id: a.reg.ID(), name: "a", inc: a.reg.Incarnation}
	if err := ld.ex.markLost(ctx, ws, stale, "a.host", false); err != nil {
		t.Fatalf("markLost: %v", err)
	}
	p, _ := w.placementOf("t")
	if p.State == executor.StateLost || p.Incarnation != a2.reg.Incarnation {
		t.Errorf("the re-bound placement is %+v", p.Placement)
	}
}

// A worker's end marks its tasks LOST in batches, not one write each: a
// host of many tasks is failed over in a few round trips.
func TestAWorkersTasksAreLostInBatches(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a", withCPUs(1000), func(w *model.Worker) { w.MemoryMB = 1 << 20 })
	var cw *countingWriter
	ld := w.leadThrough(testConfig(t), func(wr coord.Writer) coord.Writer {
		cw = &countingWriter{Writer: wr}
		return cw
	})
	n := 2*coord.QuickBatchOps + 5
	var tasks []executor.Task
	for i := range n {
		tasks = append(tasks, task(fmt.Sprintf("t-%d", i), "j", i, cmdBlock))
	}
	if err := ld.ex.Launch(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		ld.rec.waitState(tk.ID, executor.StateRunning)
	}
	before := cw.sets.Load()
	a.die()
	for _, tk := range tasks {
		ld.rec.waitState(tk.ID, executor.StateLost)
		if p, _ := w.placementOf(tk.ID); p.State != executor.StateLost {
			t.Fatalf("%s's placement is %s, want LOST", tk.ID, p.State)
		}
	}
	if got, most := cw.sets.Load()-before, int32(3); got > most {
		t.Errorf("%d tasks marked LOST in %d writes, want at most %d", n, got, most)
	}
}

// A batch of LOST marks refused for one placement that changed since it
// was read marks the others, and judges that one again: LOST if it is
// still bound to the dead incarnation, left alone if re-bound.
func TestALostBatchJudgesAChangedPlacementAgain(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a")
	var cw *countingWriter
	ld := w.leadThrough(testConfig(t), func(wr coord.Writer) coord.Writer {
		cw = &countingWriter{Writer: wr}
		return cw
	})
	ids := []string{"t0", "t1", "t2", "t3"}
	var tasks []executor.Task
	for i, id := range ids {
		tasks = append(tasks, task(id, "j", i, cmdBlock))
	}
	if err := ld.ex.Launch(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	var read []store.StoredPlacement
	for _, id := range ids {
		ld.rec.waitState(id, executor.StateRunning)
		p, ok := w.placementOf(id)
		if !ok {
			t.Fatalf("%s is not placed", id)
		}
		read = append(read, p)
	}
	a.freeze()
	sess, err := w.st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// Behind the reader's back: t1 written again as it was (a fold), t2
	// re-bound to another incarnation (a restarted worker's claim).
	folded := read[1].Placement
	rebound := read[2].Placement
	rebound.Incarnation = "later"
	for _, p := range []model.Placement{folded, rebound} {
		if _, err := sess.Set(ctx, store.PlacementPath(p.Worker, p.Task.ID), store.EncodePlacement(p), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	ws := &workerState{id: a.reg.ID(), name: "a", inc: a.reg.Incarnation}
	before := cw.sets.Load()
	if err := ld.ex.markLostInBatches(ctx, ws, read, "a.host"); err != nil {
		t.Fatalf("markLostInBatches: %v", err)
	}
	// The batch refused for t1, t1 written, the batch refused for t2 (left
	// alone), the batch of t0 and t3: a changed placement is read again
	// before it is written, not first written at the version the batch read.
	if n := cw.sets.Load() - before; n > 4 {
		t.Errorf("%d writes, want at most 4", n)
	}
	for _, id := range []string{"t0", "t1", "t3"} {
		if p, _ := w.placementOf(id); p.State != executor.StateLost {
			t.Errorf("%s is %s, want LOST", id, p.State)
		}
		ld.rec.waitState(id, executor.StateLost)
	}
	if p, _ := w.placementOf("t2"); p.State == executor.StateLost || p.Incarnation != "later" {
		t.Errorf("the re-bound placement is %+v", p.Placement)
	}
	for _, s := range ld.rec.forTask("t2") {
		if s.State == executor.StateLost {
			t.Errorf("the re-bound task was reported LOST")
		}
	}
}

func TestDeadIncarnationsLeftoversAreFoldedBeforeLost(t *testing.T) {
	w := newWorld(t)
	a := w.worker("a")
	one := w.lead(testConfig(t))
	if err := one.ex.Launch(ctx, []executor.Task{task("done", "j", 0, cmdBlock), task("hung", "j", 1, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	one.rec.waitState("done", executor.StateRunning)
	one.rec.waitState("hung", executor.StateRunning)
	one.close()
	// No leader: the worker's reports stay in its outbox; then it dies.
	if err := w.runs.Release("done"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker reports the end", func() bool { return len(w.st.Paths(store.OutboxPath(a.reg.ID()))) == 2 })
	a.die()

	two := w.lead(testConfig(t))
	two.rec.waitState("hung", executor.StateLost)
	fin := two.rec.waitState("done", executor.StateFinished)
	if fin.Host != "a.host" {
		t.Errorf("FINISHED on %q, want a.host", fin.Host)
	}
	for _, s := range two.rec.forTask("done") {
		if s.State == executor.StateLost {
			t.Errorf("a task whose end was in the outbox was reported LOST:\n%s", two.rec.dump())
		}
	}
	if p, _ := w.placementOf("done"); p.State != executor.StateFinished {
		t.Errorf("the placement is %s, want FINISHED", p.State)
	}
	from := two.rec.count()
	if err := two.ex.Reconcile(ctx, []string{"hung"}); err != nil {
		t.Fatal(err)
	}
	if st := two.rec.wait(from, "reconciliation", func(s executor.Status) bool { return s.Reconcile }); st.State != executor.StateLost {
		t.Errorf("reconcile of the lost task: %+v", st)
	}
}

func TestEndedPlacementsAreRemovedAfterRetention(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	cfg := testConfig(t)
	cfg.Retention = 150 * time.Millisecond
	ld := w.lead(cfg)
	if err := ld.ex.Launch(ctx, []executor.Task{task("killed", "j", 0, cmdBlock), task("runs", "j", 1, cmdBlock)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("killed", executor.StateRunning)
	if err := ld.ex.Kill(ctx, "killed"); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("killed", executor.StateKilled)
	eventually(t, "the ended placement and its kill request are removed", func() bool {
		_, p := w.st.Value(store.PlacementPath("a", "killed"))
		_, k := w.st.Value(store.KillPath("a", "killed"))
		return !p && !k
	})
	if _, ok := w.st.Value(store.PlacementPath("a", "runs")); !ok {
		t.Error("a running task's placement was removed")
	}
	from := ld.rec.count()
	if err := ld.ex.Reconcile(ctx, []string{"killed"}); err != nil {
		t.Fatal(err)
	}
	if st := ld.rec.wait(from, "reconciliation", func(s executor.Status) bool { return s.Reconcile }); st.State != executor.StateUnknown {
		t.Errorf("reconcile of a swept task: %+v, want UNKNOWN", st)
	}
}

func TestDeposedLeaderCannotPlace(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	ld := w.lead(testConfig(t))
	if err := ld.l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdSucceed)})
	if !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("Launch by a deposed leader: %v, want ErrNotLeader", err)
	}
	if got := w.placedOn(); len(got) != 0 {
		t.Errorf("a deposed leader placed %v", got)
	}
	if n := w.runs.Starts("t"); n != 0 {
		t.Errorf("started %d times", n)
	}
}

func TestLaunchHonoursCancellation(t *testing.T) {
	w := newWorld(t)
	w.worker("a")
	ld := w.lead(testConfig(t))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ld.ex.Launch(cctx, []executor.Task{task("t", "j", 0, cmdSucceed)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Launch with a cancelled context: %v", err)
	}
	if got := w.placedOn(); len(got) != 0 {
		t.Errorf("a cancelled Launch placed %v", got)
	}
	ld.close()
	if err := ld.ex.Launch(ctx, []executor.Task{task("t", "j", 0, cmdSucceed)}); !errors.Is(err, ErrClosed) || !errors.Is(err, executor.ErrClosed) {
		t.Errorf("Launch after Close: %v", err)
	}
}

func TestReaderListsWorkersWithTheirTasks(t *testing.T) {
	w := newWorld(t)
	w.worker("a", withLabels(map[string]string{"zone": "a"}))
	w.worker("b")
	ld := w.lead(testConfig(t))
	zt := task("t", "j", 3, cmdBlock)
	zt.Constraints = map[string]string{"zone": "a"}
	if err := ld.ex.Launch(ctx, []executor.Task{zt, task("done", "j", 4, cmdSucceed)}); err != nil {
		t.Fatal(err)
	}
	ld.rec.waitState("t", executor.StateRunning)
	ld.rec.waitState("done", executor.StateFinished)
	sess, _ := w.st.Open(ctx)
	defer sess.Close()
	views, err := store.NewReader(sess).Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 2 || views[0].Name != "a" || views[1].Name != "b" {
		t.Fatalf("workers %+v, want a and b", views)
	}
	a := views[0]
	if len(a.Tasks) != 1 || a.Tasks[0].TaskID != "t" || a.Tasks[0].Job != "j" || a.Tasks[0].Shard != 3 || a.Tasks[0].State != executor.StateRunning || a.UsedCPUs != 1 {
		t.Errorf("a's view %+v, want t RUNNING only (done has ended)", a)
	}
	if a.Labels["zone"] != "a" {
		t.Errorf("a's registration %+v", a.Worker)
	}
}

func TestConcurrentLaunchesNeverOvercommit(t *testing.T) {
	w := newWorld(t)
	w.worker("a", withCPUs(3))
	ld := w.lead(testConfig(t))
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			errs <- ld.ex.Launch(ctx, []executor.Task{task(fmt.Sprintf("g%d-0", g), "j", 2*g, cmdBlock), task(fmt.Sprintf("g%d-1", g), "j", 2*g+1, cmdBlock)})
		}()
	}
	full := 0
	for range 4 {
		if err := <-errs; errors.Is(err, ErrNoCapacity) {
			full++
		} else if err != nil {
			t.Fatalf("Launch: %v", err)
		}
	}
	if got := w.placedOn()["a"]; got != 3 {
		t.Errorf("%d tasks placed on a worker with room for 3", got)
	}
	if full == 0 {
		t.Error("no Launch reported ErrNoCapacity")
	}
}

// A batch is cut at the op count or where the values would pass
// coord.MaxValueSize, whichever comes first, and holds at least one.
func TestBatchLen(t *testing.T) {
	third := coord.MaxValueSize / 3
	for _, tc := range []struct {
		sizes []int
		most  int
		want  int
	}{
		{nil, 60, 0},
		{[]int{10, 10, 10}, 60, 3},
		{[]int{10, 10, 10}, 2, 2},
		{[]int{third, third, third, third}, 60, 3},
		{[]int{coord.MaxValueSize + 1, 10}, 60, 1},
		{[]int{10, coord.MaxValueSize}, 60, 1},
	} {
		got := batchLen(len(tc.sizes), func(i int) int { return tc.sizes[i] }, tc.most)
		if got != tc.want {
			t.Errorf("batchLen(%v, most %d) = %d, want %d", tc.sizes, tc.most, got, tc.want)
		}
	}
}
