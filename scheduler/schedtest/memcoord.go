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

	"github.com/hasched/hasched/coord"
)

// Store is an in-memory coordination service: sessions opened on one Store
// share its nodes and elections.
type Store struct {
	mu        sync.Mutex
	rev       int64
	nodes     map[string]*memNode
	elections map[string][]*memLeadership
	changed   chan struct{} // closed and replaced whenever an election changes
	hook      func(op, path string) error
}

type memNode struct {
	value   []byte
	version int64
	owner   *Session // ephemeral nodes only
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{nodes: map[string]*memNode{}, elections: map[string][]*memLeadership{}, changed: make(chan struct{})}
}

// SetWriteHook makes every later write (op "create", "set", "delete",
// "deletetree") call hook first; if it returns an error, the write fails
// with it and changes nothing. nil removes the hook.
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

// Create, Set, Delete and DeleteTree are the unfenced writes.
func (s *Session) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (string, error) {
	return s.create(nil, ctx, path, value, opts...)
}

func (s *Session) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return s.set(nil, ctx, path, value, expected)
}

func (s *Session) Delete(ctx context.Context, path string, expected coord.Version) error {
	return s.delete(nil, ctx, path, expected)
}

func (s *Session) DeleteTree(ctx context.Context, path string) error {
	return s.deleteTree(nil, ctx, path)
}

func (st *Store) broadcastLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// Session is one session with a Store.
type Session struct {
	st        *Store
	done      chan struct{}
	closeOnce sync.Once
	// closed and expired are guarded by st.mu.
	closed, expired bool
}

var _ coord.Coordinator = (*Session)(nil)

func (s *Session) stateLocked() error {
	switch {
	case s.closed:
		return coord.ErrClosed
	case s.expired:
		return coord.ErrSessionLost
	}
	return nil
}

