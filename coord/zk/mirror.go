package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
)

// A Mirror keeps a copy of a subtree as ZooKeeper's one-shot watches allow
// (go-zookeeper v1.0.4 has no persistent recursive watch): every node is
// read with a data watch (GetW) and a children watch (ChildrenW), and every
// watch that fires is answered by reading again with a new watch. A missing
// root is watched for its creation (ExistsW).
//
// Ordering. go-zookeeper calls the Coordinator's event callback for a watch
// event in its receive loop, before it hands on any answer received after
// the event. The callback (offer) puts the event into the Mirror's queue,
// and the readers put each answer into the same queue when they get it, so
// an event that arrived before an answer is always applied before it. An
// answer may still be applied after events that arrived after it; two reads
// of one node never race, though: a node has at most one read of each kind
// on the wire, and an event arriving meanwhile makes it read again once the
// first answer is in (dirty), so answers of one node are applied in the
// order the server gave them. A stale answer about another node (a parent's
// children listing a node deleted since) can add a node back; the node is
// then read again, which removes it, and is invisible until its value is in.
//
// Sync. Every read carries a tag: the queue position of the event that
// prompted it (0 for the first load), inherited by the reads its answer
// prompts (a new child's reads) and by the re-read an event asks for while
// a read is on the wire (the smallest event position). Sync sends a sync
// through the session's connection; when it answers, every event the
// server sent before it is in the queue, at positions up to P. Every change
// made before Sync was called either fired a watch (an event at most P) or
// came when the node had no watch, which happens only between an event (at
// most P) and the read it prompted (tagged at most P), or before the
// node's first read (tagged at most P too, since it was issued before the
// sync's answer). So Sync waits until the Mirror has applied the queue up
// to P and no read tagged at most P is on the wire or waiting to be sent.
//
// Reconnections. go-zookeeper sets the watches again on a new connection
// (SetWatches), but says nothing when that fails, and a sync sent while the
// connection was down can be answered before the events SetWatches prompts.
// So after every reconnection within the session the Mirror reads the
// whole subtree again (tagged with the reconnection's position, so a Sync
// after it waits for that reread; it starts reconnectSettle after the
// reconnection): correct whatever SetWatches did, at the cost of a full
// read. go-zookeeper then holds two watch channels for an
// unchanged node until its watch fires.

// Kinds of reads of one node.
const (
	readData     uint8 = iota // GetW
	readChildren              // ChildrenW
	readExists                // ExistsW, of the mirrored root while it is missing
)

// readKey names one read: a node (its path under the namespace) and a kind.
type readKey struct {
	path string
	kind uint8
}

// flight is the state of the reads of one key: at most one is sent at a
// time, and an event meanwhile asks for one more (dirty).
type flight struct {
	tag      uint64
	sent     bool // handed to a reader; false while in the pending list
	dirty    bool
	dirtyTag uint64
	// rootGen is the Mirror's rootGen when the read was handed to a
	// reader: see applyResult.
	rootGen uint64
}

// mnode is one mirrored node.
type mnode struct {
	value   []byte
	version int64
	// loaded is set once the node's value is in; until then the node is
	// known only from its parent's children and is not visible to reads.
	loaded bool
	kids   map[string]*mnode
}

// readResult is one answer.
type readResult struct {
	key     readKey
	data    []byte
	version int64
	names   []string
	exists  bool
	err     error // nil or zk.ErrNoNode
}

// qitem is one entry of the queue: a watch or session event, or an answer.
type qitem struct {
	pos   uint64
	event bool
	ev    zk.Event
	res   readResult
}

type syncWaiter struct {
	target uint64
	ch     chan struct{}
}

