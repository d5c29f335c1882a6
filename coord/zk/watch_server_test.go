package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/wait"
)

// These tests need a ZooKeeper server: see server_test.go.

func quiet[E any](t *testing.T, what string, ch <-chan E, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		t.Fatalf("%s: event %+v (open %v), want none", what, ev, ok)
	case <-time.After(d):
	}
}

// The watch starts with the node's state, then sees every step of a
// sequence made one event at a time.
func TestWatchDeliversTheInitialStateAndEachChange(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	ch, err := c.Watch(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	// Watch has read the initial state before it returned: a change made
	// after it comes as the second event.
	if _, err := c.Create(ctx, "/w", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	ev := wait.Recv(t, "the initial state", ch, 5*time.Second)
	if ev.Exists || ev.Err != nil || ev.Resync || ev.Node.Path != "/w" || ev.Node.Value != nil {
		t.Fatalf("the initial state of a missing node: %+v", ev)
	}
	ev = wait.Recv(t, "after Create", ch, 5*time.Second)
	n, _ := c.Get(ctx, "/w")
	if !ev.Exists || string(ev.Node.Value) != "v1" || ev.Node.Version != n.Version || ev.Node.Path != "/w" {
		t.Fatalf("after Create: %+v, want v1 at version %d", ev, n.Version)
	}
	v2, err := c.Set(ctx, "/w", []byte("v2"), n.Version)
	if err != nil {
		t.Fatal(err)
	}
	ev = wait.Recv(t, "after Set", ch, 5*time.Second)
	if !ev.Exists || string(ev.Node.Value) != "v2" || ev.Node.Version != v2 {
		t.Fatalf("after Set: %+v, want v2 at version %d", ev, v2)
	}
	// A child changes nothing of the node's own state.
	if _, err := c.Create(ctx, "/w/child", nil); err != nil {
		t.Fatal(err)
	}
	quiet(t, "after a child was made", ch, 300*time.Millisecond)
	if err := c.DeleteTree(ctx, "/w"); err != nil {
		t.Fatal(err)
	}
	ev = wait.Recv(t, "after the delete", ch, 5*time.Second)
	if ev.Exists || ev.Node.Value != nil {
		t.Fatalf("after the delete: %+v", ev)
	}
	if _, err := c.Create(ctx, "/w", []byte("v3")); err != nil {
		t.Fatal(err)
	}
	ev = wait.Recv(t, "after re-creating", ch, 5*time.Second)
	if !ev.Exists || string(ev.Node.Value) != "v3" {
		t.Fatalf("after re-creating: %+v", ev)
	}
}

// step is one state of a sequence of writes: Exists and the value.
type step struct {
	exists bool
	value  string
}

func (s step) String() string {
	if !s.exists {
		return "missing"
	}
	return s.value
}

// A fast sequence of creates, sets and deletes is seen in order, possibly
// coalesced, ending with its final state, whether the reader keeps up or
// not.
func TestWatchSeesASequenceInOrderEndingInItsFinalState(t *testing.T) {
	for _, readDelay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("reader takes %v an event", readDelay), func(t *testing.T) {
			h, ctx, ns := serverTest(t)
			c, _ := h.openTest(t, ctx, ns)
			writerC, _ := h.openTest(t, ctx, ns)
			ch, err := c.Watch(ctx, "/seq")
			if err != nil {
				t.Fatal(err)
			}
			if ev := wait.Recv(t, "the initial state", ch, 5*time.Second); ev.Exists {
				t.Fatalf("initial state %+v", ev)
			}
			// The states written, in order; the reader below runs while
			// they are being written.
			var steps []step
			for round := range 10 {
				steps = append(steps, step{true, fmt.Sprintf("c%d", round)})
				for i := range 10 {
					steps = append(steps, step{true, fmt.Sprintf("s%d.%d", round, i)})
				}
				if round < 9 {
					steps = append(steps, step{false, ""})
				}
			}
			written := make(chan error, 1)
			go func() {
				written <- func() error {
					for _, s := range steps {
						var err error
						switch {
						case !s.exists:
							err = writerC.Delete(ctx, "/seq", coord.AnyVersion)
						case s.value[0] == 'c':
							_, err = writerC.Create(ctx, "/seq", []byte(s.value))
						default:
							_, err = writerC.Set(ctx, "/seq", []byte(s.value), coord.AnyVersion)
						}
						if err != nil {
							return fmt.Errorf("writing %v: %w", s, err)
						}
					}
					return nil
				}()
			}()
			// Every existing state has a distinct value; a missing one is
			// placed after the value seen before it.
			at := -1
			var seen []step
			var last coord.NodeEvent
			for {
				ev := wait.Recv(t, "the sequence", ch, 10*time.Second)
				if ev.Err != nil || ev.Resync {
					t.Fatalf("event %+v in a quiet run", ev)
				}
				s := step{ev.Exists, string(ev.Node.Value)}
				seen = append(seen, s)
				i := slices.Index(steps[at+1:], s)
				if i < 0 {
					t.Fatalf("state %v seen out of order: seen %v of %v", s, seen, steps)
				}
				at += 1 + i
				last = ev
				if at == len(steps)-1 {
					break
				}
				time.Sleep(readDelay)
			}
			if err := <-written; err != nil {
				t.Fatal(err)
			}
			final, err := writerC.Get(ctx, "/seq")
			if err != nil {
				t.Fatal(err)
			}
			if last.Node.Version != final.Version {
				t.Fatalf("the final event's version %d, the node's %d", last.Node.Version, final.Version)
			}
			quiet(t, "after the final state", ch, 300*time.Millisecond)
			t.Logf("%d states written, %d seen", len(steps), len(seen))
		})
	}
}