// writeLocked decides whether a write may go ahead: the session is live,
// the fencing leadership (if any) still leads, and the hook agrees. Like the
// real backends' server-side checks, it runs atomically with the write.
func (s *Session) writeLocked(fence *memLeadership, op, path string) error {
	if err := s.stateLocked(); err != nil {
		return err
	}
	// Watchers wake once the write has released the lock and re-read.
	s.st.broadcastLocked()
	if fence != nil && !fence.leadingLocked() {
		return fmt.Errorf("%s %s: %w", op, path, coord.ErrNotLeader)
	}
	if s.st.hook != nil {
		if err := s.st.hook(op, path); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) create(fence *memLeadership, ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (string, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return "", err
	}
	if err := coord.CheckValue(value); err != nil {
		return "", err
	}
	o := coord.ApplyCreateOptions(opts)
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.writeLocked(fence, "create", path); err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	if o.Sequential {
		st.rev++
		path += coord.FormatSequence(st.rev)
	}
	if _, ok := st.nodes[path]; ok {
		return "", fmt.Errorf("create %s: %w", path, coord.ErrExists)
	}
	var missing []string
	for p := coord.Parent(path); p != "/"; p = coord.Parent(p) {
		n, ok := st.nodes[p]
		if ok {
			if n.owner != nil {
				return "", fmt.Errorf("create %s: %w", path, coord.ErrEphemeralParent)
			}
			break
		}
		missing = append(missing, p)
	}
	st.rev++
	for _, p := range missing {
		st.nodes[p] = &memNode{value: []byte{}, version: st.rev}
	}
	n := &memNode{value: append([]byte{}, value...), version: st.rev}
	if o.Ephemeral {
		n.owner = s
	}
	st.nodes[path] = n
	return path, nil
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

func (s *Session) set(fence *memLeadership, ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
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

func (s *Session) hasChildrenLocked(path string) bool {
	for p := range s.st.nodes {
		if strings.HasPrefix(p, path+"/") {
			return true
		}
	}
	return false
}

func (s *Session) delete(fence *memLeadership, ctx context.Context, path string, expected coord.Version) error {
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
	if s.hasChildrenLocked(path) {
		return fmt.Errorf("delete %s: %w", path, coord.ErrNotEmpty)
	}
	delete(st.nodes, path)
	st.rev++
	return nil
}

func (s *Session) deleteTree(fence *memLeadership, ctx context.Context, path string) error {
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
	return nil
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
	prefix := path + "/"
	if path == "/" {
		prefix = "/"
	}
	out := []string{}
	for p := range st.nodes {
		if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Campaign queues the session in the election and waits until it is first.
func (s *Session) Campaign(ctx context.Context, election string, value []byte) (coord.Leadership, error) {
	if err := coord.ValidateNodePath(election); err != nil {
		return nil, err
	}
	st := s.st
	st.mu.Lock()
	if err := s.stateLocked(); err != nil {
		st.mu.Unlock()
		return nil, err
	}
	for _, c := range st.elections[election] {
		if c.s == s {
			st.mu.Unlock()
			return nil, coord.ErrAlreadyCampaigning
		}
	}
	st.rev++
	l := &memLeadership{s: s, election: election, value: append([]byte{}, value...), token: st.rev, lost: make(chan struct{})}
	st.elections[election] = append(st.elections[election], l)
	st.broadcastLocked()
	for {
		if st.elections[election][0] == l {
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
			return nil, coord.ErrSessionLost
		}
		st.mu.Lock()
		if !l.queuedLocked() {
			st.mu.Unlock()
			return nil, coord.ErrSessionLost
		}
	}
}

func (s *Session) Leader(ctx context.Context, election string) ([]byte, error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.stateLocked(); err != nil {
		return nil, err
	}
	cs := st.elections[election]
	if len(cs) == 0 {
		return nil, coord.ErrNoLeader
	}
	return append([]byte{}, cs[0].value...), nil
}

func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session: its ephemeral nodes and candidacies go.
func (s *Session) Close() error {
	s.end(false)
	return nil
}

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
		for _, cs := range st.elections {
			for _, c := range cs {
				if c.s == s {
					c.withdrawLocked()
				}
			}
		}
		close(s.done)
		st.mu.Unlock()
	})
}

// memLeadership is a candidacy; it leads while it is first in its election.
type memLeadership struct {
	s        *Session
	election string
	value    []byte
	token    int64
	lost     chan struct{}
	lostOnce sync.Once
}

func (l *memLeadership) Token() int64          { return l.token }
func (l *memLeadership) Lost() <-chan struct{} { return l.lost }

func (l *memLeadership) Resign(ctx context.Context) error {
	l.s.st.mu.Lock()
	defer l.s.st.mu.Unlock()
	l.withdrawLocked()
	return nil
}

// Writer returns the session's writes fenced by this leadership.
func (l *memLeadership) Writer() coord.Writer { return fencedWriter{l} }

// leadingLocked says whether l is still its election's leader.
func (l *memLeadership) leadingLocked() bool {
	cs := l.s.st.elections[l.election]
	return len(cs) > 0 && cs[0] == l
}

type fencedWriter struct{ l *memLeadership }

func (w fencedWriter) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (string, error) {
	return w.l.s.create(w.l, ctx, path, value, opts...)
}

func (w fencedWriter) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return w.l.s.set(w.l, ctx, path, value, expected)
}

func (w fencedWriter) Delete(ctx context.Context, path string, expected coord.Version) error {
	return w.l.s.delete(w.l, ctx, path, expected)
}

func (w fencedWriter) DeleteTree(ctx context.Context, path string) error {
	return w.l.s.deleteTree(w.l, ctx, path)
}

func (l *memLeadership) queuedLocked() bool {
	for _, c := range l.s.st.elections[l.election] {
		if c == l {
			return true
		}
	}
	return false
}

func (l *memLeadership) withdrawLocked() {
	st := l.s.st
	cs := st.elections[l.election]
	for i, c := range cs {
		if c == l {
			st.elections[l.election] = append(cs[:i:i], cs[i+1:]...)
			st.broadcastLocked()
			break
		}
	}
	l.lostOnce.Do(func() { close(l.lost) })
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
