package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// counting counts the read requests made through a Coordinator.
type counting struct {
	coord.Coordinator
	reads atomic.Int64
}

func (c *counting) Get(ctx context.Context, path string) (coord.Node, error) {
	c.reads.Add(1)
	return c.Coordinator.Get(ctx, path)
}

func (c *counting) Children(ctx context.Context, path string) ([]string, error) {
	c.reads.Add(1)
	return c.Coordinator.Children(ctx, path)
}

func (c *counting) List(ctx context.Context, path string) ([]coord.Node, error) {
	c.reads.Add(1)
	return c.Coordinator.List(ctx, path)
}

// Reading the whole state takes a number of requests that does not grow
// with the number of jobs or records in a job: what keeps a term's load and
// the API's lists fast at 100,000 jobs (issue 11). Only the task records
// take one request per job that has any.
func TestReadsDoNotGrowWithTheNodes(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	const jobs, running = 200, 3
	for i := range jobs {
		name := fmt.Sprintf("job-%03d", i)
		registerJob(t, w, name)
		if i%10 == 0 {
			var recs []*model.TaskRecord
			for s := range running {
				recs = append(recs, rec(name, t0, s, 0))
			}
			if _, err := w.CreateRunning(ctx, name, recs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc := &counting{Coordinator: c}
	r := store.NewReader(cc)
	for _, read := range []struct {
		name string
		max  int64
		do   func() (int, error)
	}{
		{"JobConfigs", 1, func() (int, error) { j, _, err := r.JobConfigs(ctx); return len(j), err }},
		{"Ready", 1, func() (int, error) { m, err := r.Ready(ctx); return len(m), err }},
		{"Running", 1 + jobs/10, func() (int, error) { m, err := r.Running(ctx); return len(store.Flatten(m)), err }},
	} {
		cc.reads.Store(0)
		n, err := read.do()
		if err != nil {
			t.Fatalf("%s: %v", read.name, err)
		}
		want := jobs
		if read.name == "Running" {
			want = jobs / 10 * running
		}
		if n != want {
			t.Errorf("%s read %d, want %d", read.name, n, want)
		}
		if got := cc.reads.Load(); got > read.max {
			t.Errorf("%s took %d read requests, want at most %d", read.name, got, read.max)
		}
	}
}
