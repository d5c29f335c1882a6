// Package schedtest holds test doubles for the scheduler: an in-memory
// coord.Coordinator (Store) that can fail chosen writes, and a fake
// executor (Cluster) that records launches and lets a test report statuses.
package schedtest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hasched/hasched/coord"
)

// Store is an in-memory coordination service: sessions opened on one Store
// share its nodes and elections. It keeps coord's contract (its test runs
// coordtest against it): versions are store-wide revisions, candidates are
// ephemeral sequential children of the election node, and fenced writes
// check the term's candidate node atomically with the write.
type Store struct {
	mu      sync.Mutex
	rev     int64
	nodes   map[string]*memNode
	cands   map[*memLeadership]bool // live candidacies, waiting or leading
	changed chan struct{}           // closed and replaced whenever anything changes
	hook    func(op, path string) error
}

type memNode struct {
	value   []byte
	version int64    // revision of the last change
	created int64    // revision of the create: tells incarnations apart
	owner   *Session // ephemeral nodes only
}

// candidatePrefix names the candidate nodes under an election node.
const candidatePrefix = "c-"

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{nodes: map[string]*memNode{}, cands: map[*memLeadership]bool{}, changed: make(chan struct{})}
}

// SetWriteHook makes every later write (op "create", "set", "delete",
// "deletetree"; each op of an Apply by its kind) call hook first; if it
// returns an error, the write (the whole batch) fails with it and changes
// nothing. nil removes the hook.
func (st *Store) SetWriteHook(hook func(op, path string) error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.hook = hook
}

// Open opens a new session; it has the signature scheduler.Config.Open
// wants.
func (st *Store) Open(ctx context.Context) (coord.Coordinator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Session{st: st, done: make(chan struct{})}, nil
}

// Value returns a node's value, for assertions.
func (st *Store) Value(path string) ([]byte, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	n, ok := st.nodes[path]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), n.value...), true
}

// Paths lists every node's path under prefix, sorted.
func (st *Store) Paths(prefix string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for p := range st.nodes {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (st *Store) broadcastLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// reapLocked ends every candidacy whose node is gone, after a write that
// deleted nodes: a leader whose node was deleted, from outside or by the end
// of its session, leads no more.
func (st *Store) reapLocked() {
	for l := range st.cands {
		if !l.nodeLocked() {
			l.loseLocked()
		}
	}
}

// Session is one session with a Store.
type Session struct {
	st        *Store
	done      chan struct{}
	closeOnce sync.Once
	// closed and expired are guarded by st.mu.
	closed, expired bool
	safeUntil       atomic.Pointer[time.Time] // SetSafeUntil's, if set
}

var (
	_ coord.Coordinator = (*Session)(nil)
	_ coord.Writer      = fencedWriter{}
)

func (s *Session) stateLocked() error {
	switch {
	case s.closed:
		return coord.ErrClosed
	case s.expired:
		return coord.ErrSessionLost
	}
	return nil
}

// admitLocked decides whether a write may go ahead: the session is live and
// the fencing leadership (if any) still has its candidate node. Like the
// real backends' server-side checks, it runs atomically with the write.
func (s *Session) admitLocked(fence *memLeadership) error {
	if err := s.stateLocked(); err != nil {
		return err
	}
	// Watchers wake once the write has released the lock and re-read.
	s.st.broadcastLocked()
	if fence != nil && !fence.nodeLocked() {
		return fmt.Errorf("the term with token %d has ended: %w", fence.token, coord.ErrNotLeader)
	}
	return nil
}

// writeLocked is admitLocked and the hook's say on one write.
func (s *Session) writeLocked(fence *memLeadership, op, path string) error {
	if err := s.admitLocked(fence); err != nil {
		return err
	}
	if s.st.hook != nil {
		if err := s.st.hook(op, path); err != nil {
			return err
		}
	}
	return nil
}

// Create, Set, Delete, DeleteTree and Apply are the unfenced writes.
func (s *Session) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	return s.create(nil, path, value, opts...)
}

func (s *Session) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return s.set(nil, path, value, expected)
}

func (s *Session) Delete(ctx context.Context, path string, expected coord.Version) error {
	return s.delete(nil, path, expected)
}

func (s *Session) DeleteTree(ctx context.Context, path string) error {
	return s.deleteTree(nil, path)
}

