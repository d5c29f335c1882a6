package store

import (
	"context"
	"slices"
	"sort"

	"github.com/hasched/hasched/scheduler/model"
)

// Workers lists the registered workers with the tasks placed on them that
// have not ended, for GET /api/workers. A registration that does not decode
// or validate (as the leader reads it: Registration), or a placement that
// does not decode, is left out (it is nobody's to fix here); one that went
// between the listing and its read is skipped.
func (r Reader) Workers(ctx context.Context) ([]model.WorkerView, error) {
	regs, err := r.nodes(ctx, WorkersRoot)
	if err != nil {
		return nil, err
	}
	views := make([]model.WorkerView, 0, len(regs))
	byIncarnation := map[string]int{}
	var names []string
	for _, n := range regs {
		w, err := registrationFrom(n)
		if err != nil {
			continue
		}
		byIncarnation[w.Incarnation] = len(views)
		if !slices.Contains(names, w.Name) {
			names = append(names, w.Name)
		}
		views = append(views, model.WorkerView{Worker: w, Tasks: []model.PlacedTask{}})
	}
	for _, name := range names {
		placed, _, err := r.PlacementsOf(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, p := range placed {
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
