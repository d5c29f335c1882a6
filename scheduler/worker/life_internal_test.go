package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/schedtest"
)

// A life's Launch calls may start a task only while its session surely
// lives: not once SafeUntil has passed (a process frozen mid-Launch wakes
// up past it, before its safety clock trips), nor once the life is dead.
func TestALifeMayStartTasksOnlyBeforeSafeUntil(t *testing.T) {
	ctx := context.Background()
	c, err := schedtest.NewStore().Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sess := c.(*schedtest.Session)
	l := &life{r: &run{}, sess: sess}

	sess.SetSafeUntil(time.Now().Add(time.Minute))
	if err := l.mayStart(); err != nil {
		t.Fatalf("SafeUntil a minute away: %v, want a start allowed", err)
	}
	sess.SetSafeUntil(time.Now().Add(-time.Millisecond))
	if err := l.mayStart(); err == nil {
		t.Fatal("SafeUntil passed: a start allowed, want it refused")
	}
	sess.SetSafeUntil(time.Now().Add(time.Minute))
	l.dead = true
	if err := l.mayStart(); !errors.Is(err, errTripped) {
		t.Fatalf("a dead life: %v, want %v", err, errTripped)
	}
}
