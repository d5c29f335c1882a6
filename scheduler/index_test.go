package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// countingReads counts the read requests made through the sessions it
// opens.
type countingReads struct {
	open func(context.Context) (coord.Coordinator, error)
	n    atomic.Int64
}

func (o *countingReads) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	return readCounter{Coordinator: c, n: &o.n}, nil
}

type readCounter struct {
	coord.Coordinator
	n *atomic.Int64
}

func (c readCounter) Get(ctx context.Context, path string) (coord.Node, error) {
	c.n.Add(1)
	return c.Coordinator.Get(ctx, path)
}

func (c readCounter) Children(ctx context.Context, path string) ([]string, error) {
	c.n.Add(1)
	return c.Coordinator.Children(ctx, path)
}

func (c readCounter) List(ctx context.Context, path string) ([]coord.Node, error) {
	c.n.Add(1)
	return c.Coordinator.List(ctx, path)
}

// TestLeaderReadsMakeNoStoreRequest: the leader answers the reads of
// configurations from its read index (issue 11: the job list at 100,000
// jobs took 2.5 s from the store).
func TestLeaderReadsMakeNoStoreRequest(t *testing.T) {
	e := newMemEnv(t)
	reads := &countingReads{open: e.store.Open}
	e.start(func(cfg *Config) { cfg.Open = reads.Open })
	s := e.svc()
	ctx := ctxT(t)
	register(t, s, testJob("a", "0 0 0 1 1 ?"), testJob("b", "0 0 0 1 1 ?"))
	mustDo(t, s.DisableJob(ctx, "b"))

	before := reads.n.Load()
	jobs, err := s.JobsJSON(ctx)
	mustDo(t, err)
	if len(jobs) != 2 {
		t.Fatalf("JobsJSON listed %d jobs, want 2", len(jobs))
	}
	for _, read := range []func() error{
		func() error { _, err := s.Jobs(ctx); return err },
		func() error { _, err := s.Job(ctx, "a"); return err },
		func() error { _, err := s.JobDisabled(ctx, "b"); return err },
		func() error { _, err := s.Apps(ctx); return err },
		func() error { _, err := s.App(ctx, "app"); return err },
		func() error { _, err := s.AppDisabled(ctx, "app"); return err },
	} {
		mustDo(t, read())
	}
	if n := reads.n.Load() - before; n != 0 {
		t.Fatalf("the leader's reads of configurations made %d store requests, want none", n)
	}
}

// sameReads checks that the leader (from its index) answers every read of
// configurations as the standby (from the store) does, byte for byte
// where the API sends the bytes.
func sameReads(t *testing.T, leader, standby *Scheduler, apps, jobs []string) {
	t.Helper()
	ctx := ctxT(t)
	join := func(items []json.RawMessage, err error) string {
		t.Helper()
		mustDo(t, err)
		var b bytes.Buffer
		for i, item := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(item)
		}
		return b.String()
	}
	if l, s := join(leader.JobsJSON(ctx)), join(standby.JobsJSON(ctx)); l != s {
		t.Fatalf("job list\nleader  [%s]\nstandby [%s]", l, s)
	}
	marshal := func(v any, err error) string {
		t.Helper()
		if err != nil {
			switch {
			case errors.Is(err, model.ErrNotFound):
				return "not found"
			case errors.Is(err, model.ErrConflict):
				return "conflict: " + err.Error()
			}
			t.Fatalf("read: %v", err)
		}
		return string(mustJSON(t, v))
	}
	check := func(what string, l, s string) {
		t.Helper()
		if l != s {
			t.Fatalf("%s\nleader  %s\nstandby %s", what, l, s)
		}
	}
	check("Jobs", marshal(leader.Jobs(ctx)), marshal(standby.Jobs(ctx)))
	check("Apps", marshal(leader.Apps(ctx)), marshal(standby.Apps(ctx)))
	for _, name := range jobs {
		check("Job "+name, marshal(leader.Job(ctx, name)), marshal(standby.Job(ctx, name)))
		check("JobDisabled "+name, marshal(leader.JobDisabled(ctx, name)), marshal(standby.JobDisabled(ctx, name)))
	}
	for _, name := range apps {
		check("App "+name, marshal(leader.App(ctx, name)), marshal(standby.App(ctx, name)))
		check("AppDisabled "+name, marshal(leader.AppDisabled(ctx, name)), marshal(standby.AppDisabled(ctx, name)))
	}
}