func TestWatchChildrenSeesChildrenComeAndGoButNotGrandchildren(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _ := h.openTest(t, ctx, ns)
	ch, err := c.WatchChildren(ctx, "/p")
	if err != nil {
		t.Fatal(err)
	}
	want := func(what string, exists bool, names ...string) {
		t.Helper()
		ev := wait.Recv(t, what, ch, 5*time.Second)
		if ev.Err != nil || ev.Resync || ev.Exists != exists || !slices.Equal(ev.Children, names) || (ev.Children == nil) == exists {
			t.Fatalf("%s: %+v, want exists %v, children %q", what, ev, exists, names)
		}
	}
	want("the initial state of a missing node", false)
	if _, err := c.Create(ctx, "/p", nil); err != nil {
		t.Fatal(err)
	}
	want("after the node was made", true)
	if _, err := c.Create(ctx, "/p/b", nil); err != nil {
		t.Fatal(err)
	}
	want("after a child was made", true, "b")
	if _, err := c.Create(ctx, "/p/a", nil); err != nil {
		t.Fatal(err)
	}
	want("after a second child was made", true, "a", "b")
	if _, err := c.Create(ctx, "/p/a/grandchild", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "/p", []byte("value"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	quiet(t, "after a grandchild was made and the node's value set", ch, 300*time.Millisecond)
	if err := c.DeleteTree(ctx, "/p/a"); err != nil {
		t.Fatal(err)
	}
	want("after a child was deleted", true, "b")
	if err := c.DeleteTree(ctx, "/p"); err != nil {
		t.Fatal(err)
	}
	wait.RecvUntil(t, "after the node was deleted", ch, 5*time.Second, func(ev coord.ChildrenEvent) bool { return !ev.Exists && ev.Children == nil })

	// The namespace's root.
	root, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if ev := wait.Recv(t, "the root's initial state", root, 5*time.Second); !ev.Exists || len(ev.Children) != 0 {
		t.Fatalf("the root of an empty namespace: %+v", ev)
	}
	if _, err := c.Create(ctx, "/top", nil); err != nil {
		t.Fatal(err)
	}
	if ev := wait.Recv(t, "the root after a node was made", root, 5*time.Second); !ev.Exists || !slices.Equal(ev.Children, []string{"top"}) {
		t.Fatalf("the root after /top was made: %+v", ev)
	}
}

// A broken connection within the session brings a Resync event with the
// state as it is after the reconnection, including a change made meanwhile.
func TestWatchResyncsAfterADroppedConnection(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	other, _ := h.openTest(t, ctx, ns)
	if _, err := other.Create(ctx, "/r/a", []byte("before")); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Watch(ctx, "/r/a")
	if err != nil {
		t.Fatal(err)
	}
	kids, err := c.WatchChildren(ctx, "/r")
	if err != nil {
		t.Fatal(err)
	}
	if ev := wait.Recv(t, "the node's initial state", nodes, 5*time.Second); string(ev.Node.Value) != "before" {
		t.Fatalf("initial state %+v", ev)
	}
	if ev := wait.Recv(t, "the children's initial state", kids, 5*time.Second); !slices.Equal(ev.Children, []string{"a"}) {
		t.Fatalf("initial children %+v", ev)
	}
	for round := range 3 {
		// Changes the client cannot hear of, then a broken connection.
		for _, p := range ps {
			p.Blackhole()
		}
		v := fmt.Sprintf("during %d", round)
		if _, err := other.Set(ctx, "/r/a", []byte(v), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Create(ctx, fmt.Sprintf("/r/c%d", round), nil); err != nil {
			t.Fatal(err)
		}
		n, err := other.Get(ctx, "/r/a")
		if err != nil {
			t.Fatal(err)
		}
		names, err := other.Children(ctx, "/r")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			p.Heal()
			p.DropConnections()
		}
		evs := wait.RecvUntil(t, "the node's resync", nodes, 10*time.Second, func(ev coord.NodeEvent) bool { return ev.Resync })
		if ev := evs[len(evs)-1]; ev.Err != nil || !ev.Exists || string(ev.Node.Value) != v || ev.Node.Version != n.Version {
			t.Fatalf("round %d: the node's resync %+v, want %q at version %d", round, ev, v, n.Version)
		}
		cevs := wait.RecvUntil(t, "the children's resync", kids, 10*time.Second, func(ev coord.ChildrenEvent) bool { return ev.Resync })
		if ev := cevs[len(cevs)-1]; ev.Err != nil || !ev.Exists || !slices.Equal(ev.Children, names) {
			t.Fatalf("round %d: the children's resync %+v, want %q", round, ev, names)
		}
	}
	select {
	case <-c.Done():
		t.Fatal("the session ended after dropped connections")
	default:
	}
}

// Cancelling a watch's context closes its channel, even while the client is
// cut off, and leaves no goroutine behind.
func TestWatchCancelClosesTheChannelAndLeaksNothing(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/n/child", nil); err != nil {
		t.Fatal(err)
	}
	// Time for go-zookeeper's goroutines to settle.
	time.Sleep(100 * time.Millisecond)
	before := goleak.IgnoreCurrent()

	watch := func() (context.CancelFunc, <-chan coord.NodeEvent, <-chan coord.ChildrenEvent) {
		wctx, wcancel := context.WithCancel(ctx)
		nodes, err := c.Watch(wctx, "/n")
		if err != nil {
			t.Fatal(err)
		}
		kids, err := c.WatchChildren(wctx, "/n")
		if err != nil {
			t.Fatal(err)
		}
		wait.Recv(t, "the node's initial state", nodes, 5*time.Second)
		wait.Recv(t, "the children's initial state", kids, 5*time.Second)
		return wcancel, nodes, kids
	}
	// Connected: the loops wait on watches that will never fire.
	for range 10 {
		wcancel, nodes, kids := watch()
		wcancel()
		for _, ev := range wait.Closes(t, "a cancelled watch", nodes, 2*time.Second) {
			if ev.Err != nil {
				t.Fatalf("a cancelled watch ended with %v, want just a closed channel", ev.Err)
			}
		}
		wait.Closes(t, "a cancelled children watch", kids, 2*time.Second)
	}
	if err := goleak.Find(before); err != nil {
		t.Fatalf("goroutines left by cancelled watches: %v", err)
	}

	// Cut off, the loops wait on watches that cannot fire until the
	// connection is back, and a new watch on its first read.
	wcancel, nodes, kids := watch()
	for _, p := range ps {
		p.Blackhole()
	}
	defer func() {
		for _, p := range ps {
			p.Heal()
		}
	}()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	_, err := c.Watch(short, "/n")
	wantIs(t, "Watch while cut off", err, context.DeadlineExceeded)
	_, err = c.WatchChildren(short, "/n")
	wantIs(t, "WatchChildren while cut off", err, context.DeadlineExceeded)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Watch and WatchChildren with a 200ms context took %v while cut off", d)
	}
	start = time.Now()
	wcancel()
	wait.Closes(t, "a watch cancelled while cut off", nodes, time.Second)
	wait.Closes(t, "a children watch cancelled while cut off", kids, time.Second)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("closing a cancelled watch while cut off took %v", d)
	}
}

