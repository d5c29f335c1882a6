// Package coord is the contract between hasched and its coordination service.
//
// A Coordinator is one session with one coordination service (an etcd cluster
// or a ZooKeeper ensemble). Everything ephemeral (ephemeral nodes, campaigns,
// leaderships) belongs to that session. When the session ends, Done is
// closed, every Leadership's Lost is closed and every later call fails with
// ErrSessionLost (ErrClosed after Close). A Coordinator never rebinds itself to
// a new session: the caller opens a new one, which is what RunElection does.
//
// Backends register a URL scheme; import them for their side effect:
//
//	import _ "github.com/hasched/hasched/coord/etcd" // etcd://
//	import _ "github.com/hasched/hasched/coord/zk"   // zk://
package coord

import (
	"context"
	"time"
)

// Version identifies one state of a node. It is the revision of the node's
// last change and is unique across the cluster, so a version read before a
// node was deleted and created again never matches the new node. Callers
// must treat it as opaque and only compare it for equality.
type Version int64

// AnyVersion makes Set and Delete skip the version check.
const AnyVersion Version = -1

// MaxValueSize is the largest value, in bytes, that every backend stores with
// its servers' default limits (ZooKeeper's jute.maxbuffer of 1 MiB including
// the request's framing, etcd's --max-request-bytes of 1.5 MiB). Larger values
// are refused with ErrValueTooLarge before anything is sent.
const MaxValueSize = 1_000_000

// Node is one node as read from the store.
type Node struct {
	Path    string
	Value   []byte
	Version Version
}

// Writer is the write half of a Coordinator. A Coordinator is a Writer; a
// Leadership's fenced writes are one too.
type Writer interface {
	Create(ctx context.Context, path string, value []byte, opts ...CreateOption) (Node, error)
	Set(ctx context.Context, path string, value []byte, expected Version) (Version, error)
	Delete(ctx context.Context, path string, expected Version) error
	DeleteTree(ctx context.Context, path string) error
	Apply(ctx context.Context, ops ...Op) ([]OpResult, error)
}

// Coordinator is one session with a coordination service. All methods are
// safe for concurrent use.
type Coordinator interface {
	// Create makes a node. Missing parents are made as persistent, empty
	// nodes. It returns the node it made: its Path (with Sequential, the
	// path with a 10-digit counter appended, as ZooKeeper does), the Value
	// written and its Version, the one a following Get returns, so it can
	// be the expected version of a Set. ErrExists if the node is there,
	// ErrEphemeralParent if a parent is ephemeral.
	Create(ctx context.Context, path string, value []byte, opts ...CreateOption) (Node, error)
	// Get reads one node; ErrNotFound if it is missing.
	Get(ctx context.Context, path string) (Node, error)
	// Set replaces a node's value if its version is expected (or expected is
	// AnyVersion) and returns the new version. ErrVersionConflict otherwise,
	// ErrNotFound if the node is missing.
	Set(ctx context.Context, path string, value []byte, expected Version) (Version, error)
	// Delete removes a node without children if its version is expected (or
	// expected is AnyVersion). ErrNotEmpty if it has children.
	Delete(ctx context.Context, path string, expected Version) error
	// DeleteTree removes the node and everything below it. ErrNotFound if
	// the node is missing.
	DeleteTree(ctx context.Context, path string) error
	// Apply makes every op or none, atomically (etcd: one transaction;
	// ZooKeeper: one multi), in order: a later op sees what earlier ones
	// did. It returns one OpResult per op. When an op fails, nothing is
	// written and the error is an *OpError naming it, wrapping the
	// sentinel. Zero ops is a no-op returning nil, nil; more than
	// MaxBatchOps, or values adding up to more than MaxValueSize, is
	// ErrBatchTooLarge. Paths are checked before anything is sent.
	Apply(ctx context.Context, ops ...Op) ([]OpResult, error)
	// Children returns the names of the node's direct children, sorted.
	// ErrNotFound if the node is missing. "/" lists the namespace's root.
	Children(ctx context.Context, path string) ([]string, error)
	// List returns the node's direct children with their values, sorted
	// by name: what Children and a Get of each return, in as few round
	// trips as the backend allows, so a caller reads thousands of nodes
	// without a request per node. On etcd the list is one revision (a
	// range read in pages at the first page's revision); on ZooKeeper it
	// is the children, then their reads pipelined on the connection, so a
	// child deleted meanwhile is left out and each value is as fresh as
	// its own read. ErrNotFound if the node is missing; "/" lists the
	// namespace's root.
	List(ctx context.Context, path string) ([]Node, error)
	// Campaign blocks until this session leads the election, ctx ends
	// (ctx.Err(), and the candidacy is withdrawn) or the session ends
	// (ErrSessionLost). Candidates are children of the election node. A
	// Coordinator campaigns at most once at a time in one election
	// (ErrAlreadyCampaigning).
	Campaign(ctx context.Context, election string, value []byte) (Leadership, error)
	// Leader returns the value of the election's current leader, or
	// ErrNoLeader.
	Leader(ctx context.Context, election string) ([]byte, error)
	// Watch reports the state of one node: first its state when Watch is
	// called, then its changes. Events may be coalesced, but they arrive in
	// order and the latest state is always delivered. After the backend
	// lost track (a reconnect, a compaction of etcd's history) it re-reads
	// the node and sends that state with Resync set. The channel is closed
	// when ctx ends, or when the session ends, after a last event whose Err
	// is ErrSessionLost or ErrClosed.
	Watch(ctx context.Context, path string) (<-chan NodeEvent, error)
	// WatchChildren reports the sorted names of a node's direct children,
	// with Watch's semantics. "/" watches the namespace's root.
	WatchChildren(ctx context.Context, path string) (<-chan ChildrenEvent, error)
	// Done is closed when the session has ended, for whatever reason.
	Done() <-chan struct{}
	// SafeUntil is the moment up to which the servers certainly keep the
	// session, by what this client last heard from them: they cannot
	// expire it earlier, so what a process does on the session's behalf
	// (the tasks a worker runs) must stop by then unless SafeUntil moves
	// on. It moves on with every renewal; it is the zero time once the
	// session has ended. Done closes no later than SafeUntil passes
	// without a renewal, by the backend's own rule.
	SafeUntil() time.Time
	// Close ends the session: ephemeral nodes go, leaderships are lost.
	// It is idempotent.
	Close() error
}

