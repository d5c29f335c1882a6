package zk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

// These tests need a ZooKeeper server: see server_test.go.

func campaign(t *testing.T, ctx context.Context, c *Coordinator, election string) *Leadership {
	t.Helper()
	l, err := c.Campaign(ctx, election, []byte("leader"))
	if err != nil {
		t.Fatalf("Campaign(%s): %v", election, err)
	}
	return l.(*Leadership)
}

// snapshot reads every node of the namespace below "/" except those under
// skip: path -> value@version.
func snapshot(t *testing.T, ctx context.Context, c coord.Coordinator, skip string) map[string]string {
	t.Helper()
	nodes := map[string]string{}
	var walk func(string)
	walk = func(p string) {
		names, err := c.Children(ctx, p)
		if err != nil {
			t.Fatalf("Children(%s): %v", p, err)
		}
		for _, name := range names {
			child := coord.Join(p, name)
			if child == skip {
				continue
			}
			n, err := c.Get(ctx, child)
			if err != nil {
				t.Fatalf("Get(%s): %v", child, err)
			}
			nodes[child] = fmt.Sprintf("%q@%d", n.Value, n.Version)
			walk(child)
		}
	}
	walk("/")
	return nodes
}

func sameStore(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Fatalf("%s changed the store:\nbefore %v\nafter  %v", what, before, after)
	}
}

// fencedWritesFail makes every kind of fenced write through w and expects
// each to fail with want, having changed nothing. The store holds /x and
// /tree/a/b.
func fencedWritesFail(t *testing.T, ctx context.Context, w coord.Writer, witness coord.Coordinator, want error) {
	t.Helper()
	before := snapshot(t, ctx, witness, "/el")
	x, err := witness.Get(ctx, "/x")
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Create(ctx, "/new", []byte("n"))
	wantIs(t, "Create", err, want)
	_, err = w.Create(ctx, "/deep/er/node", []byte("n"))
	wantIs(t, "Create with missing parents", err, want)
	_, err = w.Create(ctx, "/tree/a/c", nil, coord.Ephemeral(), coord.Sequential())
	wantIs(t, "Create ephemeral sequential", err, want)
	_, err = w.Set(ctx, "/x", []byte("changed"), x.Version)
	wantIs(t, "Set with the current version", err, want)
	_, err = w.Set(ctx, "/x", []byte("changed"), coord.AnyVersion)
	wantIs(t, "Set with AnyVersion", err, want)
	wantIs(t, "Delete with the current version", w.Delete(ctx, "/x", x.Version), want)
	wantIs(t, "Delete with AnyVersion", w.Delete(ctx, "/tree/a/b", coord.AnyVersion), want)
	wantIs(t, "DeleteTree", w.DeleteTree(ctx, "/tree"), want)
	sameStore(t, "a write failing with "+want.Error(), before, snapshot(t, ctx, witness, "/el"))
}

func seedStore(t *testing.T, ctx context.Context, c coord.Coordinator) {
	t.Helper()
	for _, p := range []string{"/x", "/tree/a/b"} {
		if _, err := c.Create(ctx, p, []byte("seed")); err != nil {
			t.Fatalf("Create(%s): %v", p, err)
		}
	}
}

// unaware is a writer fenced by l's candidate node that does not know the
// term is over: only ZooKeeper's check can stop its writes.
func unaware(c *Coordinator, l *Leadership) coord.Writer {
	return writer{c: c, g: &guard{node: l.node, version: l.guard.version, lost: make(chan struct{})}}
}