// Mirror is a coord.Mirror on one ZooKeeper session. Its methods are safe
// for concurrent use.
type Mirror struct {
	c    *Coordinator
	path string // as the caller gave it; node paths are the Coordinator's
	full string // its znode
	log  hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	loaded chan struct{}  // closed once the first full read is in
	wg     sync.WaitGroup // the loop and the readers
	tasks  chan readKey   // from the loop to the readers

	// The queue, filled by offer (in go-zookeeper's receive loop) and the
	// readers, drained by the loop. Unbounded: offer must never block.
	qmu     sync.Mutex
	queue   []qitem
	pushed  uint64 // items ever queued; the position of the last one
	stopped bool
	wake    chan struct{} // capacity 1

	// Owned by the loop goroutine (and by Mirror before it starts).
	inflight map[readKey]*flight
	pending  []readKey // reads to hand to the readers, in order
	head     int       // pending[:head] are handed out
	down     bool      // the connection broke since the last session event
	// reloadTag is the tag of a reread due after a reconnection, counted
	// in tags from the reconnection on; reloadDue fires when it is time.
	reloadTag uint64
	reloadDue <-chan time.Time
	// rootGen counts the times the mirrored root was dropped.
	rootGen uint64

	mu        sync.RWMutex
	err       error // why the Mirror ended; nil while it runs
	closed    bool
	nodes     map[string]*mnode
	processed uint64         // the position of the last item applied
	tags      map[uint64]int // reads pending or on the wire, by tag
	waiters   []syncWaiter
}

var (
	_ coord.Mirror   = (*Mirror)(nil)
	_ coord.Mirrorer = (*Coordinator)(nil)
)

// mirrorReaders is how many reads a Mirror keeps on the wire at a time:
// fewer than a List's (listInFlight) on purpose. A standby's Mirror loads
// beside a new leader reading the same state from the servers (every
// process starting at once, or opening new sessions after the service
// came back), and the servers share their throughput by request: with
// two standbys loading 256 at a time each, the leader took 2 min 17 s to
// read 210,000 nodes, against 22–24 s alone. The Mirror's first load
// takes longer for it; a standby is warm later, the leader serves sooner.
const mirrorReaders = 32

// Mirror starts mirroring path and everything below it. The first full read
// runs in the background; Sync waits for it.
func (c *Coordinator) Mirror(ctx context.Context, path string) (coord.Mirror, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mirror %s: %w", path, err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		c:        c,
		path:     path,
		full:     c.full(path),
		log:      c.log.With("mirror", path),
		ctx:      mctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		tasks:    make(chan readKey),
		wake:     make(chan struct{}, 1),
		inflight: map[readKey]*flight{},
		nodes:    map[string]*mnode{},
		tags:     map[uint64]int{},
		loaded:   make(chan struct{}),
	}
	// The first full read's reads are tagged 0, as are the reads they
	// prompt: a Sync-like waiter for tag 0 says when the whole subtree is
	// in, which reads wait for (as on etcd), so that a read never sees a
	// half-read tree.
	m.waiters = []syncWaiter{{target: 0, ch: m.loaded}}
	m.issue(readKey{path, readData}, 0)
	m.issue(readKey{path, readChildren}, 0)

	c.mu.Lock()
	if c.over {
		c.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("mirror %s: %w", path, c.endErr())
	}
	// Registered before any read is sent, so that no event of a watch the
	// reads set can be missed.
	var ms []*Mirror
	if old := c.mirrors.Load(); old != nil {
		ms = append(ms, *old...)
	}
	ms = append(ms, m)
	c.mirrors.Store(&ms)
	c.wg.Add(1 + mirrorReaders)
	m.wg.Add(1 + mirrorReaders)
	c.mu.Unlock()

	go func() {
		defer c.wg.Done()
		defer m.wg.Done()
		m.loop()
	}()
	for range mirrorReaders {
		go func() {
			defer c.wg.Done()
			defer m.wg.Done()
			m.reader()
		}()
	}
	return m, nil
}

// removeMirror stops passing events to m.
func (c *Coordinator) removeMirror(m *Mirror) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.mirrors.Load()
	if old == nil {
		return
	}
	ms := slices.DeleteFunc(slices.Clone(*old), func(x *Mirror) bool { return x == m })
	c.mirrors.Store(&ms)
}

// offer is called by the Coordinator's event callback, in go-zookeeper's
// receive loop: it queues the events the Mirror needs and never blocks.
func (m *Mirror) offer(ev zk.Event) {
	switch ev.Type {
	case zk.EventSession:
	case zk.EventNodeCreated, zk.EventNodeDeleted, zk.EventNodeDataChanged, zk.EventNodeChildrenChanged:
		if ev.Path != m.full && !strings.HasPrefix(ev.Path, m.full+"/") {
			return
		}
	default:
		return
	}
	m.push(qitem{event: true, ev: ev})
}

