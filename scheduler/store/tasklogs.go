package store

import (
	"context"
	"errors"

	"github.com/hasched/hasched/scheduler/model"
)

// LocateTask finds the worker whose work directory keeps a task's output,
// for GET /api/tasks/{id}/log: the placement /placements/{worker}/{task}
// names the worker, and a live registration of that worker name gives the
// API address. A registration of the placement's own incarnation is taken
// if it lives, else the newest of the name: a restarted worker keeps its
// work directory (and the directory's lock), so it still has the files.
//
// The rule is bounded and deterministic: one listing of /placements and
// one read per worker name there, one listing of /workers and one read per
// registration of the worker's name. found is false when no placement
// names the task: it never ran on a worker, or it ended more than the
// cluster executor's Retention ago and its placement was removed. A
// placement node that does not decode is passed over (the task may be
// placed elsewhere; nobody here can repair it). taskID must have passed
// model.CheckTaskID.
func (r Reader) LocateTask(ctx context.Context, taskID string) (loc model.TaskLocation, found bool, err error) {
	if err := model.CheckTaskID(taskID); err != nil {
		return loc, false, err
	}
	names, err := r.PlacementWorkers(ctx)
	if err != nil {
		return loc, false, err
	}
	var p StoredPlacement
	for _, name := range names {
		sp, ok, err := r.Placement(ctx, name, taskID)
		if errors.Is(err, ErrUndecodable) {
			continue
		}
		if err != nil {
			return loc, false, err
		}
		if ok {
			p, found = sp, true
			break
		}
	}
	if !found {
		return loc, false, nil
	}
	loc = model.TaskLocation{TaskID: taskID, Worker: p.Worker, Host: p.Host}
	ids, err := r.WorkerIDs(ctx)
	if err != nil {
		return loc, true, err
	}
	var best model.Worker
	for _, id := range ids {
		name, inc, _ := model.ParseWorkerID(id) // WorkerIDs parsed them
		if name != p.Worker {
			continue
		}
		w, _, ok, err := r.Registration(ctx, id)
		if errors.Is(err, ErrUndecodable) || (err == nil && !ok) {
			continue // bad, or gone since the listing
		}
		if err != nil {
			return loc, true, err
		}
		if inc == p.Incarnation {
			best = w
			break
		}
		if best.Name == "" || w.Started.After(best.Started) {
			best = w
		}
	}
	loc.API = best.API
	if loc.Host == "" {
		loc.Host = best.Host
	}
	return loc, true, nil
}
