package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
)

// A JobMemo decodes and checks each configuration once per version: a
// second read of an unchanged store decodes nothing, an updated job is
// decoded again (and its new value is what is returned), a deregistered
// one leaves the memo, and one that fails to decode is quarantined as
// JobConfigs quarantines it, not remembered.
func TestJobMemoDecodesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	st := schedtest.NewStore()
	w, _ := term(t, st)
	for i := range 50 {
		registerJob(t, w, fmt.Sprintf("job-%02d", i))
	}
	memo := store.NewJobMemo()
	read := func(what string, wantJobs, wantDecoded int) []store.CheckedJob {
		t.Helper()
		got, bad, err := w.CheckedJobs(ctx, memo)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != wantJobs || memo.Decoded() != wantDecoded || memo.Len() != wantJobs {
			t.Fatalf("%s: %d jobs (memo %d), %d decoded; want %d jobs, %d decoded (quarantined: %v)", what, len(got), memo.Len(), memo.Decoded(), wantJobs, wantDecoded, bad)
		}
		// Whatever came from the memo equals the store's own answer.
		jobs, _, err := w.JobConfigs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range got {
			if fmt.Sprint(c.Job) != fmt.Sprint(jobs[i]) || c.Err != nil || c.Spec.Schedule == nil {
				t.Fatalf("%s: job %d is %+v (check: %v), the store has %+v", what, i, c.Job, c.Err, jobs[i])
			}
		}
		return got
	}
	read("first read", 50, 50)
	read("unchanged", 50, 0)

	upd := model.Job{JobName: "job-07", AppName: "a", Cron: "0 30 0 * * ?"}
	if err := w.SetJob(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got := read("one updated", 50, 1)
	if got[7].Job.Cron != upd.Cron {
		t.Fatalf("job-07's cron is %q after its update to %q", got[7].Job.Cron, upd.Cron)
	}
	if err := w.DeleteJob(ctx, "job-08"); err != nil {
		t.Fatal(err)
	}
	read("one deregistered", 49, 0)

	c, err := st.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Set(ctx, store.JobPath("job-09"), []byte("{not json"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, bad, err := w.CheckedJobs(ctx, memo); err != nil || len(bad) != 1 || bad[0].Name != "job-09" || memo.Len() != 48 {
		t.Fatalf("an undecodable job: quarantined %v, memo %d, err %v; want job-09 quarantined, 48 kept", bad, memo.Len(), err)
	}
}
