package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/api/apitest"
	"github.com/hasched/hasched/scheduler/model"
)

const logTask = "foo_job@-@1700000000000@-@0@-@0"

// fakeLogs keeps logs in memory: logs[task][stream], or a reader of its
// own for a task in live.
type fakeLogs struct {
	mu      sync.Mutex
	logs    map[string]map[string]string
	live    map[string]io.ReadCloser
	loc     map[string]model.TaskLocation
	opened  []LogQuery
	located int
	err     error // of every call, if set
}

func (f *fakeLogs) OpenLocal(ctx context.Context, id string, q LogQuery) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, q)
	if f.err != nil {
		return nil, f.err
	}
	if r, ok := f.live[id]; ok {
		// As local.LogReader, its reads end with ctx.
		if pr, ok := r.(*io.PipeReader); ok {
			context.AfterFunc(ctx, func() { _ = pr.CloseWithError(ctx.Err()) })
		}
		return r, nil
	}
	streams, ok := f.logs[id]
	if !ok {
		return nil, model.ErrNotFound
	}
	return io.NopCloser(strings.NewReader(streams[q.Stream])), nil
}

func (f *fakeLogs) Locate(_ context.Context, id string) (model.TaskLocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.located++
	if f.err != nil {
		return model.TaskLocation{}, f.err
	}
	loc, ok := f.loc[id]
	if !ok {
		return loc, model.ErrNotFound
	}
	return loc, nil
}

func logsOf(t *testing.T, logs *fakeLogs, mod func(*Config)) *server {
	return newHandler(t, apitest.NewService(model.Status{Self: "127.0.0.1:8899"}), func(c *Config) {
		c.Logs = logs
		if mod != nil {
			mod(c)
		}
	})
}

func TestTaskLogIsServedFromThisProcess(t *testing.T) {
	logs := &fakeLogs{logs: map[string]map[string]string{logTask: {"stdout": "out\n", "stderr": "err\n"}}}
	h := logsOf(t, logs, nil)
	for path, body := range map[string]string{
		"/api/tasks/" + logTask + "/log":                         "out\n",
		"/api/tasks/" + logTask + "/log?stream=stderr":           "err\n",
		"/api/tasks/" + logTask + "/log?stream=stdout&tail=5":    "out\n",
		"/api/local/tasks/" + logTask + "/log?follow=0":          "out\n",
		"/api/tasks/foo_job%401700000000000%40-%400%40-%400/log": "", // not an id
	} {
		r := do(t, h, "GET", path, "")
		if body == "" {
			want(t, r, http.StatusBadRequest)
			continue
		}
		if r.code != http.StatusOK || r.body != body || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s: %d %q (%s), want 200 %q as text/plain", path, r.code, r.body, r.header.Get("Content-Type"), body)
		}
	}
	found := false
	for _, q := range logs.opened {
		found = found || q == LogQuery{Stream: "stdout", Tail: 5}
	}
	if !found {
		t.Errorf("tail=5 was not passed on: %+v", logs.opened)
	}
}

// Bad input gets a 400 naming the field, before any log is opened.
func TestTaskLogRefusesBadInput(t *testing.T) {
	logs := &fakeLogs{}
	h := logsOf(t, logs, nil)
	for path, field := range map[string]string{
		"/api/tasks/" + logTask + "/log?stream=exit":      "stream",
		"/api/tasks/" + logTask + "/log?stream=..%2Fpid":  "stream",
		"/api/tasks/" + logTask + "/log?follow=yes":       "follow",
		"/api/tasks/" + logTask + "/log?tail=-1":          "tail",
		"/api/tasks/" + logTask + "/log?tail=100001":      "tail",
		"/api/tasks/" + logTask + "/log?tail=1e3":         "tail",
		"/api/tasks/..%2F..%2Fetc%2Fpasswd/log":           "id",
		"/api/tasks/foo_job@-@01700000000000@-@0@-@0/log": "id",
		"/api/local/tasks/x/log":                          "id",
	} {
		r := do(t, h, "GET", path, "")
		want(t, r, http.StatusBadRequest)
		if e := r.errorBody(t); e.Field != field {
			t.Errorf("%s: field %q, want %q (%s)", path, e.Field, field, e.Error)
		}
	}
	if len(logs.opened) != 0 || logs.located != 0 {
		t.Fatalf("bad requests reached the logs: %v opened, %d located", logs.opened, logs.located)
	}
}

