package history

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Throttle logs warnings at most once per interval: a store or database
// that is down fails every write, and one line a minute says so as well as
// thousands. A line that follows suppressed ones says how many.
type Throttle struct {
	log      hclog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewThrottle logs to log at most once per interval.
func NewThrottle(log hclog.Logger, interval time.Duration) *Throttle {
	return &Throttle{log: log, interval: interval}
}

// Warn logs msg unless a line was logged less than the interval ago.
func (t *Throttle) Warn(msg string, args ...any) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	t.log.Warn(msg, args...)
}
