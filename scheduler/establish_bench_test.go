package scheduler

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/internal/etcdtest"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// BenchmarkEstablishEtcd times a new term from its election to serving,
// on the embedded etcd with HASCHED_BENCH_ESTABLISH_JOBS jobs (default
// 100,000) and a tenth of them running on a fake executor that reports
// them RUNNING when reconciled: the scheduler's share of a takeover,
// without processes or containers (issue 11). Run it with -cpuprofile to
// see where the time goes.
func BenchmarkEstablishEtcd(b *testing.B) {
	jobs := 100_000
	if v, err := strconv.Atoi(os.Getenv("HASCHED_BENCH_ESTABLISH_JOBS")); err == nil && v > 0 {
		jobs = v
	}
	running := jobs / 10
	ctx := context.Background()
	open := etcdtest.Opener(etcdServer.Config(b, "establish", 10*time.Second))
	c, err := open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	populateScale(b, c, jobs, running)

	cluster := schedtest.NewCluster()
	seed, err := cluster.Factory("seed")(ctx, executor.Term{})
	if err != nil {
		b.Fatal(err)
	}
	var tasks []executor.Task
	for i := range running {
		tasks = append(tasks, executor.Task{ID: model.TaskID(scaleJobName(i), t0, 0, 0), App: "app"})
	}
	if err := seed.Launch(ctx, tasks); err != nil {
		b.Fatal(err)
	}
	_ = seed.Close()

	b.ResetTimer()
	for range b.N {
		s, err := New(Config{
			Open: open, Executor: cluster.Factory("bench"), ExecutorName: "fake",
			Advertise: "127.0.0.1:8899", Logger: hclog.NewNullLogger(),
			Clock: func() time.Time { return t0.Add(time.Minute) },
		})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- s.Run(runCtx) }()
		for {
			if st, _ := s.Status(ctx); st.Leader {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "establish-ms")
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
