package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	appJSON = `{"appName":"foo_app","appURL":"http://repo/foo.tar.gz","bootstrapScript":"bin/start.sh","cpuCount":1,"memoryMB":128}`
	jobJSON = `{"jobName":"foo_job","appName":"foo_app","cron":"0/5 * * * * ?","shardingTotalCount":2,"cpuCount":0.1,"memoryMB":64,"jobExecutionType":"TRANSIENT"}`
)

func newHandler(t *testing.T, svc Service, mod func(*Config)) *server {
	t.Helper()
	cfg := Config{Service: svc}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h.(*server)
}

type response struct {
	code   int
	header http.Header
	body   string
}

// errorBody decodes the response as an ErrorBody, failing the test if it is
// not one.
func (r response) errorBody(t *testing.T) ErrorBody {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("response %d %q is not a JSON error: %v", r.code, r.body, err)
	}
	return e
}

func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		// What every client of the API sends (the tests of a refusal
		// set another).
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func want(t *testing.T, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status = %d, want %d; body: %s", r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); r.body != "" && !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("decode %q as %T: %v", r.body, v, err)
	}
	return v
}

// seeded returns a leading fake with foo_app and foo_job registered.
func seeded(t *testing.T) (*apitest.Service, *server) {
	t.Helper()
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899", Coordinator: "embedded", Executor: "local"})
	h := newHandler(t, svc, nil)
	want(t, do(t, h, "POST", "/api/app", appJSON), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/register", jobJSON), http.StatusOK)
	return svc, h
}

func TestNewRefusesBadConfig(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	for name, cfg := range map[string]Config{
		"no service":         {},
		"user only":          {Service: svc, AuthUser: "root"},
		"password only":      {Service: svc, AuthPassword: "pw"},
		"negative body":      {Service: svc, MaxBodyBytes: -1},
		"negative timeout":   {Service: svc, RequestTimeout: -time.Second},
		"negative reconcile": {Service: svc, ReconcileInterval: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestAppEndpoints(t *testing.T) {
	svc, h := seeded(t)

	r := do(t, h, "GET", "/api/app/foo_app", "")
	want(t, r, http.StatusOK)
	if got := decode[model.App](t, r); got.AppName != "foo_app" || got.BootstrapScript != "bin/start.sh" || got.MemoryMB != 128 {
		t.Fatalf("GET app = %+v, want foo_app as registered", got)
	}
	r = do(t, h, "GET", "/api/app/list", "")
	want(t, r, http.StatusOK)
	if got := decode[[]model.App](t, r); len(got) != 1 || got[0].AppName != "foo_app" {
		t.Fatalf("app list = %+v, want [foo_app]", got)
	}

	want(t, do(t, h, "PUT", "/api/app", strings.Replace(appJSON, `"memoryMB":128`, `"memoryMB":256`, 1)), http.StatusOK)
	if got := decode[model.App](t, do(t, h, "GET", "/api/app/foo_app", "")); got.MemoryMB != 256 {
		t.Fatalf("after PUT memoryMB = %v, want 256", got.MemoryMB)
	}

	if r := do(t, h, "GET", "/api/app/foo_app/disable", ""); r.code != 200 || strings.TrimSpace(r.body) != "false" {
		t.Fatalf("GET disable = %d %q, want 200 false", r.code, r.body)
	}
	r = do(t, h, "POST", "/api/app/foo_app/disable", "")
	want(t, r, http.StatusOK)
	if res := decode[Result](t, r); !res.OK || !strings.Contains(res.Message, "foo_app") {
		t.Fatalf("disable result = %+v", res)
	}
	if r := do(t, h, "GET", "/api/app/foo_app/disable", ""); strings.TrimSpace(r.body) != "true" {
		t.Fatalf("after disable GET disable = %q, want true", r.body)
	}
	want(t, do(t, h, "POST", "/api/app/foo_app/enable", ""), http.StatusOK)
	if r := do(t, h, "GET", "/api/app/foo_app/disable", ""); strings.TrimSpace(r.body) != "false" {
		t.Fatalf("after enable GET disable = %q, want false", r.body)
	}

	want(t, do(t, h, "DELETE", "/api/app/foo_app", ""), http.StatusOK)
	want(t, do(t, h, "GET", "/api/app/foo_app", ""), http.StatusNotFound)
	want(t, do(t, h, "GET", "/api/job/jobs/foo_job", ""), http.StatusNotFound)
	if r := do(t, h, "GET", "/api/app/list", ""); strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("empty app list = %q, want []", r.body)
	}
	if calls := svc.Calls(); !slices.Contains(calls, "DeregisterApp") {
		t.Fatalf("calls = %v, want DeregisterApp among them", calls)
	}
}

func TestJobEndpoints(t *testing.T) {
	svc, h := seeded(t)

	r := do(t, h, "GET", "/api/job/jobs/foo_job", "")
	want(t, r, http.StatusOK)
	if got := decode[model.Job](t, r); got.Cron != "0/5 * * * * ?" || got.ShardingTotalCount != 2 {
		t.Fatalf("GET job = %+v", got)
	}
	if got := decode[[]model.Job](t, do(t, h, "GET", "/api/job/jobs", "")); len(got) != 1 || got[0].JobName != "foo_job" {
		t.Fatalf("job list = %+v", got)
	}
	want(t, do(t, h, "POST", "/api/job/register", jobJSON), http.StatusConflict)
	want(t, do(t, h, "PUT", "/api/job/update", strings.Replace(jobJSON, `"shardingTotalCount":2`, `"shardingTotalCount":3`, 1)), http.StatusOK)
	if got := decode[model.Job](t, do(t, h, "GET", "/api/job/jobs/foo_job", "")); got.ShardingTotalCount != 3 {
		t.Fatalf("after update shardingTotalCount = %d, want 3", got.ShardingTotalCount)
	}

	want(t, do(t, h, "POST", "/api/job/foo_job/disable", ""), http.StatusOK)
	if r := do(t, h, "GET", "/api/job/foo_job/disable", ""); strings.TrimSpace(r.body) != "true" {
		t.Fatalf("job disabled = %q, want true", r.body)
	}
	want(t, do(t, h, "POST", "/api/job/foo_job/enable", ""), http.StatusOK)
	if r := do(t, h, "GET", "/api/job/foo_job/disable", ""); strings.TrimSpace(r.body) != "false" {
		t.Fatalf("job disabled = %q, want false", r.body)
	}

	// Elastic-Job-Cloud's clients send the bare name; a JSON string works too.
	want(t, do(t, h, "POST", "/api/job/trigger", "foo_job", "Content-Type", "application/json"), http.StatusOK)
	want(t, do(t, h, "POST", "/api/job/trigger", `"foo_job"`+"\n"), http.StatusOK)
	if got := svc.Triggered(); !reflect.DeepEqual(got, []string{"foo_job", "foo_job"}) {
		t.Fatalf("triggered = %v, want foo_job twice", got)
	}
	want(t, do(t, h, "POST", "/api/job/trigger", "nope"), http.StatusNotFound)
	if e := do(t, h, "POST", "/api/job/trigger", "  ").errorBody(t); e.Field != "jobName" {
		t.Fatalf("empty trigger body: field = %q, want jobName", e.Field)
	}
	// A run with its own job parameter; a bad one writes nothing.
	want(t, do(t, h, "POST", "/api/job/trigger", `{"jobName":"foo_job","jobParameter":"day=2026-12-01"}`), http.StatusOK)
	for _, body := range []string{`{"jobName":"foo_job","jobParameter":7}`, `{"jobName":"foo_job","param":"x"}`,
		`{"jobName":"foo_job","jobParameter":"` + strings.Repeat("x", model.MaxTriggerParameterBytes+1) + `"}`} {
		want(t, do(t, h, "POST", "/api/job/trigger", body), http.StatusBadRequest)
	}
	if got := svc.Triggers(); len(got) != 3 || got[2].JobParameter == nil || *got[2].JobParameter != "day=2026-12-01" {
		t.Fatalf("triggers = %+v, want the third with its parameter and no more", got)
	}

	want(t, do(t, h, "DELETE", "/api/job/deregister", "foo_job"), http.StatusOK)
	want(t, do(t, h, "GET", "/api/job/jobs/foo_job", ""), http.StatusNotFound)
	want(t, do(t, h, "DELETE", "/api/job/deregister", "foo_job"), http.StatusNotFound)

	want(t, do(t, h, "POST", "/api/job/register", jobJSON), http.StatusOK)
	want(t, do(t, h, "DELETE", "/api/job/foo_job/deregister", ""), http.StatusOK)
	want(t, do(t, h, "GET", "/api/job/jobs/foo_job", ""), http.StatusNotFound)
}

func TestTriggeringADaemonJobIsAConflict(t *testing.T) {
	_, h := seeded(t)
	daemon := strings.NewReplacer(`"foo_job"`, `"d"`, "TRANSIENT", "DAEMON").Replace(jobJSON)
	want(t, do(t, h, "POST", "/api/job/register", daemon), http.StatusOK)
	r := do(t, h, "POST", "/api/job/trigger", "d")
	want(t, r, http.StatusConflict)
	if e := r.errorBody(t); !strings.Contains(e.Error, "DAEMON") {
		t.Fatalf("error = %q, want it to say why", e.Error)
	}
}

func TestTaskEndpoints(t *testing.T) {
	svc, h := seeded(t)
	for _, p := range []string{"running", "ready", "failover"} {
		if r := do(t, h, "GET", "/api/job/tasks/"+p, ""); r.code != 200 || strings.TrimSpace(r.body) != "[]" {
			t.Fatalf("empty %s = %d %q, want 200 []", p, r.code, r.body)
		}
	}
	fire := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	svc.SetTasks(
		[]model.TaskRecord{{ID: "t1", Job: "foo_job", Shard: 1, FireTime: fire, State: "RUNNING", Host: "h1"}},
		[]model.ReadyEntry{{Job: "foo_job", Times: 2, FireTimes: []time.Time{fire, fire.Add(5 * time.Second)}}},
		[]model.TaskRecord{{ID: "t2", Job: "foo_job", Shard: 0, State: "FAILED", Message: "exit 1"}},
	)
	if got := decode[[]model.TaskRecord](t, do(t, h, "GET", "/api/job/tasks/running", "")); len(got) != 1 || got[0].ID != "t1" || !got[0].FireTime.Equal(fire) {
		t.Fatalf("running = %+v", got)
	}
	if got := decode[[]model.ReadyEntry](t, do(t, h, "GET", "/api/job/tasks/ready", "")); len(got) != 1 || got[0].Times != 2 {
		t.Fatalf("ready = %+v", got)
	}
	if got := decode[[]model.TaskRecord](t, do(t, h, "GET", "/api/job/tasks/failover", "")); len(got) != 1 || got[0].Message != "exit 1" {
		t.Fatalf("failover = %+v", got)
	}
}

func TestLeaderAndHealth(t *testing.T) {
	svc, h := seeded(t)
	r := do(t, h, "GET", "/api/leader", "")
	want(t, r, http.StatusOK)
	if st := decode[model.Status](t, r); !st.Leader || st.Self != "127.0.0.1:8899" || st.Executor != "local" {
		t.Fatalf("status = %+v", st)
	}
	r = do(t, h, "GET", "/healthz", "")
	want(t, r, http.StatusOK)
	if hl := decode[Health](t, r); hl.Status != "ok" || !hl.Leader {
		t.Fatalf("health = %+v, want ok and leader", hl)
	}
	svc.SetLeader(false, "10.0.0.2:8899")
	if hl := decode[Health](t, do(t, h, "GET", "/healthz", "")); hl.Status != "ok" || hl.Leader || hl.LeaderAddress != "10.0.0.2:8899" {
		t.Fatalf("standby health = %+v", hl)
	}
	svc.Fail("Status", apitest.ErrInjected)
	r = do(t, h, "GET", "/healthz", "")
	want(t, r, http.StatusOK)
	if hl := decode[Health](t, r); hl.Status != "ok" || hl.Error == "" {
		t.Fatalf("health with a failing Status = %+v, want ok with the error", hl)
	}
	if r := do(t, h, "HEAD", "/healthz", ""); r.code != http.StatusOK {
		t.Fatalf("HEAD /healthz = %d", r.code)
	}
}

// /readyz means "a leader exists, writes are served": 503 until one is
// elected, so a script that waits for it can write at once.
func TestReadyzWaitsForALeader(t *testing.T) {
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899"})
	h := newHandler(t, svc, nil)
	svc.SetLeader(false, "")
	r := do(t, h, "GET", "/readyz", "")
	want(t, r, http.StatusServiceUnavailable)
	r.errorBody(t)
	svc.SetLeader(false, "10.0.0.2:8899")
	r = do(t, h, "GET", "/readyz", "")
	want(t, r, http.StatusOK)
	if hl := decode[Health](t, r); hl.Status != "ready" || hl.Leader || hl.LeaderAddress != "10.0.0.2:8899" {
		t.Fatalf("readyz on a standby = %+v", hl)
	}
	svc.SetLeader(true, "127.0.0.1:8899")
	if hl := decode[Health](t, do(t, h, "GET", "/readyz", "")); !hl.Leader {
		t.Fatalf("readyz on the leader = %+v", hl)
	}
	svc.Fail("Status", apitest.ErrInjected)
	want(t, do(t, h, "GET", "/readyz", ""), http.StatusServiceUnavailable)
}

func TestUnknownPathIs404AndWrongMethodIs405(t *testing.T) {
	_, h := seeded(t)
	for _, p := range []string{"/", "/api", "/api/nope", "/api/app/foo_app/nope", "/api/job/tasks/sideways", "/api/app//disable"} {
		r := do(t, h, "GET", p, "")
		want(t, r, http.StatusNotFound)
		r.errorBody(t)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/api/job/register", "POST"},
		{"POST", "/api/job/jobs", "GET, HEAD"},
		{"PATCH", "/api/app", "POST, PUT"},
		{"PUT", "/api/app/foo_app", "DELETE, GET, HEAD"},
		{"DELETE", "/api/job/trigger", "POST"},
		{"POST", "/api/leader", "GET, HEAD"},
	} {
		r := do(t, h, c.method, c.path, "")
		want(t, r, http.StatusMethodNotAllowed)
		r.errorBody(t)
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow = %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

// A job named "jobs" would make /api/job/jobs/disable ambiguous; the literal
// leftmost segment wins, as in Jersey: it is GET job "disable".
func TestOverlappingPathsPreferTheLeftmostLiteral(t *testing.T) {
	_, h := seeded(t)
	r := do(t, h, "GET", "/api/job/jobs/disable", "")
	want(t, r, http.StatusNotFound)
	if e := r.errorBody(t); !strings.Contains(e.Error, `"disable"`) {
		t.Fatalf("error = %q, want it to be about job \"disable\"", e.Error)
	}
}

func TestPathParametersAreUnescaped(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, nil)
	want(t, do(t, h, "POST", "/api/app", `{"appName":"a b"}`), http.StatusOK)
	want(t, do(t, h, "GET", "/api/app/a%20b", ""), http.StatusOK)
	want(t, do(t, h, "GET", "/api/app/a%20b/", ""), http.StatusOK)
}

func TestBadRequestsNameTheField(t *testing.T) {
	_, h := seeded(t)
	for _, c := range []struct {
		method, path, body, field string
	}{
		{"POST", "/api/app", `{"appName": 5}`, "appName"},
		{"POST", "/api/app", `{"appName": "x"`, "body"},
		{"POST", "/api/app", `not json`, "body"},
		{"POST", "/api/app", ``, "body"},
		{"POST", "/api/app", `{"appName": ""}`, "appName"},
		{"PUT", "/api/app", `{"cpuCount": "one"}`, "cpuCount"},
		{"POST", "/api/job/register", `{"jobName":"j","appName":"nope","cron":"0 * * * * ?"}`, "appName"},
		{"POST", "/api/job/register", `{"jobName":"j","appName":"foo_app","cron":"61 * * * * ?"}`, "cron"},
		{"POST", "/api/job/register", `{"jobName":"j","appName":"foo_app","cron":"0 * * * * ?","nope":1}`, "nope"},
		{"POST", "/api/job/register", `{"jobName":"j","shardingTotalCount":"2"}`, "shardingTotalCount"},
		{"POST", "/api/job/register", `{"jobName":7,"appName":"foo_app"}`, "jobName"},
		{"PUT", "/api/job/update", `[]`, ""},
		{"DELETE", "/api/job/deregister", ``, "jobName"},
		{"DELETE", "/api/job/deregister", `"unterminated`, "jobName"},
	} {
		r := do(t, h, c.method, c.path, c.body)
		if r.code != http.StatusBadRequest {
			t.Errorf("%s %s %q: status %d, want 400; body %s", c.method, c.path, c.body, r.code, r.body)
			continue
		}
		if e := r.errorBody(t); c.field != "" && e.Field != c.field {
			t.Errorf("%s %s %q: field = %q, want %q (error %q)", c.method, c.path, c.body, e.Field, c.field, e.Error)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, func(c *Config) { c.MaxBodyBytes = 64 })
	big := `{"appName":"` + strings.Repeat("x", 100) + `"}`

	r := do(t, h, "POST", "/api/app", big)
	want(t, r, http.StatusRequestEntityTooLarge)
	if e := r.errorBody(t); e.Field != "body" {
		t.Fatalf("field = %q, want body", e.Field)
	}

	// Without a Content-Length the limit holds while reading.
	req := httptest.NewRequest("POST", "/api/app", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: status %d, want 413; body %s", rec.Code, rec.Body)
	}
	if calls := svc.Calls(); len(calls) != 0 {
		t.Fatalf("the service was called (%v) for a request over the limit", calls)
	}
	want(t, do(t, h, "POST", "/api/app", `{"appName":"small"}`), http.StatusOK)
}

func TestServiceErrorsMapToStatusCodes(t *testing.T) {
	for _, c := range []struct {
		err   error
		code  int
		field string
	}{
		{fmt.Errorf("job x: %w", model.ErrNotFound), http.StatusNotFound, ""},
		{fmt.Errorf("job x: %w", model.ErrExists), http.StatusConflict, ""},
		{fmt.Errorf("app has jobs: %w", model.ErrConflict), http.StatusConflict, ""},
		{fmt.Errorf("wrapped: %w", &model.ValidationError{Field: "cron", Reason: "bad"}), http.StatusBadRequest, "cron"},
		{fmt.Errorf("odd: %w", model.ErrInvalid), http.StatusBadRequest, ""},
		{model.ErrNoLeader, http.StatusServiceUnavailable, ""},
		{fmt.Errorf("read: %w", model.ErrUnavailable), http.StatusServiceUnavailable, ""},
		{context.DeadlineExceeded, http.StatusGatewayTimeout, ""},
		{apitest.ErrInjected, http.StatusInternalServerError, ""},
	} {
		svc := apitest.NewService(model.Status{})
		h := newHandler(t, svc, nil)
		svc.Fail("JobsJSON", c.err)
		svc.Fail("RegisterApp", c.err)
		for _, r := range []response{do(t, h, "GET", "/api/job/jobs", ""), do(t, h, "POST", "/api/app", appJSON)} {
			if r.code != c.code {
				t.Errorf("%v: status %d, want %d", c.err, r.code, c.code)
				continue
			}
			e := r.errorBody(t)
			if e.Field != c.field {
				t.Errorf("%v: field %q, want %q", c.err, e.Field, c.field)
			}
			if c.code == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
				t.Errorf("%v: 503 without Retry-After", c.err)
			}
		}
	}
}

func TestPanicIsRecoveredAs500(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, nil)
	svc.PanicOn("JobsJSON")
	r := do(t, h, "GET", "/api/job/jobs", "")
	want(t, r, http.StatusInternalServerError)
	r.errorBody(t)
	svc.PanicOn("")
	want(t, do(t, h, "GET", "/api/job/jobs", ""), http.StatusOK)
}

func TestAuthGuardsWritesOnly(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, func(c *Config) { c.AuthUser, c.AuthPassword = "root", "s3cret" })
	basic := func(user, pw string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, pw)
		return req.Header.Get("Authorization")
	}
	for _, c := range []struct {
		name, auth string
		code       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"wrong password", basic("root", "nope"), http.StatusUnauthorized},
		{"wrong user", basic("guest", "s3cret"), http.StatusUnauthorized},
		{"not basic", "Bearer s3cret", http.StatusUnauthorized},
		{"right", basic("root", "s3cret"), http.StatusOK},
	} {
		hdr := []string{}
		if c.auth != "" {
			hdr = []string{"Authorization", c.auth}
		}
		r := do(t, h, "POST", "/api/app", appJSON, hdr...)
		if r.code != c.code {
			t.Errorf("%s: status %d, want %d", c.name, r.code, c.code)
		}
		if c.code == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: 401 without a Basic challenge", c.name)
		}
	}
	for _, p := range []string{"/api/app/list", "/api/app/foo_app", "/api/job/jobs", "/api/job/tasks/running", "/api/leader", "/healthz"} {
		want(t, do(t, h, "GET", p, ""), http.StatusOK)
	}
	for _, w := range [][2]string{
		{"DELETE", "/api/app/foo_app"}, {"POST", "/api/app/foo_app/disable"}, {"DELETE", "/api/job/deregister"},
		{"POST", "/api/job/trigger"}, {"POST", "/api/operate/reconcile/implicit"}, {"PUT", "/api/job/update"},
	} {
		want(t, do(t, h, w[0], w[1], "x"), http.StatusUnauthorized)
	}
	// One register, six reads, and a Status for each of the three reads a
	// standby would forward.
	if n := len(svc.Calls()); n != 1+6+3 {
		t.Fatalf("service calls = %v, want the refused writes not to reach it", svc.Calls())
	}
}

