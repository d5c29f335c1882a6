package etcd

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// maxCreateAttempts bounds how often Create re-reads and retries when a
// concurrent writer changed one of its preconditions (an ancestor made or
// removed, the Sequential counter moved). Every retry follows someone else's
// successful commit, so it runs out only under extreme contention.
const maxCreateAttempts = 100

// writer makes every write of the package: a Coordinator's own, with a nil
// fence, and a Leadership's fenced ones, whose transactions carry the
// fence's compare besides their own. Both kinds are one code path, so they
// cannot drift apart.
type writer struct {
	c *Coordinator
	f *fence
}

var (
	_ coord.Writer = (*Coordinator)(nil)
	_ coord.Writer = writer{}
)

// Create makes a node and its missing ancestors in one transaction, so no
// one sees a half-made path.
//
// The common case costs one round trip, as a bare create-if-absent does: a
// transaction that compares that every ancestor exists, the parent is
// persistent, the node is absent and, for Sequential, the counter gives the
// number this session expects, and makes the node if so. When a compare
// fails, the same transaction's Else reads what the precise path needs, and
// a second transaction, guarded by what that read, makes the missing
// ancestors or says why it cannot (ErrExists, ErrEphemeralParent,
// ErrNotLeader).
func (c *Coordinator) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	return writer{c: c}.Create(ctx, path, value, opts...)
}

// Create is Coordinator.Create, fenced by w.f. The node's version is the
// revision of the transaction that made it, its ModRevision.
func (w writer) Create(ctx context.Context, path string, value []byte, opts ...coord.CreateOption) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	if err := coord.CheckValue(value); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	if err := w.usable(); err != nil {
		return coord.Node{}, fmt.Errorf("create %s: %w", path, err)
	}
	o := coord.ApplyCreateOptions(opts)
	for attempt := 1; ; attempt++ {
		made, rev, done, err := w.tryCreate(ctx, path, value, o)
		if done {
			if err != nil {
				return coord.Node{}, err
			}
			return coord.Node{Path: made, Value: value, Version: coord.Version(rev)}, nil
		}
		if attempt == maxCreateAttempts {
			return coord.Node{}, fmt.Errorf("create %s: gave up after %d attempts: its ancestors or sequence counter kept changing", path, attempt)
		}
		w.c.log.Trace("create raced with a concurrent change; retrying", "path", path, "attempt", attempt)
	}
}

// usable is nil if a write may be sent: the session is live and a fenced
// writer's term is not known to be over. The server's check of the fence
// stays the authority; this only spares a deposed leader the round trip.
func (w writer) usable() error {
	if err := w.c.state(); err != nil {
		return err
	}
	if w.f != nil {
		select {
		case <-w.f.lost:
			return w.f.err()
		default:
		}
	}
	return nil
}

// tryCreate makes one attempt: the optimistic transaction and, when what it
// assumed does not hold, the guarded one. done is false when a concurrent
// change invalidated what the optimistic transaction read and the attempt
// should be repeated. rev is the revision of the transaction that made the
// node.
func (w writer) tryCreate(ctx context.Context, path string, value []byte, o coord.CreateOptions) (made string, rev int64, done bool, err error) {
	made, rev, snap, err := w.createOptimistic(ctx, path, value, o)
	if err != nil {
		return "", 0, true, err
	}
	if snap == nil {
		return made, rev, true, nil
	}
	return w.createGuarded(ctx, path, value, o, snap)
}

// createSnapshot is what the guarded create needs to know, read at one
// revision.
type createSnapshot struct {
	ancs   []*mvccpb.KeyValue // the ancestors, top first; nil where missing
	seq    *mvccpb.KeyValue   // with Sequential, the counter; nil if missing
	exists bool               // without Sequential, whether the node exists
}

