package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// countingKV counts the requests sent through a client's KV: each Get, Put,
// Delete, Compact, Do and committed Txn is one round trip to the cluster.
type countingKV struct {
	clientv3.KV
	n *atomic.Int64
}

func (k countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.n.Add(1)
	return k.KV.Get(ctx, key, opts...)
}

func (k countingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	k.n.Add(1)
	return k.KV.Put(ctx, key, val, opts...)
}

func (k countingKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	k.n.Add(1)
	return k.KV.Delete(ctx, key, opts...)
}

func (k countingKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	k.n.Add(1)
	return k.KV.Compact(ctx, rev, opts...)
}

func (k countingKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	k.n.Add(1)
	return k.KV.Do(ctx, op)
}

func (k countingKV) Txn(ctx context.Context) clientv3.Txn {
	return countingTxn{Txn: k.KV.Txn(ctx), n: k.n}
}

type countingTxn struct {
	clientv3.Txn
	n *atomic.Int64
}

func (t countingTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	return countingTxn{Txn: t.Txn.If(cs...), n: t.n}
}

func (t countingTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return countingTxn{Txn: t.Txn.Then(ops...), n: t.n}
}

func (t countingTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return countingTxn{Txn: t.Txn.Else(ops...), n: t.n}
}

func (t countingTxn) Commit() (*clientv3.TxnResponse, error) {
	t.n.Add(1)
	return t.Txn.Commit()
}

// countRequests makes c's client count its key-value requests. It must be
// called before c is used: the Coordinator's own goroutines touch only the
// lease API, so replacing KV then races with nothing.
func countRequests(c *Coordinator) *atomic.Int64 {
	n := new(atomic.Int64)
	c.cli.KV = countingKV{KV: c.cli.KV, n: n}
	return n
}

// createCounted runs one Create through w and returns the number of
// requests it sent.
func createCounted(t *testing.T, n *atomic.Int64, w coord.Writer, path string, value []byte, opts ...coord.CreateOption) (coord.Node, int64, error) {
	t.Helper()
	before := n.Load()
	node, err := w.Create(testContext(t), path, value, opts...)
	return node, n.Load() - before, err
}

