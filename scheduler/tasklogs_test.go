package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

func TestLocateTaskInMemory(t *testing.T) {
	st := schedtest.NewStore()
	locateTask(t, st.Open)
}

func TestLocateTaskOnEtcd(t *testing.T) {
	locateTask(t, etcdOpen(t))
}

func TestLocateTaskOnZooKeeper(t *testing.T) {
	locateTask(t, zkOpen(t))
}

// locateTask checks the rule that finds the process whose work directory
// has a task's log: the placement names the worker; a live registration of
// the placement's incarnation, else the newest of its name, gives the API
// address; no registration leaves it empty; a damaged placement node is
// passed over; no placement is not found.
func locateTask(t *testing.T, open func(context.Context) (coord.Coordinator, error)) {
	n := startNode(t, Config{Open: open, Executor: schedtest.NewCluster().Factory("a"), ExecutorName: "fake"})
	eventually(t, "the scheduler leads", n.leading)
	c := mustOpen(t, open)
	ctx := ctxT(t)
	create := func(path string, v any, opts ...coord.CreateOption) {
		t.Helper()
		b, ok := v.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Create(ctx, path, b, opts...); err != nil {
			t.Fatalf("create %s: %v", path, err)
		}
	}
	reg := func(name, inc, api string, started time.Time) {
		w := model.Worker{Name: name, Incarnation: inc, Host: "h-" + name, CPUs: 1, MemoryMB: 1, Started: started, API: api}
		create(store.WorkerPath(w.ID()), w, coord.Ephemeral())
	}
	place := func(worker, inc, id string) {
		create(store.PlacementPath(worker, id), model.Placement{Task: executor.Task{ID: id, Job: "j"}, Worker: worker, Incarnation: inc, State: executor.StateFinished})
	}
	t1, t2, t3 := model.TaskID("j", t0, 0, 0), model.TaskID("j", t0, 1, 0), model.TaskID("j", t0, 2, 0)
	create(store.PlacementPath("a-damaged", t1), []byte("{not json"))
	place("w1", "000000000000000a", t1)
	reg("w1", "000000000000000a", "10.0.0.1:8899", t0)
	reg("w1", "000000000000000b", "10.0.0.1:9999", t0.Add(time.Hour)) // newer, not the placement's
	place("w2", "00000000000000aa", t2)                               // its incarnation is gone
	reg("w2", "00000000000000bb", "10.0.0.2:1", t0)
	reg("w2", "00000000000000cc", "10.0.0.2:2", t0.Add(time.Minute))
	place("w3", "00000000000000dd", t3) // nobody of w3 lives

	for id, want := range map[string]model.TaskLocation{
		t1: {TaskID: t1, Worker: "w1", API: "10.0.0.1:8899", Host: "h-w1"},
		t2: {TaskID: t2, Worker: "w2", API: "10.0.0.2:2", Host: "h-w2"},
		t3: {TaskID: t3, Worker: "w3"},
	} {
		got, err := n.s.LocateTask(ctx, id)
		if err != nil || got != want {
			t.Errorf("LocateTask(%s) = %+v, %v; want %+v", id, got, err, want)
		}
	}
	if _, err := n.s.LocateTask(ctx, model.TaskID("j", t0, 3, 0)); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("a task no placement names: %v, want model.ErrNotFound", err)
	}
	if _, err := n.s.LocateTask(ctx, "../w1/"+t1); !errors.Is(err, model.ErrInvalid) {
		t.Errorf("a path for a task id: %v, want model.ErrInvalid", err)
	}
}