func TestTaskLogOfAnUnknownTaskOrExecutor(t *testing.T) {
	logs := &fakeLogs{}
	h := logsOf(t, logs, nil)
	want(t, do(t, h, "GET", "/api/tasks/"+logTask+"/log", ""), http.StatusNotFound)
	want(t, do(t, h, "GET", "/api/local/tasks/"+logTask+"/log", ""), http.StatusNotFound)
	if logs.located != 1 {
		t.Fatalf("located %d times, want once (the local route never looks elsewhere)", logs.located)
	}
	// Located on a worker that is not registered now.
	logs.loc = map[string]model.TaskLocation{logTask: {TaskID: logTask, Worker: "w1"}}
	r := do(t, h, "GET", "/api/tasks/"+logTask+"/log", "")
	want(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.errorBody(t).Error, `"w1"`) {
		t.Errorf("unregistered worker: %s", r.body)
	}
	// Located on this very process, which has no log: no request to itself.
	logs.loc[logTask] = model.TaskLocation{TaskID: logTask, Worker: "w1", API: "127.0.0.1:8899"}
	want(t, do(t, h, "GET", "/api/tasks/"+logTask+"/log", ""), http.StatusNotFound)
	// Mesos: a clear 501; no TaskLogs at all: 501 too.
	logs.err = ErrLogsUnsupported
	want(t, do(t, h, "GET", "/api/tasks/"+logTask+"/log", ""), http.StatusNotImplemented)
	none := newHandler(t, apitest.NewService(model.Status{}), nil)
	want(t, do(t, none, "GET", "/api/tasks/"+logTask+"/log", ""), http.StatusNotImplemented)
}

// A log another process's worker has is relayed from that process's local
// route, once: marked forwarded, and never passed on from there.
func TestTaskLogIsRelayedFromTheWorkersProcess(t *testing.T) {
	var seen http.Header
	var seenPath string
	var mu sync.Mutex
	workerLogs := &fakeLogs{logs: map[string]map[string]string{logTask: {"stderr": "from the worker\n"}}}
	wh := logsOf(t, workerLogs, nil)
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen, seenPath = r.Header.Clone(), r.URL.RequestURI()
		mu.Unlock()
		wh.ServeHTTP(w, r)
	}))
	t.Cleanup(worker.Close)
	addr := strings.TrimPrefix(worker.URL, "http://")

	logs := &fakeLogs{loc: map[string]model.TaskLocation{logTask: {TaskID: logTask, Worker: "w2", API: addr}}}
	front := httptest.NewServer(logsOf(t, logs, nil))
	t.Cleanup(front.Close)
	r := send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log?stream=stderr&tail=3", "")
	if r.code != http.StatusOK || r.body != "from the worker\n" || r.header.Get(HeaderWorker) != "w2" {
		t.Fatalf("relayed: %d %q (worker %q)", r.code, r.body, r.header.Get(HeaderWorker))
	}
	mu.Lock()
	if seen.Get(HeaderForwarded) == "" || seen.Get("Authorization") != "" || seenPath != "/api/local/tasks/"+logTask+"/log?stream=stderr&tail=3" {
		t.Errorf("the worker's process got %s with %v", seenPath, seen)
	}
	mu.Unlock()
	// The worker's process does not have it: its 404 is the answer, and
	// it looked nowhere else.
	delete(workerLogs.logs, logTask)
	r = send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log", "")
	if r.code != http.StatusNotFound || workerLogs.located != 0 {
		t.Fatalf("worker without the log: %d %s; it located %d times", r.code, r.body, workerLogs.located)
	}
	// A forwarded request to the public route is served locally only too.
	r = send(t, "GET", worker.URL+"/api/tasks/"+logTask+"/log", "", HeaderForwarded, "1")
	if r.code != http.StatusNotFound || workerLogs.located != 0 {
		t.Fatalf("forwarded public read: %d; located %d times", r.code, workerLogs.located)
	}
}

// With guarded reads the relay carries the admin credentials, but never in
// clear text to another host.
func TestTaskLogRelayKeepsTheForwardingRules(t *testing.T) {
	var auth string
	var mu sync.Mutex
	workerLogs := &fakeLogs{logs: map[string]map[string]string{logTask: {"stdout": "x\n"}}}
	guarded := func(c *Config) { c.AuthUser, c.AuthPassword, c.AuthReads = "root", "pw", true }
	wh := logsOf(t, workerLogs, guarded)
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		wh.ServeHTTP(w, r)
	}))
	t.Cleanup(worker.Close)
	logs := &fakeLogs{loc: map[string]model.TaskLocation{logTask: {Worker: "w2", API: strings.TrimPrefix(worker.URL, "http://")}}}
	front := httptest.NewServer(logsOf(t, logs, guarded))
	t.Cleanup(front.Close)
	want(t, send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log", ""), http.StatusUnauthorized)
	r := send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log", "", "Authorization", "Basic cm9vdDpwdw==")
	mu.Lock()
	if r.code != http.StatusOK || r.body != "x\n" || auth != "Basic cm9vdDpwdw==" {
		t.Fatalf("guarded relay: %d %q; the worker got %q", r.code, r.body, auth)
	}
	mu.Unlock()
	logs.loc[logTask] = model.TaskLocation{Worker: "w3", API: "192.0.2.1:8899"}
	r = send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log", "", "Authorization", "Basic cm9vdDpwdw==")
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "plain http") {
		t.Fatalf("credentials in clear text to another host: %d %s", r.code, r.body)
	}
}