// Leadership is one term of leadership won by Campaign.
type Leadership interface {
	// Token is the fencing token of this term: strictly greater for every
	// new term of the same election on the same cluster (etcd: the
	// candidate key's create revision; ZooKeeper: the candidate node's
	// czxid).
	Token() int64
	// Lost is closed when the leadership ends for any reason: Resign, the
	// leader node deleted, the session ended.
	Lost() <-chan struct{}
	// Resign gives leadership up and removes the candidacy. It is a no-op
	// once the leadership is already lost.
	Resign(ctx context.Context) error
	// Writer returns the session's writes fenced by this term: each one
	// succeeds only while the term's candidate node still exists, checked
	// by the server atomically with the write (etcd: a transaction
	// comparing the candidate key's create revision; ZooKeeper: a multi
	// with a check of the candidate node). Once the term is over every
	// write fails with ErrNotLeader and changes nothing. The scheduler
	// makes every leader write through it.
	Writer() Writer
}

// NodeEvent is one state of a watched node.
type NodeEvent struct {
	// Node is the node's state; only Path is set when it does not exist.
	Node   Node
	Exists bool
	// Resync says the watch was re-established: changes since the previous
	// event may have been passed over, but this is the current state.
	Resync bool
	// Err is set on the last event of a watch whose session ended.
	Err error
}

// ChildrenEvent is one state of a watched node's children.
type ChildrenEvent struct {
	// Children are the sorted names of the direct children; empty when the
	// node does not exist.
	Children []string
	Exists   bool
	Resync   bool
	Err      error
}

// CreateOption modifies Create.
type CreateOption func(*CreateOptions)

// CreateOptions is what Create's options amount to; backends read it through
// ApplyCreateOptions.
type CreateOptions struct {
	Ephemeral  bool
	Sequential bool
}

// Ephemeral makes a node that lives only as long as the session.
func Ephemeral() CreateOption { return func(o *CreateOptions) { o.Ephemeral = true } }

// Sequential appends a 10-digit counter, increasing per parent, to the name.
func Sequential() CreateOption { return func(o *CreateOptions) { o.Sequential = true } }

// ApplyCreateOptions folds opts into one CreateOptions.
func ApplyCreateOptions(opts []CreateOption) CreateOptions {
	var o CreateOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}
