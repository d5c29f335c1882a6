package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

func TestJobScheduleGivesTheCronsNextFireTimesInTheJobsZone(t *testing.T) {
	_, h := seeded(t) // foo_job: "0/5 * * * * ?", UTC
	h.now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) }

	r := do(t, h, "GET", "/api/job/foo_job/schedule?count=3", "")
	want(t, r, http.StatusOK)
	got := decode[JobSchedule](t, r)
	wantTimes := []time.Time{
		time.Date(2026, 3, 4, 5, 6, 10, 0, time.UTC),
		time.Date(2026, 3, 4, 5, 6, 15, 0, time.UTC),
		time.Date(2026, 3, 4, 5, 6, 20, 0, time.UTC),
	}
	if got.JobName != "foo_job" || got.Cron != "0/5 * * * * ?" || got.TimeZone == "" || got.Disabled || len(got.NextFireTimes) != 3 {
		t.Fatalf("schedule = %+v", got)
	}
	for i, w := range wantTimes {
		if !got.NextFireTimes[i].Equal(w) {
			t.Fatalf("fire %d = %v, want %v", i, got.NextFireTimes[i], w)
		}
	}

	// One by default; the disable flag shows.
	want(t, do(t, h, "POST", "/api/job/foo_job/disable", ""), http.StatusOK)
	got = decode[JobSchedule](t, do(t, h, "GET", "/api/job/foo_job/schedule", ""))
	if len(got.NextFireTimes) != 1 || !got.Disabled {
		t.Fatalf("schedule of the disabled job = %+v, want one fire time and disabled", got)
	}
}

func TestJobScheduleRefusesABadCountAndAnUnknownJob(t *testing.T) {
	_, h := seeded(t)
	for _, q := range []string{"0", "-1", "21", "x", "1e3"} {
		r := do(t, h, "GET", "/api/job/foo_job/schedule?count="+q, "")
		want(t, r, http.StatusBadRequest)
		if e := r.errorBody(t); e.Field != "count" {
			t.Fatalf("count=%s: error %+v does not name the field", q, e)
		}
	}
	want(t, do(t, h, "GET", "/api/job/nope/schedule", ""), http.StatusNotFound)
}

// The console's fetches say they come from a script: their 401 carries no
// Basic challenge, which would make the browser pop up its own dialog.
func TestScriptsGetA401WithoutABasicChallenge(t *testing.T) {
	h := newHandler(t, apitest.NewService(model.Status{}), func(c *Config) { c.AuthUser, c.AuthPassword = "root", "s3cret" })
	r := do(t, h, "POST", "/api/job/trigger", "foo_job", HeaderRequestedWith, "XMLHttpRequest")
	want(t, r, http.StatusUnauthorized)
	if got := r.header.Get("WWW-Authenticate"); got != "" {
		t.Fatalf("WWW-Authenticate = %q, want none for a script", got)
	}
	if got := do(t, h, "POST", "/api/job/trigger", "foo_job").header.Get("WWW-Authenticate"); got == "" {
		t.Fatal("a plain client's 401 lost its Basic challenge")
	}
}
