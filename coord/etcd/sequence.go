package etcd

import (
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxSeqHints bounds how many Sequential counters a session remembers
// (Coordinator.seqs): the number each is expected to give next, so that a
// Sequential create can name its node without reading the counter first.
// A forgotten one costs its next create one round trip, nothing else.
const maxSeqHints = 1024

// counterAt compares true if the counter at key numbers the next child n.
// A counter is written only after it numbered a child, with that number
// plus one, so it never holds 0: the first number is given by its absence.
func counterAt(key string, n int64) clientv3.Cmp {
	if n == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.Value(key), "=", strconv.FormatInt(n, 10))
}

// counterValue is the number the counter read as kv gives next; 0 when it is
// missing (kv nil).
func counterValue(key string, kv *mvccpb.KeyValue) (int64, error) {
	if kv == nil {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(kv.Value), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("sequence counter %s holds %q, not a counter", key, kv.Value)
	}
	return n, nil
}