func TestReconcileIsRateLimited(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, nil)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }

	want(t, do(t, h, "POST", "/api/operate/reconcile/explicit", ""), http.StatusOK)
	now = now.Add(4 * time.Second)
	r := do(t, h, "POST", "/api/operate/reconcile/implicit", "")
	want(t, r, http.StatusTooManyRequests)
	if ra := r.header.Get("Retry-After"); ra != "6" {
		t.Fatalf("Retry-After = %q, want 6", ra)
	}
	if e := r.errorBody(t); !strings.Contains(e.Error, "retry") {
		t.Fatalf("429 message %q does not say what to do", e.Error)
	}
	now = now.Add(6 * time.Second)
	want(t, do(t, h, "POST", "/api/operate/reconcile/implicit", ""), http.StatusOK)
	if got := svc.Reconciles(); !reflect.DeepEqual(got, []bool{true, false}) {
		t.Fatalf("reconciles = %v, want [explicit implicit]", got)
	}

	// A failed request does not use up the slot.
	now = now.Add(time.Minute)
	svc.Fail("Reconcile", apitest.ErrInjected)
	want(t, do(t, h, "POST", "/api/operate/reconcile/explicit", ""), http.StatusInternalServerError)
	svc.Fail("Reconcile", nil)
	want(t, do(t, h, "POST", "/api/operate/reconcile/explicit", ""), http.StatusOK)
}

