package etcd

import "sync"

// hints is a bounded map of guesses a session keeps to spare a read: the
// number a Sequential counter gives next (seqs), the create revision of a
// parent without a lease (parents). Each guess is checked by a compare in
// the transaction that uses it, so a wrong or forgotten one costs a round
// trip, nothing else. Past limit, setting a new key forgets another.
type hints[V any] struct {
	mu    sync.Mutex
	limit int
	m     map[string]V
}

func (h *hints[V]) get(key string) (V, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[key]
	return v, ok
}

func (h *hints[V]) set(key string, v V) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]V{}
	}
	if _, ok := h.m[key]; !ok && len(h.m) >= h.limit {
		for k := range h.m {
			delete(h.m, k) // any one: the map's order is as good as any
			break
		}
	}
	h.m[key] = v
}

func (h *hints[V]) forget(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		delete(h.m, k)
	}
}
