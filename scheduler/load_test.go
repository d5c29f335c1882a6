package scheduler

import (
	"testing"

	"github.com/hasched/hasched/scheduler/model"
)

// Jobs loaded with the same cron and time zone share one parsed schedule;
// another zone or cron gets its own.
func TestLoadedJobsShareTheirParsedSchedules(t *testing.T) {
	var specs []model.JobSpec
	for _, j := range []model.Job{
		testJob("a", "0 * * * * ?"),
		testJob("b", "0 * * * * ?"),
		{JobName: "c", AppName: "app", Cron: "0 * * * * ?", TimeZone: "Europe/Berlin"},
		testJob("d", "30 * * * * ?"),
	} {
		spec, err := j.Check()
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	if specs[0].Schedule == specs[1].Schedule {
		t.Fatal("two Checks returned one schedule: the test shows nothing")
	}
	shareSchedules(specs)
	if specs[0].Schedule != specs[1].Schedule {
		t.Error("a and b (same cron, same zone) keep schedules of their own")
	}
	if specs[2].Schedule == specs[0].Schedule || specs[3].Schedule == specs[0].Schedule {
		t.Error("a schedule of another zone or cron was shared")
	}
	if specs[2].Schedule.Location().String() != "Europe/Berlin" {
		t.Errorf("c's schedule is in %v", specs[2].Schedule.Location())
	}
}