// cluster is a leader and a standby, each a real HTTP server, the standby
// following the leader.
type cluster struct {
	leaderSvc, standbySvc *apitest.Service
	leader, standby       *httptest.Server
	leaderHits            atomic.Int32
	lastForwarded         atomic.Value // http.Header of the last request the leader got
}

func newCluster(t *testing.T, mod func(*Config)) *cluster {
	t.Helper()
	c := &cluster{}
	c.leaderSvc = apitest.NewService(model.Status{})
	lh := newHandler(t, c.leaderSvc, mod)
	c.leader = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.leaderHits.Add(1)
		c.lastForwarded.Store(r.Header.Clone())
		lh.ServeHTTP(w, r)
	}))
	t.Cleanup(c.leader.Close)
	leaderAddr := strings.TrimPrefix(c.leader.URL, "http://")
	c.leaderSvc.SetLeader(true, "")

	c.standbySvc = apitest.NewService(model.Status{})
	sh := newHandler(t, c.standbySvc, mod)
	c.standby = httptest.NewServer(sh)
	t.Cleanup(c.standby.Close)
	c.standbySvc.SetLeader(false, leaderAddr)
	return c
}

func send(t *testing.T, method, url, body string, hdr ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestStandbyForwardsWritesToTheLeader(t *testing.T) {
	c := newCluster(t, func(cfg *Config) { cfg.AuthUser, cfg.AuthPassword = "root", "pw" })
	auth := "Basic cm9vdDpwdw==" // root:pw

	r := send(t, "POST", c.standby.URL+"/api/app", appJSON, "Authorization", auth, "Content-Type", "application/json")
	want(t, r, http.StatusOK)
	if got := r.header.Get(HeaderLeader); got != strings.TrimPrefix(c.leader.URL, "http://") {
		t.Fatalf("%s = %q, want the leader's address", HeaderLeader, got)
	}
	if _, err := c.leaderSvc.App(context.Background(), "foo_app"); err != nil {
		t.Fatalf("the leader does not have the app registered through the standby: %v", err)
	}
	if _, err := c.standbySvc.App(context.Background(), "foo_app"); err == nil {
		t.Fatal("the standby stored the app itself")
	}
	hdr := c.lastForwarded.Load().(http.Header)
	if hdr.Get(HeaderForwarded) == "" || hdr.Get("Authorization") != auth || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("forwarded headers = %v, want %s, the credentials and the content type", hdr, HeaderForwarded)
	}

	// The leader's refusals come back as they are.
	r = send(t, "POST", c.standby.URL+"/api/app", appJSON, "Authorization", auth)
	want(t, r, http.StatusConflict)
	r.errorBody(t)

	// A body-named job and a path with a parameter keep their shape.
	want(t, send(t, "POST", c.standby.URL+"/api/job/register", jobJSON, "Authorization", auth), http.StatusOK)
	want(t, send(t, "POST", c.standby.URL+"/api/job/trigger", "foo_job", "Authorization", auth), http.StatusOK)
	want(t, send(t, "POST", c.standby.URL+"/api/job/foo_job/disable", "", "Authorization", auth), http.StatusOK)
	if d, _ := c.leaderSvc.JobDisabled(context.Background(), "foo_job"); !d {
		t.Fatal("disable through the standby did not reach the leader")
	}
	if got := c.leaderSvc.Triggered(); !reflect.DeepEqual(got, []string{"foo_job"}) {
		t.Fatalf("leader triggered %v, want [foo_job]", got)
	}

	// The standby checks credentials itself before forwarding anything.
	hits := c.leaderHits.Load()
	want(t, send(t, "POST", c.standby.URL+"/api/app/foo_app/disable", ""), http.StatusUnauthorized)
	if c.leaderHits.Load() != hits {
		t.Fatal("an unauthenticated write was forwarded")
	}
}