// push appends it to the queue and wakes the loop.
func (m *Mirror) push(it qitem) {
	m.qmu.Lock()
	if m.stopped {
		m.qmu.Unlock()
		return
	}
	m.pushed++
	it.pos = m.pushed
	m.queue = append(m.queue, it)
	m.qmu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// applyBatch bounds the items applied under one hold of the lock, so that
// reads are not held up for long by a large burst.
const applyBatch = 1024

// loop applies the queue and hands reads to the readers until the Mirror
// ends.
func (m *Mirror) loop() {
	for {
		var send chan<- readKey
		var next readKey
		if m.head < len(m.pending) {
			send, next = m.tasks, m.pending[m.head]
		}
		select {
		case <-m.wake:
			m.qmu.Lock()
			batch := m.queue
			m.queue = nil
			m.qmu.Unlock()
			for len(batch) > 0 {
				n := min(len(batch), applyBatch)
				m.mu.Lock()
				if m.err == nil {
					for _, it := range batch[:n] {
						m.apply(it)
					}
					m.releaseWaiters()
				}
				m.mu.Unlock()
				batch = batch[n:]
			}
		case <-m.reloadDue:
			m.reloadDue = nil
			m.mu.Lock()
			if m.err == nil {
				m.reload(m.reloadTag)
				m.untag(m.reloadTag)
				m.releaseWaiters()
			}
			m.mu.Unlock()
		case send <- next:
			m.pending[m.head] = readKey{}
			m.head++
			if st := m.inflight[next]; st != nil {
				st.sent, st.rootGen = true, m.rootGen
			}
			switch {
			case m.head == len(m.pending):
				m.pending, m.head = m.pending[:0], 0
			case m.head > 4096 && m.head > len(m.pending)/2:
				m.pending = append(m.pending[:0], m.pending[m.head:]...)
				m.head = 0
			}
		case <-m.c.done:
			m.end(m.c.endErr(), false)
			return
		case <-m.ctx.Done():
			return
		}
	}
}

// reader sends the reads the loop hands it and queues their answers.
func (m *Mirror) reader() {
	for {
		select {
		case k := <-m.tasks:
			if r, ok := m.read(k); ok {
				m.push(qitem{res: r})
			}
		case <-m.ctx.Done():
			return
		}
	}
}

// read sends one read, again while it fails for any reason but a missing
// node, until it is answered or the Mirror ends (false).
func (m *Mirror) read(k readKey) (readResult, bool) {
	full := m.c.full(k.path)
	for wait := retryMin; ; wait = min(2*wait, retryMax) {
		r := readResult{key: k}
		var err error
		switch k.kind {
		case readData:
			type got struct {
				data []byte
				stat *zk.Stat
			}
			var g got
			g, err = call(m.ctx, m.c, true, func(conn *zk.Conn) (got, error) {
				data, stat, _, err := conn.GetW(full)
				return got{data, stat}, err
			})
			if err == nil {
				r.data, r.version = nonNil(g.data), g.stat.Mzxid
			}
		case readChildren:
			r.names, err = call(m.ctx, m.c, true, func(conn *zk.Conn) ([]string, error) {
				names, _, _, err := conn.ChildrenW(full)
				return names, err
			})
		case readExists:
			r.exists, err = call(m.ctx, m.c, true, func(conn *zk.Conn) (bool, error) {
				ok, _, _, err := conn.ExistsW(full)
				return ok, err
			})
		}
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			r.err = err
			return r, true
		}
		if m.ctx.Err() != nil || m.c.endErr() != nil {
			return r, false
		}
		m.log.Warn("cannot read a mirrored node; retrying", "node", k.path, "error", err, "retry_in", wait)
		if m.c.sleep(m.ctx, wait) != nil {
			return r, false
		}
	}
}

