package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// watchReadTimeout bounds each read a watch makes after it was set up: a
// re-read after the watch broke, a look at the node behind a change of its
// children. A read that times out is retried.
const watchReadTimeout = 10 * time.Second

// Watch delivers the states of the node at path: first the current one, then
// every later one in revision order. States may be coalesced, but the newest
// is always delivered: the channel holds one event, and a state the reader
// has not taken yet is replaced by the next, so a slow reader never stalls
// the watch and, once it reads again, gets the newest state. When the watch
// had to be set up again (compaction, a member without leader, a cancel by
// the server) the state is re-read and delivered with Resync set; changes in
// between are folded into it.
//
// The channel is closed when ctx ends. When the session ends it delivers
// last an event whose Err wraps coord.ErrSessionLost (coord.ErrClosed after
// Close), replacing any unread state, and is closed. Close waits for the
// watch to end.
func (c *Coordinator) Watch(ctx context.Context, path string) (<-chan coord.NodeEvent, error) {
	w, err := c.newWatch(ctx, path, false)
	if err != nil {
		return nil, err
	}
	return w.nodeEvents()
}

// WatchChildren is Watch for the names of the node's direct children,
// sorted; Exists says whether the node itself exists ("/" always does).
// Grandchildren are not watched.
func (c *Coordinator) WatchChildren(ctx context.Context, path string) (<-chan coord.ChildrenEvent, error) {
	w, err := c.newWatch(ctx, path, true)
	if err != nil {
		return nil, err
	}
	return w.childrenEvents()
}

// watch is one Watch or WatchChildren: the state it delivers, as of
// revision rev, and the goroutine that keeps it up to date.
type watch struct {
	c        *Coordinator
	path     string
	children bool // WatchChildren rather than Watch
	op       string
	caller   context.Context
	// ctx ends with the caller's context or the session.
	ctx       context.Context
	cancel    context.CancelFunc
	stopAfter func() bool

	rev    int64
	exists bool
	node   coord.Node          // Watch
	kids   map[string]struct{} // WatchChildren

	// emit offers the state, fail the final error, to the reader.
	emit func(resync bool)
	fail func(error)
}

// newWatch checks the arguments and the session and reads the initial
// state. The watch starts once its events' channel is made.
func (c *Coordinator) newWatch(ctx context.Context, path string, children bool) (*watch, error) {
	op, validate := "watch", coord.ValidateNodePath
	if children {
		op, validate = "watch children", coord.ValidatePath
	}
	if err := validate(path); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, path, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, path, err)
	}
	w := &watch{c: c, path: path, children: children, op: op, caller: ctx}
	if err := w.read(ctx); err != nil {
		return nil, c.fail(op, path, err)
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.stopAfter = context.AfterFunc(c.ctx, w.cancel)
	return w, nil
}

func (w *watch) nodeEvents() (<-chan coord.NodeEvent, error) {
	out := make(chan coord.NodeEvent, 1)
	w.emit = func(resync bool) { offer(out, coord.NodeEvent{Node: w.node, Exists: w.exists, Resync: resync}) }
	w.fail = func(err error) { offer(out, coord.NodeEvent{Node: coord.Node{Path: w.path}, Err: err}) }
	return out, w.start(func() { close(out) })
}

func (w *watch) childrenEvents() (<-chan coord.ChildrenEvent, error) {
	out := make(chan coord.ChildrenEvent, 1)
	w.emit = func(resync bool) {
		names := make([]string, 0, len(w.kids))
		for name := range w.kids {
			names = append(names, name)
		}
		sort.Strings(names)
		offer(out, coord.ChildrenEvent{Children: names, Exists: w.exists, Resync: resync})
	}
	w.fail = func(err error) { offer(out, coord.ChildrenEvent{Children: []string{}, Err: err}) }
	return out, w.start(func() { close(out) })
}

// start delivers the initial state and starts the watch's goroutine, which
// calls closeOut when it ends.
func (w *watch) start(closeOut func()) error {
	w.emit(false)
	if !w.c.spawn(func() { w.run(closeOut) }) {
		w.stopAfter()
		w.cancel()
		closeOut()
		return fmt.Errorf("%s %s: %w", w.op, w.path, coord.ErrClosed)
	}
	return nil
}

