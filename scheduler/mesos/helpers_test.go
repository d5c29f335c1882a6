package mesos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/hasched/hasched/integration/mesosfake"
	"github.com/hasched/hasched/internal/wait"
	"github.com/hasched/hasched/scheduler/executor"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 20 * time.Second

// testLogger logs to stderr at HASCHED_MESOS_TEST_LOG's level (off by
// default).
func testLogger(name string) hclog.Logger {
	level := os.Getenv("HASCHED_MESOS_TEST_LOG")
	if level == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.LevelFromString(level), Output: os.Stderr})
}

// memState is the term's state store of a test: a map, shared by the
// executors of successive terms.
type memState struct {
	mu     sync.Mutex
	values map[string][]byte
	stores int
	fail   error
}

func newMemState() *memState { return &memState{values: map[string][]byte{}} }

func (s *memState) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	if !ok {
		return nil, fmt.Errorf("/ha/%s: %w", key, executor.ErrNoState)
	}
	return append([]byte(nil), v...), nil
}

func (s *memState) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.values[key] = append([]byte(nil), value...)
	s.stores++
	return nil
}

func (s *memState) get(key string) (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.values[key]), s.stores
}

// newMaster starts a fake master, closed when the test ends.
func newMaster(t *testing.T, cfg mesosfake.Config) *mesosfake.Master {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger("mesosfake")
	}
	m, err := mesosfake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close the fake master: %v", err)
		}
	})
	return m
}

func addAgent(t *testing.T, m *mesosfake.Master, cpus, mem float64) string {
	t.Helper()
	id, err := m.AddAgent(mesosfake.AgentSpec{CPUs: cpus, MemMB: mem})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testConfig is a Config for a fast test.
func testConfig(masters ...string) Config {
	return Config{
		Masters:            masters,
		User:               "tester",
		Name:               "hasched-test",
		RefuseSeconds:      time.Second,
		MinResubscribeWait: 10 * time.Millisecond,
		MaxResubscribeWait: 200 * time.Millisecond,
		CallTimeout:        5 * time.Second,
		Logger:             testLogger("hasched"),
	}
}

// harness is one executor and the statuses it reported.
type harness struct {
	t  *testing.T
	ex *Executor

	mu       sync.Mutex
	statuses []executor.Status
	changed  chan struct{}
	done     chan struct{}
}

// openExecutor opens a term's executor with cfg and state, closed when the
// test ends (or earlier, by close).
func openExecutor(t *testing.T, cfg Config, state executor.StateStore, token int64) *harness {
	t.Helper()
	f, err := NewFactory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f(context.Background(), executor.Term{Token: token, State: state})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ex: ex.(*Executor), changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for st := range ex.Statuses() {
			h.mu.Lock()
			h.statuses = append(h.statuses, st)
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if err := h.ex.Close(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
	select {
	case <-h.done:
	case <-time.After(waitTimeout):
		h.t.Errorf("Statuses not closed by Close")
	}
}

// waitStatus waits for a status matching pred, reported after the first
// `from` statuses, and returns it with its index.
func (h *harness) waitStatus(from int, what string, pred func(executor.Status) bool) (executor.Status, int) {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		for i := from; i < len(h.statuses); i++ {
			if pred(h.statuses[i]) {
				st := h.statuses[i]
				h.mu.Unlock()
				return st, i
			}
		}
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("no status %s in %v; got:\n%s", what, waitTimeout, h.dump())
		}
	}
}

// waitState waits for task id to reach state.
func (h *harness) waitState(id string, state executor.State) executor.Status {
	h.t.Helper()
	st, _ := h.waitStatus(0, fmt.Sprintf("%s of %s", state, id), func(s executor.Status) bool {
		return s.TaskID == id && s.State == state
	})
	return st
}

func (h *harness) all() []executor.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]executor.Status(nil), h.statuses...)
}

func (h *harness) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.statuses)
}

func (h *harness) dump() string {
	var b strings.Builder
	for _, s := range h.statuses {
		fmt.Fprintf(&b, "  %s %s host=%q reconcile=%v msg=%q\n", s.TaskID, s.State, s.Host, s.Reconcile, s.Message)
	}
	return b.String()
}

// waitConnected waits for the executor to be subscribed and returns its
// framework id.
func (h *harness) waitConnected() string {
	h.t.Helper()
	var id string
	eventually(h.t, "the executor subscribes", func() bool {
		d := h.ex.Describe()
		id = d["framework_id"]
		return d["connected"] == "yes" && id != ""
	})
	return id
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Poll{Timeout: waitTimeout, Interval: 5 * time.Millisecond}.Until(t, what, cond)
}

// waitFor waits on the master's state.
func waitFor(t *testing.T, m *mesosfake.Master, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := m.WaitUntil(ctx, cond); err != nil {
		t.Fatalf("timed out: %s", what)
	}
}

func waitCall(t *testing.T, m *mesosfake.Master, typ scheduler.Call_Type) mesosfake.CallRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rec, err := m.WaitCall(ctx, typ)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func countCalls(m *mesosfake.Master, typ scheduler.Call_Type) int {
	n := 0
	for _, c := range m.Calls() {
		if c.Type == typ {
			n++
		}
	}
	return n
}

// task makes shard of a run of job.
func task(job string, fire time.Time, shard, total, attempt int, cpus, mem float64) executor.Task {
	return executor.Task{
		ID:                 fmt.Sprintf("%s@-@%d@-@%d@-@%d", job, fire.UnixMilli(), shard, attempt),
		Job:                job,
		App:                "app",
		FireTime:           fire,
		Shard:              shard,
		Attempt:            attempt,
		ShardingTotalCount: total,
		Command:            "echo hello",
		CPUs:               cpus,
		MemoryMB:           mem,
	}
}

func launch(t *testing.T, h *harness, tasks ...executor.Task) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.ex.Launch(ctx, tasks); err != nil {
		t.Fatalf("Launch: %v", err)
	}
}

var errStoreFenced = errors.New("fenced: the term is over")
