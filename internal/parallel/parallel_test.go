package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestEachCallsEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, MinPerWorker - 1, MinPerWorker * 2, MinPerWorker*5 + 7} {
		calls := make([]int, n)
		Each(n, func(i int) { calls[i]++ })
		for i, c := range calls {
			if c != 1 {
				t.Fatalf("n=%d: index %d called %d times", n, i, c)
			}
		}
	}
}

// Large work runs on more than one goroutine at once: every call waits
// (until a shared deadline) for a second call to be in flight, which a
// sequential loop would never make.
func TestEachRunsLargeWorkConcurrently(t *testing.T) {
	// Each spreads over GOMAXPROCS: two make the test mean the same on a
	// machine of one CPU (the goroutines then interleave on it).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	var inFlight, maxInFlight atomic.Int32
	deadline := time.Now().Add(5 * time.Second)
	Each(MinPerWorker*2, func(i int) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		for maxInFlight.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	})
	if got := maxInFlight.Load(); got < 2 {
		t.Fatalf("at most %d calls in flight, want 2", got)
	}
}

// Small work stays on the caller's goroutine, in order.
func TestEachKeepsSmallWorkInOrder(t *testing.T) {
	var order []int
	Each(MinPerWorker*2-1, func(i int) { order = append(order, i) })
	for i, v := range order {
		if v != i {
			t.Fatalf("call %d was index %d", i, v)
		}
	}
}
