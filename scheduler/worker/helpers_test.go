package worker_test

import (
	"context"
	"encoding/json"
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

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/schedtest"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker"
	"github.com/hasched/hasched/scheduler/worker/watchdog/watchdogtest"
)

// TestMain doubles as the watchdog command (see watchdogCommand).
func TestMain(m *testing.M) {
	watchdogtest.Main()
	os.Exit(etcdServer.Main(m))
}

const limit = 20 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Poll{Timeout: limit, Interval: 10 * time.Millisecond}.Until(t, what, cond)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// watchdogCommand re-executes the test binary as the watchdog.
// sessions opens sessions of one store and remembers them.
type sessions struct {
	open func(context.Context) (coord.Coordinator, error)
	mu   sync.Mutex
	all  []coord.Coordinator
}

func (s *sessions) Open(ctx context.Context) (coord.Coordinator, error) {
	c, err := s.open(ctx)
	if err == nil {
		s.mu.Lock()
		s.all = append(s.all, c)
		s.mu.Unlock()
	}
	return c, err
}

func (s *sessions) last() coord.Coordinator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all[len(s.all)-1]
}

func (s *sessions) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		_ = c.Close()
	}
}

// rig is a store, the test acting as its leader, and work directories.
type rig struct {
	t      *testing.T
	st     *schedtest.Store
	leader coord.Coordinator
	open   func(context.Context) (coord.Coordinator, error)
}

func newRig(t *testing.T) *rig {
	st := schedtest.NewStore()
	return newRigOn(t, st.Open, st)
}

func newRigOn(t *testing.T, open func(context.Context) (coord.Coordinator, error), st *schedtest.Store) *rig {
	leader, err := open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Close() })
	return &rig{t: t, st: st, leader: leader, open: open}
}

// running is a worker whose Run goes on in the background.
type running struct {
	w        *worker.Worker
	sessions *sessions
	cancel   context.CancelFunc
	errc     chan error
	dir      string
	once     sync.Once
}

func (r *rig) config(name, dir string, ss *sessions) worker.Config {
	return worker.Config{
		Open: ss.Open, Name: name, Host: "test-host", CPUs: 4, MemoryMB: 1024, WorkDir: dir,
		Logger:          hclog.New(&hclog.LoggerOptions{Output: tWriter{r.t}, Level: hclog.Debug}),
		Local:           local.Config{PollInterval: 20 * time.Millisecond, KillGrace: time.Second},
		StampInterval:   50 * time.Millisecond,
		OpTimeout:       2 * time.Second,
		RetryInterval:   50 * time.Millisecond,
		WatchdogCommand: watchdogtest.Command(dir),
		DrainTimeout:    5 * time.Second,
	}
}

func (r *rig) start(name, dir string, mod ...func(*worker.Config)) *running {
	r.t.Helper()
	ss := &sessions{open: r.open}
	cfg := r.config(name, dir, ss)
	for _, m := range mod {
		m(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{w: w, sessions: ss, cancel: cancel, errc: make(chan error, 1), dir: dir}
	go func() { rn.errc <- w.Run(ctx) }()
	r.t.Cleanup(func() {
		rn.stop(r.t)
		ss.closeAll()
		killAll(dir)
	})
	eventually(r.t, "worker registered", func() bool { return w.Info().Incarnation != "" })
	return rn
}

// stop cancels Run and waits for it.
func (rn *running) stop(t *testing.T) {
	rn.once.Do(func() {
		rn.cancel()
		select {
		case err := <-rn.errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(limit):
			t.Fatal("Run did not return")
		}
	})
}

// killAll SIGKILLs every task group of a work dir.
func killAll(dir string) {
	entries, _ := os.ReadDir(filepath.Join(dir, "tasks"))
	for _, de := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "tasks", de.Name(), "pid"))
		if err != nil {
			continue
		}
		var p struct{ Pgid int }
		if json.Unmarshal(b, &p) == nil && p.Pgid > 0 {
			_ = syscall.Kill(-p.Pgid, syscall.SIGKILL)
		}
	}
}

func task(id, command string) executor.Task {
	return executor.Task{ID: id, Job: "job", App: "app", Command: command, CPUs: 1, MemoryMB: 64, FireTime: time.Now()}
}

// place creates a placement of t on the worker incarnation, as a leader.
func (r *rig) place(name, inc string, t executor.Task) {
	r.t.Helper()
	p := model.Placement{Task: t, Worker: name, Incarnation: inc, Token: 1, PlacedAt: time.Now(), State: executor.StateStaging, UpdatedAt: time.Now()}
	b, _ := json.Marshal(p)
	if _, err := r.leader.Create(context.Background(), store.PlacementPath(name, t.ID), b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) placement(name, id string) (coord.Node, model.Placement) {
	r.t.Helper()
	n, err := r.leader.Get(context.Background(), store.PlacementPath(name, id))
	if err != nil {
		r.t.Fatal(err)
	}
	var p model.Placement
	if err := json.Unmarshal(n.Value, &p); err != nil {
		r.t.Fatal(err)
	}
	return n, p
}

func (r *rig) askKill(name, id string) {
	r.t.Helper()
	if _, err := r.leader.Create(context.Background(), store.KillPath(name, id), nil); err != nil {
		r.t.Fatal(err)
	}
}

// reports returns the reports in an incarnation's outbox, in order, and
// checks their names run on from 0.
func (r *rig) reports(id string) []model.Report {
	r.t.Helper()
	ctx := context.Background()
	names, err := r.leader.Children(ctx, store.OutboxPath(id))
	if err != nil {
		return nil
	}
	var out []model.Report
	for i, name := range names {
		if want := fmt.Sprintf("%s%020d", store.ReportPrefix, i); name != want {
			r.t.Fatalf("report %d is named %s, want %s", i, name, want)
		}
		n, err := r.leader.Get(ctx, store.OutboxPath(id)+"/"+name)
		if err != nil {
			r.t.Fatal(err)
		}
		var rep model.Report
		if err := json.Unmarshal(n.Value, &rep); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, rep)
	}
	return out
}

// statesOf lists the reported states of one task.
func statesOf(reps []model.Report, task string) []executor.State {
	var out []executor.State
	for _, r := range reps {
		if r.TaskID == task {
			out = append(out, r.State)
		}
	}
	return out
}

func (r *rig) waitState(id, task string, state executor.State) []model.Report {
	r.t.Helper()
	var reps []model.Report
	eventually(r.t, fmt.Sprintf("%s reported %s by %s", task, state, id), func() bool {
		reps = r.reports(id)
		for _, s := range statesOf(reps, task) {
			if s == state {
				return true
			}
		}
		return false
	})
	return reps
}

// ledger is a file a task appends its pid to when it starts.
func ledger(t *testing.T, dir, name string) string {
	return filepath.Join(dir, name+".ledger")
}

func ledgerLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

// longTask appends $$ to the ledger and runs until stop exists.
func longTask(ledger, stop string) string {
	return fmt.Sprintf("echo $$ >> '%s'; while [ ! -e '%s' ]; do sleep 0.02; done", ledger, stop)
}

// pidAlive says whether a process runs (a zombie does not).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func ledgerPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, "task wrote its ledger", func() bool {
		l := ledgerLines(path)
		if len(l) == 0 {
			return false
		}
		pid, _ = strconv.Atoi(l[0])
		return pid > 0
	})
	return pid
}

func id(w *worker.Worker) string { return w.Info().ID() }

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