// TestIndexAnswersAsTheStore: the leader's reads of configurations equal
// the store's (a standby's) after every kind of write, quarantined
// configurations and disable flags included.
func TestIndexAnswersAsTheStore(t *testing.T) {
	e := newMemEnv(t)
	invalidApp := testApp("bigapp")
	invalidApp.CPUCount = 1e9
	invalidJob := testJob("invalid", "0 0 0 1 1 ?")
	invalidJob.JobExecutionType = "WEIRD"
	withExtras := testJob("extras", "0 0 0 1 1 ?")
	withExtras.JobProperties = json.RawMessage(`{ "b": [1, 2],  "a": "<&>" }`)
	withExtras.Description = "<script>\u2028"
	withExtras.Constraints = map[string]string{"zone": "a", "disk": "ssd"}
	e.writeRaw(store.AppPath("app"), mustJSON(t, testApp("app")))
	e.writeRaw(store.AppPath("badapp"), []byte(`{not json`))
	e.writeRaw(store.AppPath("bigapp"), mustJSON(t, invalidApp))
	e.writeRaw(store.JobPath("extras"), mustJSON(t, withExtras))
	e.writeRaw(store.JobPath("garbage"), []byte(`{not json`))
	e.writeRaw(store.JobPath("invalid"), mustJSON(t, invalidJob))
	e.writeRaw(store.DisabledJobPath("invalid"), mustJSON(t, map[string]any{"disabledAt": t0}))
	// A stored job lacking fields its Check fills in is listed as stored.
	e.writeRaw(store.JobPath("sparse"), []byte(`{"jobName":"sparse","appName":"app","cron":"0 0 0 1 1 ?","shardingTotalCount":1,"cpuCount":0.5,"memoryMB":64,"jobExecutionType":"TRANSIENT"}`))

	a := e.start()
	cfgB := e.config()
	cfgB.Advertise = "127.0.0.1:8898"
	cfgB.Executor = e.cluster.Factory("b")
	b := startNode(t, cfgB)
	eventually(t, "the standby reads", func() bool { _, err := b.s.Jobs(context.Background()); return err == nil })
	if b.leading() {
		t.Fatal("the second node leads")
	}
	apps := []string{"app", "badapp", "bigapp", "other", "none"}
	jobs := []string{"extras", "garbage", "invalid", "sparse", "j1", "j2", "none"}
	same := func() { t.Helper(); sameReads(t, a.s, b.s, apps, jobs) }
	same()

	ctx := ctxT(t)
	s := a.s
	mustDo(t, s.RegisterApp(ctx, testApp("other")))
	j2 := testJob("j2", "")
	j2.JobExecutionType = model.Daemon
	register(t, s, testJob("j1", "0 0 0 1 1 ?"), j2)
	same()
	u, err := model.DecodeJobUpdate(strings.NewReader(`{"jobName":"j1","description":"changed","cron":"0 0 0 2 1 ?"}`))
	mustDo(t, err)
	mustDo(t, s.UpdateJob(ctx, u))
	same()
	mustDo(t, s.DisableJob(ctx, "j1"))
	mustDo(t, s.DisableApp(ctx, "other"))
	same()
	mustDo(t, s.EnableJob(ctx, "j1"))
	mustDo(t, s.EnableApp(ctx, "other"))
	same()
	mustDo(t, s.DisableJob(ctx, "j2"))
	mustDo(t, s.DeregisterJob(ctx, "j2"))
	same()
	// Fixing and replacing quarantined configurations.
	fix, err := model.DecodeJobUpdate(strings.NewReader(`{"jobName":"invalid","jobExecutionType":"DAEMON"}`))
	mustDo(t, err)
	mustDo(t, s.UpdateJob(ctx, fix))
	same()
	mustDo(t, s.RegisterJob(ctx, testJob("garbage", "0 0 0 1 1 ?")))
	same()
	appFix, err := model.DecodeAppUpdate(strings.NewReader(`{"appName":"bigapp","cpuCount":2}`))
	mustDo(t, err)
	mustDo(t, s.UpdateApp(ctx, appFix))
	same()
	mustDo(t, s.DeregisterApp(ctx, "badapp"))
	mustDo(t, s.DeregisterJob(ctx, "garbage"))
	same()
	mustDo(t, s.RegisterJob(ctx, testJob("j2", "0 0 0 1 1 ?")))
	mustDo(t, s.DeregisterApp(ctx, "other"))
	same()
}

