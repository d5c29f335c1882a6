package zk

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/go-zookeeper/zk"

	"github.com/hasched/hasched/coord"
)

// ZooKeeper's watches fire once, so a watch here is a loop that reads the
// state and sets the next watch with the same request, delivers what it read
// and waits for the watch to fire. What it delivers is a state, not a change:
// changes between two reads are seen only as the state after them, and a
// reader that falls behind finds only the newest state waiting (the channel
// holds one event, which a newer one replaces). The last state delivered is
// always the last one read.
//
// go-zookeeper sets the watches again on a new connection within the
// session, but says nothing when that fails, so after every reconnection the
// loop reads the state again regardless and delivers it with Resync set.
// ZooKeeper's watches cannot be removed: one a cancelled watch leaves behind
// fires into go-zookeeper's buffer once, or is dropped with the session.

// Watch delivers the state of the node at path: first the state it reads
// before it returns, then the state after each change, in order, coalesced
// for a reader that falls behind. A missing node is a state too (Exists
// false, Node.Path set). When ctx ends the channel is closed; when the
// session ends a last event carries ErrSessionLost or ErrClosed, then the
// channel is closed. Close waits for every watch to end.
//
// Watch itself fails with ErrInvalidPath for a bad path or the root, with
// ErrSessionLost or ErrClosed when the session has ended, and with ctx's
// error if the first read does not come back in time (it waits while the
// connection is down, as Get does).
func (c *Coordinator) Watch(ctx context.Context, path string) (<-chan coord.NodeEvent, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	full := c.full(path)
	read := func(ctx context.Context) (coord.NodeEvent, <-chan zk.Event, error) {
		type got struct {
			data   []byte
			stat   *zk.Stat
			exists bool
			w      <-chan zk.Event
		}
		for {
			g, err := call(ctx, c, true, func(conn *zk.Conn) (got, error) {
				data, stat, w, err := conn.GetW(full)
				return got{data, stat, true, w}, err
			})
			if err == nil {
				return coord.NodeEvent{Node: coord.Node{Path: path, Value: g.data, Version: coord.Version(g.stat.Mzxid)}, Exists: true}, g.w, nil
			}
			if !errors.Is(err, zk.ErrNoNode) {
				return coord.NodeEvent{}, nil, err
			}
			// GetW sets no watch on a missing node; ExistsW does, one that
			// fires when it is made.
			g, err = call(ctx, c, true, func(conn *zk.Conn) (got, error) {
				exists, _, w, err := conn.ExistsW(full)
				return got{exists: exists, w: w}, err
			})
			if err != nil {
				return coord.NodeEvent{}, nil, err
			}
			if !g.exists {
				return coord.NodeEvent{Node: coord.Node{Path: path}}, g.w, nil
			}
			// Made in between: read it.
		}
	}
	fields := eventFields[coord.NodeEvent]{
		resync: func(e *coord.NodeEvent) *bool { return &e.Resync },
		err:    func(e *coord.NodeEvent) *error { return &e.Err },
		ended:  func(err error) coord.NodeEvent { return coord.NodeEvent{Node: coord.Node{Path: path}, Err: err} },
	}
	return startWatch(ctx, c, "watch "+path, fields, read)
}