// A followed log reaches the client as it is written, through a relay
// too, and ends when its source does, or when the server says streams end.
func TestFollowedTaskLogIsFlushedAsItComes(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	workerLogs := &fakeLogs{live: map[string]io.ReadCloser{logTask: pr}}
	worker := httptest.NewServer(logsOf(t, workerLogs, func(c *Config) { c.StreamsDone = done }))
	t.Cleanup(worker.Close)
	logs := &fakeLogs{loc: map[string]model.TaskLocation{logTask: {Worker: "w2", API: strings.TrimPrefix(worker.URL, "http://")}}}
	front := httptest.NewServer(logsOf(t, logs, nil))
	t.Cleanup(front.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL+"/api/tasks/"+logTask+"/log?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, line := range []string{"first\n", "second\n"} {
		go func() { _, _ = pw.Write([]byte(line)) }()
		got, err := br.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("got %q, %v; want %q while the stream is open", got, err, line)
		}
	}
	// The server shuts down: the stream ends.
	close(done)
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after StreamsDone: %q, %v", rest, err)
	}
	_ = pw.Close()
}

// A followed log outlives the server's WriteTimeout (each write gets its
// own deadline) and ends at LogStreamMax.
func TestFollowedTaskLogOutlivesTheWriteTimeoutUntilItsMax(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	logs := &fakeLogs{live: map[string]io.ReadCloser{logTask: pr}}
	srv := httptest.NewUnstartedServer(logsOf(t, logs, func(c *Config) { c.LogStreamMax = 1500 * time.Millisecond }))
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(pw, "tick %d\n", i); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-writerDone }()

	start := time.Now()
	r := send(t, "GET", srv.URL+"/api/tasks/"+logTask+"/log?follow=1", "")
	took := time.Since(start)
	lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
	if r.code != http.StatusOK || len(lines) < 8 || lines[len(lines)-1] != fmt.Sprintf("tick %d", len(lines)-1) {
		t.Fatalf("after %v: %d, %d lines: %q; want about 15 whole lines, well past the 300ms WriteTimeout", took, r.code, len(lines), r.body)
	}
	if took < 1400*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the stream lasted %v, want LogStreamMax (1.5s)", took)
	}
}

// ?worker= names the worker to ask, for a task whose placement is gone:
// its newest live registration's process answers, without a lookup.
func TestTaskLogFromANamedWorker(t *testing.T) {
	workerLogs := &fakeLogs{logs: map[string]map[string]string{logTask: {"stdout": "old\n"}}}
	worker := httptest.NewServer(logsOf(t, workerLogs, nil))
	t.Cleanup(worker.Close)
	svc := apitest.NewService(model.Status{Self: "127.0.0.1:8899"})
	svc.SetWorkers([]model.WorkerView{
		{Worker: model.Worker{Name: "w2", Incarnation: "000000000000000a", API: "127.0.0.1:1", Started: time.Unix(100, 0)}},
		{Worker: model.Worker{Name: "w2", Incarnation: "000000000000000b", API: strings.TrimPrefix(worker.URL, "http://"), Started: time.Unix(200, 0)}},
		{Worker: model.Worker{Name: "w3", Incarnation: "000000000000000c", API: "127.0.0.1:1", Started: time.Unix(300, 0)}},
	})
	logs := &fakeLogs{}
	front := httptest.NewServer(newHandler(t, svc, func(c *Config) { c.Logs = logs }))
	t.Cleanup(front.Close)
	r := send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log?worker=w2", "")
	if r.code != http.StatusOK || r.body != "old\n" || logs.located != 0 {
		t.Fatalf("?worker=w2: %d %q (located %d times)", r.code, r.body, logs.located)
	}
	want(t, send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log?worker=w9", ""), http.StatusServiceUnavailable)
	r = send(t, "GET", front.URL+"/api/tasks/"+logTask+"/log?worker=..%2Fx", "")
	want(t, r, http.StatusBadRequest)
	if r.errorBody(t).Field != "worker" {
		t.Fatalf("bad worker name: %s", r.body)
	}
}
