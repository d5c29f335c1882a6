package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/wait"
)

const eventTimeout = 10 * time.Second

// next receives one event, failing the test if none comes or the channel
// is closed.
func next[E any](t *testing.T, ch <-chan E) E {
	t.Helper()
	return wait.Recv(t, "the next watch event", ch, eventTimeout)
}

// until receives events until done holds for one, and returns them all.
func until[E any](t *testing.T, ch <-chan E, done func(E) bool) []E {
	t.Helper()
	return wait.RecvUntil(t, "the awaited watch event", ch, eventTimeout, done)
}

// closesAfter receives until the channel is closed and returns what came.
func closesAfter[E any](t *testing.T, ch <-chan E) []E {
	t.Helper()
	return wait.Closes(t, "the watch channel", ch, eventTimeout)
}

func TestWatchRefusesBadCalls(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	for _, p := range []string{"", "a", "/a/", "/a//b", "/a/../b"} {
		if _, err := c.Watch(ctx, p); !errors.Is(err, coord.ErrInvalidPath) {
			t.Errorf("Watch(%q): %v, want ErrInvalidPath", p, err)
		}
		if _, err := c.WatchChildren(ctx, p); !errors.Is(err, coord.ErrInvalidPath) {
			t.Errorf("WatchChildren(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	if _, err := c.Watch(ctx, "/"); !errors.Is(err, coord.ErrInvalidPath) {
		t.Errorf("Watch(/): %v, want ErrInvalidPath", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Watch(ctx, "/a"); !errors.Is(err, coord.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
	if _, err := c.WatchChildren(ctx, "/"); !errors.Is(err, coord.ErrClosed) {
		t.Errorf("WatchChildren after Close: %v, want ErrClosed", err)
	}

	c, raw := open(t, namespace(t)), rawClient(t)
	if _, err := raw.Revoke(ctx, c.Lease()); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if _, err := c.Watch(ctx, "/a"); !errors.Is(err, coord.ErrSessionLost) {
		t.Errorf("Watch after the session ended: %v, want ErrSessionLost", err)
	}
	if _, err := c.WatchChildren(ctx, "/a"); !errors.Is(err, coord.ErrSessionLost) {
		t.Errorf("WatchChildren after the session ended: %v, want ErrSessionLost", err)
	}
}

func TestWatchStartsWithTheCurrentState(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	ch, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Exists || e.Resync || e.Err != nil || e.Node.Path != "/n" {
		t.Fatalf("first event of a missing node: %+v", e)
	}
	if _, err := c.Create(ctx, "/m", []byte("v")); err != nil {
		t.Fatal(err)
	}
	n, err := c.Get(ctx, "/m")
	if err != nil {
		t.Fatal(err)
	}
	ch, err = c.Watch(ctx, "/m")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); !e.Exists || e.Resync || e.Err != nil || string(e.Node.Value) != "v" || e.Node.Version != n.Version {
		t.Fatalf("first event of %+v: %+v", n, e)
	}
}

// mutate runs a create/set/delete sequence on /n that ends with /n holding
// "final", and returns its version.
func mutate(t *testing.T, c *Coordinator) coord.Version {
	t.Helper()
	ctx := testContext(t)
	for round := range 5 {
		if _, err := c.Create(ctx, "/n", []byte("created")); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if _, err := c.Set(ctx, "/n", fmt.Appendf(nil, "%d-%d", round, i), coord.AnyVersion); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Delete(ctx, "/n", coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(ctx, "/n", []byte("created")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Set(ctx, "/n", []byte("final"), coord.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkOrder fails unless the states came in revision order: a node's
// version, or the revision of its removal, never goes back. Removals carry
// no revision, so only versions are compared.
func checkOrder(t *testing.T, events []coord.NodeEvent) {
	t.Helper()
	var last coord.Version
	for i, e := range events {
		if e.Err != nil {
			t.Fatalf("event %d: %v", i, e.Err)
		}
		if e.Exists {
			if e.Node.Version <= last {
				t.Fatalf("event %d has version %d after %d: %+v", i, e.Node.Version, last, events)
			}
			last = e.Node.Version
		}
	}
}

func TestWatchDeliversStatesInOrderEndingInTheLast(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	ch, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Exists {
		t.Fatalf("first event: %+v", e)
	}
	got := make(chan []coord.NodeEvent, 1)
	var final coord.Version
	go func() {
		var seen []coord.NodeEvent
		for e := range ch {
			seen = append(seen, e)
			if e.Exists && string(e.Node.Value) == "final" {
				break
			}
		}
		got <- seen
	}()
	final = mutate(t, c)
	select {
	case seen := <-got:
		checkOrder(t, seen)
		if last := seen[len(seen)-1]; last.Node.Version != final || last.Resync {
			t.Fatalf("last state %+v, want version %d", last, final)
		}
	case <-time.After(eventTimeout):
		t.Fatal("the final state was not delivered")
	}
}

// A reader that does not read while the node changes gets the newest state
// when it reads again; the watch never waited for it.
func TestWatchSlowReaderGetsTheNewestState(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	ch, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	final := mutate(t, c)
	// Let the watch catch up with every change while nobody reads.
	time.Sleep(time.Second)
	e := next(t, ch)
	if !e.Exists || e.Node.Version != final || string(e.Node.Value) != "final" {
		t.Fatalf("a slow reader's first read: %+v, want the final state (version %d)", e, final)
	}
	// A slow reader that reads now and then sees order kept and the end.
	if _, err := c.Set(ctx, "/n", []byte("again"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	seen := []coord.NodeEvent{e}
	for i := range 20 {
		v, err := c.Set(ctx, "/n", fmt.Appendf(nil, "slow-%d", i), coord.AnyVersion)
		if err != nil {
			t.Fatal(err)
		}
		final = v
		if i%5 == 0 {
			seen = append(seen, next(t, ch))
		}
	}
	seen = append(seen, until(t, ch, func(e coord.NodeEvent) bool { return e.Node.Version == final })...)
	checkOrder(t, seen)
}

func TestWatchChildrenFollowsDirectChildrenOnly(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	ch, err := c.WatchChildren(ctx, "/p")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Exists || len(e.Children) != 0 || e.Resync || e.Err != nil {
		t.Fatalf("first event of a missing node: %+v", e)
	}
	impossible := func(es []coord.ChildrenEvent) {
		t.Helper()
		for _, e := range es {
			if e.Err != nil || e.Resync || !slices.IsSorted(e.Children) || (!e.Exists && len(e.Children) > 0) || slices.Contains(e.Children, "deep") {
				t.Fatalf("impossible state %+v among %+v", e, es)
			}
		}
	}
	is := func(exists bool, names ...string) func(coord.ChildrenEvent) bool {
		return func(e coord.ChildrenEvent) bool { return e.Exists == exists && slices.Equal(e.Children, names) }
	}
	names := func(ns ...string) []string { return ns }

	// The node and its first child made in one transaction.
	if _, err := c.Create(ctx, "/p/b", nil); err != nil {
		t.Fatal(err)
	}
	impossible(until(t, ch, is(true, "b")))
	if _, err := c.Create(ctx, "/p/a", nil); err != nil {
		t.Fatal(err)
	}
	// Grandchildren, values of children, and the node's own value change
	// nothing; a sibling of the node is not a child.
	if _, err := c.Create(ctx, "/p/a/deep", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/p/a", []byte("x"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/p", []byte("x"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/pq", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/p/c", nil); err != nil {
		t.Fatal(err)
	}
	seen := until(t, ch, is(true, "a", "b", "c"))
	impossible(seen)
	for _, e := range seen {
		if !slices.Equal(e.Children, names("a", "b")) && !slices.Equal(e.Children, names("a", "b", "c")) {
			t.Fatalf("unexpected state %+v among %+v", e, seen)
		}
	}
	if err := c.Delete(ctx, "/p/b", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	impossible(until(t, ch, is(true, "a", "c")))
	if err := c.DeleteTree(ctx, "/p/a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "/p/c", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	// The last child gone, the node stays.
	impossible(until(t, ch, is(true)))
	if err := c.Delete(ctx, "/p", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	impossible(until(t, ch, is(false)))
	// Made empty, then removed with its children in one revision.
	if _, err := c.Create(ctx, "/p", nil); err != nil {
		t.Fatal(err)
	}
	impossible(until(t, ch, is(true)))
	for _, p := range []string{"/p/x", "/p/y/deep"} {
		if _, err := c.Create(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	impossible(until(t, ch, is(true, "x", "y")))
	if err := c.DeleteTree(ctx, "/p"); err != nil {
		t.Fatal(err)
	}
	seen = until(t, ch, is(false))
	impossible(seen)
	for _, e := range seen[:len(seen)-1] {
		if e.Exists && len(e.Children) == 0 {
			t.Fatalf("DeleteTree showed the node without its children, a state that never was: %+v", seen)
		}
	}
}

func TestWatchChildrenOfTheRoot(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	if _, err := c.Create(ctx, "/a/deep", nil); err != nil {
		t.Fatal(err)
	}
	ch, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); !e.Exists || !slices.Equal(e.Children, []string{"a"}) {
		t.Fatalf("first event of the root: %+v", e)
	}
	if _, err := c.Create(ctx, "/b", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTree(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	until(t, ch, func(e coord.ChildrenEvent) bool { return e.Exists && slices.Equal(e.Children, []string{"b"}) })
	if err := c.Delete(ctx, "/b", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	until(t, ch, func(e coord.ChildrenEvent) bool { return e.Exists && len(e.Children) == 0 })
}

// compactAll compacts the store up to its current revision.
func compactAll(t *testing.T, c *Coordinator) {
	t.Helper()
	ctx := testContext(t)
	resp, err := c.Client().Get(ctx, "compact")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

// When the revisions a watch would resume from are compacted away, the
// state is read anew and delivered with Resync set. The watch is set up by
// hand here so the store can move on and be compacted between the first
// read and the watch.
func TestWatchResyncsAfterCompaction(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	if _, err := c.Create(ctx, "/n/a", []byte("1")); err != nil {
		t.Fatal(err)
	}

	w, err := c.newWatch(ctx, "/n", false)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := c.newWatch(ctx, "/n", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/n", []byte("2"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/n/b", nil); err != nil {
		t.Fatal(err)
	}
	v, err := c.Set(ctx, "/n", []byte("3"), coord.AnyVersion)
	if err != nil {
		t.Fatal(err)
	}
	compactAll(t, c)

	ch, err := w.nodeEvents()
	if err != nil {
		t.Fatal(err)
	}
	cch, err := cw.childrenEvents()
	if err != nil {
		t.Fatal(err)
	}
	// The first state may be replaced by the resync before it is read.
	seen := until(t, ch, func(e coord.NodeEvent) bool { return e.Resync })
	if e := seen[len(seen)-1]; e.Node.Version != v || string(e.Node.Value) != "3" {
		t.Fatalf("after compaction: %+v, want a resync to version %d", e, v)
	}
	if e := seen[0]; len(seen) == 2 && (e.Resync || string(e.Node.Value) != "") || len(seen) > 2 {
		t.Fatalf("events up to the resync: %+v, want at most the state before the changes", seen)
	}
	cseen := until(t, cch, func(e coord.ChildrenEvent) bool { return e.Resync })
	if e := cseen[len(cseen)-1]; !e.Exists || !slices.Equal(e.Children, []string{"a", "b"}) {
		t.Fatalf("children after compaction: %+v, want a resync to [a b]", e)
	}
	if e := cseen[0]; len(cseen) == 2 && !slices.Equal(e.Children, []string{"a"}) || len(cseen) > 2 {
		t.Fatalf("children events up to the resync: %+v, want at most the state before the changes", cseen)
	}
	// The watches go on from the resync.
	if _, err := c.Set(ctx, "/n", []byte("4"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "/n/a", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Resync || string(e.Node.Value) != "4" {
		t.Fatalf("after the resync: %+v", e)
	}
	if e := next(t, cch); e.Resync || !slices.Equal(e.Children, []string{"b"}) {
		t.Fatalf("children after the resync: %+v", e)
	}
}

func TestWatchContextCancelClosesTheChannelAndLeaksNothing(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	if _, err := c.Create(ctx, "/p/a", nil); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	wctx, cancel := context.WithCancel(ctx)
	ch, err := c.Watch(wctx, "/p")
	if err != nil {
		t.Fatal(err)
	}
	cch, err := c.WatchChildren(wctx, "/p")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	next(t, cch)
	if _, err := c.Set(ctx, "/p", []byte("x"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, "/p/b", nil); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	next(t, cch)
	cancel()
	for _, e := range closesAfter(t, ch) {
		if e.Err != nil {
			t.Fatalf("an event with an error after the caller cancelled: %+v", e)
		}
	}
	for _, e := range closesAfter(t, cch) {
		if e.Err != nil {
			t.Fatalf("an event with an error after the caller cancelled: %+v", e)
		}
	}
	if err := goleak.Find(before); err != nil {
		t.Fatalf("goroutines left after the watches ended: %v", err)
	}
	if closed(c.Done()) {
		t.Fatal("cancelling a watch ended the session")
	}
}

func TestWatchEndsWithSessionLost(t *testing.T) {
	c, raw, ctx := open(t, namespace(t)), rawClient(t), testContext(t)
	ch, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	cch, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	// Leave the first events unread: the error replaces them.
	if _, err := raw.Revoke(ctx, c.Lease()); err != nil {
		t.Fatal(err)
	}
	for _, got := range [][]error{errsOf(closesAfter(t, ch)), errsOf(closesAfter(t, cch))} {
		if len(got) == 0 || !errors.Is(got[len(got)-1], coord.ErrSessionLost) {
			t.Fatalf("events' errors before the channel closed: %v, want ErrSessionLost last", got)
		}
	}
}

func TestWatchEndsWithClosed(t *testing.T) {
	c, ctx := open(t, namespace(t)), testContext(t)
	ch, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	cch, err := c.WatchChildren(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the watches: their last events are there already.
	for _, got := range [][]error{errsOf(drain(t, ch)), errsOf(drain(t, cch))} {
		if len(got) != 1 || !errors.Is(got[0], coord.ErrClosed) {
			t.Fatalf("events' errors after Close: %v, want exactly ErrClosed", got)
		}
	}
}

// drain receives what is in a closed channel; it fails if it is not closed.
func drain[E any](t *testing.T, ch <-chan E) []E {
	t.Helper()
	var out []E
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			t.Fatalf("the watch channel is still open after %+v", out)
		}
	}
}

func errsOf[E interface {
	coord.NodeEvent | coord.ChildrenEvent
}](events []E) []error {
	var errs []error
	for _, e := range events {
		switch e := any(e).(type) {
		case coord.NodeEvent:
			errs = append(errs, e.Err)
		case coord.ChildrenEvent:
			errs = append(errs, e.Err)
		}
	}
	return errs
}
