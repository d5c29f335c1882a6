package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// BenchmarkLoadEtcd times each read a new term makes, on the embedded etcd
// with loadJobs jobs and loadRunning running tasks (one per job): where a
// takeover's time goes (issue 11).
func BenchmarkLoadEtcd(b *testing.B) {
	const loadJobs, loadRunning = 100_000, 10_000
	ctx := context.Background()
	c, err := etcdtest.Opener(etcdServer.Config(b, "load", 10*time.Second))(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	populateScale(b, c, loadJobs, loadRunning)
	r := store.NewReader(c)
	b.ResetTimer()
	for range b.N {
		for _, read := range []struct {
			name string
			do   func() error
		}{
			{"jobs", func() error { _, _, err := r.JobConfigs(ctx); return err }},
			{"ready", func() error { _, err := r.Ready(ctx); return err }},
			{"running", func() error { _, err := r.Running(ctx); return err }},
		} {
			start := time.Now()
			if err := read.do(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), read.name+"-ms")
		}
	}
}

// scaleJobName names the i-th job of populateScale.
func scaleJobName(i int) string { return fmt.Sprintf("job-%06d", i) }

// populateScale writes the app "app", jobs jobs that fire once a year and
// their ready nodes, and a running record (RUNNING, launched) of the first
// running jobs, straight into the store in large batches.
func populateScale(b *testing.B, c coord.Coordinator, jobs, running int) {
	ctx := context.Background()
	mustJSON := func(v any) []byte {
		out, err := json.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	for _, p := range []string{store.AppPath("app"), store.JobConfigRoot, store.ReadyRoot, store.RunningRoot} {
		if _, err := c.Create(ctx, p, mustJSON(testApp("app"))); err != nil {
			b.Fatal(err)
		}
	}
	ready := mustJSON(store.Ready{FireTimes: []time.Time{}, RegisteredAt: t0})
	var ops []coord.Op
	flush := func() {
		if _, err := c.Apply(ctx, ops...); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range jobs {
		name := scaleJobName(i)
		ops = append(ops, coord.CreateOp(store.JobPath(name), mustJSON(testJob(name, "0 0 0 1 1 ?"))),
			coord.CreateOp(store.ReadyPath(name), ready))
		if i < running {
			rec := model.TaskRecord{ID: model.TaskID(name, t0, 0, 0), Job: name, FireTime: t0, State: executor.StateRunning, LaunchedAt: t0, UpdatedAt: t0}
			ops = append(ops, coord.CreateOp(store.RunningJobPath(name), nil), coord.CreateOp(store.RunningPath(name, rec.ID), mustJSON(rec)))
		}
		if len(ops) >= coord.MaxBatchOps-4 {
			flush()
		}
	}
	flush()
}
