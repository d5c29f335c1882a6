package scheduler

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/hasched/hasched/internal/parallel"
	"github.com/hasched/hasched/scheduler/model"
)

// configIndex is the leader's read index of the stored configurations: each
// app and job by name, encoded as the store holds it (encoding/json of the
// model.App or model.Job the term wrote or loaded, which is what the REST
// API sends for it), and the disable flags. With it the leader answers the
// configuration reads (the job list at 100,000 jobs above all) from memory,
// without a store request and without encoding anything.
//
// The term's loop is its only writer: it loads the index with the term's
// state and updates it wherever a write of a configuration or a disable
// flag has succeeded, before the write is acknowledged. So a read of the
// index sees every write acknowledged before it started. The API's
// goroutines read it under the read lock; the encoded values are never
// changed in place (an update replaces them), so a reader may use them
// after the lock is released.
//
// The index mirrors the store, not the term's validated state: a
// quarantined configuration that decodes is listed as it is stored, one
// that does not (or that names another app or job than its node) is
// refused as quarantined, as the store's reads do.
type configIndex struct {
	mu sync.RWMutex
	// apps and jobs are nil until load; a nil set is empty.
	apps *configSet
	jobs *configSet
}

// configSet is one kind's configurations in a configIndex.
type configSet struct {
	// encoded holds the configurations that decode, by name.
	encoded map[string][]byte
	// bad holds the names of the stored configurations that do not
	// decode, with why.
	bad map[string]string
	// disabled holds the disable flags that are set, including flags of
	// names not in encoded (the store may hold such).
	disabled map[string]bool

	// members counts the changes of the names in encoded; order is the
	// sorted names as of orderAt, rebuilt by the first list after a
	// change. orderMu guards both: lists build it under the index's read
	// lock, so several may try at once.
	members uint64
	orderMu sync.Mutex
	order   []string
	orderAt uint64
}

func newConfigSet() *configSet {
	return &configSet{encoded: map[string][]byte{}, bad: map[string]string{}, disabled: map[string]bool{}, orderAt: ^uint64(0)}
}

// load replaces the index's content with what a term loaded from the store:
// the configurations that decode, the reports of those that do not, and
// the disable flags set. The term's loop calls it before it serves.
func (ix *configIndex) load(apps []model.App, badApps []model.QuarantinedConfig, disabledApps map[string]bool, jobs []model.Job, badJobs []model.QuarantinedConfig, disabledJobs map[string]bool) {
	// Encoding 100,000 jobs is a few hundred milliseconds of CPU that a
	// takeover waits for: spread over the cores, outside the lock.
	encoded := make([][]byte, len(jobs))
	parallel.Each(len(jobs), func(i int) { encoded[i] = encodeConfig(jobs[i]) })
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.apps, ix.jobs = newConfigSet(), newConfigSet()
	for _, a := range apps {
		ix.apps.put(a.AppName, encodeConfig(a))
	}
	for i, j := range jobs {
		ix.jobs.put(j.JobName, encoded[i])
	}
	for _, b := range badApps {
		ix.apps.putBad(b.Name, b.Error)
	}
	for _, b := range badJobs {
		ix.jobs.putBad(b.Name, b.Error)
	}
	for name, on := range disabledApps {
		ix.apps.setDisabled(name, on)
	}
	for name, on := range disabledJobs {
		ix.jobs.setDisabled(name, on)
	}
}

// setApp records an app's configuration as written.
func (ix *configIndex) setApp(app model.App) {
	b := encodeConfig(app)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.apps.put(app.AppName, b)
}

// removeApp records an app's deregistration: its configuration and its
// disable flag are gone.
func (ix *configIndex) removeApp(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.apps.remove(name)
}

func (ix *configIndex) setAppDisabled(name string, disabled bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.apps.setDisabled(name, disabled)
}

// setJob records a job's configuration as written, and its disable flag.
func (ix *configIndex) setJob(job model.Job, disabled bool) {
	b := encodeConfig(job)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.jobs.put(job.JobName, b)
	ix.jobs.setDisabled(job.JobName, disabled)
}

// removeJob records a job's deregistration: its configuration and its
// disable flag are gone.
func (ix *configIndex) removeJob(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.jobs.remove(name)
}

func (ix *configIndex) setJobDisabled(name string, disabled bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.jobs.setDisabled(name, disabled)
}

