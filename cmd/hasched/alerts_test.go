package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/scheduler"
	"github.com/hasched/hasched/scheduler/alert"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
)

func writeFileIn(t *testing.T, dir, name, s string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A bad alerts file stops serve before anything starts, says what is
// wrong, and never quotes a receiver's URL or secret.
func TestServeRefusesABadAlertsConfig(t *testing.T) {
	dir := t.TempDir()
	writeFileIn(t, dir, "empty.key", "")
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"not JSON", `receivers:`, []string{"--alerts-config", "invalid character"}},
		{"unknown field", `{"receivers":[{"name":"x","url":"http://h/SECRETPATH","events":["failure"],"header":"x"}]}`, []string{"--alerts-config", "unknown field"}},
		{"bad scheme", `{"receivers":[{"name":"x","url":"file:///SECRETPATH","events":["failure"]}]}`, []string{"--alerts-config", `receiver "x"`, "http:// or https://"}},
		{"unknown event", `{"receivers":[{"name":"x","url":"http://h/SECRETPATH","events":["success"]}]}`, []string{"--alerts-config", `"success" is unknown`}},
		{"leadership per job", `{"receivers":[{"name":"x","url":"http://h/SECRETPATH","events":["leadership"]}]}`, []string{"--alerts-config", "only a global receiver"}},
		{"empty secret", `{"receivers":[{"name":"x","url":"http://h/SECRETPATH","events":["failure"],"secretFile":"empty.key"}]}`, []string{"--alerts-config", "secretFile", "empty"}},
		{"too many attempts", `{"receivers":[{"name":"x","url":"http://h/SECRETPATH","events":["failure"],"maxAttempts":1000}]}`, []string{"--alerts-config", "maxAttempts"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := writeFileIn(t, dir, "alerts.json", c.body)
			serveRefuses(t, nil, []string{"--alerts-config", file}, c.want...)
			r := cli(t, nil, "", "serve", "--data-dir", filepath.Join(t.TempDir(), "d"), "--alerts-config", file)
			if strings.Contains(r.stderr, "SECRETPATH") {
				t.Errorf("the error quotes the URL: %s", r.stderr)
			}
		})
	}
	serveRefuses(t, nil, []string{"--alerts-config", filepath.Join(dir, "missing.json")}, "--alerts-config", "no such file")
	serveRefuses(t, map[string]string{"HASCHED_ALERTS_CONFIG": filepath.Join(dir, "missing.json")}, nil, "--alerts-config", "missing.json")
}

func TestServeReadsTheAlertsConfig(t *testing.T) {
	dir := t.TempDir()
	writeFileIn(t, dir, "ops.key", "k3y\n")
	file := writeFileIn(t, dir, "alerts.json", `{"receivers":[{"name":"ops","url":"https://alerts.example/h","secretFile":"ops.key","events":["failure","leadership"],"global":true}]}`)
	f := serveFlags{coord: "embedded", dataDir: "d", listen: "127.0.0.1:8899", executor: "local", logLevel: "info",
		embeddedClientURL: "http://127.0.0.1:2379", embeddedPeerURL: "http://127.0.0.1:2380"}
	cfg, err := f.validate()
	if err != nil || cfg.alerts != nil {
		t.Fatalf("without --alerts-config: alerts %+v, %v; want none", cfg.alerts, err)
	}
	f.alerts.file = file
	if cfg, err = f.validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.alerts) != 1 || cfg.alerts[0].Name != "ops" || string(cfg.alerts[0].Secret) != "k3y" || !cfg.alerts[0].Global {
		t.Fatalf("alerts = %+v", cfg.alerts)
	}
	// Without receivers the scheduler gets no sink at all (a nil
	// *Notifier in the interface would be called).
	a, err := startAlerts(nil, "h:1", hclog.NewNullLogger())
	if err != nil || a.events() != nil {
		t.Fatalf("startAlerts(none) = %v, %v; want a nil sink", a.events(), err)
	}
	a.close(hclog.NewNullLogger())
}

