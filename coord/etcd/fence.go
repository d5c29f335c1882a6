package etcd

import (
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hasched/hasched/coord"
)

// fence makes a write conditional on one term of leadership: the term's
// candidate key must still exist as the incarnation that won, which etcd
// checks in the same transaction as the write. A nil *fence fences nothing,
// so the plain and the fenced writes share their code.
type fence struct {
	election string
	key      string
	rev      int64
	lost     <-chan struct{}
}

// Writer returns the writes made on behalf of this term: each is the
// Coordinator's own transaction plus the compare that the candidate key is
// still this term's (Leadership.IsOwner), checked by etcd atomically with
// the write. When that compare fails, nothing is written and the error
// wraps coord.ErrNotLeader; once Lost is closed the writes fail so without
// asking the cluster. Otherwise they behave exactly as the Coordinator's.
func (l *Leadership) Writer() coord.Writer {
	return writer{c: l.c, f: &fence{election: l.election, key: l.key, rev: l.rev, lost: l.lost}}
}

// guard adds the fence's compare to a write's compares.
func (f *fence) guard(cmps []clientv3.Cmp) []clientv3.Cmp {
	if f == nil {
		return cmps
	}
	return append(cmps, clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev))
}

// probe adds, last, the read of the candidate key to what a write's
// transaction reads when its compares fail, so failed can tell whether the
// fence was among them: Else runs at the revision the compares saw.
func (f *fence) probe(ops []clientv3.Op) []clientv3.Op {
	if f == nil {
		return ops
	}
	return append(ops, clientv3.OpGet(f.key, clientv3.WithKeysOnly()))
}

// failed reports whether the fence failed in a transaction that did not
// succeed and whose Else ends with probe's read.
func (f *fence) failed(resp *clientv3.TxnResponse) bool {
	if f == nil || resp.Succeeded || len(resp.Responses) == 0 {
		return false
	}
	kvs := resp.Responses[len(resp.Responses)-1].GetResponseRange().Kvs
	return len(kvs) == 0 || kvs[0].CreateRevision != f.rev
}

// err is the error of a write refused by the fence.
func (f *fence) err() error {
	return fmt.Errorf("%w: the term of %s with token %d has ended", coord.ErrNotLeader, f.election, f.rev)
}
