package mesos

import (
	"sync"

	"github.com/hasched/hasched/scheduler/executor"
)

// statusQueue sits between the executor and the Statuses channel: pushes
// never block (a slow consumer must not stall the monitor or a Launch) and
// nothing is dropped while the executor is open, because a lost terminal
// status would leave the scheduler believing a task runs forever.
type statusQueue struct {
	mu     sync.Mutex
	items  []executor.Status
	notify chan struct{} // capacity 1: "items is not empty"
}

func newStatusQueue() *statusQueue {
	return &statusQueue{notify: make(chan struct{}, 1)}
}

func (q *statusQueue) push(s executor.Status) {
	q.mu.Lock()
	q.items = append(q.items, s)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *statusQueue) take() []executor.Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// drain moves statuses to out, in order, until done is closed; it then
// hands over what still fits into out's buffer without blocking (the term is
// over: whoever reads on gets what is there, the next term reconciles the
// rest) and closes out.
func (q *statusQueue) drain(out chan<- executor.Status, done <-chan struct{}) {
	defer close(out)
	var pending []executor.Status
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

func (q *statusQueue) flush(out chan<- executor.Status, pending []executor.Status) {
	for _, s := range append(pending, q.take()...) {
		select {
		case out <- s:
		default:
			return
		}
	}
}