func (s *Session) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	return s.apply(nil, ops)
}

func (s *Session) create(fence *memLeadership, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, err
	}
	if err := coord.CheckValue(value); err != nil {
		return coord.Node{}, err
	}
	o := coord.ApplyCreateOptions(opts)
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.writeLocked(fence, "create", path); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	var owner *Session
	if o.Ephemeral {
		owner = s
	}
	return s.createLocked(path, value, owner, o.Sequential)
}

// createLocked makes a node and its missing parents.
func (s *Session) createLocked(path string, value []byte, owner *Session, sequential bool) (coord.Node, error) {
	st := s.st
	if sequential {
		st.rev++
		path += coord.FormatSequence(st.rev)
	}
	if _, ok := st.nodes[path]; ok {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, coord.ErrExists)
	}
	var missing []string
	for p := coord.Parent(path); p != "/"; p = coord.Parent(p) {
		n, ok := st.nodes[p]
		if ok {
			if n.owner != nil {
				return coord.Node{}, fmt.Errorf("create %s: %w", path, coord.ErrEphemeralParent)
			}
			break
		}
		missing = append(missing, p)
	}
	st.rev++
	for _, p := range missing {
		st.nodes[p] = &memNode{value: []byte{}, version: st.rev, created: st.rev}
	}
	st.nodes[path] = &memNode{value: append([]byte{}, value...), version: st.rev, created: st.rev, owner: owner}
	return coord.Node{Path: path, Value: append([]byte{}, value...), Version: coord.Version(st.rev)}, nil
}

func (s *Session) Get(ctx context.Context, path string) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.stateLocked(); err != nil {
		return coord.Node{}, err
	}
	n, ok := st.nodes[path]
	if !ok {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, coord.ErrNotFound)
	}
	return coord.Node{Path: path, Value: append([]byte{}, n.value...), Version: coord.Version(n.version)}, nil
}

func (s *Session) set(fence *memLeadership, path string, value []byte, expected coord.Version) (coord.Version, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return 0, err
	}
	if err := coord.CheckValue(value); err != nil {
		return 0, err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.writeLocked(fence, "set", path); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	n, ok := st.nodes[path]
	if !ok {
		return 0, fmt.Errorf("set %s: %w", path, coord.ErrNotFound)
	}
	if expected != coord.AnyVersion && coord.Version(n.version) != expected {
		return 0, fmt.Errorf("set %s: %w", path, coord.ErrVersionConflict)
	}
	st.rev++
	n.value, n.version = append([]byte{}, value...), st.rev
	return coord.Version(n.version), nil
}

// hasChildrenLocked says whether path has children in nodes.
func hasChildren(nodes map[string]*memNode, path string) bool {
	for p := range nodes {
		if strings.HasPrefix(p, path+"/") {
			return true
		}
	}
	return false
}

