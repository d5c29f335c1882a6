package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// fakeHistory answers with runs of its own and records what it was asked.
type fakeHistory struct {
	mu    sync.Mutex
	asked []string
	runs  map[string][]model.Execution
	err   error
}

func (f *fakeHistory) Executions(_ context.Context, job string, limit int) ([]model.Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, job+"/"+strconv.Itoa(limit))
	runs := f.runs[job]
	return runs[:min(limit, len(runs))], f.err
}

func TestExecutionsRoute(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	h := &fakeHistory{runs: map[string][]model.Execution{"foo_job": {
		{TaskID: "foo_job@-@2@-@0@-@0", Job: "foo_job", CompleteTime: t0.Add(2 * time.Minute), State: "FINISHED", Success: true},
		{TaskID: "foo_job@-@1@-@0@-@0", Job: "foo_job", CompleteTime: t0.Add(time.Minute), State: "FAILED"},
	}}}
	s := newHandler(t, apitest.NewService(model.Status{}), func(c *Config) { c.History = h })

	r := do(t, s, http.MethodGet, "/api/job/foo_job/executions", "")
	want(t, r, http.StatusOK)
	got := decode[[]model.Execution](t, r)
	if len(got) != 2 || got[0].TaskID != "foo_job@-@2@-@0@-@0" || !got[0].Success {
		t.Fatalf("executions = %+v, want both runs as History gave them", got)
	}
	if !strings.Contains(r.body, `"jobName":"foo_job"`) || !strings.Contains(r.body, `"completeTime":`) {
		t.Fatalf("body %s lacks Elastic-Job-Cloud's field names", r.body)
	}
	want(t, do(t, s, http.MethodGet, "/api/job/foo_job/executions?limit=1", ""), http.StatusOK)
	want(t, do(t, s, http.MethodGet, "/api/job/foo_job/executions?limit=1000", ""), http.StatusOK)

	// A job nobody ran, registered or not: an empty list, not a 404.
	r = do(t, s, http.MethodGet, "/api/job/never_ran/executions", "")
	want(t, r, http.StatusOK)
	if strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("executions of a job without history = %s, want []", r.body)
	}

	h.mu.Lock()
	asked := strings.Join(h.asked, " ")
	h.mu.Unlock()
	if asked != "foo_job/20 foo_job/1 foo_job/1000 never_ran/20" {
		t.Fatalf("History was asked %q, want the default limit 20 when none is given", asked)
	}

	for _, tc := range []struct{ path, field string }{
		{"/api/job/foo_job/executions?limit=0", "limit"},
		{"/api/job/foo_job/executions?limit=-1", "limit"},
		{"/api/job/foo_job/executions?limit=1001", "limit"},
		{"/api/job/foo_job/executions?limit=99999999999999999999", "limit"},
		{"/api/job/foo_job/executions?limit=ten", "limit"},
		{"/api/job/foo_job/executions?limit=", "limit"},
		{"/api/job/foo_job/executions?limit=1&limit=2", "limit"},
		{"/api/job/a@-@b/executions", "job"},
		{"/api/job/" + strings.Repeat("x", model.MaxNameLength+1) + "/executions", "job"},
		{"/api/job/a%01b/executions", "job"},
	} {
		r := do(t, s, http.MethodGet, tc.path, "")
		want(t, r, http.StatusBadRequest)
		if e := r.errorBody(t); e.Field != tc.field {
			t.Errorf("GET %s: field %q, want %q (%s)", tc.path, e.Field, tc.field, e.Error)
		}
	}
	h.mu.Lock()
	n := len(h.asked)
	h.mu.Unlock()
	if n != 4 {
		t.Fatalf("History asked %d times, want bad requests refused before it is asked", n)
	}

	h.err = model.ErrUnavailable
	want(t, do(t, s, http.MethodGet, "/api/job/foo_job/executions", ""), http.StatusServiceUnavailable)
}

func TestExecutionsWithoutHistoryIs501(t *testing.T) {
	s := newHandler(t, apitest.NewService(model.Status{}), nil)
	r := do(t, s, http.MethodGet, "/api/job/foo_job/executions", "")
	want(t, r, http.StatusNotImplemented)
	if e := r.errorBody(t); !strings.Contains(e.Error, "run history is not configured") {
		t.Fatalf("error %q does not say history is off", e.Error)
	}
	// Bad input is still a 400 first.
	want(t, do(t, s, http.MethodGet, "/api/job/foo_job/executions?limit=0", ""), http.StatusBadRequest)
}
