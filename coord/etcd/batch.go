package etcd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// maxTxnOps is etcd's default --max-txn-ops: the most compares, and the most
// operations of either branch, one transaction may carry.
const maxTxnOps = 128

// Apply makes every op or none, in one transaction.
func (c *Coordinator) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	return writer{c: c}.Apply(ctx, ops...)
}

// Apply is Coordinator.Apply, fenced by w.f.
//
// etcd evaluates a transaction's compares before any of its writes, while a
// batch's ops see the ops before them (a create under a node the batch made,
// a delete of a node whose children the batch deleted). So Apply reads every
// node the batch depends on at one revision R, plays the ops on that
// snapshot, and sends the final state of every node touched, guarded by
// compares that what it read of the snapshot still holds: the nodes it relied
// on are the same incarnations (or versions), and nothing was created since
// R where it relied on a node being absent or childless. An op refused by the
// snapshot is refused without writing; when the compares fail, someone wrote
// in between and Apply reads again.
//
// That read is skipped in the common case: a batch of the shape applyQuick
// takes is first sent as one transaction whose compares are what the read
// would have found (batchquick.go), and goes the way above only when they
// fail.
func (w writer) Apply(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	if err := coord.CheckBatch(ops); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if err := w.usable(); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if res, done, err := w.applyQuick(ctx, ops); done {
		return res, err
	}
	for attempt := 1; ; attempt++ {
		res, done, err := w.tryApply(ctx, ops)
		if done {
			return res, err
		}
		if attempt == maxCreateAttempts {
			return nil, fmt.Errorf("apply: gave up after %d attempts: the nodes the batch depends on kept changing", attempt)
		}
		w.c.log.Trace("batch raced with a concurrent change; retrying", "ops", len(ops), "attempt", attempt)
	}
}

// batchRead is one read of a batch's snapshot.
type batchRead struct {
	key  string
	opts []clientv3.OpOption
}

// snapNode is a node as the batch sees it: first as read, then as the ops
// before the current one left it.
type snapNode struct {
	read    bool  // it existed at the snapshot
	created int64 // CreateRevision as read; 0 when missing
	mod     int64 // ModRevision as read
	lease   int64
	exists  bool // it exists after the ops played so far
	// touched: an op of the batch wrote the node, so its state is the
	// batch's own and its version is not known before the commit.
	touched bool
	// deleted: an op of the batch deleted it (it may have made it again).
	deleted   bool
	value     []byte
	children  int64 // the count as read, then kept by the batch's ops
	seqExists bool  // its Sequential counter existed at the snapshot
}