func (s *Session) delete(fence *memLeadership, path string, expected coord.Version) error {
	if err := coord.ValidateNodePath(path); err != nil {
		return err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.writeLocked(fence, "delete", path); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	n, ok := st.nodes[path]
	if !ok {
		return fmt.Errorf("delete %s: %w", path, coord.ErrNotFound)
	}
	if expected != coord.AnyVersion && coord.Version(n.version) != expected {
		return fmt.Errorf("delete %s: %w", path, coord.ErrVersionConflict)
	}
	if hasChildren(st.nodes, path) {
		return fmt.Errorf("delete %s: %w", path, coord.ErrNotEmpty)
	}
	delete(st.nodes, path)
	st.rev++
	st.reapLocked()
	return nil
}

func (s *Session) deleteTree(fence *memLeadership, path string) error {
	if err := coord.ValidateNodePath(path); err != nil {
		return err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.writeLocked(fence, "deletetree", path); err != nil {
		return fmt.Errorf("delete tree %s: %w", path, err)
	}
	if _, ok := st.nodes[path]; !ok {
		return fmt.Errorf("delete tree %s: %w", path, coord.ErrNotFound)
	}
	for p := range st.nodes {
		if p == path || strings.HasPrefix(p, path+"/") {
			delete(st.nodes, p)
		}
	}
	st.rev++
	st.reapLocked()
	return nil
}

// apply plays a batch on an overlay of the store and commits it only if
// every op succeeds; every node it writes gets the batch's one revision, as
// every node a transaction writes gets its revision on etcd.
func (s *Session) apply(fence *memLeadership, ops []coord.Op) ([]coord.OpResult, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	if err := coord.CheckBatch(ops); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.admitLocked(fence); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if st.hook != nil {
		for _, op := range ops {
			if err := st.hook(op.Kind().String(), op.Path); err != nil {
				return nil, fmt.Errorf("apply: %w", err)
			}
		}
	}
	rev := st.rev + 1
	overlay := map[string]*memNode{} // nil: deleted by the batch
	get := func(p string) *memNode {
		if n, ok := overlay[p]; ok {
			return n
		}
		return st.nodes[p]
	}
	childless := func(p string) bool {
		for q, n := range overlay {
			if n != nil && strings.HasPrefix(q, p+"/") {
				return false
			}
		}
		for q := range st.nodes {
			if _, ok := overlay[q]; !ok && strings.HasPrefix(q, p+"/") {
				return false
			}
		}
		return true
	}
	// present checks that op's node exists at the version asked; a node the
	// batch wrote has the batch's version, which no one can know yet.
	present := func(op coord.Op) (*memNode, error) {
		n := get(op.Path)
		switch {
		case n == nil:
			return nil, coord.ErrNotFound
		case op.Version != coord.AnyVersion && (n.version == rev || coord.Version(n.version) != op.Version):
			return nil, coord.ErrVersionConflict
		}
		return n, nil
	}
	for i, op := range ops {
		fail := func(err error) ([]coord.OpResult, error) {
			return nil, &coord.OpError{Index: i, Op: op, Err: err}
		}
		switch op.Kind() {
		case coord.OpCreate:
			parent := coord.Parent(op.Path)
			pn := get(parent)
			if parent != "/" && pn == nil {
				return fail(fmt.Errorf("parent %s: %w", parent, coord.ErrNotFound))
			}
			if get(op.Path) != nil {
				return fail(coord.ErrExists)
			}
			if pn != nil && pn.owner != nil {
				return fail(fmt.Errorf("parent %s: %w", parent, coord.ErrEphemeralParent))
			}
			overlay[op.Path] = &memNode{value: append([]byte{}, op.Value...), version: rev, created: rev}
		case coord.OpSet:
			n, err := present(op)
			if err != nil {
				return fail(err)
			}
			changed := *n
			changed.value, changed.version = append([]byte{}, op.Value...), rev
			overlay[op.Path] = &changed
		case coord.OpDelete:
			if _, err := present(op); err != nil {
				return fail(err)
			}
			if !childless(op.Path) {
				return fail(coord.ErrNotEmpty)
			}
			overlay[op.Path] = nil
		}
	}
	st.rev = rev
	for p, n := range overlay {
		if n == nil {
			delete(st.nodes, p)
		} else {
			st.nodes[p] = n
		}
	}
	st.reapLocked()
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		res[i].Path = op.Path
		if op.Kind() != coord.OpDelete {
			res[i].Version = coord.Version(rev)
		}
	}
	return res, nil
}

func (s *Session) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.stateLocked(); err != nil {
		return nil, err
	}
	if _, ok := st.nodes[path]; !ok && path != "/" {
		return nil, fmt.Errorf("children %s: %w", path, coord.ErrNotFound)
	}
	return s.childrenLocked(path), nil
}

// List reads the children with their values under the store's lock: one
// state, as etcd's.
func (s *Session) List(ctx context.Context, path string) ([]coord.Node, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.stateLocked(); err != nil {
		return nil, err
	}
	if _, ok := st.nodes[path]; !ok && path != "/" {
		return nil, fmt.Errorf("list %s: %w", path, coord.ErrNotFound)
	}
	base := strings.TrimSuffix(path, "/")
	out := []coord.Node{}
	for _, name := range s.childrenLocked(path) {
		p := base + "/" + name
		n := st.nodes[p]
		out = append(out, coord.Node{Path: p, Value: append([]byte{}, n.value...), Version: coord.Version(n.version)})
	}
	return out, nil
}