// A stored job that names another job than its node is quarantined; the
// index refuses to read it as such rather than answer another job's
// configuration.
func TestIndexRefusesAMisnamedJob(t *testing.T) {
	e := newMemEnv(t)
	e.writeRaw(store.AppPath("app"), mustJSON(t, testApp("app")))
	e.writeRaw(store.JobPath("misnamed"), mustJSON(t, testJob("other", "0 0 0 1 1 ?")))
	s := e.start().s
	if _, err := s.Job(ctxT(t), "misnamed"); !errors.Is(err, model.ErrConflict) {
		t.Fatalf("Job(misnamed) = %v, want ErrConflict (quarantined)", err)
	}
	if jobs, err := s.JobsJSON(ctxT(t)); err != nil || len(jobs) != 0 {
		t.Fatalf("JobsJSON = %d jobs, %v; want none", len(jobs), err)
	}
}

// apiNode is a scheduler process with its REST API on a loopback
// listener, advertised as its address.
type apiNode struct {
	*node
	url string
	srv *httptest.Server
}

func startAPINode(t *testing.T, cfg Config) *apiNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	mustDo(t, err)
	cfg.Advertise = l.Addr().String()
	n := startNode(t, cfg)
	h, err := api.New(api.Config{Service: n.s})
	mustDo(t, err)
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return &apiNode{node: n, url: srv.URL, srv: srv}
}

