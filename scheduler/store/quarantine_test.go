package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/parallel"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// TestListsSkipAndReportUndecodableConfigs: one node that is not JSON (or
// not a job's JSON) must not fail the whole list — a leader that could not
// list the jobs could not lead at all.
func TestListsSkipAndReportUndecodableConfigs(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	registerJob(t, w, "good")
	if err := w.CreateApp(ctx, model.App{AppName: "a"}); err != nil {
		t.Fatal(err)
	}
	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for path, value := range map[string]string{
		store.JobPath("misnamed"):  `{"jobName":"other"}`,
		store.JobPath("notjson"):   `{not json`,
		store.JobPath("wrongtype"): `{"shardingTotalCount":"many"}`,
		store.AppPath("broken"):    `[]`,
	} {
		if _, err := c.Create(ctx, path, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	r := store.NewReader(c)
	jobs, bad, err := r.JobConfigs(ctx)
	if err != nil {
		t.Fatalf("JobConfigs: %v", err)
	}
	if len(jobs) != 1 || jobs[0].JobName != "good" {
		t.Fatalf("jobs %+v, want only good", jobs)
	}
	if len(bad) != 3 || bad[0].Name != "misnamed" || bad[1].Name != "notjson" || bad[2].Name != "wrongtype" || bad[0].Kind != model.KindJob || bad[1].Error == "" {
		t.Fatalf("reported %+v, want misnamed, notjson and wrongtype", bad)
	}
	if jobs, err := r.Jobs(ctx); err != nil || len(jobs) != 1 {
		t.Fatalf("Jobs = %+v, %v; want good only", jobs, err)
	}
	apps, badApps, err := r.AppConfigs(ctx)
	if err != nil || len(apps) != 1 || len(badApps) != 1 || badApps[0].Name != "broken" || badApps[0].Kind != model.KindApp {
		t.Fatalf("AppConfigs = %+v, %+v, %v; want a and the report of broken", apps, badApps, err)
	}
	if _, _, err := r.Job(ctx, "notjson"); !errors.Is(err, store.ErrUndecodable) {
		t.Fatalf("Job(notjson) = %v, want ErrUndecodable", err)
	}
}

// TestLargeListsKeepOrderAndReportEachBadNode: a list long enough to be
// decoded on several goroutines returns the jobs in name order, each once,
// and reports each bad node by its own name — the split must not shift,
// drop or repeat anything.
func TestLargeListsKeepOrderAndReportEachBadNode(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Create(ctx, store.JobConfigRoot, nil); err != nil {
		t.Fatal(err)
	}
	const n = 3*parallel.MinPerWorker + 11
	wantBad := map[string]bool{}
	var ops []coord.Op
	for i := range n {
		name := fmt.Sprintf("job-%05d", i)
		value := fmt.Sprintf(`{"jobName":%q,"shardingTotalCount":%d}`, name, i%7+1)
		switch {
		case i%997 == 5:
			value = `{not json`
			wantBad[name] = true
		case i%1009 == 3:
			value = `{"jobName":"someone-else"}`
			wantBad[name] = true
		}
		ops = append(ops, coord.CreateOp(store.JobPath(name), []byte(value)))
		if len(ops) == coord.MaxBatchOps || i == n-1 {
			if _, err := c.Apply(ctx, ops...); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	jobs, bad, err := store.NewReader(c).JobConfigs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs)+len(bad) != n || len(bad) != len(wantBad) {
		t.Fatalf("%d jobs and %d bad, want %d and %d", len(jobs), len(bad), n-len(wantBad), len(wantBad))
	}
	for _, b := range bad {
		if !wantBad[b.Name] {
			t.Fatalf("reported %s (%s), which is good", b.Name, b.Error)
		}
	}
	for i, j := range jobs {
		var idx int
		if _, err := fmt.Sscanf(j.JobName, "job-%05d", &idx); err != nil || j.ShardingTotalCount != idx%7+1 {
			t.Fatalf("job %d is %+v: not the node it was read from", i, j)
		}
		if i > 0 && jobs[i-1].JobName >= j.JobName {
			t.Fatalf("jobs out of order at %d: %s then %s", i, jobs[i-1].JobName, j.JobName)
		}
	}
}