func TestFencedWritesWhileLeading(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	l := campaign(t, ctx, c, "/el")
	ok, stat, err := c.Conn().Exists(l.node)
	if err != nil || !ok || stat.Version != 0 || l.guard.version != 0 {
		t.Fatalf("the candidate node: exists %v, stat %+v, %v, guard version %d; want version 0 as created", ok, stat, err, l.guard.version)
	}
	w := l.Writer()

	made, err := w.Create(ctx, "/jobs/a/b", []byte("v1"))
	if err != nil || made.Path != "/jobs/a/b" {
		t.Fatalf("Create with missing parents: %q, %v", made.Path, err)
	}
	if names, err := c.Children(ctx, "/jobs"); err != nil || !slices.Equal(names, []string{"a"}) {
		t.Fatalf("the parent made with it: %q, %v", names, err)
	}
	seqNode, err := w.Create(ctx, "/jobs/a/t-", nil, coord.Sequential(), coord.Ephemeral())
	seq := seqNode.Path
	if err != nil || !strings.HasPrefix(seq, "/jobs/a/t-") || len(seq) != len("/jobs/a/t-")+coord.SequenceWidth {
		t.Fatalf("Create sequential: %q, %v", seq, err)
	}
	_, err = w.Create(ctx, "/jobs/a/b", nil)
	wantIs(t, "Create of an existing node", err, coord.ErrExists)
	_, err = w.Create(ctx, seq+"/child/deeper", nil)
	wantIs(t, "Create under an ephemeral node", err, coord.ErrEphemeralParent)
	if _, err := c.Get(ctx, seq+"/child"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("a parent of the refused create: %v, want none made", err)
	}

	n, err := c.Get(ctx, "/jobs/a/b")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := w.Set(ctx, "/jobs/a/b", []byte("v2"), n.Version)
	if err != nil {
		t.Fatalf("Set with the current version: %v", err)
	}
	if got, err := c.Get(ctx, "/jobs/a/b"); err != nil || string(got.Value) != "v2" || got.Version != v2 {
		t.Fatalf("after Set: %+v, %v; want v2 at version %d", got, err, v2)
	}
	_, err = w.Set(ctx, "/jobs/a/b", []byte("v3"), n.Version)
	wantIs(t, "Set with a stale version", err, coord.ErrVersionConflict)
	_, err = w.Set(ctx, "/jobs/missing", nil, coord.AnyVersion)
	wantIs(t, "Set of a missing node", err, coord.ErrNotFound)
	if _, err := w.Set(ctx, "/jobs/a/b", []byte("v4"), coord.AnyVersion); err != nil {
		t.Fatalf("Set with AnyVersion: %v", err)
	}

	wantIs(t, "Delete with a stale version", w.Delete(ctx, "/jobs/a/b", v2), coord.ErrVersionConflict)
	wantIs(t, "Delete of a node with children", w.Delete(ctx, "/jobs/a", coord.AnyVersion), coord.ErrNotEmpty)
	wantIs(t, "Delete of a missing node", w.Delete(ctx, "/jobs/missing", coord.AnyVersion), coord.ErrNotFound)
	n, err = c.Get(ctx, "/jobs/a/b")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Delete(ctx, "/jobs/a/b", n.Version); err != nil {
		t.Fatalf("Delete with the current version: %v", err)
	}
	if err := w.Delete(ctx, seq, coord.AnyVersion); err != nil {
		t.Fatalf("Delete with AnyVersion: %v", err)
	}

	// A tree larger than one batch, and nested.
	leaves := make([]any, 0, deleteBatchOps+200)
	for i := range cap(leaves) {
		leaves = append(leaves, &zk.CreateRequest{Path: fmt.Sprintf("%s/tree/leaf-%05d", c.root, i), Acl: c.acl})
	}
	if _, err := c.Create(ctx, "/tree/deep/er/est", nil); err != nil {
		t.Fatal(err)
	}
	for len(leaves) > 0 {
		k := min(len(leaves), 500)
		if _, err := c.Conn().Multi(leaves[:k]...); err != nil {
			t.Fatal(err)
		}
		leaves = leaves[k:]
	}
	if err := w.DeleteTree(ctx, "/tree"); err != nil {
		t.Fatalf("DeleteTree: %v", err)
	}
	if _, err := c.Get(ctx, "/tree"); !errors.Is(err, coord.ErrNotFound) {
		t.Fatalf("after DeleteTree: %v, want ErrNotFound", err)
	}
	wantIs(t, "DeleteTree of a missing node", w.DeleteTree(ctx, "/tree"), coord.ErrNotFound)

	select {
	case <-l.Lost():
		t.Fatal("leadership lost by writing through it")
	default:
	}
}