func httpDo(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, url, strings.NewReader(body))
	mustDo(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	mustDo(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	mustDo(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// TestStandbyReadsSeeAcknowledgedWrites: a client writing and reading
// through a standby reads each write it was answered for, served by the
// leader; with the leader unreachable the standby answers from the store.
func TestStandbyReadsSeeAcknowledgedWrites(t *testing.T) {
	e := newMemEnv(t)
	cfgA := e.config()
	a := startAPINode(t, cfgA)
	eventually(t, "a leads", a.leading)
	cfgB := e.config()
	cfgB.Executor = e.cluster.Factory("b")
	b := startAPINode(t, cfgB)
	eventually(t, "b reads", func() bool { _, err := b.s.Apps(context.Background()); return err == nil })

	code, _, body := httpDo(t, "POST", b.url+"/api/app", string(mustJSON(t, testApp("app"))))
	if code != http.StatusOK {
		t.Fatalf("register app through the standby: %d %s", code, body)
	}
	leader := strings.TrimPrefix(a.url, "http://")
	for i := range 20 {
		name := fmt.Sprintf("job-%02d", i)
		if code, _, body := httpDo(t, "POST", b.url+"/api/job/register", string(mustJSON(t, testJob(name, "0 0 0 1 1 ?")))); code != http.StatusOK {
			t.Fatalf("register %s through the standby: %d %s", name, code, body)
		}
		code, hdr, body := httpDo(t, "GET", b.url+"/api/job/jobs", "")
		var jobs []model.Job
		if code != http.StatusOK || json.Unmarshal([]byte(body), &jobs) != nil {
			t.Fatalf("list on the standby: %d %s", code, body)
		}
		if len(jobs) != i+1 || jobs[i].JobName != name {
			t.Fatalf("the standby's list after registering %s has %d jobs, want %d ending with it", name, len(jobs), i+1)
		}
		if got := hdr.Get(api.HeaderLeader); got != leader {
			t.Fatalf("the standby's list was answered by %q, want the leader %q", got, leader)
		}
		if code, _, body := httpDo(t, "POST", b.url+"/api/job/"+name+"/disable", ""); code != http.StatusOK {
			t.Fatalf("disable %s through the standby: %d %s", name, code, body)
		}
		if code, _, body := httpDo(t, "GET", b.url+"/api/job/"+name+"/disable", ""); code != http.StatusOK || strings.TrimSpace(body) != "true" {
			t.Fatalf("the standby says %s is disabled: %d %s, want true", name, code, body)
		}
	}
	_, _, fromLeader := httpDo(t, "GET", a.url+"/api/job/jobs", "")

	// The leader leads on but does not answer: the standby reads its
	// store, which has the same.
	a.srv.Close()
	code, hdr, body := httpDo(t, "GET", b.url+"/api/job/jobs", "")
	if code != http.StatusOK || hdr.Get(api.HeaderLeader) != "" {
		t.Fatalf("list on the standby with the leader unreachable: %d, answered by %q", code, hdr.Get(api.HeaderLeader))
	}
	if body != fromLeader {
		t.Fatalf("the standby's store list\n%s\ndiffers from the leader's\n%s", body, fromLeader)
	}
}

// TestIndexListsWhileTheLoopWrites: lists taken while the loop registers
// are each in order and never shrink, and each registration is read back
// the moment it is acknowledged (run with -race: the API's goroutines and
// the loop share the index).
func TestIndexListsWhileTheLoopWrites(t *testing.T) {
	e := newMemEnv(t)
	s := e.start().s
	register(t, s)
	ctx := ctxT(t)
	const n = 200
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for i := range n {
			name := fmt.Sprintf("job-%03d", n-i) // in reverse: each goes first
			if err := s.RegisterJob(ctx, testJob(name, "0 0 0 1 1 ?")); err != nil {
				done <- err
				return
			}
			if _, err := s.Job(ctx, name); err != nil {
				done <- fmt.Errorf("Job(%s) right after its registration: %w", name, err)
				return
			}
		}
	}()
	last := 0
	for finished := false; !finished; {
		select {
		case err, ok := <-done:
			if ok {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		items, err := s.JobsJSON(ctx)
		mustDo(t, err)
		if len(items) < last {
			t.Fatalf("the list shrank from %d to %d jobs", last, len(items))
		}
		last = len(items)
		prev := ""
		for _, b := range items {
			var j model.Job
			mustDo(t, json.Unmarshal(b, &j))
			if j.JobName <= prev {
				t.Fatalf("the list has %s after %s", j.JobName, prev)
			}
			prev = j.JobName
		}
	}
	if last != n {
		t.Fatalf("the last list has %d jobs, want %d", last, n)
	}
}

// TestReadsWithoutALeaderComeFromTheStore: a process that cannot serve a
// term (its executor does not open) and sees no other leader answers the
// reads of configurations from the store.
func TestReadsWithoutALeaderComeFromTheStore(t *testing.T) {
	e := newMemEnv(t)
	e.writeRaw(store.AppPath("app"), mustJSON(t, testApp("app")))
	e.writeRaw(store.JobPath("stored"), mustJSON(t, testJob("stored", "0 0 0 1 1 ?")))
	cfg := e.config()
	cfg.Executor = func(context.Context, executor.Term) (executor.Executor, error) {
		return nil, errors.New("no executor in this test")
	}
	n := startAPINode(t, cfg)
	eventually(t, "the read session is open", func() bool { _, err := n.s.Apps(context.Background()); return err == nil })
	if n.leading() {
		t.Fatal("a process without an executor leads")
	}
	code, hdr, body := httpDo(t, "GET", n.url+"/api/job/jobs", "")
	var jobs []model.Job
	if code != http.StatusOK || json.Unmarshal([]byte(body), &jobs) != nil || len(jobs) != 1 || jobs[0].JobName != "stored" {
		t.Fatalf("GET /api/job/jobs without a leader: %d %s, want the stored job", code, body)
	}
	if by := hdr.Get(api.HeaderLeader); by != "" {
		t.Fatalf("the list was answered by %q, want this process", by)
	}
}
