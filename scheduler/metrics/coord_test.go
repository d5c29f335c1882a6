package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
	"github.com/hasched/hasched/scheduler/schedtest"
)

// timedHarness runs coord's conformance suite on the in-memory coordinator
// as Metrics.Coordinator decorates it: every method the suite proves of a
// backend is proved of the decorator, so none can fail to delegate, or
// delegate to the wrong method, unnoticed.
type timedHarness struct {
	m      *Metrics
	mu     sync.Mutex
	stores map[string]*schedtest.Store // one per namespace, which keeps them apart
}

func (h *timedHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	h.mu.Lock()
	st, ok := h.stores[ns]
	if !ok {
		st = schedtest.NewStore()
		h.stores[ns] = st
	}
	h.mu.Unlock()
	c, err := st.Open(ctx)
	if err != nil {
		return nil, err
	}
	return h.m.Coordinator(c, "mem"), nil
}

func (h *timedHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	u, ok := c.(interface{ Unwrap() coord.Coordinator })
	if !ok {
		return fmt.Errorf("not a decorated coordinator: %T", c)
	}
	s, ok := u.Unwrap().(*schedtest.Session)
	if !ok {
		return fmt.Errorf("not a session of the in-memory store: %T", u.Unwrap())
	}
	s.Expire()
	return nil
}

func (h *timedHarness) SessionTimeout() time.Duration { return time.Second }

