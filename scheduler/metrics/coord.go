package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hasched/hasched/coord"
)

// Coordinator returns c with the time of each of its operations, and of
// the fenced writes of the leaderships it wins, recorded in
// hasched_coordinator_operation_duration_seconds under backend (a fixed
// name such as "etcd" or "zk", never a URL). Everything else passes
// through unchanged. Calls that wait for as long as the caller wants
// rather than for the service are not timed: Campaign (until this session
// leads), and Done, Lost and the watch channels; Watch and WatchChildren
// are timed until the watch is set up.
func (m *Metrics) Coordinator(c coord.Coordinator, backend string) coord.Coordinator {
	t := &timedCoordinator{c: c, ops: m.coordOps.MustCurryWith(prometheus.Labels{"backend": backend})}
	// A backend that can mirror stays one through the decoration: a
	// standby's warm takeover depends on it (scheduler/standby.go).
	if mr, ok := c.(coord.Mirrorer); ok {
		return &timedMirrorer{timedCoordinator: t, mr: mr}
	}
	return t
}

// timedMirrorer is a timedCoordinator of a backend that can mirror. The
// Mirror's reads are from memory and are not timed.
type timedMirrorer struct {
	*timedCoordinator
	mr coord.Mirrorer
}

func (t *timedMirrorer) Mirror(ctx context.Context, path string) (coord.Mirror, error) {
	return t.mr.Mirror(ctx, path)
}

// The operation label of each timed call. A fenced write is its own
// operation: it is the leader's write path, and costs a check more.
const (
	opCreate        = "create"
	opGet           = "get"
	opSet           = "set"
	opDelete        = "delete"
	opDeleteTree    = "delete_tree"
	opApply         = "apply"
	opChildren      = "children"
	opList          = "list"
	opLeader        = "leader"
	opWatch         = "watch"
	opWatchChildren = "watch_children"
	opResign        = "resign"
	opClose         = "close"
	fencedPrefix    = "fenced_"
)

// resultLabel names an operation's error by the coord sentinel it wraps,
// so the result label has a fixed set of values.
func resultLabel(err error) string {
	if err == nil {
		return "ok"
	}
	for _, r := range []struct {
		err  error
		name string
	}{
		{coord.ErrNotFound, "not_found"},
		{coord.ErrExists, "exists"},
		{coord.ErrVersionConflict, "conflict"},
		{coord.ErrNotEmpty, "not_empty"},
		{coord.ErrInvalidPath, "invalid_path"},
		{coord.ErrEphemeralParent, "ephemeral_parent"},
		{coord.ErrValueTooLarge, "too_large"},
		{coord.ErrBatchTooLarge, "too_large"},
		{coord.ErrNoLeader, "no_leader"},
		{coord.ErrNotLeader, "not_leader"},
		{coord.ErrAlreadyCampaigning, "already_campaigning"},
		{coord.ErrSessionLost, "session_lost"},
		{coord.ErrClosed, "closed"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "timeout"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "error"
}

// timer records one call's time under an operation.
type timer struct{ ops prometheus.ObserverVec }

func (t timer) done(op string, start time.Time, err error) {
	t.ops.WithLabelValues(op, resultLabel(err)).Observe(time.Since(start).Seconds())
}

// timedCoordinator is what Metrics.Coordinator returns.
type timedCoordinator struct {
	c   coord.Coordinator
	ops prometheus.ObserverVec
}

// Unwrap returns the coordinator that does the work, for a caller that
// must reach the backend's own type (a test's harness).
func (t *timedCoordinator) Unwrap() coord.Coordinator { return t.c }

func (t *timedCoordinator) timer() timer { return timer{t.ops} }

func (t *timedCoordinator) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	start := time.Now()
	n, err := t.c.Create(ctx, path, value, opts...)
	t.timer().done(opCreate, start, err)
	return n, err
}

func (t *timedCoordinator) Get(ctx context.Context, path string) (coord.Node, error) {
	start := time.Now()
	n, err := t.c.Get(ctx, path)
	t.timer().done(opGet, start, err)
	return n, err
}

func (t *timedCoordinator) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	start := time.Now()
	v, err := t.c.Set(ctx, path, value, expected)
	t.timer().done(opSet, start, err)
	return v, err
}