// The notifier reads a job's alertReceivers through the scheduler: from
// the leader's memory, nothing for a job that is not there.
func TestAlertsReadAJobsReceiversFromTheScheduler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster := schedtest.NewCluster()
	sched, err := scheduler.New(scheduler.Config{Open: schedtest.NewStore().Open, Executor: cluster.Factory("test"), Advertise: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- sched.Run(runCtx) }()
	defer func() { stop(); <-ran }()

	a, err := startAlerts([]alert.Receiver{{Name: "team", URL: "http://127.0.0.1:1/", Events: []alert.Class{alert.Failure}}}, "h:1", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.close(hclog.NewNullLogger())
	if got := a.jobReceivers("j"); got != nil {
		t.Fatalf("before the scheduler is set: %q", got)
	}
	a.sched.Store(sched)
	if err := sched.RegisterApp(ctx, model.App{AppName: "app", BootstrapScript: "true"}); err != nil {
		t.Fatal(err)
	}
	job := model.Job{JobName: "j", AppName: "app", Cron: "0 0 0 1 1 ? 2099", AlertReceivers: []string{"team", "elsewhere"}}
	if err := sched.RegisterJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got := a.jobReceivers("j"); !slices.Equal(got, job.AlertReceivers) {
		t.Fatalf("jobReceivers(j) = %q, want %q", got, job.AlertReceivers)
	}
	if got := a.jobReceivers("other"); got != nil {
		t.Fatalf("jobReceivers(other) = %q, want nil", got)
	}
}

// A whole serve with --alerts-config: the notifier starts, a job's
// alertReceivers go through the REST API and the store and come back, a
// list past the bound is refused with a 4xx and writes nothing, and the
// process stops cleanly (the notifier closed with it).
func TestServeWithAlertsKeepsJobsAlertReceivers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	dir := t.TempDir()
	rcv := newAlertReceiver(t)
	writeFileIn(t, dir, "ops.key", "s3cret\n")
	file := writeFileIn(t, dir, "alerts.json", `{"receivers":[
		{"name":"ops","url":"`+rcv.url+`/ops","secretFile":"ops.key","events":["failure","leadership"],"global":true},
		{"name":"team","url":"`+rcv.url+`/team","format":"slack","events":["failure","timeout"]}]}`)
	p := startProcess(t, "solo", serveFlags{
		coord: coordEmbedded, embeddedClientURL: "http://127.0.0.1:0", embeddedPeerURL: "http://127.0.0.1:0",
		executor: "local", alerts: alertFlags{file: file},
	})
	if !strings.Contains(p.log.String(), "alerts on") {
		t.Errorf("the log does not say alerts are on:\n%s", p.log)
	}
	eventually(t, "the process leads", 30*time.Second, func() error {
		_, _, err := leaderOf(t, p)
		return err
	})
	x := ctxT(t)
	if _, err := p.client.RegisterAppJSON(x, []byte(`{"appName":"app","bootstrapScript":"true"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.RegisterJobJSON(x, []byte(`{"jobName":"j","appName":"app","cron":"0 0 0 1 1 ? 2099","alertReceivers":["team","not-here"]}`)); err != nil {
		t.Fatal(err)
	}
	j, err := p.client.Job(x, "j")
	if err != nil || !slices.Equal(j.AlertReceivers, []string{"team", "not-here"}) {
		t.Fatalf("job j: alertReceivers %q, %v; want [team not-here]", j.AlertReceivers, err)
	}
	_, err = p.client.RegisterJobJSON(x, []byte(`{"jobName":"k","appName":"app","cron":"0 0 0 1 1 ? 2099","alertReceivers":["a","b","c","d","e","f","g","h","i"]}`))
	if err == nil || !strings.Contains(err.Error(), "alertReceivers") {
		t.Fatalf("nine receivers: %v, want a refusal naming alertReceivers", err)
	}
	if _, err := p.client.Job(x, "k"); err == nil {
		t.Fatal("a refused job was written")
	}

	// The term's events reach the receivers: the leadership goes to the
	// global receiver, signed; a failed run of j to it and to j's own.
	rcv.wait(t, "/ops", `"event":"leadership"`)
	if _, err := p.client.RegisterJobJSON(x, []byte(`{"jobName":"fails","appName":"app","cron":"0 0 0 1 1 ? 2099","scriptCommandLine":"exit 3","alertReceivers":["team"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.TriggerJob(x, "fails"); err != nil {
		t.Fatal(err)
	}
	failed := rcv.wait(t, "/ops", `"job":"fails"`)
	for _, want := range []string{`"event":"failure"`, `"state":"FAILED"`, `"outcome":"given_up"`, `"exitCode":3`} {
		if !strings.Contains(string(failed.body), want) {
			t.Errorf("the failure alert has no %s: %s", want, failed.body)
		}
	}
	if err := alert.Verify([]byte("s3cret"), failed.header.Get(alert.HeaderTimestamp), failed.header.Get(alert.HeaderSignature), failed.body, time.Now(), time.Minute); err != nil {
		t.Errorf("the failure alert's signature: %v", err)
	}
	if slack := rcv.wait(t, "/team", "fails"); !strings.HasPrefix(string(slack.body), `{"text":`) {
		t.Errorf("the job's own receiver got %s, want a Slack text", slack.body)
	}
	p.stop(t)
}

// alertReceiver is a local webhook receiver that keeps what it is sent.
type alertReceiver struct {
	url string
	mu  sync.Mutex
	got []alertRequest
}

type alertRequest struct {
	path   string
	header http.Header
	body   []byte
}

func newAlertReceiver(t *testing.T) *alertReceiver {
	r := &alertReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		r.got = append(r.got, alertRequest{req.URL.Path, req.Header.Clone(), b})
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// wait returns the first request to path whose body holds has.
func (r *alertReceiver) wait(t *testing.T, path, has string) alertRequest {
	t.Helper()
	var found alertRequest
	eventually(t, "an alert to "+path+" with "+has, 30*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, q := range r.got {
			if q.path == path && strings.Contains(string(q.body), has) {
				found = q
				return nil
			}
		}
		return fmt.Errorf("%d requests, none matches", len(r.got))
	})
	return found
}
