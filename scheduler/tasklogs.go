package scheduler

import (
	"context"
	"fmt"

	"github.com/hasched/hasched/scheduler/model"
)

// LocateTask tells which worker ran a task and at which API address its
// work directory (and so the task's output) can be read, from the store,
// on whichever process answers (store.Reader.LocateTask has the rule).
// model.ErrNotFound if no placement names the task.
func (s *Scheduler) LocateTask(ctx context.Context, taskID string) (model.TaskLocation, error) {
	r, err := s.reader()
	if err != nil {
		return model.TaskLocation{}, err
	}
	loc, found, err := r.LocateTask(ctx, taskID)
	if err != nil {
		return loc, err
	}
	if !found {
		return loc, fmt.Errorf("%w: no worker placement names task %q: it ran on no worker, or ended longer ago than placements are kept", model.ErrNotFound, taskID)
	}
	return loc, nil
}