func (t *timedCoordinator) Delete(ctx context.Context, path string, expected coord.Version) error {
	start := time.Now()
	err := t.c.Delete(ctx, path, expected)
	t.timer().done(opDelete, start, err)
	return err
}

func (t *timedCoordinator) DeleteTree(ctx context.Context, path string) error {
	start := time.Now()
	err := t.c.DeleteTree(ctx, path)
	t.timer().done(opDeleteTree, start, err)
	return err
}

func (t *timedCoordinator) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	start := time.Now()
	r, err := t.c.Apply(ctx, ops...)
	t.timer().done(opApply, start, err)
	return r, err
}

func (t *timedCoordinator) Children(ctx context.Context, path string) ([]string, error) {
	start := time.Now()
	names, err := t.c.Children(ctx, path)
	t.timer().done(opChildren, start, err)
	return names, err
}

func (t *timedCoordinator) List(ctx context.Context, path string) ([]coord.Node, error) {
	start := time.Now()
	nodes, err := t.c.List(ctx, path)
	t.timer().done(opList, start, err)
	return nodes, err
}

// Campaign is not timed: it waits until this session leads, which says
// nothing of the service's speed.
func (t *timedCoordinator) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	l, err := t.c.Campaign(ctx, election, value)
	if err != nil {
		return l, err
	}
	return &timedLeadership{l: l, ops: t.ops}, nil
}

func (t *timedCoordinator) Leader(ctx context.Context, election string) ([]byte, error) {
	start := time.Now()
	v, err := t.c.Leader(ctx, election)
	t.timer().done(opLeader, start, err)
	return v, err
}

func (t *timedCoordinator) Watch(ctx context.Context, path string) (<-chan coord.NodeEvent, error) {
	start := time.Now()
	ch, err := t.c.Watch(ctx, path)
	t.timer().done(opWatch, start, err)
	return ch, err
}

func (t *timedCoordinator) WatchChildren(ctx context.Context, path string) (<-chan coord.ChildrenEvent, error) {
	start := time.Now()
	ch, err := t.c.WatchChildren(ctx, path)
	t.timer().done(opWatchChildren, start, err)
	return ch, err
}

func (t *timedCoordinator) Done() <-chan struct{} { return t.c.Done() }

func (t *timedCoordinator) SafeUntil() time.Time { return t.c.SafeUntil() }

func (t *timedCoordinator) Close() error {
	start := time.Now()
	err := t.c.Close()
	t.timer().done(opClose, start, err)
	return err
}

// timedLeadership times Resign and the term's fenced writes.
type timedLeadership struct {
	l   coord.Leadership
	ops prometheus.ObserverVec
}

func (t *timedLeadership) Token() int64          { return t.l.Token() }
func (t *timedLeadership) Lost() <-chan struct{} { return t.l.Lost() }

func (t *timedLeadership) Resign(ctx context.Context) error {
	start := time.Now()
	err := t.l.Resign(ctx)
	timer{t.ops}.done(opResign, start, err)
	return err
}

func (t *timedLeadership) Writer() coord.Writer {
	return timedWriter{w: t.l.Writer(), t: timer{t.ops}}
}

// timedWriter times a leadership's fenced writes, as fenced_<operation>.
type timedWriter struct {
	w coord.Writer
	t timer
}

func (w timedWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	start := time.Now()
	n, err := w.w.Create(ctx, path, value, opts...)
	w.t.done(fencedPrefix+opCreate, start, err)
	return n, err
}

func (w timedWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	start := time.Now()
	v, err := w.w.Set(ctx, path, value, expected)
	w.t.done(fencedPrefix+opSet, start, err)
	return v, err
}

func (w timedWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	start := time.Now()
	err := w.w.Delete(ctx, path, expected)
	w.t.done(fencedPrefix+opDelete, start, err)
	return err
}

func (w timedWriter) DeleteTree(ctx context.Context, path string) error {
	start := time.Now()
	err := w.w.DeleteTree(ctx, path)
	w.t.done(fencedPrefix+opDeleteTree, start, err)
	return err
}

func (w timedWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	start := time.Now()
	r, err := w.w.Apply(ctx, ops...)
	w.t.done(fencedPrefix+opApply, start, err)
	return r, err
}
