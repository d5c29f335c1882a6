package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// outbox appends an incarnation's reports, in the order pushed, in batches
// behind the fence. Its counter starts at 0 per incarnation and moves on
// only past reports written, so a retried batch writes the same names.
type outbox struct {
	id    string
	fence *fence
	log   hclog.Logger
	retry time.Duration

	mu      sync.Mutex
	queue   []model.Report
	seq     uint64
	writing bool
	wake    chan struct{}
}

func newOutbox(id string, f *fence, log hclog.Logger, retry time.Duration) *outbox {
	return &outbox{id: id, fence: f, log: log, retry: retry, wake: make(chan struct{}, 1)}
}

// push queues a report; it never blocks.
func (o *outbox) push(r model.Report) {
	o.mu.Lock()
	o.queue = append(o.queue, r)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// empty says whether every report pushed has been written.
func (o *outbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue) == 0 && !o.writing
}

// run writes until ctx ends; it returns errRegistrationGone when the
// incarnation is over.
func (o *outbox) run(ctx context.Context) error {
	for {
		o.mu.Lock()
		batch, ops := o.nextLocked()
		o.writing = len(batch) > 0
		seq := o.seq
		o.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-o.wake:
				continue
			}
		}
		err := o.fence.apply(ctx, nil, ops...)
		var oe *coord.OpError
		if errors.As(err, &oe) && errors.Is(err, coord.ErrExists) {
			// A retry of a batch whose first attempt was made after all
			// (the batch is atomic: every report of it is there, or was
			// and has been folded).
			err = nil
		}
		switch {
		case err == nil:
			o.mu.Lock()
			o.queue = o.queue[len(batch):]
			o.seq = seq + uint64(len(batch))
			o.writing = false
			o.mu.Unlock()
		case errors.Is(err, errRegistrationGone), ctx.Err() != nil:
			return err
		default:
			o.log.Warn("cannot write reports; retrying", "error", err, "reports", len(batch))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(o.retry):
			}
		}
	}
}

// nextLocked takes the next batch off the queue's head: at most
// coord.MaxBatchOps with the fence's op, within coord.MaxValueSize with
// the registration's value.
func (o *outbox) nextLocked() ([]model.Report, []coord.Op) {
	budget := coord.MaxValueSize - len(o.fence.value()) - 1024
	var ops []coord.Op
	n := 0
	for _, r := range o.queue {
		if n == coord.MaxBatchOps-1 {
			break
		}
		b := store.EncodeReport(r)
		if len(b) > budget && n > 0 {
			break
		}
		budget -= len(b)
		ops = append(ops, coord.CreateOp(store.ReportPath(o.id, o.seq+uint64(n)), b))
		n++
	}
	return o.queue[:n], ops
}