// issue asks for a read of k, prompted by what is at position tag.
func (m *Mirror) issue(k readKey, tag uint64) {
	st := m.inflight[k]
	switch {
	case st == nil:
		m.inflight[k] = &flight{tag: tag}
		m.tags[tag]++
		m.pending = append(m.pending, k)
	case !st.sent:
		// The read waiting to be sent goes out after this, which is all
		// that is asked.
		if tag < st.tag {
			m.untag(st.tag)
			st.tag = tag
			m.tags[tag]++
		}
	case !st.dirty:
		st.dirty, st.dirtyTag = true, tag
		m.tags[tag]++
	case tag < st.dirtyTag:
		m.untag(st.dirtyTag)
		st.dirtyTag = tag
		m.tags[tag]++
	}
}

// complete notes that k's read was answered and returns its tag and the
// root's generation when it was sent. A read asked for meanwhile goes out
// now.
func (m *Mirror) complete(k readKey) (tag, rootGen uint64) {
	st := m.inflight[k]
	if st == nil {
		return 0, m.rootGen // cannot happen: every read sent is in flight
	}
	tag, rootGen = st.tag, st.rootGen
	m.untag(tag)
	if !st.dirty {
		delete(m.inflight, k)
		return tag, rootGen
	}
	// The dirty tag's count carries over to the new read.
	st.tag, st.sent, st.dirty = st.dirtyTag, false, false
	m.pending = append(m.pending, k)
	return tag, rootGen
}

func (m *Mirror) untag(tag uint64) {
	if m.tags[tag]--; m.tags[tag] <= 0 {
		delete(m.tags, tag)
	}
}

// apply applies one item of the queue. m.mu is held.
func (m *Mirror) apply(it qitem) {
	m.processed = it.pos
	if it.event {
		m.applyEvent(it.ev, it.pos)
	} else {
		m.applyResult(it.res)
	}
}

func (m *Mirror) applyEvent(ev zk.Event, pos uint64) {
	if ev.Type == zk.EventSession {
		if ev.State != zk.StateHasSession {
			m.down = true
			return
		}
		if !m.down {
			return
		}
		m.down = false
		// Not at once: go-zookeeper reads the last zxid for SetWatches
		// without synchronizing with the receive loop that updates it on
		// every answer (see reconnectSettle), and a reread of a large
		// subtree would put answers on the wire right then. The reread's
		// tag is counted from now, so a Sync waits for it all the same.
		if m.reloadDue == nil {
			m.reloadTag = pos
			m.tags[pos]++
			m.reloadDue = time.After(reconnectSettle)
		}
		return
	}
	p := m.rel(ev.Path)
	_, known := m.nodes[p]
	switch {
	case ev.Type == zk.EventNodeDeleted:
		m.remove(p)
		if p == m.path {
			m.issue(readKey{p, readExists}, pos)
		}
	case p == m.path && !known:
		// The root appeared (its exists watch fired).
		m.issue(readKey{p, readData}, pos)
		m.issue(readKey{p, readChildren}, pos)
	case !known:
		// A watch of a node dropped since.
	case ev.Type == zk.EventNodeDataChanged:
		m.issue(readKey{p, readData}, pos)
	case ev.Type == zk.EventNodeChildrenChanged:
		m.issue(readKey{p, readChildren}, pos)
	}
}

// reload reads every node again, with new watches.
func (m *Mirror) reload(tag uint64) {
	m.log.Debug("reconnected: reading the mirrored subtree again", "nodes", len(m.nodes))
	if _, ok := m.nodes[m.path]; !ok {
		m.issue(readKey{m.path, readData}, tag)
		m.issue(readKey{m.path, readChildren}, tag)
	}
	for p := range m.nodes {
		m.issue(readKey{p, readData}, tag)
		m.issue(readKey{p, readChildren}, tag)
	}
}

