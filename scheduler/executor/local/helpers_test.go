package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/executor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit is generous: a loaded 2-core machine under -race is slow, and
// every wait polls, so a fast machine never waits that long.
const waitLimit = 15 * time.Second

// tWriter sends hclog output to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t *testing.T, workDir string) Config {
	return Config{
		WorkDir:      workDir,
		Host:         "test-host",
		Logger:       hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Debug}),
		PollInterval: 20 * time.Millisecond,
		KillGrace:    2 * time.Second,
		StartGrace:   5 * time.Second,
		Retention:    time.Hour,
		FetchTimeout: 10 * time.Second,
	}
}

// testExec is an executor with a collector on its Statuses. Cleanup closes
// it, kills whatever its work dir still runs and waits for its reapers, so
// that goleak sees nothing of it.
type testExec struct {
	*Executor
	t *testing.T

	mu       sync.Mutex
	statuses []executor.Status
	drained  chan struct{}
}

func newTestExec(t *testing.T, cfg Config) *testExec {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	te := &testExec{Executor: e, t: t, drained: make(chan struct{})}
	go func() {
		defer close(te.drained)
		for s := range e.Statuses() {
			te.mu.Lock()
			te.statuses = append(te.statuses, s)
			te.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		<-te.drained
		killAll(t, cfg.WorkDir)
		waitGroupWithin(t, &e.reapers, waitLimit)
	})
	return te
}

// killAll SIGKILLs the process group of every task under workDir.
func killAll(t *testing.T, workDir string) {
	entries, _ := os.ReadDir(filepath.Join(workDir, "tasks"))
	for _, de := range entries {
		p, err := readPidFile(filepath.Join(workDir, "tasks", de.Name()))
		if err == nil && p.Pgid > 0 {
			_ = currentHost().signalGroup(p, syscall.SIGKILL)
		}
	}
}

func waitGroupWithin(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("reapers still waiting after %v", d)
	}
}

// all returns the statuses received so far.
func (te *testExec) all() []executor.Status {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]executor.Status(nil), te.statuses...)
}

// forTask returns the statuses of one task, in order.
func (te *testExec) forTask(id string) []executor.Status {
	var out []executor.Status
	for _, s := range te.all() {
		if s.TaskID == id {
			out = append(out, s)
		}
	}
	return out
}

// waitState waits for a status of task id in state (and, if reconcile,
// one answering a reconciliation).
func (te *testExec) waitState(id string, state executor.State, reconcile bool) executor.Status {
	te.t.Helper()
	var found executor.Status
	eventually(te.t, fmt.Sprintf("task %s %s (reconcile=%v)", id, state, reconcile), func() bool {
		for _, s := range te.forTask(id) {
			if s.State == state && (!reconcile || s.Reconcile) {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func (te *testExec) launch(tasks ...executor.Task) {
	te.t.Helper()
	if err := te.Launch(context.Background(), tasks); err != nil {
		te.t.Fatalf("Launch: %v", err)
	}
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Poll{Timeout: waitLimit, Interval: 10 * time.Millisecond}.Until(t, what, cond)
}

func task(id, command string) executor.Task {
	return executor.Task{
		ID:                 id,
		Job:                "job-" + id,
		App:                "app1",
		FireTime:           time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.FixedZone("X", 3600)),
		Shard:              1,
		Attempt:            2,
		ShardingTotalCount: 3,
		ShardParameter:     `b "quoted" param`,
		JobParameter:       "p1 p2",
		Command:            command,
	}
}

// waitForFile is a command fragment that blocks until file exists: tasks
// that must run "long" wait for the test, never for a clock.
func waitForFile(file string) string {
	return fmt.Sprintf("while [ ! -e %s ]; do sleep 0.02; done", shellQuote(file))
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// processAlive says whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	st, err := readProcStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil && st.pgrp == pgid && st.state != 'Z' && st.state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readPid(t *testing.T, e *Executor, id string) pidFile {
	t.Helper()
	p, err := readPidFile(e.taskDir(id))
	if err != nil {
		t.Fatalf("pid file of %s: %v", id, err)
	}
	return p
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
