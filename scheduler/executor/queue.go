package executor

import (
	"sync"
)

// StatusQueue sits between an executor and its Statuses channel: pushes
// never block (a slow consumer must not stall the monitor or a Launch) and
// nothing is dropped while the executor is open, because a lost terminal
// status would leave the scheduler believing a task runs forever.
type StatusQueue struct {
	mu     sync.Mutex
	items  []Status
	notify chan struct{} // capacity 1: "items is not empty"
}

// NewStatusQueue returns an empty queue.
func NewStatusQueue() *StatusQueue {
	return &StatusQueue{notify: make(chan struct{}, 1)}
}

// Push appends s; it never blocks.
func (q *StatusQueue) Push(s Status) {
	q.mu.Lock()
	q.items = append(q.items, s)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *StatusQueue) take() []Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// Drain moves statuses to out, in order, until done is closed; it then
// hands over what still fits into out's buffer without blocking (the term is
// over: whoever reads on gets what is there, the next term reconciles the
// rest) and closes out.
func (q *StatusQueue) Drain(out chan<- Status, done <-chan struct{}) {
	defer close(out)
	var pending []Status
	for {
		pending = append(pending, q.take()...)
		for len(pending) > 0 {
			select {
			case out <- pending[0]:
				pending = pending[1:]
			case <-done:
				q.flush(out, pending)
				return
			}
		}
		select {
		case <-q.notify:
		case <-done:
			q.flush(out, nil)
			return
		}
	}
}

func (q *StatusQueue) flush(out chan<- Status, pending []Status) {
	for _, s := range append(pending, q.take()...) {
		select {
		case out <- s:
		default:
			return
		}
	}
}