// tryApply makes one attempt; done is false when the snapshot changed before
// the commit and the attempt should be repeated.
func (w writer) tryApply(ctx context.Context, ops []coord.Op) (res []coord.OpResult, done bool, err error) {
	c := w.c
	// What to read: every op's node, a create's parent, and a delete's
	// children and Sequential counter.
	var reads []batchRead
	nodeAt := map[string]int{} // path → index of its node's read
	kidsAt := map[string]int{} // path → index of its children count's read
	seqAt := map[string]int{}  // path → index of its counter's read
	addNode := func(p string) {
		if _, ok := nodeAt[p]; !ok && p != "/" {
			nodeAt[p] = len(reads)
			reads = append(reads, batchRead{c.keys.node(p), []clientv3.OpOption{clientv3.WithKeysOnly()}})
		}
	}
	for _, op := range ops {
		addNode(op.Path)
		switch op.Kind() {
		case coord.OpCreate:
			addNode(coord.Parent(op.Path))
		case coord.OpDelete:
			if _, ok := kidsAt[op.Path]; !ok {
				kidsAt[op.Path] = len(reads)
				reads = append(reads, batchRead{c.keys.children(op.Path), []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}})
				seqAt[op.Path] = len(reads)
				reads = append(reads, batchRead{c.keys.seq(op.Path), []clientv3.OpOption{clientv3.WithCountOnly()}})
			}
		}
	}
	fenceAt := -1
	if w.f != nil {
		// Read the fence too, so that a deposed leader learns so before
		// anything else about its batch.
		fenceAt = len(reads)
		reads = append(reads, batchRead{w.f.key, []clientv3.OpOption{clientv3.WithKeysOnly()}})
	}
	got, rev, err := c.readAt(ctx, reads)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, false, nil // a large snapshot's revision compacted between its reads
	}
	if err != nil {
		return nil, true, c.fail("apply", ops[0].Path, err)
	}
	if fenceAt >= 0 {
		if kvs := got[fenceAt].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != w.f.rev {
			return nil, true, fmt.Errorf("apply: %w", w.f.err())
		}
	}

	snap := map[string]*snapNode{}
	node := func(p string) *snapNode {
		n, ok := snap[p]
		if !ok {
			n = &snapNode{}
			if kvs := got[nodeAt[p]].GetResponseRange().Kvs; len(kvs) > 0 { // every path node is asked for was read
				n.read, n.created, n.mod, n.lease = true, kvs[0].CreateRevision, kvs[0].ModRevision, kvs[0].Lease
				n.exists = true
			}
			if i, ok := kidsAt[p]; ok {
				n.children = got[i].GetResponseRange().Count
				n.seqExists = got[seqAt[p]].GetResponseRange().Count > 0
			}
			snap[p] = n
		}
		return n
	}
	for p := range nodeAt {
		node(p) // before any op plays, so every count is the snapshot's
	}
	// The facts of the snapshot the batch relies on, each checked by a
	// compare in the transaction.
	var (
		same    = map[string]clientv3.Cmp{} // key → the node is the one read
		sameKey []string                    // same's keys, in order
		absent  []keyRange                  // nothing created in these since rev
	)
	// rely adds the fact that p is the node read: the same incarnation, or,
	// once an op checked its version, the same version, which implies the
	// incarnation (revisions are unique).
	rely := func(p string, n *snapNode, expected coord.Version) {
		key := c.keys.node(p)
		if _, ok := same[key]; !ok {
			sameKey = append(sameKey, key)
			same[key] = clientv3.Compare(clientv3.CreateRevision(key), "=", n.created)
		}
		if expected != coord.AnyVersion {
			same[key] = clientv3.Compare(clientv3.ModRevision(key), "=", int64(expected))
		}
	}
	fail := func(i int, err error) ([]coord.OpResult, bool, error) {
		return nil, true, &coord.OpError{Index: i, Op: ops[i], Err: err}
	}
	// exists checks that the node of op i is there at the version asked.
	exists := func(i int, n *snapNode) error {
		op := ops[i]
		switch {
		case !n.exists:
			return coord.ErrNotFound
		case op.Version == coord.AnyVersion:
		case n.touched:
			return fmt.Errorf("version %d of a node this batch already wrote: %w", op.Version, coord.ErrVersionConflict)
		case coord.Version(n.mod) != op.Version:
			return fmt.Errorf("version %d, found %d: %w", op.Version, n.mod, coord.ErrVersionConflict)
		}
		if !n.touched {
			rely(op.Path, n, op.Version)
		}
		return nil
	}
	for i, op := range ops {
		n := node(op.Path)
		switch op.Kind() {
		case coord.OpCreate:
			parent := coord.Parent(op.Path)
			var pn *snapNode
			if parent != "/" {
				pn = node(parent)
				if !pn.exists {
					return fail(i, fmt.Errorf("parent %s: %w", parent, coord.ErrNotFound))
				}
			}
			if n.exists {
				return fail(i, coord.ErrExists)
			}
			if pn != nil {
				if pn.lease != 0 && !pn.deleted {
					return fail(i, fmt.Errorf("parent %s: %w", parent, coord.ErrEphemeralParent))
				}
				if !pn.touched {
					// Pinning the incarnation pins its lease too: a node's
					// lease changes only with a put that makes it, as Set
					// keeps it (WithIgnoreLease).
					rely(parent, pn, coord.AnyVersion)
				}
				pn.children++
			}
			if !n.touched {
				absent = append(absent, singleKey(c.keys.node(op.Path)))
			}
			n.exists, n.touched, n.value = true, true, op.Value
		case coord.OpSet:
			if err := exists(i, n); err != nil {
				return fail(i, err)
			}
			n.touched, n.value = true, op.Value
		case coord.OpDelete:
			if err := exists(i, n); err != nil {
				return fail(i, err)
			}
			if n.children > 0 {
				return fail(i, fmt.Errorf("%d children: %w", n.children, coord.ErrNotEmpty))
			}
			absent = append(absent, prefixRange(c.keys.children(op.Path)))
			if pn, ok := snap[coord.Parent(op.Path)]; ok {
				pn.children--
			}
			n.exists, n.touched, n.deleted, n.value = false, true, true, nil
		}
	}

	// One write per node: etcd refuses a transaction that writes a key twice.
	paths := make([]string, 0, len(snap))
	for p, n := range snap {
		if n.touched {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var writes []clientv3.Op
	var counters []string // paths whose Sequential counter goes with them
	for _, p := range paths {
		n, key := snap[p], c.keys.node(p)
		switch {
		case n.exists && n.read && !n.deleted:
			// Only changed: WithIgnoreLease keeps an ephemeral node bound
			// to its session.
			writes = append(writes, clientv3.OpPut(key, string(n.value), clientv3.WithIgnoreLease()))
		case n.exists:
			// Made by the batch, perhaps after deleting what was there: a
			// persistent node, so no lease.
			writes = append(writes, clientv3.OpPut(key, string(n.value)))
		case n.read:
			writes = append(writes, clientv3.OpDelete(key))
			if n.seqExists {
				counters = append(counters, p)
			}
		}
	}
	// Deleting a Sequential counter only keeps the store tidy (where a
	// counter starts is not promised): those that do not fit in the
	// transaction go after the commit.
	fit := min(len(counters), max(0, maxTxnOps-len(writes)))
	for _, p := range counters[:fit] {
		writes = append(writes, clientv3.OpDelete(c.keys.seq(p)))
	}
	late := counters[fit:]

	cmps := make([]clientv3.Cmp, 0, len(sameKey)+len(absent)+1)
	for _, key := range sameKey {
		cmps = append(cmps, same[key])
	}
	budget := maxTxnOps - len(cmps)
	if w.f != nil {
		budget--
	}
	for _, r := range coverRanges(absent, budget) {
		// Every node made since the snapshot has a greater create revision:
		// one compare over a range says none was, where one compare per
		// key would not fit.
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(r.start), "<", rev+1).WithRange(r.end))
	}
	resp, err := c.cli.Txn(ctx).If(w.f.guard(cmps)...).Then(writes...).Else(w.f.probe(nil)...).Commit()
	if err != nil {
		return nil, true, c.fail("apply", ops[0].Path, err)
	}
	if !resp.Succeeded {
		if w.f.failed(resp) {
			return nil, true, fmt.Errorf("apply: %w", w.f.err())
		}
		return nil, false, nil
	}
	// What the snapshot showed of the parents of the batch's creates is
	// the next quick batch's hint.
	for _, op := range ops {
		if p := coord.Parent(op.Path); op.Kind() == coord.OpCreate && p != "/" {
			if n := snap[p]; n.read && !n.touched && n.lease == 0 {
				c.parents.set(c.keys.node(p), n.created)
			}
		}
	}
	for _, p := range late {
		// Guarded by the node's absence: a node made again since may have
		// Sequential children numbered by the counter. Best effort: a
		// counter left behind costs a key, nothing else.
		_, _ = c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.keys.node(p)), "=", 0)).Then(clientv3.OpDelete(c.keys.seq(p))).Commit()
	}
	return opResults(ops, resp.Header.Revision), true, nil
}