func (m *Mirror) applyResult(r readResult) {
	tag, gen := m.complete(r.key)
	p := r.key.path
	if errors.Is(r.err, zk.ErrNoNode) {
		m.remove(p)
		if p == m.path {
			m.issue(readKey{p, readExists}, tag)
		}
		return
	}
	if p == m.path && gen != m.rootGen {
		// The root was dropped after this read was sent. A reader queues
		// its answer after go-zookeeper has handed it over, so an event
		// the server sent later (the root's deletion) can be queued
		// first: the answer may be older than the drop, and taken in it
		// would bring back a root that is gone, or one whose creation
		// event would then be taken for a change of a known node. The
		// drop asked for a read of the root's existence, which tells.
		return
	}
	switch r.key.kind {
	case readExists:
		if r.exists {
			m.issue(readKey{p, readData}, tag)
			m.issue(readKey{p, readChildren}, tag)
		}
	case readData:
		n := m.node(p)
		if n == nil {
			return // dropped since the read was sent
		}
		n.value, n.version, n.loaded = r.data, r.version, true
	case readChildren:
		n := m.node(p)
		if n == nil {
			return
		}
		names := make(map[string]struct{}, len(r.names))
		for _, name := range r.names {
			names[name] = struct{}{}
			if _, ok := n.kids[name]; ok {
				continue
			}
			if n.kids == nil {
				n.kids = map[string]*mnode{}
			}
			kid := &mnode{}
			n.kids[name] = kid
			kp := coord.Join(p, name)
			m.nodes[kp] = kid
			m.issue(readKey{kp, readData}, tag)
			m.issue(readKey{kp, readChildren}, tag)
		}
		for name := range n.kids {
			if _, ok := names[name]; !ok {
				m.remove(coord.Join(p, name))
			}
		}
	}
}

// node is the mirrored node at p; the root is added when an answer shows
// it exists.
func (m *Mirror) node(p string) *mnode {
	n := m.nodes[p]
	if n == nil && p == m.path {
		n = &mnode{}
		m.nodes[p] = n
	}
	return n
}

// remove drops the node at p and everything below it.
func (m *Mirror) remove(p string) {
	n := m.nodes[p]
	if n == nil {
		return
	}
	if p == m.path {
		m.rootGen++
	}
	if p != m.path {
		if parent := m.nodes[coord.Parent(p)]; parent != nil {
			delete(parent.kids, coord.Base(p))
		}
	}
	m.drop(p, n)
}

func (m *Mirror) drop(p string, n *mnode) {
	for name, kid := range n.kids {
		m.drop(coord.Join(p, name), kid)
	}
	delete(m.nodes, p)
}

// rel is the Coordinator's path of a znode under the namespace.
func (m *Mirror) rel(full string) string {
	if full == m.c.root {
		return "/"
	}
	return full[len(m.c.root):]
}

// covers tells whether path is in the mirrored subtree.
func (m *Mirror) covers(path string) bool {
	return m.path == "/" || path == m.path || strings.HasPrefix(path, m.path+"/")
}

// releaseWaiters ends the Syncs whose target is reached. m.mu is held.
func (m *Mirror) releaseWaiters() {
	if len(m.waiters) == 0 {
		return
	}
	least := m.leastTag()
	m.waiters = slices.DeleteFunc(m.waiters, func(w syncWaiter) bool {
		if m.processed >= w.target && least > w.target {
			close(w.ch)
			return true
		}
		return false
	})
}

// leastTag is the smallest tag of a read pending or on the wire. m.mu is
// held.
func (m *Mirror) leastTag() uint64 {
	least := ^uint64(0)
	for t := range m.tags {
		least = min(least, t)
	}
	return least
}

// Sync sends a sync through the session's connection and waits until the
// Mirror has applied every event that came before its answer and the reads
// they prompted (and the first full read).
func (m *Mirror) Sync(ctx context.Context) error {
	if err := m.ended(); err != nil {
		return fmt.Errorf("mirror %s: sync: %w", m.path, err)
	}
	// Any request would do: its answer comes after every event sent before
	// it. A sync of the namespace's node also waits for the server to catch
	// up with the leader.
	_, err := call(ctx, m.c, true, func(conn *zk.Conn) (string, error) {
		return conn.Sync(m.c.root)
	})
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		if e := m.ended(); e != nil {
			err = e
		}
		return fmt.Errorf("mirror %s: sync: %w", m.path, m.c.mapErr(err))
	}
	m.qmu.Lock()
	target := m.pushed
	m.qmu.Unlock()

	w := syncWaiter{target: target, ch: make(chan struct{})}
	m.mu.Lock()
	if err := m.endedLocked(); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("mirror %s: sync: %w", m.path, err)
	}
	if m.processed >= target && m.leastTag() > target {
		m.mu.Unlock()
		return nil
	}
	m.waiters = append(m.waiters, w)
	m.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		m.mu.Lock()
		m.waiters = slices.DeleteFunc(m.waiters, func(x syncWaiter) bool { return x.ch == w.ch })
		m.mu.Unlock()
		return fmt.Errorf("mirror %s: sync: %w", m.path, ctx.Err())
	case <-m.done:
		return fmt.Errorf("mirror %s: sync: %w", m.path, m.ended())
	}
}

