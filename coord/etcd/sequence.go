package etcd

import (
	"fmt"
	"strconv"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxSeqHints bounds how many Sequential counters a session remembers. A
// forgotten one costs its next create one round trip, nothing else.
const maxSeqHints = 1024

// seqHints remembers, per Sequential counter key, the number this session
// expects the counter to give next, so that a Sequential create can name its
// node without reading the counter first. A hint is only a guess: the create
// compares the counter with it in the transaction that uses it, and a wrong
// one costs the read that a create without hints makes anyway.
type seqHints struct {
	mu   sync.Mutex
	next map[string]int64
}

// get is the number expected next from the counter at key; 0, a counter
// not made yet, when the session knows nothing of it.
func (h *seqHints) get(key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next[key]
}

// set records that the counter at key gives n next.
func (h *seqHints) set(key string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next = map[string]int64{}
	}
	if _, ok := h.next[key]; !ok && len(h.next) >= maxSeqHints {
		for k := range h.next {
			delete(h.next, k) // any one: the map's order is as good as any
			break
		}
	}
	h.next[key] = n
}

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