// offer puts e in a one-slot channel without blocking, replacing the event
// the reader has not taken yet. Only the watch's goroutine sends, so once the
// slot is emptied the send cannot block.
func offer[E any](ch chan E, e E) {
	select {
	case ch <- e:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	ch <- e
}

// read replaces the state with the current one, read at one revision.
func (w *watch) read(ctx context.Context) error {
	c := w.c
	if !w.children {
		resp, err := c.cli.Get(ctx, c.keys.node(w.path))
		if err != nil {
			return err
		}
		w.rev = resp.Header.Revision
		w.exists = len(resp.Kvs) > 0
		w.node = coord.Node{Path: w.path}
		if w.exists {
			w.node = nodeOf(w.path, resp.Kvs[0])
		}
		return nil
	}
	prefix := c.keys.children(w.path)
	list := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
	var (
		rev    int64
		exists = true // the root always exists
		kvs    []*mvccpb.KeyValue
	)
	if w.path == "/" {
		resp, err := c.cli.Get(ctx, prefix, list...)
		if err != nil {
			return err
		}
		rev, kvs = resp.Header.Revision, resp.Kvs
	} else {
		resp, err := c.cli.Txn(ctx).
			Then(clientv3.OpGet(c.keys.node(w.path), clientv3.WithCountOnly()), clientv3.OpGet(prefix, list...)).
			Commit()
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		exists = resp.Responses[0].GetResponseRange().Count > 0
		kvs = resp.Responses[1].GetResponseRange().Kvs
	}
	kids := make(map[string]struct{}, len(kvs))
	for _, kv := range kvs {
		kids[strings.TrimPrefix(string(kv.Key), prefix)] = struct{}{}
	}
	w.rev, w.exists, w.kids = rev, exists, kids
	return nil
}

func nodeOf(path string, kv *mvccpb.KeyValue) coord.Node {
	value := kv.Value
	if value == nil {
		value = []byte{}
	}
	return coord.Node{Path: path, Value: value, Version: coord.Version(kv.ModRevision)}
}

// subscribe watches the node's key (not the root's, which has none) and, for
// WatchChildren, its children's prefix, from the revision after the state.
// Cancelling the returned context makes clientv3 release both.
func (w *watch) subscribe() (node, kids clientv3.WatchChan, cancel context.CancelFunc) {
	// WithRequireLeader ends the watch if its member loses the cluster's
	// leader, rather than leave it silent on the wrong side of a partition.
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(w.ctx))
	from := clientv3.WithRev(w.rev + 1)
	if w.path != "/" {
		node = w.c.cli.Watch(ctx, w.c.keys.node(w.path), from)
	}
	if w.children {
		kids = w.c.cli.Watch(ctx, w.c.keys.children(w.path), clientv3.WithPrefix(), from)
	}
	return node, kids, cancel
}

// run keeps the state up to date until the caller's context or the session
// ends.
func (w *watch) run(closeOut func()) {
	defer closeOut()
	defer w.stopAfter()
	defer w.cancel()
	// Cancelling w.ctx also releases the clientv3 watches.
	node, kids, unsubscribe := w.subscribe()
	broken := 0 // watches broken in a row, for the back-off
	for {
		var (
			wr       clientv3.WatchResponse
			ok       bool
			fromKids bool
		)
		select {
		case <-w.ctx.Done():
			w.end()
			return
		case wr, ok = <-node:
		case wr, ok = <-kids:
			fromKids = true
		}
		if w.ctx.Err() != nil {
			w.end()
			return
		}
		var err error
		switch {
		case !ok:
			err = errors.New("the watch channel was closed")
		case wr.Err() != nil:
			err = wr.Err()
		case fromKids:
			err = w.applyChildren(wr.Events)
		default:
			err = w.applyNode(wr.Events)
		}
		if err == nil {
			if len(wr.Events) > 0 {
				broken = 0
			}
			continue
		}
		unsubscribe()
		broken++
		w.c.log.Debug("a watch broke; re-reading its state", "path", w.path, "children", w.children, "revision", w.rev, "error", err)
		if !w.resync(broken) {
			w.end()
			return
		}
		node, kids, unsubscribe = w.subscribe()
	}
}

