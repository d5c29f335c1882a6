package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

// configReads are the reads a standby forwards to the leader.
var configReads = []string{
	"/api/app/list", "/api/app/foo_app", "/api/app/foo_app/disable",
	"/api/job/jobs", "/api/job/jobs/foo_job", "/api/job/foo_job/disable",
}

// seedLeader registers foo_app and foo_job on the cluster's leader only.
func seedLeader(t *testing.T, c *cluster) {
	t.Helper()
	ctx := context.Background()
	app, err := decodeApp([]byte(appJSON))
	if err != nil {
		t.Fatal(err)
	}
	job, err := decodeJob([]byte(jobJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.leaderSvc.RegisterApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	if err := c.leaderSvc.RegisterJob(ctx, job); err != nil {
		t.Fatal(err)
	}
}

// A standby's reads of configurations are the leader's answers: what the
// leader has acknowledged is there, though the standby's own Service does
// not have it (in a real cluster: its store read would have it, only
// slower).
func TestStandbyForwardsConfigReads(t *testing.T) {
	c := newCluster(t, nil)
	seedLeader(t, c)
	leader := strings.TrimPrefix(c.leader.URL, "http://")
	for _, p := range configReads {
		r := send(t, "GET", c.standby.URL+p, "")
		want(t, r, http.StatusOK)
		if got := r.header.Get(HeaderLeader); got != leader {
			t.Errorf("%s: %s = %q, want %q", p, HeaderLeader, got, leader)
		}
		if direct := send(t, "GET", c.leader.URL+p, ""); direct.body != r.body {
			t.Errorf("%s: the standby answered %s, the leader %s", p, r.body, direct.body)
		}
	}
	if n := c.leaderHits.Load(); n != int32(2*len(configReads)) {
		t.Fatalf("the leader got %d requests, want %d", n, 2*len(configReads))
	}
	if hdr := c.lastForwarded.Load().(http.Header); hdr.Get("Authorization") != "" {
		t.Fatalf("a read was forwarded with credentials the leader does not ask for: %v", hdr)
	}
	for _, m := range c.standbySvc.Calls() {
		if m != "Status" {
			t.Fatalf("the standby's Service served %s itself; calls %v", m, c.standbySvc.Calls())
		}
	}
	// The leader's refusals are the answer too.
	want(t, send(t, "GET", c.standby.URL+"/api/job/jobs/no_job", ""), http.StatusNotFound)
	if slices.Contains(c.standbySvc.Calls(), "Job") {
		t.Fatal("a read the leader answered 404 was served by the standby too")
	}
}

// Without a leader that answers, the standby serves the read itself (from
// its store, in a real cluster).
func TestStandbyReadFallsBackToItself(t *testing.T) {
	t.Run("leader down", func(t *testing.T) {
		c := newCluster(t, nil)
		c.leader.Close()
		for _, p := range []string{"/api/app/list", "/api/job/jobs"} {
			want(t, send(t, "GET", c.standby.URL+p, ""), http.StatusOK)
		}
		if !slices.Contains(c.standbySvc.Calls(), "JobsJSON") {
			t.Fatalf("the standby did not serve the list itself: calls %v", c.standbySvc.Calls())
		}
	})
	t.Run("leader fails", func(t *testing.T) {
		c := newCluster(t, nil)
		c.leaderSvc.Fail("JobsJSON", model.ErrUnavailable)
		r := send(t, "GET", c.standby.URL+"/api/job/jobs", "")
		want(t, r, http.StatusOK)
		if r.body != "[]\n" {
			t.Fatalf("body %q, want the standby's own empty list", r.body)
		}
	})
	t.Run("no leader", func(t *testing.T) {
		c := newCluster(t, nil)
		c.standbySvc.SetLeader(false, "")
		want(t, send(t, "GET", c.standby.URL+"/api/job/jobs", ""), http.StatusOK)
		if c.leaderHits.Load() != 0 {
			t.Fatal("a read was forwarded with no leader known")
		}
	})
	t.Run("leader hangs", func(t *testing.T) {
		hung := make(chan struct{})
		leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hung:
			case <-r.Context().Done():
			}
		}))
		defer leader.Close()
		defer close(hung)
		svc := apitest.NewService(model.Status{})
		svc.SetLeader(false, strings.TrimPrefix(leader.URL, "http://"))
		h := newHandler(t, svc, nil)
		h.readHeaderWait = 50 * time.Millisecond
		start := time.Now()
		want(t, do(t, h, "GET", "/api/job/jobs", ""), http.StatusOK)
		if !slices.Contains(svc.Calls(), "JobsJSON") {
			t.Fatal("the standby did not serve the read itself")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the fallback took %v", d)
		}
	})
	t.Run("forwarded already", func(t *testing.T) {
		c := newCluster(t, nil)
		want(t, send(t, "GET", c.standby.URL+"/api/job/jobs", "", HeaderForwarded, "1"), http.StatusOK)
		if c.leaderHits.Load() != 0 {
			t.Fatal("a forwarded read was forwarded again")
		}
	})
}

