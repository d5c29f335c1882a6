package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor/local"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
	"github.com/hasched/hasched/scheduler/worker/watchdog"
)

// loop is the incarnation's main loop: placements, kill requests and the
// drain (the watchdog's stamp has a goroutine of its own: see stamper).
func (l *life) loop(ctx context.Context) error {
	r := l.r
	pch, err := l.sess.WatchChildren(l.ctx, store.PlacementsPath(r.cfg.Name))
	if err != nil {
		l.trip("watch placements: " + err.Error())
		return errTripped
	}
	kch, err := l.sess.WatchChildren(l.ctx, store.KillsPath(r.cfg.Name))
	if err != nil {
		l.trip("watch kills: " + err.Error())
		return errTripped
	}
	drainT := time.NewTicker(r.cfg.StampInterval)
	defer drainT.Stop()
	wdT := time.NewTicker(r.cfg.WatchdogCheck)
	defer wdT.Stop()
	var d drainState
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.tripped:
			return errTripped
		case ev, ok := <-pch:
			if !ok || ev.Err != nil {
				return l.watchEnded(ctx, "placements", ev.Err)
			}
			if err := l.onPlacements(ev); err != nil {
				return err
			}
		case ev, ok := <-kch:
			if !ok || ev.Err != nil {
				return l.watchEnded(ctx, "kills", ev.Err)
			}
			l.onKills(ev)
		case <-drainT.C:
			if r.draining {
				if done := l.drainStep(&d); done {
					return errDrained
				}
			}
		case <-wdT.C:
			r.ensureWatchdog(l.ctx)
		case req := <-r.drainCh:
			r.drains = append(r.drains, req)
			if !r.draining {
				r.draining = true
				l.startDrain(&d)
			}
		}
	}
}

// watchEnded: a watch closes only when its context or the session ends.
func (l *life) watchEnded(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		err = coord.ErrSessionLost
	}
	l.trip("watch " + what + ": " + err.Error())
	return errTripped
}

// onPlacements looks at every placement not seen yet and owns those bound
// to this incarnation.
func (l *life) onPlacements(ev coord.ChildrenEvent) error {
	r := l.r
	present := make(map[string]bool, len(ev.Children))
	for _, name := range ev.Children {
		present[name] = true
	}
	r.mu.Lock()
	for name := range l.seen {
		if !present[name] || (ev.Resync && l.owned[name] == nil) {
			delete(l.seen, name)
		}
	}
	for id, o := range l.owned {
		if !present[id] && o.terminal {
			delete(l.owned, id)
		}
	}
	r.mu.Unlock()
	var mine []model.Placement
	for _, name := range ev.Children {
		if l.seen[name] {
			continue
		}
		n, p, err := l.placement(store.PlacementPath(r.cfg.Name, name))
		if err != nil {
			return err
		}
		l.seen[name] = true
		if n.Path == "" || p.Incarnation != l.inc || p.Worker != r.cfg.Name || p.Task.ID != name || p.State.Terminal() {
			continue
		}
		if r.draining {
			// Placed before the leader saw the drain: left to it, it
			// marks the task LOST once the session closes.
			l.log.Warn("not launching a task placed while draining", "task_id", name)
			continue
		}
		mine = append(mine, p)
	}
	if len(mine) == 0 {
		return nil
	}
	// The kills watch is a stream of its own: a kill asked before a
	// placement may reach this loop after it. The kill requests read now,
	// after the placements, hold every one asked before them.
	kills, err := l.children(store.KillsPath(r.cfg.Name))
	if err != nil {
		return err
	}
	asked := make(map[string]bool, len(kills))
	for _, name := range kills {
		asked[name] = true
	}
	for _, p := range mine {
		l.own(p.Task, asked[p.Task.ID] || l.kills[p.Task.ID])
	}
	return nil
}

// onKills carries out the kill requests of owned tasks.
func (l *life) onKills(ev coord.ChildrenEvent) {
	kills := make(map[string]bool, len(ev.Children))
	for _, name := range ev.Children {
		kills[name] = true
		l.requestKill(name)
	}
	l.kills = kills
}

// drainState is the progress of a drain.
type drainState struct {
	deadline time.Time // DrainTimeout after it started
	killed   bool      // what still ran at deadline was asked to stop
	hard     time.Time // then: when it is SIGKILLed and the session closed
}

// startDrain registers as draining and stops the DAEMON tasks.
func (l *life) startDrain(d *drainState) {
	r := l.r
	l.log.Info("draining", "timeout", r.cfg.DrainTimeout)
	d.deadline = time.Now().Add(r.cfg.DrainTimeout)
	info := r.w.Info()
	info.Draining = true
	if err := l.write(l.ctx, store.EncodeRegistration(info)); err == nil {
		r.w.setInfo(info)
	} else {
		l.log.Error("cannot register as draining", "error", err)
	}
	for _, id := range l.liveOwned(func(o *owned) bool { return o.task.Daemon }) {
		l.requestKill(id)
	}
}

