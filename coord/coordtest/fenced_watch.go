package coordtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// Scenarios of fenced writes and watches, part of Run.
func fenceAndWatchScenarios() []scenario {
	return []scenario{
		{"FencedWritesSucceedWhileLeading", testFencedWritesSucceedWhileLeading},
		{"FencedWritesFailAfterResign", testFencedWritesFailAfterResign},
		{"FencedWritesFailAfterCandidateDeleted", testFencedWritesFailAfterCandidateDeleted},
		{"NewLeaderWritesWhileOldLeaderIsFenced", testNewLeaderWritesWhileOldLeaderIsFenced},
		{"WatchDeliversCurrentAndFinalState", testWatchDeliversCurrentAndFinalState},
		{"WatchOfMissingNodeSeesItCreated", testWatchOfMissingNodeSeesItCreated},
		{"WatchChildrenTracksDirectChildren", testWatchChildrenTracksDirectChildren},
		{"WatchCancelClosesTheChannel", testWatchCancelClosesTheChannel},
		{"WatchEndsWithErrorWhenSessionExpires", testWatchEndsWithErrorWhenSessionExpires},
	}
}

func testFencedWritesSucceedWhileLeading(t *testing.T, e *env) {
	c := e.open(t)
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	w := l.Writer()
	if _, err := w.Create(e.ctx, "/state/a/b", []byte("1")); err != nil {
		t.Fatalf("fenced Create: %v", err)
	}
	n := mustGet(t, e.ctx, c, "/state/a/b")
	v, err := w.Set(e.ctx, "/state/a/b", []byte("2"), n.Version)
	if err != nil {
		t.Fatalf("fenced Set: %v", err)
	}
	_, err = w.Set(e.ctx, "/state/a/b", []byte("stale"), n.Version)
	wantErr(t, "fenced Set with a stale version", err, coord.ErrVersionConflict)
	_, err = w.Create(e.ctx, "/state/a/b", nil)
	wantErr(t, "fenced Create of an existing node", err, coord.ErrExists)
	wantErr(t, "fenced Delete of a node with children", w.Delete(e.ctx, "/state/a", coord.AnyVersion), coord.ErrNotEmpty)
	if err := w.Delete(e.ctx, "/state/a/b", v); err != nil {
		t.Fatalf("fenced Delete: %v", err)
	}
	seq, err := w.Create(e.ctx, "/state/q/t-", nil, coord.Sequential())
	if err != nil {
		t.Fatalf("fenced sequential Create: %v", err)
	}
	mustGet(t, e.ctx, c, seq.Path)
	if err := w.DeleteTree(e.ctx, "/state"); err != nil {
		t.Fatalf("fenced DeleteTree: %v", err)
	}
	_, err = c.Get(e.ctx, "/state")
	wantErr(t, "Get after fenced DeleteTree", err, coord.ErrNotFound)
	_, err = w.Create(e.ctx, "/bad//path", nil)
	wantErr(t, "fenced Create of an invalid path", err, coord.ErrInvalidPath)
}

// wantFenced checks that every fenced write fails with ErrNotLeader and that
// the store is unchanged.
func wantFenced(t *testing.T, e *env, w coord.Writer, reader coord.Coordinator) {
	t.Helper()
	before := mustGet(t, e.ctx, reader, "/data/x")
	_, err := w.Create(e.ctx, "/data/new", []byte("deposed"))
	wantErr(t, "fenced Create of a deposed leader", err, coord.ErrNotLeader)
	_, err = w.Create(e.ctx, "/elsewhere/deep/new", []byte("deposed"))
	wantErr(t, "fenced Create with parents of a deposed leader", err, coord.ErrNotLeader)
	_, err = w.Set(e.ctx, "/data/x", []byte("deposed"), before.Version)
	wantErr(t, "fenced Set of a deposed leader", err, coord.ErrNotLeader)
	_, err = w.Set(e.ctx, "/data/x", []byte("deposed"), coord.AnyVersion)
	wantErr(t, "fenced Set(AnyVersion) of a deposed leader", err, coord.ErrNotLeader)
	wantErr(t, "fenced Delete of a deposed leader", w.Delete(e.ctx, "/data/x", coord.AnyVersion), coord.ErrNotLeader)
	wantErr(t, "fenced DeleteTree of a deposed leader", w.DeleteTree(e.ctx, "/data"), coord.ErrNotLeader)
	after := mustGet(t, e.ctx, reader, "/data/x")
	if after.Version != before.Version || string(after.Value) != string(before.Value) {
		t.Fatalf("a deposed leader's write changed /data/x: %q@%d → %q@%d", before.Value, before.Version, after.Value, after.Version)
	}
	for _, p := range []string{"/data/new", "/elsewhere"} {
		_, err := reader.Get(e.ctx, p)
		wantErr(t, "Get("+p+") after fenced writes of a deposed leader", err, coord.ErrNotFound)
	}
}

