package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasched/hasched/internal/client"
	"github.com/hasched/hasched/internal/zktest"
	"github.com/hasched/hasched/scheduler/api"
	"github.com/hasched/hasched/scheduler/model"
)

// logJob registers app and a job that prints "first", waits for gate, then
// prints four lines half a second apart and one line on stderr; constraints
// (JSON, or "") place it. It triggers the job and returns its running
// task's id.
func logJob(t *testing.T, c *client.Client, job, gate, constraints string) string {
	t.Helper()
	x := ctxT(t)
	if _, err := c.RegisterAppJSON(x, []byte(`{"appName":"app","bootstrapScript":"true"}`)); err != nil && !errors.Is(err, model.ErrConflict) {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`echo first; while [ ! -e %s ]; do sleep 0.05; done; for i in 1 2 3 4; do echo line $i; sleep 0.5; done; echo oops >&2`, gate)
	extra := ""
	if constraints != "" {
		extra = `,"constraints":` + constraints
	}
	def := fmt.Sprintf(`{"jobName":%q,"appName":"app","cron":"0 0 3 * * ?","shardingTotalCount":1,"scriptCommandLine":%q%s}`, job, script, extra)
	if _, err := c.RegisterJobJSON(x, []byte(def)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TriggerJob(x, job); err != nil {
		t.Fatal(err)
	}
	var id string
	eventually(t, "the task runs", 30*time.Second, func() error {
		recs, err := c.RunningTasks(ctxT(t))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Job == job && r.State == "RUNNING" {
				id = r.ID
				return nil
			}
		}
		return fmt.Errorf("running: %+v", recs)
	})
	return id
}

// followLog follows task id's stdout through c and checks that "line 1"
// arrives while the task still runs, then that the stream ends with the
// task, having carried all its lines.
func followLog(t *testing.T, c *client.Client, id, gate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body, err := c.TaskLog(ctx, id, api.LogQuery{Follow: true})
	if err != nil {
		t.Fatalf("follow %s: %v", id, err)
	}
	defer body.Close()
	br := bufio.NewReader(body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	touch(t, gate)
	if line, err := br.ReadString('\n'); err != nil || line != "line 1\n" {
		t.Fatalf("second line: %q, %v", line, err)
	}
	recs, err := c.RunningTasks(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	running := false
	for _, r := range recs {
		running = running || r.ID == id
	}
	if !running {
		t.Fatalf("line 1 arrived only after the task had ended (running: %+v)", recs)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "line 2\nline 3\nline 4\n" {
		t.Fatalf("rest of the followed log: %q, %v", rest, err)
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTaskLog(t *testing.T, c *client.Client, id string, q api.LogQuery) (string, error) {
	t.Helper()
	body, err := c.TaskLog(ctxT(t), id, q)
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	return string(b), err
}

// One process on its embedded etcd with the default cluster executor: a
// task's log is followed as it is written, read whole, tailed, on stderr,
// through the API and `hasched logs`; bad and unknown ids are refused.
func TestServeServesTaskLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	for _, executor := range []string{"cluster", "local"} {
		t.Run(executor, func(t *testing.T) { testServeServesTaskLogs(t, executor) })
	}
}

func testServeServesTaskLogs(t *testing.T, executor string) {
	p := startProcess(t, "solo", serveFlags{
		coord: coordEmbedded, embeddedClientURL: "http://127.0.0.1:0", embeddedPeerURL: "http://127.0.0.1:0",
		executor: executor, worker: executor == "cluster", drainTimeout: 10 * time.Second,
	})
	eventually(t, "the process leads", 30*time.Second, func() error {
		_, _, err := leaderOf(t, p)
		return err
	})
	gate := filepath.Join(t.TempDir(), "gate")
	id := logJob(t, p.client, "printer", gate, "")
	followLog(t, p.client, id, gate)

	for q, want := range map[api.LogQuery]string{
		{}:                                    "first\nline 1\nline 2\nline 3\nline 4\n",
		{Tail: 2}:                             "line 3\nline 4\n",
		{Stream: model.StreamStderr}:          "oops\n",
		{Follow: true, Tail: 1}:               "line 4\n", // ended: the follow ends at once
		{Stream: model.StreamStdout}:          "first\nline 1\nline 2\nline 3\nline 4\n",
		{Stream: model.StreamStderr, Tail: 5}: "oops\n",
	} {
		if got, err := readTaskLog(t, p.client, id, q); err != nil || got != want {
			t.Errorf("log %+v: %q, %v; want %q", q, got, err, want)
		}
	}
	unknown := model.TaskID("printer", time.Unix(1700000000, 0), 0, 0)
	if _, err := readTaskLog(t, p.client, unknown, api.LogQuery{}); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("unknown task: %v, want 404", err)
	}
	resp, err := http.Get("http://" + p.addr + "/api/tasks/..%2F..%2Fetc%2Fpasswd/log")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a path for a task id: %d, want 400", resp.StatusCode)
	}

	r := cli(t, nil, "", "logs", "--server", p.addr, "--tail", "1", id).ok(t)
	if r.stdout != "line 4\n" {
		t.Errorf("hasched logs --tail 1: %q", r.stdout)
	}
	r = cli(t, nil, "", "logs", "--server", p.addr, "-f", "--stderr", id).ok(t)
	if r.stdout != "oops\n" {
		t.Errorf("hasched logs -f --stderr of an ended task: %q", r.stdout)
	}
	cli(t, nil, "", "logs", "--server", p.addr, "../etc/passwd").fails(t, "not a task id")
	cli(t, nil, "", "logs", "--server", p.addr, "--tail", "-3", id).fails(t, "--tail")
	cli(t, nil, "", "logs", "--server", p.addr, unknown).fails(t, "404")
}

// Two processes, each with its worker, on one etcd: a task placed on b's
// worker is read, and followed, through a, which relays it from b.
func TestTaskLogIsReadThroughAnyProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts an embedded etcd (make test runs it)")
	}
	taskLogThroughAnyProcess(t, startEtcd(t, "logs"))
}

