package scheduler

import (
	"container/heap"
	"context"
	"slices"
	"time"

	"github.com/hasched/hasched/scheduler/cron"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// fireLead is how long before a fire its pass is made: the producer, the
// launcher and the writes of the fires' running nodes and ready nodes,
// which take milliseconds for 1,000 fires, are done by the fire time, and
// the launch workers hand the tasks to the executor once it has come
// (launchers.work). A task is launched, never before its fire time, as
// soon as the fire is due, not a store round trip after it. It also bounds
// how far ahead of its fire a running node or a LastFire is written.
const fireLead = 20 * time.Millisecond

// produceDue hands every fire due within fireLead to the ready queues; the
// loop writes them, with the launcher's moves of the same pass, in
// flushFires, once the latest of them is due.
func (t *term) produceDue() {
	horizon := t.now().Add(fireLead)
	for len(t.timers) > 0 && !t.timers[0].at.After(horizon) {
		e := heap.Pop(&t.timers).(fireEntry)
		js := t.jobs[e.job]
		if js == nil || js.gen != e.gen {
			continue
		}
		t.produce(js, horizon)
	}
}

// produce appends the fires of js due by now to its ready queue and
// advances its LastFire in the same versioned write (staged for the pass's
// flushFires), then arms its next timer. With misfire on, every due fire
// is queued, up to QueueLimit; with misfire off, only the latest, and only
// if none is pending. After a time
// without a leader this is the catch-up: the due fires are those since the
// stored LastFire.
func (t *term) produce(js *jobState, now time.Time) {
	if js.sched == nil || js.job.JobExecutionType != model.Transient || !t.active(js) {
		return
	}
	from := js.ready.ProducedThrough()
	first := js.sched.Next(from)
	if !first.IsZero() && !first.After(now) {
		rn := js.ready
		rn.FireTimes = slices.Clone(rn.FireTimes)
		var added, dropped int
		collapsed := false
		if js.job.Misfire {
			room := t.cfg.QueueLimit - len(rn.FireTimes)
			for f := first; !f.IsZero() && !f.After(now); f = js.sched.Next(f) {
				if room <= 0 {
					// Counting the rest could take long after a long
					// outage; they are dropped, up to the last fire due
					// (latestFire looks it up without walking them).
					dropped++
					rn.LastFire = latestFire(js.sched, f, now).UTC()
					break
				}
				if !rn.Pending(f.UTC()) {
					rn.FireTimes = append(rn.FireTimes, f.UTC())
					added++
					room--
				}
				rn.LastFire = f.UTC()
			}
		} else {
			latest := latestFire(js.sched, first, now)
			collapsed = latest.After(first)
			if len(rn.FireTimes) == 0 {
				rn.FireTimes = append(rn.FireTimes, latest.UTC())
				added++
			} else {
				dropped++
			}
			rn.LastFire = latest.UTC()
		}
		// Written by flushFires at the end of the pass, with the fires the
		// launcher moves to running meanwhile (fires.go).
		t.stageReady(js, rn)
		sf := t.staged(js.job.JobName)
		sf.produced = append(sf.produced, rn.FireTimes[len(rn.FireTimes)-added:]...)
		if dropped > 0 || collapsed {
			sf.misfired++
			sf.lastMissed = rn.LastFire
		}
		if dropped > 0 {
			t.log.Warn("fires dropped", "job", js.job.JobName, "misfire", js.job.Misfire, "pending", len(rn.FireTimes), "queue_limit", t.cfg.QueueLimit)
		}
		if added > 0 {
			t.log.Debug("fires queued", "job", js.job.JobName, "added", added, "last_fire", rn.LastFire)
			t.launchJobs[js.job.JobName] = true
		}
	}
	from = js.ready.ProducedThrough()
	if from.Before(now) {
		from = now
	}
	if next := js.sched.Next(from); !next.IsZero() {
		heap.Push(&t.timers, fireEntry{at: next, job: js.job.JobName, gen: js.gen})
	}
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
func (t *term) setReady(ctx context.Context, js *jobState, rn store.Ready) error {
	rn, err := t.st.SetReady(ctx, js.job.JobName, rn)
	if err != nil {
		return err
	}
	js.ready = rn
	return nil
}

// uniqueFire returns the first millisecond at or after at that no pending
// fire, running or failover task of js uses, and that is not one of its cron
// fire times, so a manual fire never shares a task ID with another run.
func uniqueFire(js *jobState, at time.Time) time.Time {
	f := at.UTC().Truncate(time.Millisecond)
	for {
		taken := js.ready.Pending(f)
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