// WatchChildren delivers the names of the children of the node at path,
// sorted, as Watch delivers a node's state; grandchildren are not watched.
// Exists tells whether the node itself exists (Children is nil when it does
// not, and when the event carries an error). "/" watches the namespace's
// top-level nodes.
func (c *Coordinator) WatchChildren(ctx context.Context, path string) (<-chan coord.ChildrenEvent, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("watch children: %w", err)
	}
	full := c.full(path)
	read := func(ctx context.Context) (coord.ChildrenEvent, <-chan zk.Event, error) {
		type got struct {
			names  []string
			exists bool
			w      <-chan zk.Event
		}
		for {
			// A children watch fires when a child is made or deleted and
			// when the node itself is deleted.
			g, err := call(ctx, c, true, func(conn *zk.Conn) (got, error) {
				names, _, w, err := conn.ChildrenW(full)
				return got{names, true, w}, err
			})
			if err == nil {
				names := append(make([]string, 0, len(g.names)), g.names...)
				sort.Strings(names)
				return coord.ChildrenEvent{Children: names, Exists: true}, g.w, nil
			}
			if !errors.Is(err, zk.ErrNoNode) {
				return coord.ChildrenEvent{}, nil, err
			}
			g, err = call(ctx, c, true, func(conn *zk.Conn) (got, error) {
				exists, _, w, err := conn.ExistsW(full)
				return got{exists: exists, w: w}, err
			})
			if err != nil {
				return coord.ChildrenEvent{}, nil, err
			}
			if !g.exists {
				return coord.ChildrenEvent{}, g.w, nil
			}
		}
	}
	fields := eventFields[coord.ChildrenEvent]{
		resync: func(e *coord.ChildrenEvent) *bool { return &e.Resync },
		err:    func(e *coord.ChildrenEvent) *error { return &e.Err },
		ended:  func(err error) coord.ChildrenEvent { return coord.ChildrenEvent{Err: err} },
	}
	return startWatch(ctx, c, "watch children "+path, fields, read)
}

// eventFields reaches the fields every event type has.
type eventFields[E any] struct {
	resync func(*E) *bool
	err    func(*E) *error
	// ended is the last event, when the session has ended with err.
	ended func(err error) E
}

// startWatch reads the initial state, which becomes the first event, and
// starts the loop of the watch in a goroutine of the Coordinator. read reads
// the state and sets a watch that fires when it changes.
func startWatch[E any](ctx context.Context, c *Coordinator, what string, f eventFields[E], read func(context.Context) (E, <-chan zk.Event, error)) (<-chan E, error) {
	if err := c.endErr(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Taken before the read: a reconnection after it may have lost the
	// watch the read set.
	reconnect := c.nextReconnect()
	ev, fired, err := read(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, c.mapErr(err))
	}
	out := make(chan E, 1)
	out <- ev
	if !c.spawn(func() { watchLoop(ctx, c, what, out, f, read, fired, reconnect) }) {
		return nil, fmt.Errorf("%s: %w", what, c.endErr())
	}
	return out, nil
}

// watchLoop waits for the watch set with the last state read to fire, then
// reads and delivers the state again, until ctx or the session ends.
func watchLoop[E any](ctx context.Context, c *Coordinator, what string, out chan E, f eventFields[E], read func(context.Context) (E, <-chan zk.Event, error), fired <-chan zk.Event, reconnect <-chan struct{}) {
	defer close(out)
	ended := func() { offer(out, f.ended(fmt.Errorf("%s: %w", what, c.endErr())), f) }
	for {
		resync := false
		select {
		case <-fired:
			// Changed, or go-zookeeper dropped the watch with the session
			// (EventNotWatching): the next read tells which.
		case <-reconnect:
			resync = true
		case <-ctx.Done():
			return
		case <-c.done:
			ended()
			return
		}
		var ev E
		for wait := retryMin; ; wait = min(2*wait, retryMax) {
			reconnect = c.nextReconnect()
			var err error
			ev, fired, err = read(ctx)
			switch {
			case err == nil:
			case ctx.Err() != nil:
				return
			case c.endErr() != nil:
				ended()
				return
			default:
				c.log.Warn("cannot read a watched node; retrying", "watch", what, "error", err, "retry_in", wait)
				if err := c.sleep(ctx, wait); err != nil {
					if ctx.Err() == nil {
						ended()
					}
					return
				}
				continue
			}
			break
		}
		*f.resync(&ev) = resync
		offer(out, ev, f)
	}
}

// offer puts ev in out, which holds one event, without waiting: an event the
// reader has not taken yet is replaced. A replaced event's Resync carries
// over to the state that replaces it.
func offer[E any](out chan E, ev E, f eventFields[E]) {
	for {
		select {
		case out <- ev:
			return
		default:
		}
		select {
		case old := <-out:
			if *f.resync(&old) && *f.err(&ev) == nil {
				*f.resync(&ev) = true
			}
		default:
			// The reader took it meanwhile.
		}
	}
}
