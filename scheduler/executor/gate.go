package executor

import "sync"

// Gate counts an executor's calls in flight (Launch, Kill, Reconcile) and
// refuses new ones once the executor closes, so that Close can wait for
// those that got in. The zero Gate is open.
type Gate struct {
	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

// Enter registers a call; the returned func ends it. After Shut it fails
// with closedErr (the executor's own ErrClosed sentinel).
func (g *Gate) Enter(closedErr error) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, closedErr
	}
	g.calls.Add(1)
	return g.calls.Done, nil
}

// Shut refuses every later call.
func (g *Gate) Shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Closed says whether Shut was called.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Wait waits for the calls that entered before Shut.
func (g *Gate) Wait() { g.calls.Wait() }
