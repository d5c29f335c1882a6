package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// Timing of a Mirror.
const (
	// mirrorReadTimeout bounds one full read of the subtree; the scheduler's
	// 210,000 nodes take about 3 s on a loaded machine. A read that times
	// out is retried.
	mirrorReadTimeout = time.Minute
	// progressRetry is how often Sync asks for watch progress again: the
	// server answers a progress request only while every watch on the
	// stream has caught up, and drops it otherwise.
	progressRetry = 200 * time.Millisecond
)

// mirrorHooks let tests act at points of a Mirror's life.
type mirrorHooks struct {
	// beforeResume runs in the Mirror's goroutine after its watch broke,
	// before it watches again.
	beforeResume func()
}

// mirror is a coord.Mirror on etcd: the node keys of one subtree, kept in a
// B-tree ordered as etcd orders them, so the children of a node are one
// contiguous range of it, as they are of the store.
//
// Its invariant: tree is the subtree exactly as the store held it at
// revision rev. A full read at one revision establishes it; the watch's
// events, whole revisions at a time and in order, and the watch's progress
// notifications (every event up to their revision was delivered before
// them) keep it. When the watch breaks it resumes at rev+1, and when that
// revision was compacted the subtree is read again, so no change is lost.
type mirror struct {
	c       *Coordinator
	path    string
	pathOff int // where a node key's path starts
	// [start, end) is the range watched: from the mirrored node's key to
	// the end of the node keys. It holds keys of other subtrees too, which
	// are skipped; the subtree's keys are spread over every depth.
	start, end string
	hooks      mirrorHooks

	// watcher is the Mirror's own, so the stream it uses carries no other
	// watch: the server answers a progress request only when every watch
	// on the stream has caught up.
	watcher clientv3.Watcher
	// ctx ends with Close or the session. wctx is ctx for the watch stream;
	// RequestProgress must name the same stream, which clientv3 finds by
	// the context's metadata.
	ctx    context.Context
	cancel context.CancelFunc
	wctx   context.Context
	done   chan struct{} // closed when the goroutine has ended

	mu      sync.RWMutex
	tree    *btree.BTreeG[*mirrorItem] // nil once closed or ended
	rev     int64
	loaded  bool
	changed chan struct{} // closed and replaced when rev or loaded moves
	closed  bool
	loads   int                // full reads done, for tests
	stop    context.CancelFunc // ends the current watch, for tests
}

// mirrorItem is one node. Items are never changed once in the tree, only
// replaced, so a reader may use one after releasing the lock.
type mirrorItem struct {
	key     string
	value   []byte // never nil: the Coordinator reads an empty value as []byte{}
	version int64
}

func newItem(kv *mvccpb.KeyValue) *mirrorItem {
	value := kv.Value
	if value == nil {
		value = []byte{}
	}
	return &mirrorItem{key: string(kv.Key), value: value, version: kv.ModRevision}
}

// shared hands out a value of the copy with no room to append into, so an
// append by the caller cannot write into the copy.
func shared(value []byte) []byte { return value[:len(value):len(value)] }

func itemLess(a, b *mirrorItem) bool { return a.key < b.key }

var _ coord.Mirrorer = (*Coordinator)(nil)

// Mirror starts mirroring path and everything below it. The full read and
// the watch run in a goroutine of the Mirror's, which ends with Close or
// the session (Coordinator.Close waits for it).
func (c *Coordinator) Mirror(ctx context.Context, path string) (coord.Mirror, error) {
	return c.mirror(ctx, path, mirrorHooks{})
}

func (c *Coordinator) mirror(ctx context.Context, path string, hooks mirrorHooks) (*mirror, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("mirror %s: %w", path, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("mirror %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mirror %s: %w", path, err)
	}
	nodes := c.keys.root + "/n/"
	m := &mirror{
		c:       c,
		path:    path,
		pathOff: len(nodes) + len(depthTag(0)),
		start:   nodes,
		end:     clientv3.GetPrefixRangeEnd(nodes),
		hooks:   hooks,
		watcher: clientv3.NewWatcher(c.cli),
		done:    make(chan struct{}),
		tree:    btree.NewG(64, itemLess),
		changed: make(chan struct{}),
	}
	if path != "/" {
		m.start = c.keys.node(path)
	}
	m.ctx, m.cancel = context.WithCancel(c.ctx)
	// WithRequireLeader ends the watch if its member loses the cluster's
	// leader, rather than leave it silent on the wrong side of a partition.
	m.wctx = clientv3.WithRequireLeader(m.ctx)
	if !c.spawn(m.run) {
		m.cancel()
		_ = m.watcher.Close()
		close(m.done)
		return nil, fmt.Errorf("mirror %s: %w", path, coord.ErrClosed)
	}
	return m, nil
}