// drainStep moves a drain on; done once every task has ended and its
// reports are written, or the drain has run out of time.
func (l *life) drainStep(d *drainState) (done bool) {
	r := l.r
	live := l.liveOwned(nil)
	if len(live) == 0 && l.outbox.empty() {
		l.log.Info("drained")
		return true
	}
	now := time.Now()
	if !d.killed && !now.Before(d.deadline) {
		l.log.Warn("drain timeout: killing the tasks still running", "tasks", len(live))
		for _, id := range live {
			l.requestKill(id)
		}
		d.killed = true
		d.hard = now.Add(r.cfg.Local.KillGrace + 2*r.cfg.OpTimeout + time.Second)
	}
	if d.killed && !now.Before(d.hard) {
		l.trip("drain: tasks or reports still pending after the kill")
		return true
	}
	return false
}

// liveOwned lists the owned tasks not ended that match (all if nil).
func (l *life) liveOwned(match func(*owned) bool) []string {
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, id := range sortedIDs(l.owned) {
		if o := l.owned[id]; !o.terminal && (match == nil || match(o)) {
			ids = append(ids, id)
		}
	}
	return ids
}

// end winds an incarnation down after serve returned err.
func (l *life) end(ctx context.Context, err error) {
	r := l.r
	stopped := ctx.Err() != nil && !errors.Is(err, errDrained) && !l.isTripped()
	if !stopped && !errors.Is(err, errDrained) {
		l.trip(err.Error())
	}
	l.cancel()
	l.launches.Wait()
	l.wg.Wait()
	r.mu.Lock()
	if r.cur == l {
		r.cur = nil
	}
	r.mu.Unlock()
	r.w.setInfo(r.w.registration("", false))

	switch {
	case stopped:
		// The tasks run on, for a restart to adopt. The registration
		// must outlive them (the leader runs them elsewhere once it is
		// gone): the session closes at the deadline the watchdog kills
		// them by, unless a restart has claimed them by then.
		at := l.deadline
		if !l.swept {
			// The previous incarnation's stamp still rules what this
			// one may have claimed.
			if s, err := watchdog.ReadStamp(r.cfg.WorkDir); err == nil {
				at = s.Deadline
			}
		} else if err := l.stamp(); err == nil {
			at = l.deadline
		}
		if l.fence == nil || time.Until(at) <= 0 {
			_ = l.sess.Close()
			return
		}
		l.log.Info("stopped; tasks left running, session closes at the watchdog's deadline", "at", at)
		sess, dir, log := l.sess, r.cfg.WorkDir, l.log
		time.AfterFunc(time.Until(at), func() {
			// The watchdog kills the stamped tasks at this deadline, but
			// only at its next look at the stamp (every 100 ms by default),
			// while closing the session removes the registration at once
			// and the leader then runs them elsewhere: kill them first, by
			// the watchdog's own rule.
			killPastDeadline(dir, log)
			_ = sess.Close()
		})
	default:
		// Tripped (the safety clock, a lost registration, a drain that
		// ran out of time) or drained: nothing of this incarnation may
		// run on. Launches in flight have returned: kill what they
		// started too.
		if l.isTripped() {
			l.sweepAll()
		}
		_ = l.sess.Close()
		if errors.Is(err, errDrained) {
			l.log.Info("deregistered")
		}
	}
}

func (l *life) isTripped() bool {
	select {
	case <-l.tripped:
		return true
	default:
		return false
	}
}

// sweepAll SIGKILLs every task of the work directory that has not ended.
func (l *life) sweepAll() {
	ids, err := l.r.ex.Live(context.Background())
	if err != nil {
		l.log.Error("cannot list the tasks to kill", "error", err)
	}
	for _, id := range ids {
		if err := l.r.ex.KillNow(context.Background(), id); err != nil {
			l.log.Error("cannot kill task", "task_id", id, "error", err)
		}
	}
}

// killPastDeadline SIGKILLs the tasks of the work directory's stamp if its
// deadline has passed, as the watchdog does; a restart that stamped since
// moved the deadline on and owns them.
func killPastDeadline(dir string, log hclog.Logger) {
	s, err := watchdog.ReadStamp(dir)
	if err != nil || time.Now().Before(s.Deadline) {
		return
	}
	for _, id := range s.Tasks {
		if _, err := local.KillGroup(dir, id); err != nil {
			log.Error("cannot kill a task past its deadline", "task_id", id, "error", err)
		}
	}
}