// app returns one app as stored: model.ErrNotFound if there is none,
// model.ErrConflict if it is quarantined and does not decode.
func (ix *configIndex) app(name string) (model.App, error) {
	var a model.App
	err := ix.decode(model.KindApp, name, &a)
	return a, err
}

// job returns one job, like app.
func (ix *configIndex) job(name string) (model.Job, error) {
	var j model.Job
	err := ix.decode(model.KindJob, name, &j)
	return j, err
}

func (ix *configIndex) decode(kind model.ConfigKind, name string, v any) error {
	b, err := ix.encoded(kind, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		// Only what encodeConfig made is in the index.
		return fmt.Errorf("%s %q in the read index: %w", kind, name, err)
	}
	return nil
}

func (ix *configIndex) encoded(kind model.ConfigKind, name string) ([]byte, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.set(kind).get(kind, name)
}

// set is kind's set; the caller holds the lock.
func (ix *configIndex) set(kind model.ConfigKind) *configSet {
	if kind == model.KindApp {
		return ix.apps
	}
	return ix.jobs
}

// get returns a configuration's encoding; the caller holds the index's
// lock.
func (set *configSet) get(kind model.ConfigKind, name string) ([]byte, error) {
	if set == nil {
		return nil, fmt.Errorf("%w: %s %q", model.ErrNotFound, kind, name)
	}
	if why, bad := set.bad[name]; bad {
		return nil, fmt.Errorf("%w: %s %q is quarantined: %s", model.ErrConflict, kind, name, why)
	}
	b, ok := set.encoded[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s %q", model.ErrNotFound, kind, name)
	}
	return b, nil
}

// appDisabled says whether an app's disable flag is set, after app's
// checks.
func (ix *configIndex) appDisabled(name string) (bool, error) {
	return ix.disabled(model.KindApp, name)
}

// jobDisabled is appDisabled for a job.
func (ix *configIndex) jobDisabled(name string) (bool, error) {
	return ix.disabled(model.KindJob, name)
}

func (ix *configIndex) disabled(kind model.ConfigKind, name string) (bool, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	set := ix.set(kind)
	if _, err := set.get(kind, name); err != nil {
		return false, err
	}
	return set.disabled[name], nil
}

// appsJSON lists every app that decodes, encoded, by name.
func (ix *configIndex) appsJSON() []json.RawMessage { return ix.list(model.KindApp) }

// jobsJSON lists every job that decodes, encoded, by name: the items of
// the job list, ready to be written out.
func (ix *configIndex) jobsJSON() []json.RawMessage { return ix.list(model.KindJob) }

func (ix *configIndex) list(kind model.ConfigKind) []json.RawMessage {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	set := ix.set(kind)
	if set == nil {
		return nil
	}
	names := set.sorted()
	out := make([]json.RawMessage, len(names))
	for i, name := range names {
		out[i] = set.encoded[name]
	}
	return out
}

func (set *configSet) put(name string, b []byte) {
	if _, ok := set.encoded[name]; !ok {
		set.members++
	}
	set.encoded[name] = b
	delete(set.bad, name)
}

func (set *configSet) putBad(name, why string) {
	if _, ok := set.encoded[name]; ok {
		delete(set.encoded, name)
		set.members++
	}
	set.bad[name] = why
}

func (set *configSet) setDisabled(name string, disabled bool) {
	if disabled {
		set.disabled[name] = true
	} else {
		delete(set.disabled, name)
	}
}

func (set *configSet) remove(name string) {
	if _, ok := set.encoded[name]; ok {
		delete(set.encoded, name)
		set.members++
	}
	delete(set.bad, name)
	delete(set.disabled, name)
}

// sorted returns the names of the configurations in order; the caller
// holds the index's lock (the read lock will do). The order is kept
// between lists until a name comes or goes, so a list after updates costs
// no sort, and one after a registration costs one.
func (set *configSet) sorted() []string {
	set.orderMu.Lock()
	defer set.orderMu.Unlock()
	if set.orderAt != set.members {
		names := make([]string, 0, len(set.encoded))
		for name := range set.encoded {
			names = append(names, name)
		}
		slices.Sort(names)
		set.order, set.orderAt = names, set.members
	}
	return set.order
}

// encodeConfig encodes a configuration as the store does (encoding/json):
// the index's value is then what a read of the store would decode and the
// API encode again.
func encodeConfig(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// The store has encoded the same value already, or decoded it.
		panic(fmt.Sprintf("scheduler: encode %T: %v", v, err))
	}
	return b
}