func TestFencedWritesFailAfterResign(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	seedStore(t, ctx, c)
	l := campaign(t, ctx, c, "/el")
	late := unaware(c, l)
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	fencedWritesFail(t, ctx, l.Writer(), c, coord.ErrNotLeader)
	fencedWritesFail(t, ctx, late, c, coord.ErrNotLeader)
}

func TestFencedWritesFailAfterTheCandidateIsDeletedFromOutside(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	seedStore(t, ctx, c)
	l := campaign(t, ctx, c, "/el")
	late := unaware(c, l)
	if err := other.Delete(ctx, strings.TrimPrefix(l.node, c.root), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	// Before the leadership hears of it, ZooKeeper's check alone stops
	// the writes.
	fencedWritesFail(t, ctx, late, other, coord.ErrNotLeader)
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed after the candidate was deleted")
	}
	fencedWritesFail(t, ctx, l.Writer(), other, coord.ErrNotLeader)
}

// A candidate node changed from outside would fail every fenced write's
// check: the leadership ends with it.
func TestCandidateChangedFromOutsideEndsTheTerm(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	seedStore(t, ctx, c)
	l := campaign(t, ctx, c, "/el")
	late := unaware(c, l)
	if _, err := c.Set(ctx, strings.TrimPrefix(l.node, c.root), []byte("meddled"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	fencedWritesFail(t, ctx, late, c, coord.ErrNotLeader)
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed after the candidate was changed")
	}
	fencedWritesFail(t, ctx, l.Writer(), c, coord.ErrNotLeader)
}

// After the leader's session is lost its own writes fail with
// ErrSessionLost; writes fenced by its candidate, wherever they come from,
// with ErrNotLeader; the next leader's writes go through.
func TestFencedWritesAfterTheSessionIsLostAndTheNextLeaderWrites(t *testing.T) {
	h, ctx, ns := serverTest(t)
	old, _ := h.openTest(t, ctx, ns)
	next, _ := h.openTest(t, ctx, ns)
	seedStore(t, ctx, next)
	l := campaign(t, ctx, old, "/el")
	won := make(chan *Leadership, 1)
	go func() {
		l, err := next.Campaign(ctx, "/el", []byte("next"))
		if err != nil {
			t.Errorf("the second candidate's Campaign: %v", err)
			won <- nil
			return
		}
		won <- l.(*Leadership)
	}()
	waitChildren(t, ctx, next, "/el", 2)
	if err := h.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed after the session was lost")
	}
	fencedWritesFail(t, ctx, l.Writer(), next, coord.ErrSessionLost)
	fencedWritesFail(t, ctx, unaware(next, l), next, coord.ErrNotLeader)

	var l2 *Leadership
	select {
	case l2 = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("the second candidate did not lead after the first one's session was lost")
	}
	if l2 == nil {
		t.FailNow()
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("the next term's token %d is not above the old one's %d", l2.Token(), l.Token())
	}
	w := l2.Writer()
	if _, err := w.Set(ctx, "/x", []byte("next"), coord.AnyVersion); err != nil {
		t.Fatalf("the new leader's Set: %v", err)
	}
	if _, err := w.Create(ctx, "/by/next", nil); err != nil {
		t.Fatalf("the new leader's Create: %v", err)
	}
	fencedWritesFail(t, ctx, unaware(next, l), next, coord.ErrNotLeader)
	if err := w.DeleteTree(ctx, "/tree"); err != nil {
		t.Fatalf("the new leader's DeleteTree: %v", err)
	}
}