func TestStandbyAnswersOtherReadsItself(t *testing.T) {
	c := newCluster(t, nil)
	for _, p := range []string{"/api/job/tasks/ready", "/api/job/tasks/running", "/api/quarantine", "/api/leader", "/healthz"} {
		want(t, send(t, "GET", c.standby.URL+p, ""), http.StatusOK)
	}
	if n := c.leaderHits.Load(); n != 0 {
		t.Fatalf("the leader got %d requests for reads made on the standby", n)
	}
	st := decode[model.Status](t, send(t, "GET", c.standby.URL+"/api/leader", ""))
	if st.Leader || st.LeaderAddress != strings.TrimPrefix(c.leader.URL, "http://") {
		t.Fatalf("standby status = %+v", st)
	}
}

func TestForwardedRequestIsNeverForwardedAgain(t *testing.T) {
	c := newCluster(t, nil)
	r := send(t, "POST", c.standby.URL+"/api/app", appJSON, HeaderForwarded, "1")
	want(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if n := c.leaderHits.Load(); n != 0 {
		t.Fatalf("a forwarded request was forwarded again (%d leader hits)", n)
	}
}

// Two standbys that each believe the other leads: a write bounces once and
// comes back as 503, not round and round.
func TestForwardingCannotLoop(t *testing.T) {
	var hitsA, hitsB atomic.Int32
	svcA := apitest.NewService(model.Status{})
	svcB := apitest.NewService(model.Status{})
	hA, hB := newHandler(t, svcA, nil), newHandler(t, svcB, nil)
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsA.Add(1); hA.ServeHTTP(w, r) }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsB.Add(1); hB.ServeHTTP(w, r) }))
	defer b.Close()
	svcA.SetLeader(false, strings.TrimPrefix(b.URL, "http://"))
	svcB.SetLeader(false, strings.TrimPrefix(a.URL, "http://"))

	r := send(t, "POST", a.URL+"/api/app", appJSON)
	want(t, r, http.StatusServiceUnavailable)
	if hitsA.Load() != 1 || hitsB.Load() != 1 {
		t.Fatalf("hits A=%d B=%d, want one each", hitsA.Load(), hitsB.Load())
	}
	if e := r.errorBody(t); !strings.Contains(e.Error, "forwarded") {
		t.Fatalf("error = %q, want it to say the request was forwarded already", e.Error)
	}
}

