package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// Run history: one node per ended run, under its job, keyed so that the
// children's sorted order is the runs' end order.
//
//	/history/{job}/{end unix nanos, 20 digits}~{task id}: model.Execution
//
// History is not leader state: its writes are not fenced (a deposed
// leader's record of a run that did end is still true) and never fail
// scheduling, they are idempotent instead. The same run ends at one time
// with one task id, so a repeated write of it (a retry, a new leader's
// re-report) lands on the same node and overwrites it.
//
// Bounds: a job keeps its last Keep runs (HistoryWriter.Prune). History
// outlives its job, so that a deregistered job's runs can still be read;
// the number of jobs with history is bounded by PruneJobs, which removes
// the histories of jobs that are no longer registered, those whose last
// run is oldest first, until at most maxJobs are left. A registered job's
// history is never removed that way: registered jobs are bounded by
// registration itself.
const HistoryRoot = "/history"

// HistoryJobPath is the parent of a job's history.
func HistoryJobPath(job string) string { return HistoryRoot + "/" + job }

// HistoryPath is one run's node.
func HistoryPath(job, key string) string { return HistoryRoot + "/" + job + "/" + key }

// historyKeySep separates a history key's end time from its task id; it
// sorts after every digit, and task ids start with the job name.
const historyKeySep = "~"

// HistoryKey is the name of an execution's node: its end time in unix
// nanoseconds, zero-padded to 20 digits so names sort by it, then its task
// id. An execution without a CompleteTime sorts first (at zero).
func HistoryKey(ex model.Execution) string {
	var ns int64
	if !ex.CompleteTime.IsZero() {
		ns = max(ex.CompleteTime.UnixNano(), 0)
	}
	return fmt.Sprintf("%020d%s%s", ns, historyKeySep, ex.TaskID)
}

// historyKeyTime is the end time a history key names; ok is false if the
// name is not a history key.
func historyKeyTime(key string) (time.Time, bool) {
	digits, _, ok := strings.Cut(key, historyKeySep)
	if !ok || len(digits) != 20 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns).UTC(), true
}

// HistoryWriter writes run history through one session, unfenced (see
// HistoryRoot).
type HistoryWriter struct{ c coord.Coordinator }

// NewHistoryWriter writes through c.
func NewHistoryWriter(c coord.Coordinator) HistoryWriter { return HistoryWriter{c: c} }

// Record writes one execution, replacing the node of the same run if it is
// there. The job's name and the task id must make a valid path
// (coord.ErrInvalidPath otherwise, and nothing is written).
func (w HistoryWriter) Record(ctx context.Context, ex model.Execution) error {
	if ex.Job == "" || ex.TaskID == "" {
		return fmt.Errorf("record execution: job %q, task %q: %w", ex.Job, ex.TaskID, coord.ErrInvalidPath)
	}
	path := HistoryPath(ex.Job, HistoryKey(ex))
	value := encode(ex.Trimmed())
	_, err := w.c.Create(ctx, path, value)
	if errors.Is(err, coord.ErrExists) {
		_, err = w.c.Set(ctx, path, value, coord.AnyVersion)
	}
	if err != nil {
		return unavailable(fmt.Errorf("record %s: %w", path, err))
	}
	return nil
}