// madeAsReturned checks that the node Create returned is what the store
// holds, with the lease it should have.
func madeAsReturned(t *testing.T, c *Coordinator, raw *clientv3.Client, node coord.Node, ephemeral bool) {
	t.Helper()
	got, err := c.Get(testContext(t), node.Path)
	if err != nil {
		t.Fatalf("Get(%s) after Create: %v", node.Path, err)
	}
	if got.Version != node.Version || string(got.Value) != string(node.Value) {
		t.Fatalf("Get(%s) = version %d value %q; Create returned version %d value %q", node.Path, got.Version, got.Value, node.Version, node.Value)
	}
	resp, err := raw.Get(testContext(t), c.keys.node(node.Path))
	if err != nil {
		t.Fatal(err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if want := clientv3.NoLease; ephemeral {
		if lease != c.Lease() {
			t.Fatalf("%s: lease %x, want the session's %x", node.Path, lease, c.Lease())
		}
	} else if lease != want {
		t.Fatalf("%s: lease %x, want none", node.Path, lease)
	}
}

// The common case, every ancestor there, persistent, and the node absent,
// costs one transaction, as a bare create-if-absent does.
func TestCreateTakesOneRoundTripWhenItsAncestorsExist(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	n := countRequests(c)
	// The most compares a create makes: every ancestor at MaxPathDepth, the
	// parent's lease, the counter, the node and the fence.
	deepest := strings.Repeat("/x", coord.MaxPathDepth-1)
	for _, p := range []string{"/p", "/d/1/2/3/4", "/q", deepest} {
		if _, err := c.Create(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	fenced := lead(t, c, "me").Writer()
	for _, tc := range []struct {
		name string
		w    coord.Writer
		path string
		opts []coord.CreateOption
		want string // the path made, if not path
	}{
		{name: "top level", w: c, path: "/top"},
		{name: "child", w: c, path: "/p/a"},
		{name: "five deep", w: c, path: "/d/1/2/3/4/5"},
		{name: "ephemeral", w: c, path: "/p/eph", opts: []coord.CreateOption{coord.Ephemeral()}},
		{name: "fenced", w: fenced, path: "/p/fenced"},
		{name: "fenced ephemeral", w: fenced, path: "/p/fenced-eph", opts: []coord.CreateOption{coord.Ephemeral()}},
		// The counter is absent: the first number needs no hint.
		{name: "first sequential", w: c, path: "/q/job-", opts: []coord.CreateOption{coord.Sequential()}, want: "/q/job-" + coord.FormatSequence(0)},
		// The session remembers where it left the counter.
		{name: "next sequential", w: c, path: "/q/job-", opts: []coord.CreateOption{coord.Sequential()}, want: "/q/job-" + coord.FormatSequence(1)},
		{name: "deepest fenced sequential ephemeral", w: fenced, path: deepest + "/y-", opts: []coord.CreateOption{coord.Sequential(), coord.Ephemeral()}, want: deepest + "/y-" + coord.FormatSequence(0)},
		{name: "fenced sequential ephemeral", w: fenced, path: "/q/job-", opts: []coord.CreateOption{coord.Sequential(), coord.Ephemeral()}, want: "/q/job-" + coord.FormatSequence(2)},
	} {
		node, sent, err := createCounted(t, n, tc.w, tc.path, []byte(tc.name), tc.opts...)
		if err != nil {
			t.Fatalf("%s: Create(%s): %v", tc.name, tc.path, err)
		}
		if sent != 1 {
			t.Errorf("%s: Create(%s) sent %d requests, want 1", tc.name, tc.path, sent)
		}
		want := tc.want
		if want == "" {
			want = tc.path
		}
		if node.Path != want {
			t.Fatalf("%s: Create(%s) made %s, want %s", tc.name, tc.path, node.Path, want)
		}
		madeAsReturned(t, c, raw, node, coord.ApplyCreateOptions(tc.opts).Ephemeral)
	}
}

// When the optimistic transaction's compares fail, its Else has read what
// the precise path needs: a refusal costs that one round trip, making
// missing parents one more, and nothing is written by a refused create.
func TestCreateFallsBackWhenTheCommonCaseDoesNotHold(t *testing.T) {
	ns := namespace(t)
	c, raw, ctx := open(t, ns), rawClient(t), testContext(t)
	n := countRequests(c)
	if _, err := c.Create(ctx, "/p/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/p/eph", nil, coord.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	l := lead(t, c, "me")
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	deposed := serverFence(c, l) // only etcd's compare refuses it

	for _, tc := range []struct {
		name string
		w    coord.Writer
		path string
		want error
		sent int64
	}{
		{name: "node exists", w: c, path: "/p/a", want: coord.ErrExists, sent: 1},
		{name: "ephemeral parent", w: c, path: "/p/eph/kid", want: coord.ErrEphemeralParent, sent: 1},
		{name: "ephemeral parent, parents of the parent missing", w: c, path: "/p/eph/kid/grandkid", want: coord.ErrEphemeralParent, sent: 1},
		{name: "fence failed", w: deposed, path: "/p/b", want: coord.ErrNotLeader, sent: 1},
		{name: "fence failed, node exists", w: deposed, path: "/p/a", want: coord.ErrNotLeader, sent: 1},
		{name: "fence failed, parents missing", w: deposed, path: "/m/x", want: coord.ErrNotLeader, sent: 1},
	} {
		before := storeOf(t, raw, ns)
		_, sent, err := createCounted(t, n, tc.w, tc.path, []byte("x"))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Create(%s): %v, want %v", tc.name, tc.path, err, tc.want)
		}
		if sent != tc.sent {
			t.Errorf("%s: Create(%s) sent %d requests, want %d", tc.name, tc.path, sent, tc.sent)
		}
		if after := storeOf(t, raw, ns); !slices.Equal(before, after) {
			t.Errorf("%s: the refused Create changed the store:\nbefore %q\nafter  %q", tc.name, before, after)
		}
	}

	// Missing parents are made persistent and empty, with the node, by the
	// guarded transaction.
	for _, p := range []string{"/m/x/y", "/p/new/deeper"} {
		node, sent, err := createCounted(t, n, c, p, []byte("v"), coord.Ephemeral())
		if err != nil {
			t.Fatalf("Create(%s) with missing parents: %v", p, err)
		}
		if sent != 2 {
			t.Errorf("Create(%s) with missing parents sent %d requests, want 2", p, sent)
		}
		madeAsReturned(t, c, raw, node, true)
		for _, a := range ancestors(p) {
			resp, err := raw.Get(ctx, c.keys.node(a))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != 0 || resp.Kvs[0].Lease != 0 {
				t.Fatalf("parent %s of %s: %v, want one persistent empty node", a, p, resp.Kvs)
			}
		}
	}
}

// A Sequential create's hint is only a guess: when another session moved
// the counter, or the parent was made again and its counter restarted, the
// create falls back and numbers its node from the counter it read.
func TestSequentialCreateFallsBackWhenItsHintIsStale(t *testing.T) {
	ns := namespace(t)
	c, other, raw := open(t, ns), open(t, ns), rawClient(t)
	n := countRequests(c)
	seq := coord.Sequential()
	step := func(w coord.Writer, path string, wantNumber, wantSent int64) {
		t.Helper()
		node, sent, err := createCounted(t, n, w, path, nil, seq)
		if err != nil {
			t.Fatalf("Create(%s): %v", path, err)
		}
		if want := path + coord.FormatSequence(wantNumber); node.Path != want {
			t.Fatalf("Create(%s) made %s, want %s", path, node.Path, want)
		}
		if w == coord.Writer(c) && sent != wantSent {
			t.Errorf("Create(%s) numbered %d sent %d requests, want %d", path, wantNumber, sent, wantSent)
		}
		madeAsReturned(t, c, raw, node, false)
	}
	step(c, "/s/job-", 0, 2) // /s is missing
	step(c, "/s/job-", 1, 1)
	step(other, "/s/job-", 2, 0)
	// The node numbered 2 is gone, but the number stays taken.
	if err := other.Delete(testContext(t), "/s/job-"+coord.FormatSequence(2), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	step(c, "/s/job-", 3, 2) // c expected 2
	step(c, "/s/job-", 4, 1) // and now knows better

	// The counter goes with its parent; c still expects 5.
	if err := other.DeleteTree(testContext(t), "/s"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(testContext(t), "/s", nil); err != nil {
		t.Fatal(err)
	}
	step(c, "/s/job-", 0, 2)
	step(c, "/s/job-", 1, 1)

	// A node in the way of the next number is ErrExists, as without hints.
	if _, err := other.Create(testContext(t), "/s/job-"+coord.FormatSequence(2), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := createCounted(t, n, c, "/s/job-", nil, seq); !errors.Is(err, coord.ErrExists) {
		t.Fatalf("Sequential Create onto an existing node: %v, want ErrExists", err)
	}
}

// The hints stay bounded however many parents a session numbers under.
func TestSequenceHintsAreBounded(t *testing.T) {
	h := hints[int64]{limit: maxSeqHints}
	for i := range 3 * maxSeqHints {
		h.set(fmt.Sprintf("/ns/s/p%d", i), int64(i))
	}
	if len(h.m) > maxSeqHints {
		t.Fatalf("%d hints kept, want at most %d", len(h.m), maxSeqHints)
	}
	last := fmt.Sprintf("/ns/s/p%d", 3*maxSeqHints-1)
	if got, ok := h.get(last); !ok || got != 3*maxSeqHints-1 {
		t.Fatalf("the latest hint %s = %d (%v), want %d", last, got, ok, 3*maxSeqHints-1)
	}
	if got, ok := h.get("/ns/s/never"); ok {
		t.Fatalf("an unknown counter's hint = %d, want none", got)
	}
	h.forget([]string{last})
	if _, ok := h.get(last); ok {
		t.Fatalf("%s is still hinted after forget", last)
	}
}