// The same on ZooKeeper (make zk-server-tests runs it; skipped without
// HASCHED_ZK_TEST_SERVERS).
func TestTaskLogIsReadThroughAnyProcessOnZooKeeper(t *testing.T) {
	servers := zktest.Servers(t)
	taskLogThroughAnyProcess(t, fmt.Sprintf("zk://%s/logs-%d?session-timeout=4s", strings.Join(servers, ","), time.Now().UnixNano()))
}

func taskLogThroughAnyProcess(t *testing.T, url string) {
	a := startProcess(t, "a", serveFlags{coord: url, executor: "cluster", worker: true, workerName: "wa", workerLabels: "proc=a", drainTimeout: 10 * time.Second})
	b := startProcess(t, "b", serveFlags{coord: url, executor: "cluster", worker: true, workerName: "wb", workerLabels: "proc=b", drainTimeout: 10 * time.Second})
	eventually(t, "one process leads and both workers are registered", 30*time.Second, func() error {
		if _, _, err := leaderOf(t, a, b); err != nil {
			return err
		}
		ws, err := a.client.Workers(ctxT(t))
		if err == nil && len(ws) != 2 {
			err = fmt.Errorf("workers: %+v", ws)
		}
		return err
	})
	gate := filepath.Join(t.TempDir(), "gate")
	id := logJob(t, a.client, "on-b", gate, `{"proc":"b"}`)
	followLog(t, a.client, id, gate)
	if got, err := readTaskLog(t, a.client, id, api.LogQuery{Tail: 1}); err != nil || got != "line 4\n" {
		t.Fatalf("tail through a: %q, %v", got, err)
	}
	if got, err := readTaskLog(t, b.client, id, api.LogQuery{Stream: model.StreamStderr}); err != nil || got != "oops\n" {
		t.Fatalf("stderr on b itself: %q, %v", got, err)
	}
	// Named, as after its placement is gone: b's worker has it, a's not.
	if got, err := readTaskLog(t, a.client, id, api.LogQuery{Tail: 1, Worker: "wb"}); err != nil || got != "line 4\n" {
		t.Fatalf("through a from the worker named wb: %q, %v", got, err)
	}
	if _, err := readTaskLog(t, a.client, id, api.LogQuery{Worker: "wa"}); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("through a from its own worker wa, which does not have it: %v, want 404", err)
	}
	// a's own disk does not have it: its local route says so, and does
	// not look elsewhere.
	resp, err := http.Get("http://" + a.addr + "/api/local/tasks/" + id + "/log")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a's local route: %d, want 404", resp.StatusCode)
	}
	r := cli(t, nil, "", "logs", "--server", a.addr, id).ok(t)
	if !strings.HasPrefix(r.stdout, "first\nline 1\n") {
		t.Fatalf("hasched logs through a: %q", r.stdout)
	}
}

// Where serve reads task logs, by executor: Mesos answers 501 both ways;
// the local executor never looks beyond this host; the cluster executor
// looks up the worker, and without a worker here has no local log.
func TestTaskLogsByExecutor(t *testing.T) {
	id := model.TaskID("j", time.Unix(1700000000, 0), 0, 0)
	located := 0
	locate := func(context.Context, string) (model.TaskLocation, error) {
		located++
		return model.TaskLocation{Worker: "w"}, nil
	}
	dir := t.TempDir()
	mesos := newTaskLogs(serveConfig{executor: "mesos", workDir: dir}, false, locate)
	if _, err := mesos.OpenLocal(ctxT(t), id, api.LogQuery{}); !errors.Is(err, api.ErrLogsUnsupported) || !strings.Contains(err.Error(), "sandboxes") {
		t.Errorf("mesos OpenLocal: %v", err)
	}
	if _, err := mesos.Locate(ctxT(t), id); !errors.Is(err, api.ErrLogsUnsupported) {
		t.Errorf("mesos Locate: %v", err)
	}
	loc := newTaskLogs(serveConfig{executor: "local", workDir: dir}, false, locate)
	if _, err := loc.OpenLocal(ctxT(t), id, api.LogQuery{}); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("local OpenLocal of an unknown task: %v", err)
	}
	if _, err := loc.Locate(ctxT(t), id); !errors.Is(err, model.ErrNotFound) || located != 0 {
		t.Errorf("local Locate: %v (located %d)", err, located)
	}
	cl := newTaskLogs(serveConfig{executor: "cluster", workDir: dir}, false, locate)
	if _, err := cl.OpenLocal(ctxT(t), id, api.LogQuery{}); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("cluster without a worker: %v", err)
	}
	if got, err := cl.Locate(ctxT(t), id); err != nil || got.Worker != "w" || located != 1 {
		t.Errorf("cluster Locate: %+v, %v", got, err)
	}
}