// createOptimistic sends one transaction that makes the node if the common
// case holds, and otherwise reads, at the revision its compares saw, what
// the guarded create needs. snap is nil when the node was made.
//
// Its compares: every ancestor exists (any incarnation will do: the
// transaction is atomic); the parent has no lease (no ancestor above it can
// have one, as an ephemeral node gets no children); the node's key is
// absent; with Sequential, the counter gives the number its hint expects;
// and a fenced writer's fence. At MaxPathDepth that is 99 + 4 compares and
// 99 + 2 reads, within etcd's limit of 128 each.
func (w writer) createOptimistic(ctx context.Context, path string, value []byte, o coord.CreateOptions) (made string, rev int64, snap *createSnapshot, err error) {
	c := w.c
	ancs := ancestors(path)
	cmps := make([]clientv3.Cmp, 0, len(ancs)+4)
	reads := make([]clientv3.Op, 0, len(ancs)+2)
	for _, a := range ancs {
		key := c.keys.node(a)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
		reads = append(reads, clientv3.OpGet(key, clientv3.WithKeysOnly()))
	}
	if len(ancs) > 0 {
		parent := c.keys.node(ancs[len(ancs)-1])
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(parent), "=", clientv3.NoLease))
	}
	made = path
	writes := make([]clientv3.Op, 0, 2)
	seqKey, n := "", int64(0)
	if o.Sequential {
		seqKey = c.keys.seq(coord.Parent(path))
		n, _ = c.seqs.get(seqKey)
		made = path + coord.FormatSequence(n)
		cmps = append(cmps, counterAt(seqKey, n))
		writes = append(writes, clientv3.OpPut(seqKey, strconv.FormatInt(n+1, 10)))
		reads = append(reads, clientv3.OpGet(seqKey))
	}
	key := c.keys.node(made)
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
	writes = append(writes, c.putNode(key, value, o))
	if !o.Sequential {
		// With Sequential the name read here would be a guess's.
		reads = append(reads, clientv3.OpGet(key, clientv3.WithCountOnly()))
	}

	resp, err := c.cli.Txn(ctx).If(w.f.guard(cmps)...).Then(writes...).Else(w.f.probe(reads)...).Commit()
	if err != nil {
		return "", 0, nil, c.fail("create", path, err)
	}
	if resp.Succeeded {
		if o.Sequential {
			c.seqs.set(seqKey, n+1)
		}
		return made, resp.Header.Revision, nil, nil
	}
	if w.f.failed(resp) {
		return "", 0, nil, c.fail("create", path, w.f.err())
	}
	snap = &createSnapshot{ancs: make([]*mvccpb.KeyValue, len(ancs))}
	for i := range ancs {
		snap.ancs[i] = firstKV(resp.Responses[i])
	}
	if o.Sequential {
		snap.seq = firstKV(resp.Responses[len(ancs)])
	} else {
		snap.exists = resp.Responses[len(ancs)].GetResponseRange().Count > 0
	}
	return "", 0, snap, nil
}

// firstKV is the key-value a single-key read found, or nil.
func firstKV(r *pb.ResponseOp) *mvccpb.KeyValue {
	if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
		return kvs[0]
	}
	return nil
}

// putNode writes a new node at key, bound to the session if ephemeral.
func (c *Coordinator) putNode(key string, value []byte, o coord.CreateOptions) clientv3.Op {
	if o.Ephemeral {
		return clientv3.OpPut(key, string(value), clientv3.WithLease(c.session.Lease()))
	}
	return clientv3.OpPut(key, string(value))
}

// createGuarded makes the node and its missing ancestors as snap found them,
// in a transaction guarded by what snap says: every ancestor found is still
// the same incarnation, every ancestor it makes is still missing, and, for
// Sequential, the counter is unchanged. done is false when that no longer
// held.
func (w writer) createGuarded(ctx context.Context, path string, value []byte, o coord.CreateOptions, snap *createSnapshot) (made string, rev int64, done bool, err error) {
	c := w.c
	ancs := ancestors(path)
	// At most (MaxPathDepth-1) + 1 + 1 + 1 compares, and the fence's, within
	// etcd's default --max-txn-ops of 128.
	cmps := make([]clientv3.Cmp, 0, len(ancs)+4)
	writes := make([]clientv3.Op, 0, len(ancs)+2)
	nearest := "" // key of the deepest ancestor that exists
	for i, a := range ancs {
		key := c.keys.node(a)
		kv := snap.ancs[i]
		if kv == nil {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			writes = append(writes, clientv3.OpPut(key, ""))
			continue
		}
		if kv.Lease != 0 {
			return "", 0, true, fmt.Errorf("create %s: %s is ephemeral: %w", path, a, coord.ErrEphemeralParent)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", kv.CreateRevision))
		nearest = key
	}
	if snap.exists {
		// The snapshot is one revision, at which this create would fail.
		return "", 0, true, fmt.Errorf("create %s: %w", path, coord.ErrExists)
	}
	if nearest != "" {
		// An incarnation's lease changes only by a raw put (Set keeps it),
		// and only the nearest existing ancestor can be ephemeral: one
		// further up would have no children. Checking that one keeps the
		// transaction within etcd's limit on compares at MaxPathDepth.
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(nearest), "=", clientv3.NoLease))
	}

	made = path
	seqKey := c.keys.seq(coord.Parent(path))
	var n, seqRev int64
	if o.Sequential {
		if n, err = counterValue(seqKey, snap.seq); err != nil {
			return "", 0, true, fmt.Errorf("create %s: %w", path, err)
		}
		if snap.seq == nil {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(seqKey), "=", 0))
		} else {
			seqRev = snap.seq.ModRevision
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(seqKey), "=", seqRev))
		}
		made = path + coord.FormatSequence(n)
		writes = append(writes, clientv3.OpPut(seqKey, strconv.FormatInt(n+1, 10)))
	}

	key := c.keys.node(made)
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
	writes = append(writes, c.putNode(key, value, o))
	failed := []clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}
	if o.Sequential {
		failed = append(failed, clientv3.OpGet(seqKey))
	}

	resp, err := c.cli.Txn(ctx).If(w.f.guard(cmps)...).Then(writes...).Else(w.f.probe(failed)...).Commit()
	if err != nil {
		return "", 0, true, c.fail("create", made, err)
	}
	if resp.Succeeded {
		if o.Sequential {
			c.seqs.set(seqKey, n+1)
		}
		return made, resp.Header.Revision, true, nil
	}
	if w.f.failed(resp) {
		return "", 0, true, c.fail("create", made, w.f.err())
	}
	if o.Sequential {
		kv := firstKV(resp.Responses[1])
		var rev int64
		if kv != nil {
			rev = kv.ModRevision
		}
		if rev != seqRev {
			// Another Sequential create took the number; the next
			// attempt's optimistic transaction takes the one after.
			if next, err := counterValue(seqKey, kv); err == nil {
				c.seqs.set(seqKey, next)
			}
			return "", 0, false, nil
		}
	}
	if resp.Responses[0].GetResponseRange().Count > 0 {
		return "", 0, true, fmt.Errorf("create %s: %w", made, coord.ErrExists)
	}
	return "", 0, false, nil // an ancestor changed since it was read
}

