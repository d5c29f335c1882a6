package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/executortest"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker"
	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"
)

// TestContractWithRealWorkers runs the executor contract suite on the
// cluster executor of successive terms with two real workers (package
// scheduler/worker) running real processes, each in its own work
// directory, over one in-memory coordinator.
func TestContractWithRealWorkers(t *testing.T) {
	st := schedtest.NewStore()
	h := &realHarness{t: t, st: st, marks: t.TempDir()}
	h.dirA = h.startWorker("a", map[string]string{"name": "a"})
	h.startWorker("b", nil)
	executortest.Run(t, h)
}

// realHarness: tasks are shell commands that record each start in
// marks/<hash>.starts and their process group in marks/<hash>.pgid and,
// if they block, wait for marks/<hash>.release. The suite's host is one:
// its tasks are constrained to worker a; b is there to be passed over.
type realHarness struct {
	t     *testing.T
	st    *schedtest.Store
	marks string
	dirA  string // worker a's work directory

	mu   sync.Mutex
	prev coord.Leadership
}

// startWorker runs a real worker until the test ends; its tasks are
// killed then, and its watchdog exits once the work directory is gone.
func (h *realHarness) startWorker(name string, labels map[string]string) (workDir string) {
	h.t.Helper()
	dir := h.t.TempDir()
	w, err := worker.New(realWorkerConfig(h.t, h.st.Open, name, dir, labels))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				h.t.Errorf("worker %s: Run: %v", name, err)
			}
		case <-time.After(waitLimit):
			h.t.Errorf("worker %s: Run did not return", name)
		}
		killWorkDir(dir)
	})
	eventually(h.t, "worker "+name+" registered", func() bool { return w.Info().Incarnation != "" })
	return dir
}

func realWorkerConfig(t *testing.T, open func(context.Context) (coord.Coordinator, error), name, dir string, labels map[string]string) worker.Config {
	level := hclog.Off
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		level = hclog.Debug
	}
	return worker.Config{
		Open: open, Name: name, Host: name + ".host", CPUs: 8, MemoryMB: 4096, Labels: labels, WorkDir: dir,
		Logger:        hclog.New(&hclog.LoggerOptions{Name: t.Name() + "/" + name, Level: level}),
		Local:         local.Config{PollInterval: 20 * time.Millisecond, KillGrace: time.Second},
		StampInterval: 50 * time.Millisecond,
		OpTimeout:     2 * time.Second,
		RetryInterval: 50 * time.Millisecond,
		// The watchdog lingers 1s once no deadline is ahead: the work
		// directory removed at the test's end removes the stamp.
		WatchdogCommand: watchdogtest.Command(dir),
		DrainTimeout:    5 * time.Second,
	}
}

// killWorkDir SIGKILLs every task group of a worker's work directory, so
// that nothing the test started outlives it.
func killWorkDir(dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "tasks"))
	for _, de := range entries {
		if id, ok := taskIDOfDir(filepath.Join(dir, "tasks", de.Name())); ok {
			_, _ = local.KillGroup(dir, id)
		}
	}
}

// taskIDOfDir reads the task ID the local executor keeps in a task
// directory.
func taskIDOfDir(dir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "task.json"))
	if err != nil {
		return "", false
	}
	var tk executor.Task
	if json.Unmarshal(b, &tk) != nil || tk.ID == "" {
		return "", false
	}
	return tk.ID, true
}

// Open ends the previous term and campaigns for the next on a new session.
func (h *realHarness) Open(ctx context.Context) (executor.Executor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.prev != nil {
		if err := h.prev.Resign(ctx); err != nil {
			return nil, err
		}
	}
	sess, err := h.st.Open(ctx)
	if err != nil {
		return nil, err
	}
	h.t.Cleanup(func() { _ = sess.Close() })
	cctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	l, err := sess.Campaign(cctx, store.ElectionPath, []byte("leader"))
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}
	h.prev = l
	f, err := NewFactory(testConfig(h.t))
	if err != nil {
		return nil, err
	}
	return f(ctx, executor.Term{Token: l.Token(), Coord: sess, Writer: l.Writer()})
}

func (h *realHarness) mark(id, kind string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(h.marks, hex.EncodeToString(sum[:12])+"."+kind)
}

func (h *realHarness) Task(id string, b executortest.Behaviour) executor.Task {
	cmd := "echo start >>" + shQuote(h.mark(id, "starts")) + "\n"
	switch b {
	case executortest.Succeeds:
		cmd += "exit 0"
	case executortest.Fails:
		cmd += fmt.Sprintf("exit %d", executortest.FailExitCode)
	case executortest.Blocks:
		cmd += fmt.Sprintf("while [ ! -e %s ]; do sleep 0.02; done", shQuote(h.mark(id, "release")))
	case executortest.BlocksIgnoringTerm:
		cmd = "trap '' TERM\n" + cmd + fmt.Sprintf("while [ ! -e %s ]; do sleep 0.02; done", shQuote(h.mark(id, "release")))
	}
	tk := task(id, "contract", 0, cmd)
	tk.Constraints = map[string]string{"name": "a"}
	return tk
}

func (h *realHarness) Release(_ context.Context, id string) error {
	return os.WriteFile(h.mark(id, "release"), nil, 0o644)
}

// Running: the task's process group, as worker a's local executor
// recorded it before it reported the task RUNNING, has live members.
func (h *realHarness) Running(id string) (bool, error) {
	entries, err := os.ReadDir(filepath.Join(h.dirA, "tasks"))
	if err != nil {
		return false, err
	}
	for _, de := range entries {
		dir := filepath.Join(h.dirA, "tasks", de.Name())
		if got, ok := taskIDOfDir(dir); !ok || got != id {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var p struct{ Pgid int }
		if err := json.Unmarshal(b, &p); err != nil {
			return false, err
		}
		return groupAlive(p.Pgid), nil
	}
	return false, nil
}

func (h *realHarness) Starts(id string) (int, error) {
	b, err := os.ReadFile(h.mark(id, "starts"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return strings.Count(string(b), "start\n"), err
}

func (h *realHarness) Host() string           { return "a.host" }
func (h *realHarness) Timeout() time.Duration { return waitLimit }

// groupAlive says whether a process group has a member that is not a
// zombie.
func groupAlive(pgid int) bool {
	if pgid <= 0 {
		return false
	}
	entries, _ := os.ReadDir("/proc")
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// state ppid pgrp
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid && pid > 0 {
			return true
		}
	}
	return false
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
