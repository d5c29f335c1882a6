package scheduler

import (
	"github.com/hasched/hasched/scheduler/model"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hasched/hasched/coord"
)

// The store layout, Elastic-Job-Cloud's, under the coordinator's namespace.
// Values are JSON.
const (
	electionPath     = "/ha/election"
	appConfigRoot    = "/config/app"    // /{app}: App
	jobConfigRoot    = "/config/job"    // /{job}: Job
	readyRoot        = "/state/ready"   // /{job}: readyNode
	runningRoot      = "/state/running" // /{job}/{task}: TaskRecord
	failoverRoot     = "/state/failover"
	disabledAppsRoot = "/state/disable/app" // /{app}: disabledNode
	disabledJobsRoot = "/state/disable/job" // /{job}: disabledNode
)

func appPath(app string) string           { return appConfigRoot + "/" + app }
func jobPath(job string) string           { return jobConfigRoot + "/" + job }
func readyPath(job string) string         { return readyRoot + "/" + job }
func runningJobPath(job string) string    { return runningRoot + "/" + job }
func runningPath(job, task string) string { return runningRoot + "/" + job + "/" + task }
func failoverJobPath(job string) string   { return failoverRoot + "/" + job }
func failoverPath(job, task string) string {
	return failoverRoot + "/" + job + "/" + task
}
func disabledAppPath(app string) string { return disabledAppsRoot + "/" + app }
func disabledJobPath(job string) string { return disabledJobsRoot + "/" + job }

// readyNode is a job's ready queue and the producer's progress, in one node
// so that appending a fire and advancing LastFire is one versioned Set.
type readyNode struct {
	// FireTimes are the pending fires, oldest first, unique.
	FireTimes []time.Time `json:"fireTimes"`
	// LastFire is the latest cron fire time handed to the queue (or
	// skipped by the misfire policy): the producer never produces a fire at
	// or before it again.
	LastFire time.Time `json:"lastFireTime"`
	// RegisteredAt is when the job was registered; a job whose LastFire is
	// zero produces fires after it only, so it never back-fills.
	RegisteredAt time.Time `json:"registeredAt"`
}

// producedThrough is the time up to which fires have been produced.
func (r readyNode) producedThrough() time.Time {
	if r.LastFire.After(r.RegisteredAt) {
		return r.LastFire
	}
	return r.RegisteredAt
}

func (r readyNode) pending(fire time.Time) bool {
	for _, f := range r.FireTimes {
		if f.Equal(fire) {
			return true
		}
	}
	return false
}

// disabledNode is the value of a disable flag.
type disabledNode struct {
	DisabledAt time.Time `json:"disabledAt"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded; they always marshal.
		panic(fmt.Sprintf("scheduler: encode %T: %v", v, err))
	}
	return b
}

func decodeNode(n coord.Node, v any) error {
	if err := json.Unmarshal(n.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", n.Path, err)
	}
	return nil
}

// reader reads the store; every process serves reads through one.
type reader struct{ c coord.Coordinator }

// children lists a node's children; a missing node has none.
func (r reader) children(ctx context.Context, path string) ([]string, error) {
	names, err := r.c.Children(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr(fmt.Errorf("list %s: %w", path, err))
	}
	return names, nil
}

// get reads and decodes one node; found is false if it is missing.
func (r reader) get(ctx context.Context, path string, v any) (coord.Version, bool, error) {
	n, err := r.c.Get(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, readErr(fmt.Errorf("read %s: %w", path, err))
	}
	if err := decodeNode(n, v); err != nil {
		return 0, false, err
	}
	return n.Version, true, nil
}

func (r reader) exists(ctx context.Context, path string) (bool, error) {
	_, err := r.c.Get(ctx, path)
	if errors.Is(err, coord.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, readErr(fmt.Errorf("read %s: %w", path, err))
	}
	return true, nil
}

func (r reader) app(ctx context.Context, name string) (model.App, bool, error) {
	var a model.App
	_, ok, err := r.get(ctx, appPath(name), &a)
	return a, ok, err
}

func (r reader) job(ctx context.Context, name string) (model.Job, bool, error) {
	var j model.Job
	_, ok, err := r.get(ctx, jobPath(name), &j)
	return j, ok, err
}

func (r reader) apps(ctx context.Context) ([]model.App, error) {
	names, err := r.children(ctx, appConfigRoot)
	if err != nil {
		return nil, err
	}
	out := make([]model.App, 0, len(names))
	for _, n := range names {
		a, ok, err := r.app(ctx, n)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, a)
		}
	}
	return out, nil
}

func (r reader) jobs(ctx context.Context) ([]model.Job, error) {
	names, err := r.children(ctx, jobConfigRoot)
	if err != nil {
		return nil, err
	}
	out := make([]model.Job, 0, len(names))
	for _, n := range names {
		j, ok, err := r.job(ctx, n)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, j)
		}
	}
	return out, nil
}

// tasks reads every task record under root (running or failover), by job.
func (r reader) tasks(ctx context.Context, root string) (map[string][]model.TaskRecord, error) {
	jobs, err := r.children(ctx, root)
	if err != nil {
		return nil, err
	}
	out := map[string][]model.TaskRecord{}
	for _, job := range jobs {
		ids, err := r.children(ctx, root+"/"+job)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			var rec model.TaskRecord
			_, ok, err := r.get(ctx, root+"/"+job+"/"+id, &rec)
			if err != nil {
				return nil, err
			}
			if ok {
				out[job] = append(out[job], rec)
			}
		}
		if _, ok := out[job]; !ok {
			out[job] = nil // an empty parent is still worth knowing of
		}
	}
	return out, nil
}

func flattenTasks(m map[string][]model.TaskRecord) []model.TaskRecord {
	out := []model.TaskRecord{}
	for _, recs := range m {
		for _, r := range recs {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r reader) ready(ctx context.Context) (map[string]versionedReady, error) {
	jobs, err := r.children(ctx, readyRoot)
	if err != nil {
		return nil, err
	}
	out := map[string]versionedReady{}
	for _, job := range jobs {
		var rn readyNode
		v, ok, err := r.get(ctx, readyPath(job), &rn)
		if err != nil {
			return nil, err
		}
		if ok {
			out[job] = versionedReady{rn, v}
		}
	}
	return out, nil
}

type versionedReady struct {
	readyNode
	version coord.Version
}

func (r reader) disabled(ctx context.Context, root string) (map[string]bool, error) {
	names, err := r.children(ctx, root)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
