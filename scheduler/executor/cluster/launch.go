package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/executor"
	"github.com/hasched/hasched/scheduler/model"
	"github.com/hasched/hasched/scheduler/store"
)

// checkTasks refuses a batch holding a task that can never be placed.
func checkTasks(tasks []executor.Task) error {
	for i, t := range tasks {
		switch {
		case t.ID == "":
			return fmt.Errorf("%w: task %d has no ID", ErrInvalidTask, i)
		case coord.ValidateName(t.ID) != nil:
			return fmt.Errorf("%w: task %q: the ID is not a node name: %v", ErrInvalidTask, t.ID, coord.ValidateName(t.ID))
		case strings.TrimSpace(t.Command) == "":
			return fmt.Errorf("%w: task %q has no command", ErrInvalidTask, t.ID)
		case !finite(t.CPUs) || t.CPUs < 0 || !finite(t.MemoryMB) || t.MemoryMB < 0:
			return fmt.Errorf("%w: task %q asks for %v cpus and %v MB", ErrInvalidTask, t.ID, t.CPUs, t.MemoryMB)
		}
		if err := model.CheckLabels("constraints", t.Constraints); err != nil {
			return fmt.Errorf("%w: task %q: %w", ErrInvalidTask, t.ID, err)
		}
		// A placement must fit in one node (and one batch).
		if n := len(store.EncodePlacement(model.Placement{Task: t})) + 1024; n > coord.MaxValueSize {
			return fmt.Errorf("%w: task %q is %d bytes encoded, at most %d", ErrInvalidTask, t.ID, n, coord.MaxValueSize)
		}
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Launch places every new task of the batch on a live worker; a task
// already placed (by this or an earlier term) is not placed again: its
// current state is reported. Each placement is reported STAGING on its
// worker's host once written. Tasks that fit on no worker are left out and
// Launch returns an error wrapping ErrNoCapacity, after placing the rest.
// A deposed leader's placements fail (coord.ErrNotLeader) and place nothing.
func (e *Executor) Launch(ctx context.Context, tasks []executor.Task) error {
	if err := checkTasks(tasks); err != nil {
		return err
	}
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	select {
	case e.launchSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.ctx.Done():
		return ErrClosed
	}
	defer func() { <-e.launchSem }()
	if err := ctx.Err(); err != nil {
		return err
	}

	plan, unplaced := e.plan(tasks)
	if err := e.place(ctx, plan); err != nil {
		return err
	}
	if len(unplaced) > 0 {
		ids := unplaced
		if len(ids) > 5 {
			ids = append(ids[:5:5], "...")
		}
		return fmt.Errorf("%w: %d of %d tasks left unplaced (%s)", ErrNoCapacity, len(unplaced), len(tasks), strings.Join(ids, ", "))
	}
	return nil
}

// candidate is one worker incarnation a task may go to, with the room left
// on it as the plan fills it.
type candidate struct {
	id       string
	reg      model.Worker
	freeCPU  float64
	freeMem  float64
	jobTasks map[string]int // non-terminal placements per job
}

// plan decides, under mu, where each new task goes, and reports the state
// of the tasks already placed. The placement rule: among live,
// non-draining workers whose labels match the task's constraints and whose
// free cpus and memory (capacity minus the non-terminal placements on the
// worker's name) hold the task's, the one with the fewest placements of
// the task's job (so a job's shards spread), then the most free CPU.
func (e *Executor) plan(tasks []executor.Task) (plan []model.Placement, unplaced []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cands := e.candidatesLocked()
	now := time.Now()
	seen := map[string]bool{}
	for _, t := range tasks {
		if seen[t.ID] {
			continue
		}
		seen[t.ID] = true
		if p, ok := e.index[t.ID]; ok {
			e.queue.Push(statusOf(p, false))
			continue
		}
		c := pick(cands, t)
		if c == nil {
			unplaced = append(unplaced, t.ID)
			continue
		}
		c.freeCPU -= t.CPUs
		c.freeMem -= t.MemoryMB
		c.jobTasks[t.Job]++
		plan = append(plan, model.Placement{
			Task:        t,
			Worker:      c.reg.Name,
			Incarnation: c.reg.Incarnation,
			Token:       e.token,
			PlacedAt:    now,
			State:       executor.StateStaging,
			Host:        c.reg.Host,
			UpdatedAt:   now,
		})
	}
	return plan, unplaced
}

// candidatesLocked lists the workers placements may go to. Capacity is
// used up per worker name, by every non-terminal placement on it whatever
// its incarnation: a placement bound to an incarnation that is gone is
// either about to be marked LOST or re-bound by the name's restarted
// worker, which then runs it. Of several live incarnations of one name
// (a restart before the old session expired), only the latest started
// takes placements: the older one is on its way out.
func (e *Executor) candidatesLocked() []*candidate {
	latest := map[string]*workerState{}
	for _, ws := range e.workers {
		if !ws.live || ws.gone {
			continue
		}
		if cur := latest[ws.name]; cur == nil || ws.reg.Started.After(cur.reg.Started) ||
			(ws.reg.Started.Equal(cur.reg.Started) && ws.id > cur.id) {
			latest[ws.name] = ws
		}
	}
	byName := map[string]*candidate{}
	var out []*candidate
	for name, ws := range latest {
		if ws.reg.Draining {
			continue
		}
		c := &candidate{id: ws.id, reg: ws.reg, freeCPU: ws.reg.CPUs, freeMem: ws.reg.MemoryMB, jobTasks: map[string]int{}}
		byName[name] = c
		out = append(out, c)
	}
	for _, p := range e.index {
		c := byName[p.Worker]
		if c == nil || p.State.Terminal() {
			continue
		}
		c.freeCPU -= p.Task.CPUs
		c.freeMem -= p.Task.MemoryMB
		c.jobTasks[p.Task.Job]++
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// pick chooses the candidate for t, or nil if none has room.
func pick(cands []*candidate, t executor.Task) *candidate {
	var best *candidate
	for _, c := range cands {
		if !model.Matches(c.reg.Labels, t.Constraints) || c.freeCPU+epsilon < t.CPUs || c.freeMem+epsilon < t.MemoryMB {
			continue
		}
		switch {
		case best == nil:
			best = c
		case c.jobTasks[t.Job] != best.jobTasks[t.Job]:
			if c.jobTasks[t.Job] < best.jobTasks[t.Job] {
				best = c
			}
		case c.freeCPU > best.freeCPU+epsilon:
			best = c
		}
	}
	return best
}

// place writes the plan in fenced batches of at most coord.MaxBatchOps
// creates (and coord.MaxValueSize bytes), and reports each placement
// STAGING once its batch is written.
func (e *Executor) place(ctx context.Context, plan []model.Placement) error {
	for len(plan) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := batchLen(len(plan), func(i int) int { return len(store.EncodePlacement(plan[i])) }, coord.MaxBatchOps)
		batch := plan[:n]
		placed, err := e.placeBatch(ctx, batch)
		if err != nil {
			return err
		}
		plan = plan[placed:]
	}
	return nil
}

// batchLen is how many of n values, from the first, go in one batch: at
// most most, whose sizes (size(i) bytes) add up to at most
// coord.MaxValueSize; at least one, whatever its size (coord.Apply refuses
// it if too large).
func batchLen(n int, size func(i int) int, most int) int {
	k, total := 0, 0
	for k < n && k < most {
		sz := size(k)
		if k > 0 && total+sz > coord.MaxValueSize {
			break
		}
		total += sz
		k++
	}
	return k
}

// placeBatch writes one batch (retrying without the tasks found placed
// already) and returns how many of the batch's placements it is done with.
func (e *Executor) placeBatch(ctx context.Context, batch []model.Placement) (int, error) {
	for _, p := range batch {
		if e.parents[p.Worker] {
			continue
		}
		if err := e.bounded(ctx, func(ctx context.Context) error {
			return store.EnsurePlacementsParent(ctx, e.w, p.Worker)
		}); err != nil {
			return 0, fmt.Errorf("place on %s: %w", p.Worker, e.callErr(ctx, err))
		}
		e.parents[p.Worker] = true
	}
	todo := append([]model.Placement(nil), batch...)
	for len(todo) > 0 {
		ops := make([]coord.Op, len(todo))
		for i, p := range todo {
			ops[i] = store.CreatePlacementOp(p)
		}
		res, err := e.apply(ctx, ops...)
		var oe *coord.OpError
		switch {
		case err == nil:
			e.placed(todo, res)
			return len(batch), nil
		case errors.As(err, &oe) && errors.Is(err, coord.ErrExists) && oe.Index < len(todo):
			// Written by an earlier call of ours whose answer was lost (a
			// timeout after the server applied it): adopt it.
			p := todo[oe.Index]
			if err := e.adopt(ctx, p.Worker, p.Task.ID); err != nil {
				return 0, fmt.Errorf("place %s on %s: %w", p.Task.ID, p.Worker, e.callErr(ctx, err))
			}
			todo = append(todo[:oe.Index:oe.Index], todo[oe.Index+1:]...)
		case errors.As(err, &oe) && errors.Is(err, coord.ErrNotFound) && oe.Index < len(todo):
			// The worker's placements node went; made again next time.
			delete(e.parents, todo[oe.Index].Worker)
			return 0, fmt.Errorf("place %s: %w", todo[oe.Index].Task.ID, err)
		default:
			return 0, fmt.Errorf("place %d tasks: %w", len(todo), e.callErr(ctx, err))
		}
	}
	return len(batch), nil
}

// callErr prefers the caller's cancellation to the error it caused.
func (e *Executor) callErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if e.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

// adopt reads a placement found in the store into the index and reports
// its state.
func (e *Executor) adopt(ctx context.Context, worker, task string) error {
	var p store.StoredPlacement
	var ok bool
	if err := e.bounded(ctx, func(ctx context.Context) (err error) {
		p, ok, err = e.r.Placement(ctx, worker, task)
		return err
	}); err != nil || !ok {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.commitLocked(0, p) {
		e.queue.Push(statusOf(p, false))
	}
	return nil
}

// placed records a written batch in the index and reports it STAGING. A
// placement whose incarnation ended while it was being written (its gone
// handling may have listed the worker's placements before the write) makes
// the gone handling run again, so that it is marked LOST too.
func (e *Executor) placed(batch []model.Placement, res []coord.OpResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	recheck := map[string]bool{}
	for i, p := range batch {
		sp := store.StoredPlacement{Placement: p, Version: res[i].Version}
		// A worker's report may have been folded first (it read the
		// placement from the store): then it reported already, later news.
		if e.commitLocked(0, sp) {
			e.queue.Push(statusOf(sp, false))
		}
		id := workerID(p.Worker, p.Incarnation)
		if ws := e.workers[id]; ws == nil || ws.gone {
			recheck[id] = true
		}
	}
	for id := range recheck {
		e.log.Info("placed on a worker that has just gone; marking again", "worker", id)
		if ws := e.workers[id]; ws != nil {
			ws.again = true
		} else {
			e.startWorkerLocked(id)
		}
	}
}

// Kill asks the worker that runs the task to kill it. A task this term
// does not know is no error; a task that has ended is reported again.
func (e *Executor) Kill(ctx context.Context, taskID string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	p, ok := e.lookup(taskID)
	if !ok {
		return nil
	}
	if p.State.Terminal() {
		e.mu.Lock()
		e.queue.Push(statusOf(p, false))
		e.mu.Unlock()
		return nil
	}
	err = e.bounded(ctx, func(ctx context.Context) error {
		_, err := e.w.Create(ctx, store.KillPath(p.Worker, taskID), nil)
		return err
	})
	if err != nil && !errors.Is(err, coord.ErrExists) {
		return fmt.Errorf("kill %s on %s: %w", taskID, p.Worker, e.callErr(ctx, err))
	}
	return nil
}

// Reconcile reports, from the index, the state of the named tasks (UNKNOWN
// for a task never placed) or of every placement when taskIDs is empty.
func (e *Executor) Reconcile(ctx context.Context, taskIDs []string) error {
	end, err := e.begin()
	if err != nil {
		return err
	}
	defer end()
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(taskIDs) == 0 {
		ids := make([]string, 0, len(e.index))
		for id := range e.index {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			e.queue.Push(statusOf(e.index[id], true))
		}
		return nil
	}
	now := time.Now()
	for _, id := range taskIDs {
		if p, ok := e.index[id]; ok {
			e.queue.Push(statusOf(p, true))
			continue
		}
		e.queue.Push(executor.Status{TaskID: id, State: executor.StateUnknown, Message: "no placement of this task", Time: now, Reconcile: true})
	}
	return nil
}