// Prune removes a job's oldest runs beyond its last keep, in batches, and
// returns how many it removed. A run removed meanwhile by someone else
// (another process pruning) is not an error.
func (w HistoryWriter) Prune(ctx context.Context, job string, keep int) (int, error) {
	if keep < 1 {
		return 0, fmt.Errorf("prune %s: keep %d: %w", job, keep, model.ErrInvalid)
	}
	parent := HistoryJobPath(job)
	names, err := NewReader(w.c).children(ctx, parent)
	if err != nil || len(names) <= keep {
		return 0, err
	}
	old := names[:len(names)-keep] // sorted: the oldest first
	removed := 0
	for len(old) > 0 {
		n := min(len(old), coord.MaxBatchOps)
		batch := old[:n]
		old = old[n:]
		ops := make([]coord.Op, n)
		for i, name := range batch {
			ops[i] = coord.DeleteOp(parent+"/"+name, coord.AnyVersion)
		}
		_, err := w.c.Apply(ctx, ops...)
		if errors.Is(err, coord.ErrNotFound) {
			// One of them went meanwhile: the batch is all or nothing,
			// so remove the rest one by one.
			for _, name := range batch {
				err := ignore(w.c.Delete(ctx, parent+"/"+name, coord.AnyVersion), coord.ErrNotFound)
				if err != nil {
					return removed, unavailable(fmt.Errorf("prune %s: %w", parent, err))
				}
				removed++
			}
			continue
		}
		if err != nil {
			return removed, unavailable(fmt.Errorf("prune %s: %w", parent, err))
		}
		removed += n
	}
	return removed, nil
}

// PruneJobs bounds the number of jobs with history to maxJobs (see
// HistoryRoot): it removes the histories of jobs that are not registered,
// the one whose last run ended first before the others, until at most
// maxJobs are left or only registered jobs' remain. It returns the jobs
// whose history it removed.
func (w HistoryWriter) PruneJobs(ctx context.Context, maxJobs int) ([]string, error) {
	if maxJobs < 1 {
		return nil, fmt.Errorf("prune history: max jobs %d: %w", maxJobs, model.ErrInvalid)
	}
	r := NewReader(w.c)
	jobs, err := r.children(ctx, HistoryRoot)
	if err != nil || len(jobs) <= maxJobs {
		return nil, err
	}
	registered, err := r.children(ctx, JobConfigRoot)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(registered))
	for _, j := range registered {
		known[j] = true
	}
	type orphan struct {
		job  string
		last time.Time
	}
	var orphans []orphan
	for _, job := range jobs {
		if known[job] {
			continue
		}
		names, err := r.children(ctx, HistoryJobPath(job))
		if err != nil {
			return nil, err
		}
		var last time.Time // an empty parent sorts first
		if len(names) > 0 {
			last, _ = historyKeyTime(names[len(names)-1])
		}
		orphans = append(orphans, orphan{job, last})
	}
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].last.Before(orphans[j].last) })
	var removed []string
	for _, o := range orphans[:min(len(orphans), len(jobs)-maxJobs)] {
		err := ignore(w.c.DeleteTree(ctx, HistoryJobPath(o.job)), coord.ErrNotFound)
		if err != nil {
			return removed, unavailable(fmt.Errorf("prune history of %s: %w", o.job, err))
		}
		removed = append(removed, o.job)
	}
	return removed, nil
}

// historyReadsInFlight bounds the reads of one Executions call.
const historyReadsInFlight = 16

// Executions reads a job's last limit runs, the latest first. A job
// without history has none (registered or not). A run that does not
// decode is left out (it is nobody's to fix here), as is one pruned
// between the listing and its read.
func (r Reader) Executions(ctx context.Context, job string, limit int) ([]model.Execution, error) {
	if limit < 1 {
		return nil, fmt.Errorf("executions of %s: limit %d: %w", job, limit, model.ErrInvalid)
	}
	names, err := r.children(ctx, HistoryJobPath(job))
	if err != nil {
		return nil, err
	}
	if len(names) > limit {
		names = names[len(names)-limit:]
	}
	vals := make([]model.Execution, len(names))
	found := make([]bool, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, historyReadsInFlight)
	var wg sync.WaitGroup
	for i, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, ok, err := r.get(ctx, HistoryPath(job, name), &vals[i])
			if errors.Is(err, ErrUndecodable) {
				ok, err = false, nil
			}
			found[i], errs[i] = ok, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]model.Execution, 0, len(names))
	for i := len(names) - 1; i >= 0; i-- {
		if found[i] {
			out = append(out, vals[i])
		}
	}
	return out, nil
}

// HistoryJobs names the jobs that have history, registered or not.
func (r Reader) HistoryJobs(ctx context.Context) ([]string, error) {
	return r.children(ctx, HistoryRoot)
}