// Done is closed when the Mirror stops following the store.
func (m *mirror) Done() <-chan struct{} { return m.ctx.Done() }

// Close stops the watch, waits for the Mirror's goroutine and frees the
// copy.
func (m *mirror) Close() error {
	m.mu.Lock()
	m.closed = true
	m.tree = nil
	m.mu.Unlock()
	m.cancel()
	<-m.done
	return nil
}

// state is ErrClosed after Close (the Mirror's or the Coordinator's),
// ErrSessionLost once the session ended, nil while the Mirror follows the
// store.
func (m *mirror) state() error {
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return coord.ErrClosed
	}
	return m.c.state()
}

// covers says whether a valid path is in the mirrored subtree.
func (m *mirror) covers(path string) bool {
	return m.path == "/" || path == m.path || strings.HasPrefix(path, m.path) && path[len(m.path)] == '/'
}

// ready returns once the first full read is in, or why a read of path
// cannot be answered.
func (m *mirror) ready(ctx context.Context, path string) error {
	if err := m.state(); err != nil {
		return err
	}
	if !m.covers(path) {
		return fmt.Errorf("%w (the mirror is of %s)", coord.ErrNotMirrored, m.path)
	}
	for {
		m.mu.RLock()
		loaded, changed := m.loaded, m.changed
		m.mu.RUnlock()
		if loaded {
			return nil
		}
		select {
		case <-changed:
		case <-m.ctx.Done():
			return m.ended()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ended is why the Mirror stopped: ErrClosed or ErrSessionLost.
func (m *mirror) ended() error {
	if err := m.state(); err != nil {
		return err
	}
	return coord.ErrSessionLost // the session's context ended first
}

// view runs f on the copy under the read lock, once it can be read.
func (m *mirror) view(ctx context.Context, path string, f func(*btree.BTreeG[*mirrorItem]) error) error {
	if err := m.ready(ctx, path); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.tree == nil {
		return m.endedLocked()
	}
	return f(m.tree)
}

func (m *mirror) endedLocked() error {
	if m.closed {
		return coord.ErrClosed
	}
	if err := m.c.state(); err != nil {
		return err
	}
	return coord.ErrSessionLost
}

// Get reads one node from the copy.
//
// Values are the copy's own, not copied for the caller, who must not
// modify them: copying the values of 100,000 children (60 MB) took 95 ms
// of a List that takes 10 ms without.
func (m *mirror) Get(ctx context.Context, path string) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, err)
	}
	var it *mirrorItem
	err := m.view(ctx, path, func(t *btree.BTreeG[*mirrorItem]) error {
		var ok bool
		if it, ok = t.Get(&mirrorItem{key: m.c.keys.node(path)}); !ok {
			return coord.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, err)
	}
	return coord.Node{Path: path, Value: shared(it.value), Version: coord.Version(it.version)}, nil
}

// children collects the items of path's direct children, in order; like
// the Coordinator, a node other than the root must exist.
func (m *mirror) children(ctx context.Context, path string) ([]*mirrorItem, string, error) {
	prefix := m.c.keys.children(path)
	var items []*mirrorItem
	err := m.view(ctx, path, func(t *btree.BTreeG[*mirrorItem]) error {
		if path != "/" && !t.Has(&mirrorItem{key: m.c.keys.node(path)}) {
			return coord.ErrNotFound
		}
		t.AscendRange(&mirrorItem{key: prefix}, &mirrorItem{key: clientv3.GetPrefixRangeEnd(prefix)}, func(it *mirrorItem) bool {
			items = append(items, it)
			return true
		})
		return nil
	})
	return items, prefix, err
}

// Children lists the names of the node's direct children from the copy.
func (m *mirror) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	items, prefix, err := m.children(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	names := make([]string, 0, len(items))
	for _, it := range items {
		names = append(names, it.key[len(prefix):])
	}
	return names, nil
}

// List reads the node's direct children with their values from the copy.
func (m *mirror) List(ctx context.Context, path string) ([]coord.Node, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	items, _, err := m.children(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	nodes := make([]coord.Node, 0, len(items))
	for _, it := range items {
		// The key's tail is the node's path: no new string per node.
		nodes = append(nodes, coord.Node{Path: it.key[m.pathOff:], Value: shared(it.value), Version: coord.Version(it.version)})
	}
	return nodes, nil
}

// Sync reads the store's revision (a linearizable read, so it is at least
// that of every write acknowledged before the call) and waits until the
// copy is at that revision: through the watch's events, or, when nothing
// in the subtree changed, a progress notification the Mirror asks the
// server for.
func (m *mirror) Sync(ctx context.Context) error {
	if err := m.state(); err != nil {
		return fmt.Errorf("sync %s: %w", m.path, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync %s: %w", m.path, err)
	}
	resp, err := m.c.cli.Get(ctx, m.start, clientv3.WithCountOnly())
	if err != nil {
		if st := m.state(); st != nil {
			return fmt.Errorf("sync %s: %w: %w", m.path, st, err)
		}
		return m.c.fail("sync", m.path, err)
	}
	target := resp.Header.Revision
	var asked time.Time
	for {
		m.mu.RLock()
		rev, loaded, changed := m.rev, m.loaded, m.changed
		m.mu.RUnlock()
		if err := m.state(); err != nil {
			return fmt.Errorf("sync %s: %w", m.path, err)
		}
		if loaded && rev >= target {
			return nil
		}
		if loaded && time.Since(asked) >= progressRetry {
			asked = time.Now()
			m.requestProgress(ctx)
		}
		t := time.NewTimer(progressRetry)
		select {
		case <-changed:
		case <-t.C:
		case <-m.ctx.Done():
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("sync %s: revision %d, the mirror is at %d: %w", m.path, target, rev, ctx.Err())
		}
		t.Stop()
	}
}

// requestProgress asks the server for a progress notification on the
// Mirror's watch stream; it is answered, to every watch of the stream, only
// if all of them have caught up, so Sync asks again until it sees one.
func (m *mirror) requestProgress(ctx context.Context) {
	// The request's context has the stream's metadata, and ends with the
	// caller's or after progressRetry: the stream does not read requests
	// while it reconnects.
	pctx, cancel := context.WithTimeout(m.wctx, progressRetry)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if err := m.watcher.RequestProgress(pctx); err != nil && m.ctx.Err() == nil && ctx.Err() == nil {
		m.c.log.Trace("mirror: could not ask for watch progress", "path", m.path, "error", err)
	}
}

// run reads the subtree and follows it until Close or the session's end.
func (m *mirror) run() {
	defer close(m.done)
	defer func() { _ = m.watcher.Close() }()
	defer func() {
		m.mu.Lock()
		m.tree = nil
		m.mu.Unlock()
	}()
	defer m.cancel()
	reload := true
	broken := 0 // breaks in a row with nothing received, for the back-off
	for {
		if reload {
			if !m.load() {
				return
			}
			reload = false
		}
		received, err := m.follow()
		if m.ctx.Err() != nil {
			return
		}
		if received {
			broken = 0
		}
		broken++
		reload = errors.Is(err, rpctypes.ErrCompacted)
		m.mu.RLock()
		rev := m.rev
		m.mu.RUnlock()
		m.c.log.Debug("mirror: the watch broke; resuming", "path", m.path, "revision", rev, "read_again", reload, "error", err)
		if m.hooks.beforeResume != nil {
			m.hooks.beforeResume()
		}
		// The first break is answered at once: compaction is routine. Later
		// ones in a row wait longer each time.
		if broken > 1 && !m.wait(min(100*time.Millisecond<<min(broken-2, 4), time.Second)) {
			return
		}
	}
}

// wait sleeps for d; false if the Mirror ended first.
func (m *mirror) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// follow watches from the revision after the copy's and applies what
// arrives, until the watch breaks (its error) or the Mirror ends (nil).
// received says whether any events or progress arrived.
func (m *mirror) follow() (received bool, err error) {
	m.mu.Lock()
	from := m.rev + 1
	ctx, stop := context.WithCancel(m.wctx)
	m.stop = stop
	m.mu.Unlock()
	defer stop()
	wch := m.watcher.Watch(ctx, m.start, clientv3.WithRange(m.end), clientv3.WithRev(from), clientv3.WithProgressNotify())
	for {
		var (
			wr clientv3.WatchResponse
			ok bool
		)
		select {
		case <-m.ctx.Done():
			return received, nil
		case wr, ok = <-wch:
		}
		switch {
		case m.ctx.Err() != nil:
			return received, nil
		case !ok:
			return received, errors.New("the watch channel was closed")
		case wr.Err() != nil:
			return received, wr.Err()
		case wr.IsProgressNotify():
			m.advance(wr.Header.Revision)
		default:
			m.apply(wr.Events)
		}
		received = true
	}
}

// advance moves the copy to rev, after a progress notification said every
// event up to it was delivered.
func (m *mirror) advance(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev > m.rev {
		m.rev = rev
		m.notifyLocked()
	}
}

// apply applies one response's events: whole revisions, in order.
func (m *mirror) apply(events []*clientv3.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tree == nil {
		return
	}
	last := m.rev
	for _, ev := range events {
		rev := ev.Kv.ModRevision
		if rev <= m.rev {
			continue // already in the copy
		}
		last = rev
		key := string(ev.Kv.Key)
		if len(key) < m.pathOff || !m.covers(key[m.pathOff:]) {
			continue
		}
		if ev.Type == mvccpb.DELETE {
			m.tree.Delete(&mirrorItem{key: key})
			continue
		}
		m.tree.ReplaceOrInsert(newItem(ev.Kv))
	}
	if last > m.rev {
		m.rev = last
		m.notifyLocked()
	}
}

func (m *mirror) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// load reads the whole subtree at one revision and replaces the copy with
// it. Failed reads are retried with back-off; a cluster that stays out of
// reach ends the session, and so the Mirror. False if the Mirror ended
// first.
func (m *mirror) load() bool {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ctx, cancel := context.WithTimeout(m.ctx, mirrorReadTimeout)
		tree, rev, err := m.read(ctx)
		cancel()
		if err == nil {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.closed {
				return false
			}
			m.tree, m.rev, m.loaded = tree, rev, true
			m.loads++
			m.notifyLocked()
			return true
		}
		if m.ctx.Err() != nil {
			return false
		}
		m.c.log.Debug("mirror: cannot read the subtree; retrying", "path", m.path, "error", err, "retry_in", delay)
		if !m.wait(delay) {
			return false
		}
	}
}

// read reads the subtree at one revision: one transaction reads the node
// and counts its descendants at each depth, then the depths that have any
// are read in pages at that transaction's revision. At most MaxPathDepth
// ranges, within etcd's default --max-txn-ops of 128.
func (m *mirror) read(ctx context.Context) (*btree.BTreeG[*mirrorItem], int64, error) {
	c := m.c
	var ops []clientv3.Op
	if m.path != "/" {
		ops = append(ops, clientv3.OpGet(c.keys.node(m.path)))
	}
	first := coord.Depth(m.path) + 1
	for d := first; d <= coord.MaxPathDepth; d++ {
		ops = append(ops, clientv3.OpGet(c.keys.descendants(m.path, d), clientv3.WithPrefix(), clientv3.WithCountOnly()))
	}
	resp, err := c.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, 0, err
	}
	rev := resp.Header.Revision
	tree := btree.NewG(64, itemLess)
	add := func(kvs []*mvccpb.KeyValue) {
		for _, kv := range kvs {
			tree.ReplaceOrInsert(newItem(kv))
		}
	}
	counts := resp.Responses
	if m.path != "/" {
		add(resp.Responses[0].GetResponseRange().Kvs)
		counts = counts[1:]
	}
	for i, r := range counts {
		if r.GetResponseRange().Count == 0 {
			continue
		}
		prefix := c.keys.descendants(m.path, first+i)
		if err := c.pages(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), rev, listPageSize, add); err != nil {
			return nil, 0, err
		}
	}
	return tree, rev, nil
}