// Get reads one node.
func (c *Coordinator) Get(ctx context.Context, path string) (coord.Node, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, err)
	}
	if err := c.state(); err != nil {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, err)
	}
	resp, err := c.cli.Get(ctx, c.keys.node(path))
	if err != nil {
		return coord.Node{}, c.fail("get", path, err)
	}
	if len(resp.Kvs) == 0 {
		return coord.Node{}, fmt.Errorf("get %s: %w", path, coord.ErrNotFound)
	}
	kv := resp.Kvs[0]
	value := kv.Value
	if value == nil {
		value = []byte{}
	}
	return coord.Node{Path: path, Value: value, Version: coord.Version(kv.ModRevision)}, nil
}

// exists compares true if the node at key exists and, unless expected is
// AnyVersion, was last changed at revision expected. The existence check is
// needed even with a version: a missing key compares as ModRevision 0.
func exists(key string, expected coord.Version) []clientv3.Cmp {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)}
	if expected != coord.AnyVersion {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", int64(expected)))
	}
	return cmps
}

// Set replaces a node's value; the new version is the revision of the write.
func (c *Coordinator) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	return writer{c: c}.Set(ctx, path, value, expected)
}

// Set is Coordinator.Set, fenced by w.f.
func (w writer) Set(ctx context.Context, path string, value []byte, expected coord.Version) (coord.Version, error) {
	if err := coord.ValidateNodePath(path); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	if err := coord.CheckValue(value); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	if err := w.usable(); err != nil {
		return 0, fmt.Errorf("set %s: %w", path, err)
	}
	c := w.c
	key := c.keys.node(path)
	resp, err := c.cli.Txn(ctx).
		If(w.f.guard(exists(key, expected))...).
		// WithIgnoreLease keeps an ephemeral node bound to its session.
		Then(clientv3.OpPut(key, string(value), clientv3.WithIgnoreLease())).
		Else(w.f.probe([]clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())})...).
		Commit()
	if err != nil {
		return 0, c.fail("set", path, err)
	}
	if !resp.Succeeded {
		if w.f.failed(resp) {
			return 0, c.fail("set", path, w.f.err())
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return 0, fmt.Errorf("set %s: %w", path, coord.ErrNotFound)
		}
		return 0, fmt.Errorf("set %s: version %d: %w", path, expected, coord.ErrVersionConflict)
	}
	return coord.Version(resp.Header.Revision), nil
}

// Delete removes a childless node, and its Sequential counter with it.
func (c *Coordinator) Delete(ctx context.Context, path string, expected coord.Version) error {
	return writer{c: c}.Delete(ctx, path, expected)
}

