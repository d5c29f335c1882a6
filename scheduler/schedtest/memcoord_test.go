package schedtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/coord/coordtest"
)

// memHarness runs coord's conformance suite on the in-memory Store, so the
// scheduler's tests stand on a fake that keeps the contract. It is a plain
// coordtest.Harness: expiring a session is something the in-memory service
// does itself, as a server would. It is no coordtest.FaultHarness: an
// in-memory store has no members to kill, pause or restart and no
// connections to cut, so RunFaults is not run on it.
type memHarness struct {
	mu     sync.Mutex
	stores map[string]*Store // one per namespace, which keeps them apart
}

func (h *memHarness) Open(ctx context.Context, ns string) (coord.Coordinator, error) {
	h.mu.Lock()
	st, ok := h.stores[ns]
	if !ok {
		st = NewStore()
		h.stores[ns] = st
	}
	h.mu.Unlock()
	return st.Open(ctx)
}

func (h *memHarness) ExpireSession(ctx context.Context, c coord.Coordinator) error {
	s, ok := c.(*Session)
	if !ok {
		return fmt.Errorf("not a session of the in-memory store: %T", c)
	}
	s.Expire()
	return nil
}

// SessionTimeout bounds how long the suite waits for what a session's end
// brings about; the in-memory store brings it about at once.
func (h *memHarness) SessionTimeout() time.Duration { return time.Second }

func TestConformance(t *testing.T) {
	coordtest.Run(t, &memHarness{stores: map[string]*Store{}})
}