// When the session is lost, every watch delivers ErrSessionLost, replacing
// a state nobody read, and closes; new watches are refused.
func TestWatchEndsWithSessionLost(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, ps := h.openTest(t, ctx, ns)
	if _, err := c.Create(ctx, "/n", []byte("v")); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	kids, err := c.WatchChildren(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	wait.Recv(t, "the node's initial state", nodes, 5*time.Second)
	unread, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	// Let the unread watch's initial state wait in its channel.
	time.Sleep(200 * time.Millisecond)
	for _, p := range ps {
		p.Blackhole()
	}
	defer func() {
		for _, p := range ps {
			p.Heal()
		}
	}()
	select {
	case <-c.Done():
	case <-time.After(2 * testSessionTimeout):
		t.Fatal("the session not given up while cut off")
	}
	// Time for every loop to hear of it before any channel is read.
	time.Sleep(500 * time.Millisecond)
	ev := wait.Recv(t, "the node watch after the session was lost", nodes, 2*time.Second)
	wantIs(t, "the node watch's last event", ev.Err, coord.ErrSessionLost)
	wait.Closes(t, "the node watch after its last event", nodes, time.Second)
	evs := wait.Closes(t, "the children watch after the session was lost", kids, 2*time.Second)
	if len(evs) == 0 {
		t.Fatal("the children watch closed without an error event")
	}
	wantIs(t, "the children watch's last event", evs[len(evs)-1].Err, coord.ErrSessionLost)
	evs = wait.Closes(t, "the unread watch", unread, 2*time.Second)
	if len(evs) != 1 {
		t.Fatalf("the unread watch held %+v, want only the last event", evs)
	}
	wantIs(t, "the unread watch's last event", evs[0].Err, coord.ErrSessionLost)
	_, err = c.Watch(ctx, "/n")
	wantIs(t, "Watch after the session was lost", err, coord.ErrSessionLost)
}

// Close ends every watch with ErrClosed and waits for their goroutines.
func TestCloseEndsWatchesWithErrClosed(t *testing.T) {
	h, ctx, ns := serverTest(t)
	c, _, err := h.open(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Watch(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	kids, err := c.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	wait.Recv(t, "the initial state", nodes, 5*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for the loops: both channels are closed already.
	for what, last := range map[string]error{
		"node watch":     lastErr(t, nodes),
		"children watch": lastErr(t, kids),
	} {
		wantIs(t, "the "+what+"'s last event after Close", last, coord.ErrClosed)
	}
	_, err = c.WatchChildren(ctx, "/")
	wantIs(t, "WatchChildren after Close", err, coord.ErrClosed)
}

// lastErr drains a channel that must be closed already and returns the
// last event's error.
func lastErr[E coord.NodeEvent | coord.ChildrenEvent](t *testing.T, ch <-chan E) error {
	t.Helper()
	var last any
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				switch ev := last.(type) {
				case coord.NodeEvent:
					return ev.Err
				case coord.ChildrenEvent:
					return ev.Err
				}
				return errors.New("no event before the channel closed")
			}
			last = ev
		default:
			t.Fatal("the channel is not closed")
		}
	}
}
