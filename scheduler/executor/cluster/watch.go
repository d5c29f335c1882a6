package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// watchWorkers follows /workers and starts watching every incarnation
// that registers. An incarnation's end is seen by its own watch.
func (e *Executor) watchWorkers() {
	ch, err := e.c.WatchChildren(e.ctx, store.WorkersRoot)
	if err != nil {
		e.log.Error("cannot watch the workers; no new worker will be seen this term", "error", err)
		return
	}
	for ev := range ch {
		if ev.Err != nil {
			e.log.Debug("the workers watch ended", "error", ev.Err)
			return
		}
		e.mu.Lock()
		for _, id := range ev.Children {
			if _, _, err := model.ParseWorkerID(id); err != nil {
				continue
			}
			if _, ok := e.workers[id]; !ok {
				e.startWorkerLocked(id)
			}
		}
		e.mu.Unlock()
	}
}

// startWorkerLocked starts the goroutine that watches one incarnation
// (adding its state if it has none yet: not live until its registration is
// read).
func (e *Executor) startWorkerLocked(id string) {
	if e.calls.Closed() || e.ctx.Err() != nil {
		return
	}
	ws := e.workers[id]
	if ws == nil {
		name, inc, err := model.ParseWorkerID(id)
		if err != nil {
			return
		}
		ws = &workerState{id: id, name: name, inc: inc}
		e.workers[id] = ws
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.watchWorker(ws)
	}()
}

// watchWorker owns one incarnation: it follows its registration (capacity,
// draining) and folds its reports in order; once the registration is gone
// it handles the incarnation's end (handleGone) and returns.
func (e *Executor) watchWorker(ws *workerState) {
	log := e.log.With("worker", ws.id)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	regs, err := e.c.Watch(ctx, store.WorkerPath(ws.id))
	if err != nil {
		log.Error("cannot watch the worker's registration", "error", err)
		return
	}
	outbox, err := e.c.WatchChildren(ctx, store.OutboxPath(ws.id))
	if err != nil {
		log.Error("cannot watch the worker's outbox", "error", err)
		return
	}
	var retry <-chan time.Time
	pending := false
	for {
		select {
		case ev, ok := <-regs:
			if !ok || ev.Err != nil {
				return
			}
			if !ev.Exists {
				if !e.confirmGone(ctx, ws) {
					continue
				}
				e.gone(ctx, ws)
				return
			}
			e.registered(ws, ev.Node)
			continue
		case ev, ok := <-outbox:
			if !ok || ev.Err != nil {
				return
			}
			pending = pending || len(ev.Children) > 0
		case <-retry:
			retry = nil
		case <-ctx.Done():
			return
		}
		if pending && retry == nil {
			if err := e.drainOutbox(ctx, ws); err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("fold the worker's reports; trying again", "error", err)
				retry = time.After(e.cfg.RetryInterval)
				continue
			}
			pending = false
		}
	}
}

// confirmGone reads the registration the watch says is gone, before its
// tasks are marked LOST: that is the one decision that must rest on the
// server's word, not on an event. It retries a failed read until the term
// ends (false then).
func (e *Executor) confirmGone(ctx context.Context, ws *workerState) bool {
	for {
		err := e.bounded(ctx, func(ctx context.Context) error {
			_, err := e.c.Get(ctx, store.WorkerPath(ws.id))
			return err
		})
		switch {
		case errors.Is(err, coord.ErrNotFound):
			return true
		case err == nil:
			e.log.Warn("the watch said a worker's registration is gone, but it is there", "worker", ws.id)
			return false
		}
		if ctx.Err() != nil {
			return false
		}
		e.log.Warn("read a worker's registration; trying again", "worker", ws.id, "error", err)
		select {
		case <-time.After(e.cfg.RetryInterval):
		case <-ctx.Done():
			return false
		}
	}
}

