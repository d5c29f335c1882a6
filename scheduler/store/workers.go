package store

import (
	"context"
	"errors"
	"sort"

	"github.com/hasched/hasched/scheduler/model"
)

// Workers lists the registered workers with the tasks placed on them that
// have not ended, for GET /api/workers. A registration that does not decode
// or validate (as the leader reads it: Registration), or a placement that
// does not decode, is left out (it is nobody's to fix here); one that went
// between the listing and its read is skipped.
func (r Reader) Workers(ctx context.Context) ([]model.WorkerView, error) {
	ids, err := r.children(ctx, WorkersRoot)
	if err != nil {
		return nil, err
	}
	views := make([]model.WorkerView, 0, len(ids))
	byIncarnation := map[string]int{}
	names := map[string]bool{}
	for _, id := range ids {
		w, _, ok, err := r.Registration(ctx, id)
		if errors.Is(err, ErrUndecodable) || !ok {
			continue
		}
		if err != nil {
			return nil, err
		}
		byIncarnation[w.Incarnation] = len(views)
		names[w.Name] = true
		views = append(views, model.WorkerView{Worker: w, Tasks: []model.PlacedTask{}})
	}
	for name := range names {
		tasks, err := r.children(ctx, PlacementsPath(name))
		if err != nil {
			return nil, err
		}
		for _, task := range tasks {
			var p model.Placement
			_, ok, err := r.get(ctx, PlacementPath(name, task), &p)
			if errors.Is(err, ErrUndecodable) || !ok {
				continue
			}
			if err != nil {
				return nil, err
			}
			i, live := byIncarnation[p.Incarnation]
			if !live || p.State.Terminal() {
				continue
			}
			v := &views[i]
			v.UsedCPUs += p.Task.CPUs
			v.UsedMemoryMB += p.Task.MemoryMB
			v.Tasks = append(v.Tasks, model.PlacedTask{TaskID: p.Task.ID, Job: p.Task.Job, Shard: p.Task.Shard, State: p.State, PlacedAt: p.PlacedAt})
		}
	}
	sort.Slice(views, func(i, j int) bool {
		if views[i].Name != views[j].Name {
			return views[i].Name < views[j].Name
		}
		return views[i].Incarnation < views[j].Incarnation
	})
	return views, nil
}
