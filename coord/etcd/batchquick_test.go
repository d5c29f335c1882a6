package etcd

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hasched/hasched/coord"
)

// applyCounted runs one Apply through w and returns the requests it sent.
func applyCounted(t *testing.T, c *Coordinator, w coord.Writer, ops ...coord.Op) ([]coord.OpResult, int64, error) {
	t.Helper()
	n := c.cli.KV.(countingKV).n
	before := n.Load()
	res, err := w.Apply(testContext(t), ops...)
	return res, n.Load() - before, err
}

// A batch of creates under parents that exist, sets and deletes at the
// versions expected, each node once, is one round trip, fenced or not, up
// to QuickBatchOps ops of the shapes the scheduler sends (a running node
// and a ready node per job; deletes of running nodes); and it writes what
// the precise path writes.
func TestApplyTakesOneRoundTripInTheCommonCase(t *testing.T) {
	c, raw, ctx := open(t, namespace(t)), rawClient(t), testContext(t)
	countRequests(c)
	fenced := lead(t, c, "me").Writer()
	const jobs = coord.QuickBatchOps / 2
	ready := make([]coord.Version, jobs)
	for i := range jobs {
		if _, err := c.Create(ctx, fmt.Sprintf("/running/j%02d", i), nil); err != nil {
			t.Fatal(err)
		}
		n, err := c.Create(ctx, fmt.Sprintf("/ready/j%02d", i), []byte("0"))
		if err != nil {
			t.Fatal(err)
		}
		ready[i] = n.Version
	}
	eph, err := c.Create(ctx, "/eph", []byte("e"), coord.Ephemeral())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		w    coord.Writer
	}{{"plain", c}, {"fenced", fenced}} {
		var ops []coord.Op
		for i := range jobs {
			ops = append(ops,
				coord.CreateOp(fmt.Sprintf("/running/j%02d/%s", i, w.name), []byte("task")),
				coord.SetOp(fmt.Sprintf("/ready/j%02d", i), []byte(w.name), ready[i]))
		}
		res, sent, err := applyCounted(t, c, w.w, ops...)
		if err != nil {
			t.Fatalf("%s: fires: %v", w.name, err)
		}
		if sent != 1 {
			t.Errorf("%s: a batch of %d creates and sets sent %d requests, want 1", w.name, len(ops), sent)
		}
		for i := range jobs {
			ready[i] = res[2*i+1].Version
			got, err := c.Get(ctx, fmt.Sprintf("/ready/j%02d", i))
			if err != nil || string(got.Value) != w.name || got.Version != ready[i] {
				t.Fatalf("%s: ready j%02d = %q at %d (%v), want %q at %d", w.name, i, got.Value, got.Version, err, w.name, ready[i])
			}
		}
		// A set keeps an ephemeral node's lease.
		if _, sent, err := applyCounted(t, c, w.w, coord.SetOp("/eph", []byte(w.name), coord.AnyVersion)); err != nil || sent != 1 {
			t.Fatalf("%s: set of an ephemeral node: %v, %d requests", w.name, err, sent)
		}
		madeAsReturned(t, c, raw, coord.Node{Path: eph.Path, Value: []byte(w.name), Version: mustVersion(t, c, "/eph")}, true)

		ops = ops[:0]
		for i := range jobs {
			ops = append(ops, coord.DeleteOp(fmt.Sprintf("/running/j%02d/%s", i, w.name), coord.AnyVersion))
		}
		if _, sent, err := applyCounted(t, c, w.w, ops...); err != nil || sent != 1 {
			t.Fatalf("%s: %d deletes: %v, %d requests", w.name, len(ops), err, sent)
		}
		for i := range jobs {
			if _, err := c.Get(ctx, fmt.Sprintf("/running/j%02d/%s", i, w.name)); !errors.Is(err, coord.ErrNotFound) {
				t.Fatalf("%s: after the delete: %v", w.name, err)
			}
		}
	}
	// A create under a node the batch makes needs no compare of its own.
	if _, sent, err := applyCounted(t, c, c, coord.CreateOp("/new", nil), coord.CreateOp("/new/child", []byte("x"))); err != nil || sent != 1 {
		t.Fatalf("a create under a node made by the batch: %v, %d requests", err, sent)
	}
}

func mustVersion(t *testing.T, c *Coordinator, path string) coord.Version {
	t.Helper()
	n, err := c.Get(testContext(t), path)
	if err != nil {
		t.Fatal(err)
	}
	return n.Version
}