// registered takes a registration's new value: a valid one makes the
// incarnation a candidate for placements (unless draining).
func (e *Executor) registered(ws *workerState, n coord.Node) {
	var w model.Worker
	err := json.Unmarshal(n.Value, &w)
	if err == nil {
		err = w.Check()
	}
	if err == nil && w.ID() != ws.id {
		err = fmt.Errorf("it registers %s", w.ID())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.log.Error("a worker registration is invalid; nothing is placed on it", "worker", ws.id, "error", err)
		ws.live = false
		return
	}
	if ws.live && ws.reg.Draining != w.Draining {
		e.log.Info("worker draining changed", "worker", ws.id, "draining", w.Draining)
	} else if !ws.live {
		e.log.Debug("worker registered", "worker", ws.id, "host", w.Host, "cpus", w.CPUs, "memory_mb", w.MemoryMB, "labels", model.FormatLabels(w.Labels))
	}
	ws.reg, ws.live = w, true
}

// drainOutbox folds every report of an incarnation's outbox, in order.
func (e *Executor) drainOutbox(ctx context.Context, ws *workerState) error {
	var names []string
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		names, err = e.r.ReportNames(ctx, ws.id)
		return err
	}); err != nil {
		return err
	}
	for _, name := range names {
		var rep store.StoredReport
		var ok bool
		err := e.bounded(ctx, func(ctx context.Context) (err error) {
			rep, ok, err = e.r.Report(ctx, ws.id, name)
			return err
		})
		if errors.Is(err, store.ErrUndecodable) {
			e.log.Error("a report does not decode; deleted", "worker", ws.id, "report", name, "error", err)
			if err := e.deleteReport(ctx, ws, name); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			continue // folded already; the listing was older
		}
		if err := e.fold(ctx, ws, rep); err != nil {
			return fmt.Errorf("fold %s: %w", rep.Path, err)
		}
	}
	return nil
}

func (e *Executor) deleteReport(ctx context.Context, ws *workerState, name string) error {
	_, err := e.apply(ctx, store.DeleteReportOp(ws.id, name, coord.AnyVersion))
	if errors.Is(err, coord.ErrNotFound) {
		return nil
	}
	return err
}

// fold takes one report into its placement and deletes the report, in one
// fenced batch, then reports the status. A report of another incarnation
// than the placement's, about a placement that is gone or has ended, is
// deleted and dropped.
func (e *Executor) fold(ctx context.Context, ws *workerState, rep store.StoredReport) error {
	st := rep.Status
	drop := func(why string) error {
		e.log.Debug("report dropped", "worker", ws.id, "task", st.TaskID, "state", st.State, "why", why)
		return e.deleteReport(ctx, ws, rep.Name)
	}
	if rep.Incarnation != ws.inc {
		return drop("written for incarnation " + rep.Incarnation)
	}
	if coord.ValidateName(st.TaskID) != nil || !validReportState(st.State) {
		return drop("not a report of a task state")
	}
	p, known := e.lookup(st.TaskID)
	base := p.Version
	reread := !known || p.Worker != ws.name || p.Incarnation != ws.inc
	for range maxConflicts {
		if reread {
			var ok bool
			if err := e.bounded(ctx, func(ctx context.Context) (err error) {
				p, ok, err = e.r.Placement(ctx, ws.name, st.TaskID)
				return err
			}); err != nil {
				return err
			}
			if !ok {
				e.mu.Lock()
				e.forgetLocked(st.TaskID, base)
				e.mu.Unlock()
				return drop("no placement")
			}
			e.mu.Lock()
			_, had := e.index[st.TaskID]
			if e.commitLocked(base, p) && !had && p.Incarnation == ws.inc && !p.State.Terminal() {
				// The report of a placement whose Launch has not recorded
				// it yet: its STAGING goes first, so that the task's
				// statuses keep their order.
				e.queue.Push(statusOf(p, false))
			}
			e.mu.Unlock()
			base = p.Version
		}
		if p.Incarnation != ws.inc {
			return drop("the placement is bound to incarnation " + p.Incarnation)
		}
		if p.State.Terminal() {
			return drop("the placement has ended " + string(p.State))
		}
		folded := p
		folded.State, folded.Message, folded.ExitCode = st.State, st.Message, st.ExitCode
		if st.Host != "" {
			folded.Host = st.Host
		}
		folded.UpdatedAt = time.Now()
		res, err := e.apply(ctx, store.SetPlacementOp(folded.Placement, p.Version), store.DeleteReportOp(ws.id, rep.Name, rep.Version))
		var oe *coord.OpError
		switch {
		case err == nil:
			folded.Version = res[0].Version
			out := statusOf(folded, false)
			if !st.Time.IsZero() {
				out.Time = st.Time
			}
			e.mu.Lock()
			// The versioned write succeeded: this is the store's latest
			// state, whatever the index says.
			e.index[folded.Task.ID] = folded
			e.queue.Push(out)
			e.mu.Unlock()
			return nil
		case errors.As(err, &oe) && oe.Index == 0 && (errors.Is(err, coord.ErrVersionConflict) || errors.Is(err, coord.ErrNotFound)):
			reread = true
		case errors.As(err, &oe) && oe.Index == 1 && errors.Is(err, coord.ErrNotFound):
			return nil // folded by an earlier pass whose answer was lost
		default:
			return err
		}
	}
	return fmt.Errorf("placement of %s kept changing: %w", st.TaskID, coord.ErrVersionConflict)
}

