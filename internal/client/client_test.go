package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T, mod func(*api.Config)) (*apitest.Service, *httptest.Server) {
	t.Helper()
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899", Executor: "local"})
	cfg := api.Config{Service: svc}
	if mod != nil {
		mod(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return svc, srv
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	// Close idle keep-alive connections so goleak sees none.
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// outcome holds a call's results, so that one line can call and check it:
// res(c.Apps(x)).must(t).
type outcome[T any] struct {
	v   T
	err error
}

func res[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

func (o outcome[T]) must(t *testing.T) T {
	t.Helper()
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.v
}

func TestNewValidatesTheConfig(t *testing.T) {
	for _, cfg := range []Config{
		{BaseURL: "ftp://host:1"},
		{BaseURL: "http://"},
		{BaseURL: "http://u:p@host:1"},
		{BaseURL: "http://host:1", Password: "pw"},
		{BaseURL: "http://[::1"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	for in, want := range map[string]string{
		"":                  DefaultBaseURL,
		"10.0.0.1:8899":     "http://10.0.0.1:8899",
		"https://h:1/base/": "https://h:1/base",
	} {
		c := newClient(t, Config{BaseURL: in})
		if got := c.BaseURL(); got != want {
			t.Errorf("BaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEveryCallRoundTrips(t *testing.T) {
	svc, srv := newServer(t, nil)
	c := newClient(t, Config{BaseURL: srv.URL})
	x := ctx(t)

	app := model.App{AppName: "a b", BootstrapScript: "run.sh", CPUCount: 1, MemoryMB: 64}
	if res := res(c.RegisterApp(x, app)).must(t); !res.OK || !strings.Contains(res.Message, "a b") {
		t.Fatalf("RegisterApp result = %+v", res)
	}
	res(c.RegisterAppJSON(x, []byte(`{"appName":"raw"}`))).must(t)
	app.MemoryMB = 128
	res(c.UpdateApp(x, app)).must(t)
	res(c.UpdateAppJSON(x, []byte(`{"appName":"raw","cpuCount":2}`))).must(t)
	if got := res(c.App(x, "a b")).must(t); got.MemoryMB != 128 {
		t.Fatalf("App = %+v", got)
	}
	if got := res(c.Apps(x)).must(t); len(got) != 2 {
		t.Fatalf("Apps = %+v", got)
	}
	res(c.DisableApp(x, "a b")).must(t)
	if d := res(c.AppDisabled(x, "a b")).must(t); !d {
		t.Fatal("AppDisabled = false after DisableApp")
	}
	res(c.EnableApp(x, "a b")).must(t)
	if d := res(c.AppDisabled(x, "a b")).must(t); d {
		t.Fatal("AppDisabled = true after EnableApp")
	}

	job := model.Job{JobName: "j 1?", AppName: "a b", Cron: "0 * * * * ?", ShardingTotalCount: 1, CPUCount: 0.5, MemoryMB: 32, JobExecutionType: model.Transient}
	res(c.RegisterJob(x, job)).must(t)
	res(c.RegisterJobJSON(x, []byte(`{"jobName":"j2","appName":"raw","cron":"0 * * * * ?"}`))).must(t)
	job.ShardingTotalCount = 3
	res(c.UpdateJob(x, job)).must(t)
	res(c.UpdateJobJSON(x, []byte(`{"jobName":"j2","appName":"raw","cron":"0 0 * * * ?"}`))).must(t)
	if got := res(c.Job(x, "j 1?")).must(t); got.ShardingTotalCount != 3 {
		t.Fatalf("Job = %+v", got)
	}
	if got := res(c.Jobs(x)).must(t); len(got) != 2 {
		t.Fatalf("Jobs = %+v", got)
	}
	res(c.DisableJob(x, "j 1?")).must(t)
	if d := res(c.JobDisabled(x, "j 1?")).must(t); !d {
		t.Fatal("JobDisabled = false after DisableJob")
	}
	res(c.EnableJob(x, "j 1?")).must(t)
	res(c.TriggerJob(x, "j 1?")).must(t)
	param := "day=2026-12-01"
	res(c.TriggerJobWith(x, model.Trigger{JobName: "j 1?", JobParameter: &param})).must(t)
	if got := svc.Triggers(); len(got) != 2 || got[0].JobName != "j 1?" || got[0].JobParameter != nil ||
		got[1].JobName != "j 1?" || got[1].JobParameter == nil || *got[1].JobParameter != param {
		t.Fatalf("triggered = %+v", got)
	}
	res(c.DeregisterJob(x, "j 1?")).must(t)
	if _, err := c.Job(x, "j 1?"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("Job after DeregisterJob: %v, want ErrNotFound", err)
	}
	res(c.DeregisterApp(x, "raw")).must(t)

	svc.SetTasks([]model.TaskRecord{{ID: "t"}}, []model.ReadyEntry{{Job: "j", Times: 1}}, nil)
	if got := res(c.RunningTasks(x)).must(t); len(got) != 1 {
		t.Fatalf("RunningTasks = %+v", got)
	}
	if got := res(c.ReadyTasks(x)).must(t); len(got) != 1 {
		t.Fatalf("ReadyTasks = %+v", got)
	}
	if got := res(c.FailoverTasks(x)).must(t); got == nil || len(got) != 0 {
		t.Fatalf("FailoverTasks = %#v, want empty", got)
	}
	res(c.Reconcile(x, true)).must(t)
	if st := res(c.Status(x)).must(t); !st.Leader || st.Executor != "local" {
		t.Fatalf("Status = %+v", st)
	}
	if h := res(c.Health(x)).must(t); h.Status != "ok" || !h.Leader {
		t.Fatalf("Health = %+v", h)
	}
}

func TestErrorsCarryStatusMessageAndField(t *testing.T) {
	_, srv := newServer(t, nil)
	c := newClient(t, Config{BaseURL: srv.URL})
	x := ctx(t)

	_, err := c.App(x, "nope")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusNotFound || !strings.Contains(e.Message, "nope") {
		t.Fatalf("App(nope) = %v, want a 404 *Error naming the app", err)
	}
	if !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("%v does not match model.ErrNotFound", err)
	}

	_, err = c.RegisterJob(x, model.Job{JobName: "j", AppName: "missing", Cron: "0 * * * * ?", ShardingTotalCount: 1, CPUCount: 1, MemoryMB: 64})
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadRequest || e.Field != "appName" {
		t.Fatalf("RegisterJob with a missing app = %v, want 400 on appName", err)
	}
	if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "appName") {
		t.Fatalf("error %q should match ErrInvalid and name the field", err)
	}

	res(c.Reconcile(x, false)).must(t)
	_, err = c.Reconcile(x, false)
	if !errors.As(err, &e) || e.StatusCode != http.StatusTooManyRequests || e.RetryAfter <= 0 {
		t.Fatalf("second Reconcile = %#v, want 429 with Retry-After", err)
	}

	if _, err := c.RegisterAppJSON(x, []byte(`{"appName":`)); err == nil || errors.As(err, &e) {
		t.Fatalf("RegisterAppJSON with broken JSON = %v, want a local error", err)
	}
}

func TestCredentialsAreSent(t *testing.T) {
	_, srv := newServer(t, func(cfg *api.Config) { cfg.AuthUser, cfg.AuthPassword = "root", "pw" })
	x := ctx(t)
	anon := newClient(t, Config{BaseURL: srv.URL})
	if _, err := anon.RegisterApp(x, model.App{AppName: "a", CPUCount: 1, MemoryMB: 64}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("anonymous write = %v, want 401", err)
	}
	res(anon.Apps(x)).must(t)
	root := newClient(t, Config{BaseURL: srv.URL, User: "root", Password: "pw"})
	res(root.RegisterApp(x, model.App{AppName: "a", CPUCount: 1, MemoryMB: 64})).must(t)
}

func TestNonJSONErrorBodyIsQuoted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer srv.Close()
	c := newClient(t, Config{BaseURL: srv.URL})
	_, err := c.Jobs(ctx(t))
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusBadGateway || !strings.Contains(e.Message, "bad gateway") || e.RetryAfter != 3*time.Second {
		t.Fatalf("err = %#v", err)
	}
}

func TestContextBoundsEveryCall(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c := newClient(t, Config{BaseURL: srv.URL})
	x, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Jobs(x); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestConnectionRefusedNamesTheServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newClient(t, Config{BaseURL: url})
	_, err := c.Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), url) || strings.Count(err.Error(), url) != 1 {
		t.Fatalf("err = %v, want it to name %s once", err, url)
	}
}