// readAt makes the reads at one revision, in as many transactions as
// etcd's limit on operations asks, and returns their responses and the
// revision.
func (c *Coordinator) readAt(ctx context.Context, reads []batchRead) ([]*pb.ResponseOp, int64, error) {
	var (
		out []*pb.ResponseOp
		rev int64
	)
	for len(reads) > 0 {
		n := min(len(reads), maxTxnOps)
		ops := make([]clientv3.Op, n)
		for i, r := range reads[:n] {
			opts := r.opts
			if rev != 0 {
				opts = append(opts[:len(opts):len(opts)], clientv3.WithRev(rev))
			}
			ops[i] = clientv3.OpGet(r.key, opts...)
		}
		resp, err := c.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		out = append(out, resp.Responses...)
		reads = reads[n:]
	}
	return out, rev, nil
}

// keyRange is [start, end) of keys; a single key's end is the key and a 0
// byte.
type keyRange struct{ start, end string }

func singleKey(key string) keyRange { return keyRange{key, key + "\x00"} }

func prefixRange(prefix string) keyRange {
	return keyRange{prefix, clientv3.GetPrefixRangeEnd(prefix)}
}

// coverRanges returns at most budget ranges (at least one) that together
// cover rs: rs itself when it fits, else one range per depth (a node's key
// carries its depth first), else one range over them all. A wider range
// covers keys the batch does not depend on: a node made there meanwhile
// costs the batch a retry, never its correctness.
func coverRanges(rs []keyRange, budget int) []keyRange {
	if len(rs) <= max(budget, 1) {
		return rs
	}
	byDepth := map[string]keyRange{}
	for _, r := range rs {
		d := depthOf(r.start)
		if cur, ok := byDepth[d]; ok {
			r = keyRange{min(cur.start, r.start), max(cur.end, r.end)}
		}
		byDepth[d] = r
	}
	if len(byDepth) <= budget {
		out := make([]keyRange, 0, len(byDepth))
		for _, r := range byDepth {
			out = append(out, r)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
		return out
	}
	all := rs[0]
	for _, r := range rs[1:] {
		all = keyRange{min(all.start, r.start), max(all.end, r.end)}
	}
	return []keyRange{all}
}

// depthOf is the depth tag of a node or children key: what follows "/n/".
func depthOf(key string) string {
	_, rest, _ := strings.Cut(key, "/n/")
	return rest[:min(len(rest), len(depthTag(0)))]
}