func testFencedWritesFailAfterResign(t *testing.T, e *env) {
	c := e.open(t)
	mustCreate(t, e.ctx, c, "/data/x", []byte("v"))
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	w := l.Writer()
	if err := l.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	wantFenced(t, e, w, c)
}

func testFencedWritesFailAfterCandidateDeleted(t *testing.T, e *env) {
	c, admin := e.open(t), e.open(t)
	mustCreate(t, e.ctx, admin, "/data/x", []byte("v"))
	l := mustLead(t, campaign(e.ctx, c, "me"), e.within(), "the only candidate")
	w := l.Writer()
	names := mustChildren(t, e.ctx, admin, election)
	if len(names) != 1 {
		t.Fatalf("candidates %q, want one", names)
	}
	if err := admin.Delete(e.ctx, coord.Join(election, names[0]), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	// The server refuses whether or not the client has noticed yet.
	wantFenced(t, e, w, admin)
	waitClosed(t, l.Lost(), e.within(), "Lost after the candidate node was deleted")
}

func testNewLeaderWritesWhileOldLeaderIsFenced(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	mustCreate(t, e.ctx, a, "/data/x", []byte("v"))
	la := mustLead(t, campaign(e.ctx, a, "a"), e.within(), "a")
	waiting := campaign(e.ctx, b, "b")
	mustWait(t, waiting, 300*time.Millisecond, "b")
	old := la.Writer()
	if _, err := old.Set(e.ctx, "/data/x", []byte("from a"), coord.AnyVersion); err != nil {
		t.Fatalf("the leader's fenced Set: %v", err)
	}
	if err := la.Resign(e.ctx); err != nil {
		t.Fatal(err)
	}
	lb := mustLead(t, waiting, e.within(), "b")
	if _, err := lb.Writer().Set(e.ctx, "/data/x", []byte("from b"), coord.AnyVersion); err != nil {
		t.Fatalf("the new leader's fenced Set: %v", err)
	}
	wantFenced(t, e, old, b)
	if n := mustGet(t, e.ctx, b, "/data/x"); string(n.Value) != "from b" {
		t.Fatalf("/data/x = %q, want the new leader's write", n.Value)
	}
}

// nextNode waits for the next event of a node watch.
func nextNode(t *testing.T, ch <-chan coord.NodeEvent, d time.Duration, what string) coord.NodeEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the watch channel closed", what)
		}
		return ev
	case <-time.After(d):
		t.Fatalf("%s: no event within %v", what, d)
	}
	return coord.NodeEvent{}
}

// untilNode reads node events until one satisfies cond.
func untilNode(t *testing.T, ch <-chan coord.NodeEvent, d time.Duration, what string, cond func(coord.NodeEvent) bool) coord.NodeEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ev := nextNode(t, ch, time.Until(deadline), what)
		if ev.Err != nil {
			t.Fatalf("%s: watch ended with %v", what, ev.Err)
		}
		if cond(ev) {
			return ev
		}
	}
}