// Delete is Coordinator.Delete, fenced by w.f.
func (w writer) Delete(ctx context.Context, path string, expected coord.Version) error {
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	if err := w.usable(); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	c := w.c
	key := c.keys.node(path)
	kids := c.keys.children(path)
	// An empty range compares as one zero key-value, so CreateRevision 0
	// over the children's prefix means there are none.
	noChildren := clientv3.Compare(clientv3.CreateRevision(kids), "=", 0).WithPrefix()
	resp, err := c.cli.Txn(ctx).
		If(w.f.guard(append(exists(key, expected), noChildren))...).
		Then(clientv3.OpDelete(key), clientv3.OpDelete(c.keys.seq(path))).
		Else(w.f.probe([]clientv3.Op{clientv3.OpGet(key, clientv3.WithKeysOnly()), clientv3.OpGet(kids, clientv3.WithPrefix(), clientv3.WithCountOnly())})...).
		Commit()
	if err != nil {
		return c.fail("delete", path, err)
	}
	if resp.Succeeded {
		return nil
	}
	if w.f.failed(resp) {
		return c.fail("delete", path, w.f.err())
	}
	// Else ran on the same revision the compares saw, so this is exact.
	kvs := resp.Responses[0].GetResponseRange().Kvs
	switch {
	case len(kvs) == 0:
		return fmt.Errorf("delete %s: %w", path, coord.ErrNotFound)
	case expected != coord.AnyVersion && coord.Version(kvs[0].ModRevision) != expected:
		return fmt.Errorf("delete %s: version %d, found %d: %w", path, expected, kvs[0].ModRevision, coord.ErrVersionConflict)
	default:
		n := resp.Responses[1].GetResponseRange().Count
		return fmt.Errorf("delete %s: %d children: %w", path, n, coord.ErrNotEmpty)
	}
}

// deleteTreeOps deletes the node at path, every node below it, depth by
// depth, and their Sequential counters: at most 1 + (MaxPathDepth-1) + 2
// operations, within etcd's default --max-txn-ops of 128.
func (c *Coordinator) deleteTreeOps(path string) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpDelete(c.keys.node(path))}
	for d := coord.Depth(path) + 1; d <= coord.MaxPathDepth; d++ {
		ops = append(ops, clientv3.OpDelete(c.keys.descendants(path, d), clientv3.WithPrefix()))
	}
	return append(ops,
		clientv3.OpDelete(c.keys.seq(path)),
		clientv3.OpDelete(c.keys.seqBelow(path), clientv3.WithPrefix()))
}

// DeleteTree removes a node and everything below it in one transaction, so
// no one sees a partly removed tree; ephemeral nodes and candidacies below
// it go too, which ends those campaigns.
func (c *Coordinator) DeleteTree(ctx context.Context, path string) error {
	return writer{c: c}.DeleteTree(ctx, path)
}

// DeleteTree is Coordinator.DeleteTree, fenced by w.f.
func (w writer) DeleteTree(ctx context.Context, path string) error {
	if err := coord.ValidateNodePath(path); err != nil {
		return fmt.Errorf("delete tree %s: %w", path, err)
	}
	if err := w.usable(); err != nil {
		return fmt.Errorf("delete tree %s: %w", path, err)
	}
	c := w.c
	key := c.keys.node(path)
	resp, err := c.cli.Txn(ctx).
		If(w.f.guard([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)})...).
		Then(c.deleteTreeOps(path)...).
		Else(w.f.probe(nil)...).
		Commit()
	if err != nil {
		return c.fail("delete tree", path, err)
	}
	if !resp.Succeeded {
		if w.f.failed(resp) {
			return c.fail("delete tree", path, w.f.err())
		}
		return fmt.Errorf("delete tree %s: %w", path, coord.ErrNotFound)
	}
	return nil
}

// Children lists the direct children: one range read over the children's
// depth, so it costs O(children) however deep the tree below them is.
func (c *Coordinator) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	if err := c.state(); err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	prefix := c.keys.children(path)
	list := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
	var kvs []*mvccpb.KeyValue
	if path == "/" {
		// The root always exists.
		resp, err := c.cli.Get(ctx, prefix, list...)
		if err != nil {
			return nil, c.fail("children", path, err)
		}
		kvs = resp.Kvs
	} else {
		// Read the node and its children at one revision, so a missing
		// node is told apart from a childless one.
		resp, err := c.cli.Txn(ctx).
			Then(clientv3.OpGet(c.keys.node(path), clientv3.WithCountOnly()), clientv3.OpGet(prefix, list...)).
			Commit()
		if err != nil {
			return nil, c.fail("children", path, err)
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fmt.Errorf("children %s: %w", path, coord.ErrNotFound)
		}
		kvs = resp.Responses[1].GetResponseRange().Kvs
	}
	names := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), prefix))
	}
	sort.Strings(names)
	return names, nil
}