// operations returns the operation label values recorded for backend.
func operations(t *testing.T, m *Metrics, backend string) []string {
	t.Helper()
	mf := family(t, m, "hasched_coordinator_operation_duration_seconds")
	seen := map[string]bool{}
	for _, s := range mf.GetMetric() {
		var b, op string
		for _, l := range s.GetLabel() {
			switch l.GetName() {
			case "backend":
				b = l.GetValue()
			case "operation":
				op = l.GetValue()
			}
		}
		if b == backend {
			seen[op] = true
		}
	}
	var ops []string
	for op := range seen {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

func TestCoordinatorPassesConformance(t *testing.T) {
	m := newMetrics(t, Config{})
	coordtest.Run(t, &timedHarness{m: m, stores: map[string]*schedtest.Store{}})
	// The suite calls every timed operation, so each was timed.
	got := operations(t, m, "mem")
	for _, op := range []string{
		opCreate, opGet, opSet, opDelete, opDeleteTree, opApply, opChildren, opList, opLeader,
		opWatch, opWatchChildren, opResign, opClose,
		fencedPrefix + opCreate, fencedPrefix + opSet, fencedPrefix + opDelete,
		fencedPrefix + opDeleteTree, fencedPrefix + opApply,
	} {
		if !slices.Contains(got, op) {
			t.Errorf("no %s timed through the conformance suite; timed: %v", op, got)
		}
	}
}

// Each call is recorded once under its operation and the sentinel its
// error wraps.
func TestCoordinatorRecordsOperationAndResult(t *testing.T) {
	m := newMetrics(t, Config{})
	ctx := context.Background()
	raw, err := schedtest.NewStore().Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Coordinator(raw, "etcd")
	count := func(op, result string) uint64 {
		t.Helper()
		mf := family(t, m, "hasched_coordinator_operation_duration_seconds")
		if mf == nil {
			return 0
		}
	next:
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if v := map[string]string{"backend": "etcd", "operation": op, "result": result}[l.GetName()]; v != l.GetValue() {
					continue next
				}
			}
			return s.GetHistogram().GetSampleCount()
		}
		return 0
	}
	n, err := c.Create(ctx, "/a", []byte("1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := c.Create(ctx, "/a", nil); !errors.Is(err, coord.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if _, err := c.Get(ctx, "/missing"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("Get of a missing node: %v, want ErrNotFound", err)
	}
	if _, err := c.Set(ctx, "/a", nil, n.Version+1000); !errors.Is(err, coord.ErrVersionConflict) {
		t.Fatalf("Set with a stale version: %v, want ErrVersionConflict", err)
	}
	if _, err := c.Apply(ctx, coord.CreateOp("/a", nil)); !errors.Is(err, coord.ErrExists) {
		t.Fatalf("Apply creating /a again: %v, want ErrExists", err)
	}
	l, err := c.Campaign(ctx, "/ha/election", []byte("me"))
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	if _, err := l.Writer().Set(ctx, "/a", []byte("2"), coord.AnyVersion); err != nil {
		t.Fatalf("fenced Set: %v", err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if _, err := l.Writer().Set(ctx, "/a", []byte("3"), coord.AnyVersion); !errors.Is(err, coord.ErrNotLeader) {
		t.Fatalf("fenced Set after Resign: %v, want ErrNotLeader", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Get(ctx, "/a"); !errors.Is(err, coord.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	for _, w := range []struct {
		op, result string
		want       uint64
	}{
		{"create", "ok", 1},
		{"create", "exists", 1},
		{"get", "not_found", 1},
		{"set", "conflict", 1},
		{"apply", "exists", 1},
		{"fenced_set", "ok", 1},
		{"resign", "ok", 1},
		{"fenced_set", "not_leader", 1},
		{"close", "ok", 1},
		{"get", "closed", 1},
	} {
		if got := count(w.op, w.result); got != w.want {
			t.Errorf("operation=%s result=%s: %d observations, want %d", w.op, w.result, got, w.want)
		}
	}
	if ops := operations(t, m, "etcd"); slices.Contains(ops, "campaign") {
		t.Errorf("Campaign, which waits for as long as others lead, was timed: %v", ops)
	}
}

func TestResultLabelNamesEverySentinel(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok",
		fmt.Errorf("get /x: %w", coord.ErrNotFound):             "not_found",
		&coord.OpError{Index: 1, Err: coord.ErrVersionConflict}: "conflict",
		fmt.Errorf("apply: %w", coord.ErrBatchTooLarge):         "too_large",
		fmt.Errorf("get: %w", coord.ErrSessionLost):             "session_lost",
		fmt.Errorf("get: %w", context.DeadlineExceeded):         "timeout",
		context.Canceled:                                        "canceled",
		errors.New("connection refused"):                        "error",
		fmt.Errorf("campaign: %w", coord.ErrAlreadyCampaigning): "already_campaigning",
		fmt.Errorf("create /e/x: %w", coord.ErrEphemeralParent): "ephemeral_parent",
	} {
		if got := resultLabel(err); got != want {
			t.Errorf("resultLabel(%v) = %q, want %q", err, got, want)
		}
	}
}

// mirroring is a Coordinator that can mirror: Mirror says which path it
// was asked for.
type mirroring struct {
	coord.Coordinator
	asked string
}

var errMirrorAsked = errors.New("mirror asked")

func (m *mirroring) Mirror(_ context.Context, path string) (coord.Mirror, error) {
	m.asked = path
	return nil, errMirrorAsked
}

// The decoration keeps a backend's ability to mirror, and adds none: a
// standby mirrors the state only through a Coordinator that is a
// coord.Mirrorer, and every serve process's sessions are decorated.
func TestCoordinatorKeepsTheBackendsMirror(t *testing.T) {
	m := newMetrics(t, Config{})
	ctx := context.Background()
	raw, err := schedtest.NewStore().Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Coordinator(raw, "mem").(coord.Mirrorer); ok {
		t.Fatal("a backend that cannot mirror became a Mirrorer")
	}
	inner := &mirroring{Coordinator: raw}
	mr, ok := m.Coordinator(inner, "etcd").(coord.Mirrorer)
	if !ok {
		t.Fatal("a backend that can mirror lost it through the decoration")
	}
	if _, err := mr.Mirror(ctx, "/state"); !errors.Is(err, errMirrorAsked) || inner.asked != "/state" {
		t.Fatalf("Mirror(/state) = %v, backend asked %q", err, inner.asked)
	}
}