func TestWriteWithoutALeaderIs503(t *testing.T) {
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, nil)
	svc.SetLeader(false, "")
	r := do(t, h, "POST", "/api/app", appJSON)
	want(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

func TestUnreachableLeaderIs503(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	svc := apitest.NewService(model.Status{})
	h := newHandler(t, svc, func(c *Config) { c.HTTPClient = &http.Client{Timeout: 2 * time.Second} })
	svc.SetLeader(false, addr)
	r := do(t, h, "POST", "/api/job/trigger", "foo_job")
	want(t, r, http.StatusServiceUnavailable)
	if e := r.errorBody(t); !strings.Contains(e.Error, addr) {
		t.Fatalf("error = %q, want it to name the leader %s", e.Error, addr)
	}
}

// The standby's reconcile attempt must not count against the limit: only the
// leader reconciles.
func TestReconcileThroughAStandbyIsLimitedOnTheLeader(t *testing.T) {
	c := newCluster(t, nil)
	want(t, send(t, "POST", c.standby.URL+"/api/operate/reconcile/implicit", ""), http.StatusOK)
	want(t, send(t, "POST", c.standby.URL+"/api/operate/reconcile/explicit", ""), http.StatusTooManyRequests)
	if got := c.leaderSvc.Reconciles(); !reflect.DeepEqual(got, []bool{false}) {
		t.Fatalf("leader reconciles = %v, want [implicit]", got)
	}
}

func TestLeaderURL(t *testing.T) {
	for in, out := range map[string]string{
		"10.0.0.1:8899":           "http://10.0.0.1:8899",
		"http://10.0.0.1:8899/":   "http://10.0.0.1:8899",
		"https://sched.example:1": "https://sched.example:1",
	} {
		if got := leaderURL(in, strings.HasPrefix(out, "https")); got != out {
			t.Errorf("leaderURL(%q, https) = %q, want %q", in, got, out)
		}
		if got := leaderURL(in, false); got != out {
			t.Errorf("leaderURL(%q) = %q, want %q", in, got, out)
		}
	}
}

var _ Service = (*apitest.Service)(nil)