// validReportState: a worker reports a task's life, never UNKNOWN.
func validReportState(s executor.State) bool {
	switch s {
	case executor.StateStaging, executor.StateRunning, executor.StateFinished, executor.StateFailed, executor.StateTimedOut, executor.StateKilled, executor.StateLost:
		return true
	}
	return false
}

// gone handles the end of an incarnation whose registration is gone,
// retrying until it is done or the term ends.
func (e *Executor) gone(ctx context.Context, ws *workerState) {
	e.mu.Lock()
	ws.gone, ws.live = true, false
	e.mu.Unlock()
	e.log.Info("worker gone", "worker", ws.id)
	for {
		err := e.handleGone(ctx, ws)
		if err == nil {
			e.mu.Lock()
			if ws.again {
				ws.again = false
				e.mu.Unlock()
				continue
			}
			delete(e.workers, ws.id)
			e.mu.Unlock()
			return
		}
		if ctx.Err() != nil || errors.Is(err, coord.ErrNotLeader) || errors.Is(err, coord.ErrSessionLost) || errors.Is(err, coord.ErrClosed) {
			e.log.Debug("the end of a worker is left to the next term", "worker", ws.id, "error", err)
			return
		}
		e.log.Warn("handle the end of a worker; trying again", "worker", ws.id, "error", err)
		select {
		case <-time.After(e.cfg.RetryInterval):
		case <-ctx.Done():
			return
		}
	}
}

// handleGone, for an incarnation whose registration is gone on the server
// (so nothing more is appended to its outbox, and its tasks are dead):
// folds what is left in its outbox, marks each non-terminal placement still
// bound to it LOST, and deletes the outbox.
func (e *Executor) handleGone(ctx context.Context, ws *workerState) error {
	if err := e.drainOutbox(ctx, ws); err != nil {
		return err
	}
	var ps []store.StoredPlacement
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		// From the store, not the index: a placement written while the
		// end was being handled is there.
		ps, _, err = e.r.PlacementsOf(ctx, ws.name)
		return err
	}); err != nil {
		return err
	}
	host := ws.reg.Host
	var bound []store.StoredPlacement
	for _, p := range ps {
		if p.Incarnation == ws.inc && !p.State.Terminal() {
			bound = append(bound, p)
		}
	}
	// In batches: a host of a thousand tasks is failed over in a few round
	// trips, not a thousand.
	if err := e.markLostInBatches(ctx, ws, bound, host); err != nil {
		return err
	}
	err := e.bounded(ctx, func(ctx context.Context) error {
		return e.w.DeleteTree(ctx, store.OutboxPath(ws.id))
	})
	if err != nil && !errors.Is(err, coord.ErrNotFound) {
		return fmt.Errorf("delete the outbox: %w", err)
	}
	return nil
}

