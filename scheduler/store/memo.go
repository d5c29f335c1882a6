package store

import (
	"context"
	"fmt"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/internal/parallel"
	"github.com/hasched/hasched/scheduler/model"
)

// JobMemo keeps the stored job configurations as decoded and checked, by
// their node's version. Decoding and checking 100,000 jobs is over a
// second of CPU on two cores, and a takeover used to wait for all of it: a
// standby now fills a JobMemo from its Mirrors as the configurations
// change, and the new term's load decodes and checks only what changed
// since. A version names one state of a node (coord.Version), so an entry
// whose version matches the node's is that node's value, decoded.
//
// A JobMemo is not safe for concurrent use: the standby fills it, then
// hands it to the term, which uses it once.
type JobMemo struct {
	jobs    map[string]CheckedJob // by the node's name
	decoded int                   // by the last CheckedJobs
}

// NewJobMemo returns an empty memo.
func NewJobMemo() *JobMemo { return &JobMemo{jobs: map[string]CheckedJob{}} }

// Len is how many jobs the memo holds.
func (m *JobMemo) Len() int { return len(m.jobs) }

// Decoded is how many configurations the last CheckedJobs decoded and
// checked, rather than taking them from the memo.
func (m *JobMemo) Decoded() int { return m.decoded }

// CheckedJob is one stored job configuration, decoded and checked.
type CheckedJob struct {
	Version coord.Version
	Job     model.Job
	// Spec is what model.Job.Check made of Job, unless Err is set: the
	// configuration is then quarantined.
	Spec model.JobSpec
	Err  error
}

// CheckedJobs reads every job configuration, as JobConfigs does, and
// checks each with model.Job.Check. It takes from memo the ones whose
// version it holds and puts the others in it; the jobs no longer stored
// leave it. Configurations that do not decode, or name another job than
// their node, are quarantined as JobConfigs says; they are not kept.
func (r Reader) CheckedJobs(ctx context.Context, memo *JobMemo) ([]CheckedJob, []model.QuarantinedConfig, error) {
	nodes, err := r.nodes(ctx, JobConfigRoot)
	if err != nil {
		return nil, nil, err
	}
	out := make([]CheckedJob, len(nodes))
	decodeErrs := make([]error, len(nodes))
	var todo []int
	for i, n := range nodes {
		if c, ok := memo.jobs[coord.Base(n.Path)]; ok && c.Version == n.Version {
			out[i] = c
			continue
		}
		todo = append(todo, i)
	}
	parallel.Each(len(todo), func(k int) {
		i := todo[k]
		n := nodes[i]
		out[i].Version = n.Version
		if err := decodeNode(n, &out[i].Job); err != nil {
			decodeErrs[i] = err
			return
		}
		if base := coord.Base(n.Path); out[i].Job.JobName != base {
			decodeErrs[i] = fmt.Errorf("%s/%s names %s %q", JobConfigRoot, base, model.KindJob, out[i].Job.JobName)
			return
		}
		out[i].Spec, out[i].Err = out[i].Job.Check()
	})
	// The memo is updated in place, not rebuilt: a standby refreshes it
	// every few seconds, mostly finding nothing changed.
	good := out[:0]
	var bad []model.QuarantinedConfig
	for i, n := range nodes {
		base := coord.Base(n.Path)
		if err := decodeErrs[i]; err != nil {
			delete(memo.jobs, base)
			bad = append(bad, model.QuarantinedConfig{Kind: model.KindJob, Name: base, Error: err.Error()})
			continue
		}
		if c, ok := memo.jobs[base]; !ok || c.Version != out[i].Version {
			memo.jobs[base] = out[i]
		}
		good = append(good, out[i]) // in place: good never passes i
	}
	if len(memo.jobs) > len(good) {
		stored := make(map[string]bool, len(nodes))
		for _, n := range nodes {
			stored[coord.Base(n.Path)] = true
		}
		for name := range memo.jobs {
			if !stored[name] {
				delete(memo.jobs, name)
			}
		}
	}
	memo.decoded = len(todo)
	return good, bad, nil
}
