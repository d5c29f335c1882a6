package bench

import (
	"slices"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
)

// The recorder keeps the window's lags apart from the warm-up's, each
// bounded, and none of a fire before the warm-up or at the window's end.
func TestLagRecorderKeepsTheWarmUpApartFromTheWindow(t *testing.T) {
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	warm, from, to := base, base.Add(3*time.Second), base.Add(5*time.Second)
	var l lagRecorder
	l.arm(warm, from, to, 2, 3)
	launch := func(fire time.Time, lag time.Duration) {
		l.observe(executor.Task{FireTime: fire}, fire.Add(lag))
	}
	launch(warm.Add(-time.Second), time.Millisecond)    // before the warm-up
	launch(warm, 90*time.Millisecond)                   // warm-up
	launch(from.Add(-time.Second), 70*time.Millisecond) // warm-up
	launch(from.Add(-time.Second), 80*time.Millisecond) // warm-up, beyond its max
	launch(from, 30*time.Millisecond)                   // window
	launch(from.Add(time.Second), 10*time.Millisecond)  // window
	launch(from.Add(time.Second), 20*time.Millisecond)  // window
	launch(from.Add(time.Second), 40*time.Millisecond)  // window, beyond max
	launch(to, 5*time.Millisecond)                      // after the window
	if got := l.count(); got != 3 {
		t.Errorf("count %d, want the window's 3", got)
	}
	window, warmUp := l.take()
	if want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}; !slices.Equal(window, want) {
		t.Errorf("window %v, want %v", window, want)
	}
	if want := []time.Duration{70 * time.Millisecond, 90 * time.Millisecond}; !slices.Equal(warmUp, want) {
		t.Errorf("warm-up %v, want %v", warmUp, want)
	}
}