// end delivers the session's end to the reader, unless the caller gave up.
func (w *watch) end() {
	if w.caller.Err() != nil {
		return
	}
	err := w.c.state()
	if err == nil {
		err = coord.ErrSessionLost // the session's context ended first
	}
	w.fail(fmt.Errorf("%s %s: %w", w.op, w.path, err))
}

// resync re-reads the state after the watch broke and delivers it with
// Resync set. Reads are retried with back-off, as are watches that keep
// breaking; a cluster that stays out of reach ends the session, and so the
// watch. False if the watch's context ended first.
func (w *watch) resync(broken int) bool {
	const first, most = 100 * time.Millisecond, time.Second
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-w.ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	// The first break is answered at once: compaction is routine. Later
	// ones in a row wait longer each time.
	if broken > 1 && !wait(min(first<<min(broken-2, 4), most)) {
		return false
	}
	for delay := first; ; delay = min(2*delay, most) {
		ctx, cancel := context.WithTimeout(w.ctx, watchReadTimeout)
		err := w.read(ctx)
		cancel()
		if err == nil {
			w.emit(true)
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		w.c.log.Debug("cannot re-read a watched state; retrying", "path", w.path, "error", err, "retry_in", delay)
		if !wait(delay) {
			return false
		}
	}
}

// applyNode applies the events on the node's key. For Watch the last one
// is the state. For WatchChildren only the node's creation or removal
// matters; the children's state at that revision is not known from the
// events, so the whole state is read anew.
func (w *watch) applyNode(events []*clientv3.Event) error {
	changed := false
	for _, ev := range events {
		if ev.Kv.ModRevision <= w.rev {
			continue // already in the state read
		}
		if w.children {
			changed = changed || ev.Type == mvccpb.DELETE || ev.IsCreate()
			continue
		}
		w.rev = ev.Kv.ModRevision
		w.exists = ev.Type != mvccpb.DELETE
		w.node = coord.Node{Path: w.path}
		if w.exists {
			w.node = nodeOf(w.path, ev.Kv)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	if w.children {
		ctx, cancel := context.WithTimeout(w.ctx, watchReadTimeout)
		defer cancel()
		if err := w.read(ctx); err != nil {
			return err
		}
	}
	w.emit(false)
	return nil
}

// applyChildren applies the events on the children's prefix. The node's
// existence at the same revision follows from the store's invariant that a
// node with children exists (Create makes the ancestors in the same
// transaction, Delete refuses a node with children, DeleteTree removes the
// subtree at once); only when its last child went is the node looked up at
// that revision, as DeleteTree removes both in one revision. Knowing it
// exactly lets events on the node's key up to that revision be skipped.
func (w *watch) applyChildren(events []*clientv3.Event) error {
	prefix := w.c.keys.children(w.path)
	var last int64
	changed, removed := false, false
	for _, ev := range events {
		if ev.Kv.ModRevision <= w.rev {
			continue
		}
		last = ev.Kv.ModRevision
		name := strings.TrimPrefix(string(ev.Kv.Key), prefix)
		_, had := w.kids[name]
		switch {
		case ev.Type == mvccpb.DELETE:
			delete(w.kids, name)
			removed = true
			changed = changed || had
		case !had: // a child's new value changes nothing here
			w.kids[name] = struct{}{}
			changed = true
		}
	}
	if last == 0 {
		return nil
	}
	exists := w.exists
	switch {
	case w.path == "/" || len(w.kids) > 0:
		exists = true
	case removed:
		ctx, cancel := context.WithTimeout(w.ctx, watchReadTimeout)
		defer cancel()
		resp, err := w.c.cli.Get(ctx, w.c.keys.node(w.path), clientv3.WithRev(last), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		exists = resp.Count > 0
	}
	changed = changed || exists != w.exists
	w.rev, w.exists = last, exists
	if changed {
		w.emit(false)
	}
	return nil
}
