package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// The quick path of Apply. Reading every node a batch depends on before
// writing (tryApply) costs a linearizable read, which under a steady write
// load took as long as the write itself: the scheduler's batches of fires
// spent 14–36 ms reading and 4–29 ms writing. Most batches need no read:
// they create nodes under parents that exist, set nodes at versions the
// writer read, and delete childless nodes, each node once. For those the
// facts the read would establish are compares etcd checks in the write's
// own transaction:
//
//   - create: the node's key is absent; its parent exists and has no lease
//     (unless an earlier op of the batch made it);
//   - set: the node is at the version expected (a revision, so that pins
//     the incarnation too), or exists when any version will do;
//   - delete: the same, and no key in its children's range.
//
// When they hold, the batch is written in one round trip with the very
// writes tryApply would send. When one fails, the transaction wrote
// nothing, and Apply goes the precise way, which says which op was refused
// or that a concurrent change raced it; only the fence's failure is
// answered at once.

// maxParentHints bounds the parents a session remembers (Coordinator.
// parents): the create revision of each, seen without a lease, so that a
// quick batch pins it with one compare (that incarnation still exists)
// instead of two (some node exists there, with no lease). A stale one
// fails the transaction, which then goes the precise way, and is
// forgotten.
const maxParentHints = 16384

// quickBatch is a batch as one optimistic transaction.
type quickBatch struct {
	cmps   []clientv3.Cmp
	writes []clientv3.Op
	hinted []string // the parents' keys pinned by a hint
}

// planQuick makes ops one transaction, or says they are not of the shape
// the quick path takes: each node once; no op on a node whose parent the
// batch also writes, except a create under a node an earlier op made; and
// within etcd's limits on compares and operations, counting the fence's
// compare when fenced.
func (c *Coordinator) planQuick(ops []coord.Op, fenced bool) (quickBatch, bool) {
	at := make(map[string]int, len(ops))
	for i, op := range ops {
		if _, dup := at[op.Path]; dup {
			return quickBatch{}, false
		}
		at[op.Path] = i
	}
	var q quickBatch
	pinned := map[string]bool{}
	for i, op := range ops {
		key := c.keys.node(op.Path)
		parent := coord.Parent(op.Path)
		if j, ok := at[parent]; ok && (op.Kind() != coord.OpCreate || ops[j].Kind() != coord.OpCreate || j > i) {
			return quickBatch{}, false
		}
		switch op.Kind() {
		case coord.OpCreate:
			if _, inBatch := at[parent]; parent != "/" && !inBatch && !pinned[parent] {
				pinned[parent] = true
				pkey := c.keys.node(parent)
				if rev, ok := c.parents.get(pkey); ok {
					q.cmps = append(q.cmps, clientv3.Compare(clientv3.CreateRevision(pkey), "=", rev))
					q.hinted = append(q.hinted, pkey)
				} else {
					q.cmps = append(q.cmps,
						clientv3.Compare(clientv3.CreateRevision(pkey), ">", 0),
						clientv3.Compare(clientv3.LeaseValue(pkey), "=", clientv3.NoLease))
				}
			}
			q.cmps = append(q.cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			// A persistent node: no lease.
			q.writes = append(q.writes, clientv3.OpPut(key, string(op.Value)))
		case coord.OpSet:
			q.cmps = append(q.cmps, atVersion(key, op.Version))
			// WithIgnoreLease keeps an ephemeral node bound to its session.
			q.writes = append(q.writes, clientv3.OpPut(key, string(op.Value), clientv3.WithIgnoreLease()))
		case coord.OpDelete:
			q.cmps = append(q.cmps, atVersion(key, op.Version),
				clientv3.Compare(clientv3.CreateRevision(c.keys.children(op.Path)), "=", 0).WithPrefix())
			// The node's Sequential counter goes with it; deleting a key
			// that is not there is no error.
			q.writes = append(q.writes, clientv3.OpDelete(key), clientv3.OpDelete(c.keys.seq(op.Path)))
		}
	}
	budget := maxTxnOps
	if fenced {
		budget--
	}
	if len(q.cmps) > budget || len(q.writes) > maxTxnOps {
		return quickBatch{}, false
	}
	return q, true
}

// atVersion compares true if the node at key is at version v, or exists
// when v is AnyVersion. A version is the revision that wrote the node, so
// it names one incarnation.
func atVersion(key string, v coord.Version) clientv3.Cmp {
	if v == coord.AnyVersion {
		return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", int64(v))
}

// applyQuick makes one attempt at writing ops in one transaction. done is
// false when the batch is not of the quick path's shape, or when a compare
// other than the fence's failed: nothing was written, and Apply goes the
// precise way.
func (w writer) applyQuick(ctx context.Context, ops []coord.Op) (res []coord.OpResult, done bool, err error) {
	c := w.c
	q, ok := c.planQuick(ops, w.f != nil)
	if !ok {
		return nil, false, nil
	}
	resp, err := c.cli.Txn(ctx).If(w.f.guard(q.cmps)...).Then(q.writes...).Else(w.f.probe(nil)...).Commit()
	if err != nil {
		return nil, true, c.fail("apply", ops[0].Path, err)
	}
	if !resp.Succeeded {
		if w.f.failed(resp) {
			return nil, true, fmt.Errorf("apply: %w", w.f.err())
		}
		c.parents.forget(q.hinted)
		return nil, false, nil
	}
	return opResults(ops, resp.Header.Revision), true, nil
}

// opResults are the results of ops written by the transaction at rev.
func opResults(ops []coord.Op, rev int64) []coord.OpResult {
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		res[i].Path = op.Path
		if op.Kind() != coord.OpDelete {
			res[i].Version = coord.Version(rev)
		}
	}
	return res
}
