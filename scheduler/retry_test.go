package scheduler

import (
	"testing"
	"time"

	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
)

func TestRetryDelayDoublesUpToItsCap(t *testing.T) {
	for _, tc := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{time.Second, 0, time.Second},
		{time.Second, 1, 2 * time.Second},
		{time.Second, 3, 8 * time.Second},
		{time.Second, 8, 256 * time.Second},
		{time.Second, 9, MaxRetryBackoff},
		{time.Second, model.MaxRetries, MaxRetryBackoff},
		{time.Second, 1 << 62, MaxRetryBackoff}, // no overflow, no long loop
		{MaxRetryBackoff, 0, MaxRetryBackoff},
		{0, 5, 0},
	} {
		if got := retryDelay(tc.base, tc.attempt); got != tc.want {
			t.Errorf("retryDelay(%v, %d) = %v, want %v", tc.base, tc.attempt, got, tc.want)
		}
	}
}

// TestRetriesAreSpacedExponentiallyAcrossAFailover: each failed attempt
// waits RetryBackoff·2^attempt on the failover queue, and the wait is in
// the store, so a new leader keeps it.
func TestRetriesAreSpacedExponentiallyAcrossAFailover(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Retries = model.MaxRetries
	register(t, e.svc(), job)
	id := triggerAndStart(t, e, "j")
	for attempt := range 4 {
		cur := withAttempt(id, attempt)
		eventually(t, "the attempt runs", func() bool { return e.cluster.State(cur) == executor.StateRunning })
		failedAt := e.clock.Now()
		e.cluster.Report(cur, executor.StateFailed, "exit 1")
		var fo []model.TaskRecord
		eventually(t, "the attempt waits on the failover queue", func() bool {
			fo = failoverRecords(t, e.svc())
			return len(fo) == 1
		})
		wait := time.Second << attempt
		if got := fo[0].NotBefore.Sub(failedAt); got != wait {
			t.Fatalf("attempt %d waits %v, want %v", attempt, got, wait)
		}
		if attempt == 2 {
			// A failover: the next leader reads the wait from the store.
			e.n.stop()
			e.start()
		}
		next := withAttempt(id, attempt+1)
		e.clock.Advance(wait - time.Millisecond)
		settle(e.cluster)
		if e.cluster.State(next) != "" {
			t.Fatalf("attempt %d started %v after the failure, before its back-off of %v", attempt+1, wait-time.Millisecond, wait)
		}
		e.clock.Advance(time.Millisecond)
	}
	eventually(t, "attempt 4 runs", func() bool { return e.cluster.State(withAttempt(id, 4)) == executor.StateRunning })
}

// TestAFailingTaskDoesNotStormTheExecutor: a task that fails at once, with
// the most retries a job may have, started 331 processes in 3 s before the
// back-off; now it starts a handful: at 0 s, 1 s and 3 s.
func TestAFailingTaskDoesNotStormTheExecutor(t *testing.T) {
	e := newMemEnv(t)
	e.start()
	job := testJob("j", "0 0 0 * * ?")
	job.Retries = model.MaxRetries
	register(t, e.svc(), job)
	triggerAndStart(t, e, "j")
	const step = 100 * time.Millisecond
	for elapsed := time.Duration(0); elapsed < 3*time.Second; elapsed += step {
		for _, id := range e.cluster.Running() {
			e.cluster.Report(id, executor.StateFailed, "exit 1")
		}
		settle(e.cluster)
		e.clock.Advance(step)
	}
	if got := startedOf(e.cluster, "j"); len(got) > 3 || len(got) < 2 {
		t.Fatalf("%d processes started in 3 s of a failing task, want 2 or 3 (retried at 1 s and 3 s): %v", len(got), got)
	}
}