// When reads need the credentials, a standby sends them to the leader only
// where they are safe (https or loopback), and otherwise serves the read
// itself.
func TestStandbyReadCredentials(t *testing.T) {
	withAuth := func(cfg *Config) {
		cfg.AuthUser, cfg.AuthPassword = "root", "pw"
		cfg.ReadOnlyUser, cfg.ReadOnlyPassword = "reader", "rpw"
		cfg.AuthReads = true
	}
	reader := "Basic cmVhZGVyOnJwdw==" // reader:rpw
	t.Run("loopback", func(t *testing.T) {
		c := newCluster(t, withAuth)
		seedLeader(t, c)
		r := send(t, "GET", c.standby.URL+"/api/job/jobs", "", "Authorization", reader)
		want(t, r, http.StatusOK)
		if c.leaderHits.Load() != 1 {
			t.Fatal("the read was not forwarded")
		}
		var jobs []model.Job
		if err := json.Unmarshal([]byte(r.body), &jobs); err != nil || len(jobs) != 1 {
			t.Fatalf("jobs %s (%v), want the leader's one", r.body, err)
		}
	})
	t.Run("plain http elsewhere", func(t *testing.T) {
		c := newCluster(t, withAuth)
		// A documentation address: nothing must be sent there.
		c.standbySvc.SetLeader(false, "192.0.2.1:8899")
		want(t, send(t, "GET", c.standby.URL+"/api/job/jobs", "", "Authorization", reader), http.StatusOK)
		if !slices.Contains(c.standbySvc.Calls(), "JobsJSON") {
			t.Fatal("the standby did not serve the read itself")
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		c := newCluster(t, withAuth)
		want(t, send(t, "GET", c.standby.URL+"/api/job/jobs", ""), http.StatusUnauthorized)
		if c.leaderHits.Load() != 0 {
			t.Fatal("an unauthenticated read was forwarded")
		}
	})
}

// The job list is the items the Service encoded, as json.Marshal writes
// the list.
func TestJobListIsMarshalOfTheJobs(t *testing.T) {
	svc, h := seeded(t)
	jobs := []model.Job{}
	for _, name := range []string{"a_job", "b<job>"} {
		j, err := decodeJob([]byte(strings.Replace(jobJSON, "foo_job", "x", 1)))
		if err != nil {
			t.Fatal(err)
		}
		j.JobName, j.Description = name, "<&> \u2028"
		j.JobProperties = json.RawMessage(`{ "k" : [1, 2] }`)
		if err := svc.RegisterJob(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	all, err := svc.JobsJSON(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		var j model.Job
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	wantBody, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	r := do(t, h, "GET", "/api/job/jobs", "")
	want(t, r, http.StatusOK)
	if r.body != string(wantBody)+"\n" {
		t.Fatalf("list\n%s\nwant\n%s", r.body, wantBody)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
}