func testWatchDeliversCurrentAndFinalState(t *testing.T, e *env) {
	c, writer := e.open(t), e.open(t)
	mustCreate(t, e.ctx, writer, "/w", []byte("v0"))
	ch, err := c.Watch(e.ctx, "/w")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	first := nextNode(t, ch, e.within(), "first event")
	if !first.Exists || string(first.Node.Value) != "v0" {
		t.Fatalf("first event %+v, want the current state v0", first)
	}
	// Many changes in a row: events may be coalesced, but they come in
	// order and the last state is always delivered.
	const n = 50
	for i := 1; i <= n; i++ {
		if _, err := writer.Set(e.ctx, "/w", []byte(fmt.Sprint("v", i)), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	last := 0
	untilNode(t, ch, e.within(), "the final value", func(ev coord.NodeEvent) bool {
		var i int
		if _, err := fmt.Sscanf(string(ev.Node.Value), "v%d", &i); err != nil || !ev.Exists {
			t.Fatalf("unexpected event %+v", ev)
		}
		if i < last {
			t.Fatalf("events out of order: v%d after v%d", i, last)
		}
		last = i
		return i == n
	})
	if err := writer.Delete(e.ctx, "/w", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	untilNode(t, ch, e.within(), "the delete", func(ev coord.NodeEvent) bool { return !ev.Exists })
	mustCreate(t, e.ctx, writer, "/w", []byte("again"))
	untilNode(t, ch, e.within(), "the re-create", func(ev coord.NodeEvent) bool {
		return ev.Exists && string(ev.Node.Value) == "again"
	})
}

func testWatchOfMissingNodeSeesItCreated(t *testing.T, e *env) {
	c := e.open(t)
	ch, err := c.Watch(e.ctx, "/later/node")
	if err != nil {
		t.Fatalf("Watch of a missing node: %v", err)
	}
	if first := nextNode(t, ch, e.within(), "first event"); first.Exists {
		t.Fatalf("first event %+v, want a missing node", first)
	}
	mustCreate(t, e.ctx, c, "/later/node", []byte("here"))
	ev := untilNode(t, ch, e.within(), "the create", func(ev coord.NodeEvent) bool { return ev.Exists })
	if string(ev.Node.Value) != "here" {
		t.Fatalf("created value %q", ev.Node.Value)
	}
}

func testWatchChildrenTracksDirectChildren(t *testing.T, e *env) {
	c, writer := e.open(t), e.open(t)
	mustCreate(t, e.ctx, writer, "/p/a", nil)
	ch, err := c.WatchChildren(e.ctx, "/p")
	if err != nil {
		t.Fatalf("WatchChildren: %v", err)
	}
	next := func(what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(e.within())
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("%s: channel closed", what)
				}
				if ev.Err != nil {
					t.Fatalf("%s: %v", what, ev.Err)
				}
				if fmt.Sprint(ev.Children) == fmt.Sprint(want) && ev.Exists == (want != nil) {
					return
				}
			case <-time.After(time.Until(deadline)):
				t.Fatalf("%s: children never became %q", what, want)
			}
		}
	}
	next("initial", []string{"a"})
	mustCreate(t, e.ctx, writer, "/p/c", nil)
	mustCreate(t, e.ctx, writer, "/p/b", nil)
	next("two added", []string{"a", "b", "c"})
	mustCreate(t, e.ctx, writer, "/p/b/grandchild", nil)
	mustCreate(t, e.ctx, writer, "/pp", nil)
	if err := writer.Delete(e.ctx, "/p/a", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	next("one removed, grandchild and sibling ignored", []string{"b", "c"})
	if err := writer.DeleteTree(e.ctx, "/p"); err != nil {
		t.Fatal(err)
	}
	next("parent deleted", nil)
}

func testWatchCancelClosesTheChannel(t *testing.T, e *env) {
	c := e.open(t)
	ctx, cancel := context.WithCancel(e.ctx)
	ch, err := c.Watch(ctx, "/x")
	if err != nil {
		t.Fatal(err)
	}
	cch, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	nextNode(t, ch, e.within(), "first event")
	cancel()
	for _, done := range []func() bool{
		func() bool { _, ok := <-ch; return !ok },
		func() bool { _, ok := <-cch; return !ok },
	} {
		closedCh := make(chan bool, 1)
		go func() {
			for !done() {
			}
			closedCh <- true
		}()
		select {
		case <-closedCh:
		case <-time.After(e.within()):
			t.Fatal("a watch channel stayed open after its context was cancelled")
		}
	}
	// The session is unaffected.
	mustCreate(t, e.ctx, c, "/x", nil)
	_, err = c.Watch(e.ctx, "/a//b")
	wantErr(t, "Watch of an invalid path", err, coord.ErrInvalidPath)
	_, err = c.Watch(e.ctx, "/")
	wantErr(t, "Watch of the root", err, coord.ErrInvalidPath)
}

func testWatchEndsWithErrorWhenSessionExpires(t *testing.T, e *env) {
	c := e.open(t)
	ch, err := c.Watch(e.ctx, "/x")
	if err != nil {
		t.Fatal(err)
	}
	nextNode(t, ch, e.within(), "first event")
	if err := e.h.ExpireSession(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(2 * e.within())
	var last coord.NodeEvent
	for {
		select {
		case ev, ok := <-ch:
			if ok {
				last = ev
				continue
			}
			if !errors.Is(last.Err, coord.ErrSessionLost) {
				t.Fatalf("the watch closed after %+v; want a last event with ErrSessionLost", last)
			}
			_, err := c.Watch(e.ctx, "/x")
			wantErr(t, "Watch after the session expired", err, coord.ErrSessionLost)
			return
		case <-deadline:
			t.Fatal("the watch stayed open after its session expired")
		}
	}
}