// Campaign makes the session's candidate node, an ephemeral sequential child
// of the election node, and waits until it is the first candidate.
func (s *Session) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, err
	}
	if err := coord.CheckValue(value); err != nil {
		return nil, err
	}
	st := s.st
	st.mu.Lock()
	if err := s.stateLocked(); err != nil {
		st.mu.Unlock()
		return nil, err
	}
	for c := range st.cands {
		if c.s == s && c.election == election {
			st.mu.Unlock()
			return nil, coord.ErrAlreadyCampaigning
		}
	}
	n, err := s.createLocked(coord.Join(election, candidatePrefix), value, s, true)
	if err != nil {
		st.mu.Unlock()
		return nil, fmt.Errorf("campaign %s: %w", election, err)
	}
	l := &memLeadership{s: s, election: election, node: n.Path, token: int64(n.Version), lost: make(chan struct{})}
	st.cands[l] = true
	st.broadcastLocked()
	for {
		if !l.nodeLocked() {
			l.loseLocked()
			err := s.stateLocked()
			st.mu.Unlock()
			if err == nil {
				err = fmt.Errorf("campaign %s: the candidate node %s was deleted: %w", election, l.node, coord.ErrNotLeader)
			}
			return nil, err
		}
		if l.firstLocked() {
			st.mu.Unlock()
			return l, nil
		}
		changed := st.changed
		st.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			st.mu.Lock()
			l.withdrawLocked()
			st.mu.Unlock()
			return nil, ctx.Err()
		case <-s.done:
		}
		st.mu.Lock()
	}
}

func (s *Session) Leader(ctx context.Context, election string) ([]byte, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, err
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.stateLocked(); err != nil {
		return nil, err
	}
	if _, ok := st.nodes[election]; !ok {
		return nil, coord.ErrNoLeader
	}
	cands := candidates(s.childrenLocked(election))
	if len(cands) == 0 {
		return nil, coord.ErrNoLeader
	}
	return append([]byte{}, st.nodes[coord.Join(election, cands[0])].value...), nil
}

// candidates filters the candidate names among an election node's sorted
// children; their fixed-width counters sort them in campaign order.
func candidates(names []string) []string {
	out := names[:0:0]
	for _, n := range names {
		if strings.HasPrefix(n, candidatePrefix) {
			out = append(out, n)
		}
	}
	return out
}

func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session: its ephemeral nodes and candidacies go.
func (s *Session) Close() error {
	s.end(false)
	return nil
}

// SafeUntil is an hour ahead while the session lives (the in-memory
// service never times a session out by itself), SetSafeUntil's value if it
// was set, and the zero time once the session has ended.
func (s *Session) SafeUntil() time.Time {
	select {
	case <-s.done:
		return time.Time{}
	default:
	}
	if v := s.safeUntil.Load(); v != nil {
		return *v
	}
	return time.Now().Add(time.Hour)
}

// SetSafeUntil fixes what SafeUntil returns while the session lives, so
// that tests can play a session whose renewals stopped.
func (s *Session) SetSafeUntil(t time.Time) { s.safeUntil.Store(&t) }

// Expire ends the session as if the service had timed it out: later calls
// fail with ErrSessionLost.
func (s *Session) Expire() { s.end(true) }

func (s *Session) end(expired bool) {
	s.closeOnce.Do(func() {
		st := s.st
		st.mu.Lock()
		if expired {
			s.expired = true
		} else {
			s.closed = true
		}
		for p, n := range st.nodes {
			if n.owner == s {
				delete(st.nodes, p)
			}
		}
		st.rev++
		st.reapLocked()
		st.broadcastLocked()
		close(s.done)
		st.mu.Unlock()
	})
}

// memLeadership is a candidacy; it leads once its node is the election's
// first candidate, and as long as the node exists.
type memLeadership struct {
	s        *Session
	election string
	node     string // the candidate node's path
	token    int64  // the candidate node's create revision
	lost     chan struct{}
	lostOnce sync.Once
}

func (l *memLeadership) Token() int64          { return l.token }
func (l *memLeadership) Lost() <-chan struct{} { return l.lost }

// Resign removes the candidate node, if it is still this term's.
func (l *memLeadership) Resign(ctx context.Context) error {
	l.s.st.mu.Lock()
	defer l.s.st.mu.Unlock()
	l.withdrawLocked()
	return nil
}

// Writer returns the session's writes fenced by this leadership.
func (l *memLeadership) Writer() coord.Writer { return fencedWriter{l} }

// nodeLocked says whether l's candidate node still exists, the same
// incarnation.
func (l *memLeadership) nodeLocked() bool {
	n, ok := l.s.st.nodes[l.node]
	return ok && n.created == l.token && n.owner == l.s
}

