package scheduler

import (
	"github.com/hasched/hasched/scheduler/model"

	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/cron"
)

// produceDue hands every due fire to the ready queues.
func (t *term) produceDue(ctx context.Context) error {
	now := t.now()
	for len(t.timers) > 0 && !t.timers[0].at.After(now) {
		e := heap.Pop(&t.timers).(fireEntry)
		js := t.jobs[e.job]
		if js == nil || js.gen != e.gen {
			continue
		}
		if err := t.produce(ctx, js, now); err != nil {
			return err
		}
	}
	return nil
}

// produce appends the fires of js due by now to its ready queue and
// advances its LastFire in the same versioned write, then arms its next
// timer. With misfire on, every due fire is queued, up to QueueLimit; with
// misfire off, only the latest, and only if none is pending. After a time
// without a leader this is the catch-up: the due fires are those since the
// stored LastFire.
func (t *term) produce(ctx context.Context, js *jobState, now time.Time) error {
	if js.sched == nil || js.job.JobExecutionType != model.Transient || !t.active(js) {
		return nil
	}
	from := js.ready.producedThrough()
	first := js.sched.Next(from)
	if !first.IsZero() && !first.After(now) {
		rn := js.ready
		rn.FireTimes = slices.Clone(rn.FireTimes)
		var added, dropped int
		if js.job.Misfire {
			room := t.cfg.QueueLimit - len(rn.FireTimes)
			for f := first; !f.IsZero() && !f.After(now); f = js.sched.Next(f) {
				if room <= 0 {
					// Counting the rest could take long after a long
					// outage; they are dropped, up to now.
					dropped++
					rn.LastFire = now
					break
				}
				if !rn.pending(f.UTC()) {
					rn.FireTimes = append(rn.FireTimes, f.UTC())
					added++
					room--
				}
				rn.LastFire = f.UTC()
			}
		} else {
			latest := latestFire(js.sched, first, now)
			if len(rn.FireTimes) == 0 {
				rn.FireTimes = append(rn.FireTimes, latest.UTC())
				added++
			} else {
				dropped++
			}
			rn.LastFire = latest.UTC()
		}
		if err := t.setReady(ctx, js, rn); err != nil {
			return err
		}
		if dropped > 0 {
			t.log.Warn("fires dropped", "job", js.job.JobName, "misfire", js.job.Misfire, "pending", len(rn.FireTimes), "queue_limit", t.cfg.QueueLimit)
		}
		if added > 0 {
			t.log.Debug("fires queued", "job", js.job.JobName, "added", added, "last_fire", rn.LastFire)
			t.launchDue = true
		}
	}
	from = js.ready.producedThrough()
	if from.Before(now) {
		from = now
	}
	if next := js.sched.Next(from); !next.IsZero() {
		heap.Push(&t.timers, fireEntry{at: next, job: js.job.JobName, gen: js.gen})
	}
	return nil
}

// latestFire finds the last fire at or before now, given that first is a
// fire at or before now, without walking every fire of a long outage: it
// looks back over growing windows.
func latestFire(s *cron.Schedule, first, now time.Time) time.Time {
	for _, w := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 366 * 24 * time.Hour} {
		from := now.Add(-w)
		if !from.After(first) {
			break
		}
		if f := s.Next(from); !f.IsZero() && !f.After(now) {
			return lastUpTo(s, f, now)
		}
	}
	return lastUpTo(s, first, now)
}

// lastUpTo walks from fire f to the last fire at or before now.
func lastUpTo(s *cron.Schedule, f, now time.Time) time.Time {
	for {
		n := s.Next(f)
		if n.IsZero() || n.After(now) {
			return f
		}
		f = n
	}
}

// setReady writes a job's ready node, versioned, and keeps it in memory.
func (t *term) setReady(ctx context.Context, js *jobState, rn readyNode) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	v, err := t.w.Set(ctx, readyPath(js.job.JobName), encode(rn), js.readyVersion)
	if err != nil {
		return fmt.Errorf("write the ready queue of %s: %w", js.job.JobName, err)
	}
	js.ready, js.readyVersion = rn, v
	return nil
}

// createReady makes a job's ready node, registered now; a node left over
// from an earlier job of the same name is replaced.
func (t *term) createReady(ctx context.Context, js *jobState) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	rn := readyNode{RegisteredAt: t.now()}
	path := readyPath(js.job.JobName)
	if _, err := t.w.Create(ctx, path, encode(rn)); err != nil {
		if !errors.Is(err, coord.ErrExists) {
			return fmt.Errorf("create %s: %w", path, err)
		}
		if _, err := t.w.Set(ctx, path, encode(rn), coord.AnyVersion); err != nil {
			return fmt.Errorf("reset %s: %w", path, err)
		}
	}
	n, err := t.c.Get(ctx, path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	js.ready, js.readyVersion = rn, n.Version
	return nil
}

// uniqueFire returns the first millisecond at or after at that no pending
// fire, running or failover task of js uses, and that is not one of its cron
// fire times, so a manual fire never shares a task ID with another run.
func uniqueFire(js *jobState, at time.Time) time.Time {
	f := at.UTC().Truncate(time.Millisecond)
	for {
		taken := js.ready.pending(f)
		if js.sched != nil && js.sched.Next(f.Add(-time.Millisecond)).Equal(f) {
			taken = true
		}
		for _, m := range []map[string]*model.TaskRecord{js.running, js.failover} {
			for _, r := range m {
				if r.FireTime.Equal(f) {
					taken = true
				}
			}
		}
		if !taken {
			return f
		}
		f = f.Add(time.Millisecond)
	}
}
