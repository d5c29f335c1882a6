package coordtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hasched/hasched/coord"
)

// HandoverSettle is how long the follower waits in the election before the
// leader resigns in Handover: long enough for its watch to be in place, as
// a standby's is in practice.
const HandoverSettle = 200 * time.Millisecond

// Handover measures one graceful hand-over between two sessions of one
// namespace: a leads, f campaigns behind it, and the time runs from a's
// Resign until f's first fenced write has succeeded. The backends'
// hand-over benchmarks run it beside their raw clients' election.
func Handover(ctx context.Context, a, f coord.Coordinator) (time.Duration, error) {
	la, err := a.Campaign(ctx, "/ha/election", []byte("a"))
	if err != nil {
		return 0, err
	}
	type won struct {
		l   coord.Leadership
		err error
	}
	next := make(chan won, 1)
	go func() {
		l, err := f.Campaign(ctx, "/ha/election", []byte("f"))
		next <- won{l, err}
	}()
	time.Sleep(HandoverSettle)
	start := time.Now()
	if err := la.Resign(ctx); err != nil {
		return 0, err
	}
	w := <-next
	if w.err != nil {
		return 0, fmt.Errorf("the follower's campaign: %w", w.err)
	}
	if _, err := w.l.Writer().Create(ctx, "/written-"+start.Format("150405.000000000"), nil); err != nil {
		return 0, err
	}
	took := time.Since(start)
	_ = w.l.Resign(ctx)
	return took, nil
}

// ReportMedian reports the median of took in ms as "p50-ms": a hand-over
// now and then waits for a disk sync of the server, which a mean would
// carry.
func ReportMedian(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
}