// firstLocked says whether l's node is the first candidate of its election.
func (l *memLeadership) firstLocked() bool {
	cands := candidates(l.s.childrenLocked(l.election))
	return len(cands) > 0 && coord.Join(l.election, cands[0]) == l.node
}

// withdrawLocked removes l's candidate node and ends the candidacy.
func (l *memLeadership) withdrawLocked() {
	st := l.s.st
	if l.nodeLocked() {
		delete(st.nodes, l.node)
		st.rev++
	}
	l.loseLocked()
	st.reapLocked()
}

// loseLocked ends the candidacy: Lost closes and the session may campaign
// again.
func (l *memLeadership) loseLocked() {
	st := l.s.st
	if st.cands[l] {
		delete(st.cands, l)
		st.broadcastLocked()
	}
	l.lostOnce.Do(func() { close(l.lost) })
}

type fencedWriter struct{ l *memLeadership }

func (w fencedWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	return w.l.s.create(w.l, path, value, opts...)
}

func (w fencedWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return w.l.s.set(w.l, path, value, expected)
}

func (w fencedWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	return w.l.s.delete(w.l, path, expected)
}

func (w fencedWriter) DeleteTree(ctx context.Context, path string) error {
	return w.l.s.deleteTree(w.l, path)
}

func (w fencedWriter) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	return w.l.s.apply(w.l, ops)
}

// Watch reports a node's states; a test double of the contract's latest-state
// watch: every change wakes the watcher, which re-reads and sends the state
// if it differs from the last one sent.
func (s *Session) Watch(ctx context.Context, path string) (<-chan coord.NodeEvent, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return nil, err
	}
	return watch(ctx, s, func() (coord.NodeEvent, string) {
		n, ok := s.st.nodes[path]
		if !ok {
			return coord.NodeEvent{Node: coord.Node{Path: path}}, "missing"
		}
		ev := coord.NodeEvent{Exists: true, Node: coord.Node{Path: path, Value: append([]byte(nil), n.value...), Version: coord.Version(n.version)}}
		return ev, fmt.Sprint(n.version)
	}, func(err error) coord.NodeEvent { return coord.NodeEvent{Node: coord.Node{Path: path}, Err: err} })
}

// WatchChildren reports a node's children with Watch's semantics.
func (s *Session) WatchChildren(ctx context.Context, path string) (<-chan coord.ChildrenEvent, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, err
	}
	return watch(ctx, s, func() (coord.ChildrenEvent, string) {
		if _, ok := s.st.nodes[path]; !ok && path != "/" {
			return coord.ChildrenEvent{}, "missing"
		}
		names := s.childrenLocked(path)
		return coord.ChildrenEvent{Exists: true, Children: names}, strings.Join(names, "/")
	}, func(err error) coord.ChildrenEvent { return coord.ChildrenEvent{Err: err} })
}

// childrenLocked lists the direct children of path, sorted.
func (s *Session) childrenLocked(path string) []string {
	prefix := path + "/"
	if path == "/" {
		prefix = "/"
	}
	names := []string{}
	for p := range s.st.nodes {
		if rest, ok := strings.CutPrefix(p, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			names = append(names, rest)
		}
	}
	sort.Strings(names)
	return names
}

// watch runs one watch: read takes the state and a key that changes with
// it, under the store's lock.
func watch[E any](ctx context.Context, s *Session, read func() (E, string), failed func(error) E) (<-chan E, error) {
	s.st.mu.Lock()
	if err := s.stateLocked(); err != nil {
		s.st.mu.Unlock()
		return nil, err
	}
	s.st.mu.Unlock()
	ch := make(chan E, 1)
	go func() {
		defer close(ch)
		last := "\x00never"
		for {
			s.st.mu.Lock()
			if err := s.stateLocked(); err != nil {
				s.st.mu.Unlock()
				select {
				case ch <- failed(err):
				case <-ctx.Done():
				}
				return
			}
			ev, key := read()
			changed := s.st.changed
			s.st.mu.Unlock()
			if key != last {
				select {
				case ch <- ev:
					last = key
				case <-ctx.Done():
					return
				case <-s.done:
					continue
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-s.done:
			}
		}
	}()
	return ch, nil
}