// When the quick path's compares fail, nothing is written and the precise
// path names the op refused, as it did before; a deposed leader learns so
// in the one round trip; a batch of a shape the quick path does not take
// goes the precise way at once.
func TestApplyFallsBackWhenTheCommonCaseDoesNotHold(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	countRequests(c)
	for _, p := range []string{"/p", "/p/kid", "/full", "/full/kid"} {
		if _, err := c.Create(ctx, p, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(ctx, "/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	v := mustVersion(t, c, "/p")
	for _, tc := range []struct {
		name string
		ops  []coord.Op
		idx  int
		want error
	}{
		{"node exists", []coord.Op{coord.CreateOp("/p/new", nil), coord.CreateOp("/p/kid", nil)}, 1, coord.ErrExists},
		{"parent missing", []coord.Op{coord.SetOp("/p", nil, v), coord.CreateOp("/nope/x", nil)}, 1, coord.ErrNotFound},
		{"ephemeral parent", []coord.Op{coord.CreateOp("/eph/x", nil)}, 0, coord.ErrEphemeralParent},
		{"version", []coord.Op{coord.CreateOp("/p/new", nil), coord.SetOp("/full", nil, v+1000)}, 1, coord.ErrVersionConflict},
		{"set of a missing node", []coord.Op{coord.SetOp("/nope", nil, coord.AnyVersion)}, 0, coord.ErrNotFound},
		{"delete with children", []coord.Op{coord.DeleteOp("/full", coord.AnyVersion)}, 0, coord.ErrNotEmpty},
		{"delete at another version", []coord.Op{coord.DeleteOp("/p/kid", v+1000)}, 0, coord.ErrVersionConflict},
	} {
		_, sent, err := applyCounted(t, c, c, tc.ops...)
		var oe *coord.OpError
		if !errors.As(err, &oe) || oe.Index != tc.idx || !errors.Is(err, tc.want) {
			t.Fatalf("%s: Apply = %v, want op %d refused with %v", tc.name, err, tc.idx, tc.want)
		}
		if sent != 2 {
			t.Errorf("%s: %d requests, want 2 (the quick transaction, the read)", tc.name, sent)
		}
		if _, err := c.Get(ctx, "/p/new"); !errors.Is(err, coord.ErrNotFound) {
			t.Fatalf("%s: a refused batch wrote /p/new: %v", tc.name, err)
		}
	}

	// Shapes the precise path alone takes: one node twice, a delete under a
	// node the batch deletes. Both are written as before.
	for _, ops := range [][]coord.Op{
		{coord.CreateOp("/p/twice", nil), coord.DeleteOp("/p/twice", coord.AnyVersion)},
		{coord.DeleteOp("/full/kid", coord.AnyVersion), coord.DeleteOp("/full", coord.AnyVersion)},
	} {
		if _, sent, err := applyCounted(t, c, c, ops...); err != nil || sent != 2 {
			t.Fatalf("%v: %v, %d requests, want 2 (the read, the write)", ops, err, sent)
		}
	}
	if _, err := c.Get(ctx, "/full"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("/full after deleting it with its child: %v", err)
	}

	// A deposed leader's quick batch fails on the fence, in one round trip.
	l := lead(t, c, "me")
	// As if the loss had not been seen yet: the server must say so.
	w := writer{c: c, f: &fence{election: l.election, key: l.key, rev: l.rev, lost: make(chan struct{})}}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	_, sent, err := applyCounted(t, c, w, coord.CreateOp("/p/deposed", nil))
	if !errors.Is(err, coord.ErrNotLeader) || sent != 1 {
		t.Fatalf("a deposed leader's batch: %v in %d requests, want ErrNotLeader in 1", err, sent)
	}
}

// A parent seen by the precise path is pinned by one compare from then on;
// a stale hint costs the precise path once and is forgotten.
func TestApplyParentHints(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	countRequests(c)
	if _, err := c.Create(ctx, "/p", nil); err != nil {
		t.Fatal(err)
	}
	// One node twice: the precise path, which reads /p.
	if _, err := c.Apply(ctx, coord.CreateOp("/p/a", nil), coord.SetOp("/p/a", nil, coord.AnyVersion)); err != nil {
		t.Fatal(err)
	}
	key := c.keys.node("/p")
	if _, ok := c.parents.get(key); !ok {
		t.Fatal("the precise path left no hint for /p")
	}
	q, ok := c.planQuick([]coord.Op{coord.CreateOp("/p/b", nil)}, false)
	if !ok || len(q.cmps) != 2 || len(q.hinted) != 1 {
		t.Fatalf("a create under a hinted parent: quick %v, %d compares, hinted %v; want 2 compares", ok, len(q.cmps), q.hinted)
	}
	// /p made again: the hint names an incarnation that is gone.
	if err := c.DeleteTree(ctx, "/p"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/p", nil); err != nil {
		t.Fatal(err)
	}
	if _, sent, err := applyCounted(t, c, c, coord.CreateOp("/p/b", nil)); err != nil || sent != 3 {
		t.Fatalf("a create under a parent made again: %v, %d requests, want 3 (quick, read, write)", err, sent)
	}
	if rev, ok := c.parents.get(key); !ok || coord.Version(rev) != mustVersion(t, c, "/p") {
		t.Fatalf("the hint for /p is %d (%v) after the precise path read it again", rev, ok)
	}
	if _, sent, err := applyCounted(t, c, c, coord.CreateOp("/p/c", nil)); err != nil || sent != 1 {
		t.Fatalf("with the new hint: %v, %d requests, want 1", err, sent)
	}
}