// Done is closed when the Mirror stops following the store.
func (m *Mirror) Done() <-chan struct{} { return m.done }

// Close stops the Mirror and frees its memory. The server's watches fire
// once more and go-zookeeper drops their events. It waits for the Mirror's
// goroutines and is idempotent.
func (m *Mirror) Close() error {
	m.end(coord.ErrClosed, true)
	m.wg.Wait()
	return nil
}

// end stops the Mirror, once; Close after the session ended still makes
// calls fail with ErrClosed.
func (m *Mirror) end(err error, closing bool) {
	if err == nil {
		err = coord.ErrSessionLost
	}
	m.mu.Lock()
	if closing {
		m.closed = true
	}
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	m.nodes = nil
	m.tags = nil
	m.waiters = nil
	m.mu.Unlock()

	m.qmu.Lock()
	m.stopped = true
	m.queue = nil
	m.qmu.Unlock()
	m.c.removeMirror(m)
	m.cancel()
	close(m.done)
}

func (m *Mirror) ended() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.endedLocked()
}

func (m *Mirror) endedLocked() error {
	if m.closed {
		return coord.ErrClosed
	}
	return m.err
}

// lookup finds the visible node at path for op. m.mu is held for reading.
func (m *Mirror) lookup(op, path string) (*mnode, error) {
	if err := m.endedLocked(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, path, err)
	}
	if !m.covers(path) {
		return nil, fmt.Errorf("%s %s: %w (%s)", op, path, coord.ErrNotMirrored, m.path)
	}
	n := m.nodes[path]
	if n == nil || !n.loaded {
		return nil, fmt.Errorf("%s %s: %w", op, path, coord.ErrNotFound)
	}
	return n, nil
}

// waitLoaded returns once the first full read is in, or why a read of
// path cannot be answered.
func (m *Mirror) waitLoaded(ctx context.Context, op, path string) error {
	if !m.covers(path) {
		return fmt.Errorf("%s %s: %w (%s)", op, path, coord.ErrNotMirrored, m.path)
	}
	select {
	case <-m.loaded:
		return nil
	case <-m.done:
		return fmt.Errorf("%s %s: %w", op, path, m.ended())
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", op, path, ctx.Err())
	}
}

// Get answers from memory as Coordinator.Get does.
func (m *Mirror) Get(ctx context.Context, path string) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("get: %w", err)
	}
	if err := m.waitLoaded(ctx, "get", path); err != nil {
		return coord.Node{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, err := m.lookup("get", path)
	if err != nil {
		return coord.Node{}, err
	}
	return coord.Node{Path: path, Value: n.value, Version: coord.Version(n.version)}, nil
}

// visibleKids are the sorted names of n's children whose values are in.
func visibleKids(n *mnode) []string {
	names := make([]string, 0, len(n.kids))
	for name, kid := range n.kids {
		if kid.loaded {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Children answers from memory as Coordinator.Children does.
func (m *Mirror) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("children: %w", err)
	}
	if err := m.waitLoaded(ctx, "children", path); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, err := m.lookup("children", path)
	if err != nil {
		return nil, err
	}
	return visibleKids(n), nil
}

// List answers from memory as Coordinator.List does.
func (m *Mirror) List(ctx context.Context, path string) ([]coord.Node, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	if err := m.waitLoaded(ctx, "list", path); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	n, err := m.lookup("list", path)
	if err != nil {
		return nil, err
	}
	names := visibleKids(n)
	nodes := make([]coord.Node, len(names))
	for i, name := range names {
		kid := n.kids[name]
		nodes[i] = coord.Node{Path: coord.Join(path, name), Value: kid.value, Version: coord.Version(kid.version)}
	}
	return nodes, nil
}
