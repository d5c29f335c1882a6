package store_test

import (
	"context"
	"errors"
	"testing"

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