// markLostInBatches marks ps, each bound to ws's incarnation and not ended
// when read, LOST at the versions read, in fenced batches of up to
// coord.QuickBatchOps. A batch is refused whole when one of its placements
// changed since (a restarted worker's re-binding, or a fold): that one is
// left to markLost, which reads it again and judges, and the others are
// written again without it.
func (e *Executor) markLostInBatches(ctx context.Context, ws *workerState, ps []store.StoredPlacement, host string) error {
	ps = slices.Clone(ps)
	lost := make([]store.StoredPlacement, len(ps))
	ops := make([]coord.Op, len(ps))
	for i, p := range ps {
		lost[i] = lostOf(ws, p, host)
		ops[i] = store.SetPlacementOp(lost[i].Placement, p.Version)
	}
	for len(ops) > 0 {
		n := batchLen(len(ops), func(i int) int { return len(ops[i].Value) }, coord.QuickBatchOps)
		res, err := e.apply(ctx, ops[:n]...)
		var oe *coord.OpError
		switch {
		case err == nil:
			e.mu.Lock()
			for i := range n {
				lost[i].Version = res[i].Version
				// Reported even if the index moved on meanwhile: the
				// store has it LOST now, and the scheduler must hear so.
				e.index[lost[i].Task.ID] = lost[i]
				e.queue.Push(statusOf(lost[i], false))
			}
			e.mu.Unlock()
			for _, l := range lost[:n] {
				e.log.Warn("task lost with its worker", "task", l.Task.ID, "worker", ws.id)
			}
			ps, lost, ops = ps[n:], lost[n:], ops[n:]
		case errors.As(err, &oe) && oe.Index >= 0 && oe.Index < n &&
			(errors.Is(err, coord.ErrVersionConflict) || errors.Is(err, coord.ErrNotFound)):
			i := oe.Index
			if err := e.markLost(ctx, ws, ps[i], host, true); err != nil {
				return fmt.Errorf("mark %s LOST: %w", ps[i].Task.ID, err)
			}
			ps, lost, ops = slices.Delete(ps, i, i+1), slices.Delete(lost, i, i+1), slices.Delete(ops, i, i+1)
		default:
			return fmt.Errorf("mark %d tasks LOST: %w", n, err)
		}
	}
	return nil
}

// lostOf is p marked LOST for the end of ws's incarnation on host (unless
// p names its own).
func lostOf(ws *workerState, p store.StoredPlacement, host string) store.StoredPlacement {
	lost := p
	lost.State, lost.ExitCode = executor.StateLost, 0
	if lost.Host == "" {
		lost.Host = host
	}
	lost.Message = fmt.Sprintf("worker %s (incarnation %s", ws.name, ws.inc)
	if lost.Host != "" {
		lost.Message += " on " + lost.Host
	}
	lost.Message += ") is gone: its coordinator session ended"
	lost.UpdatedAt = time.Now()
	return lost
}

// markLost marks one placement LOST if it is still bound to ws's
// incarnation and not ended, at its version; a conflict is a restarted
// worker's re-binding (or a fold): re-read and judge again. stale says p
// is known to have changed since it was read (a refused batch said so):
// it is read again before anything is written.
func (e *Executor) markLost(ctx context.Context, ws *workerState, p store.StoredPlacement, host string, stale bool) error {
	id := p.Task.ID // p is the zero placement once a read finds none
	e.mu.Lock()
	base := p.Version
	if cur, ok := e.index[id]; ok {
		base = cur.Version
	}
	e.mu.Unlock()
	for range maxConflicts {
		if stale {
			var ok bool
			if err := e.bounded(ctx, func(ctx context.Context) (err error) {
				p, ok, err = e.r.Placement(ctx, ws.name, id)
				return err
			}); err != nil {
				return err
			}
			if !ok {
				e.mu.Lock()
				e.forgetLocked(id, base)
				e.mu.Unlock()
				return nil
			}
		}
		if p.Incarnation != ws.inc || p.State.Terminal() {
			e.mu.Lock()
			e.commitLocked(base, p)
			e.mu.Unlock()
			return nil
		}
		lost := lostOf(ws, p, host)
		res, err := e.apply(ctx, store.SetPlacementOp(lost.Placement, p.Version))
		switch {
		case err == nil:
			lost.Version = res[0].Version
			e.mu.Lock()
			// Reported even if the index moved on meanwhile: the store
			// has it LOST now, and the scheduler must hear so.
			e.index[lost.Task.ID] = lost
			e.queue.Push(statusOf(lost, false))
			e.mu.Unlock()
			e.log.Warn("task lost with its worker", "task", lost.Task.ID, "worker", ws.id)
			return nil
		case errors.Is(err, coord.ErrVersionConflict) || errors.Is(err, coord.ErrNotFound):
			stale = true
		default:
			return err
		}
	}
	return fmt.Errorf("placement of %s kept changing: %w", id, coord.ErrVersionConflict)
}
